"""Built-in datasets that work offline, and the transforms the experiments need.

Every loader returns a :class:`Split`: train and test tensors (inputs float32, class labels
int64), a name, the number of classes and a JSON-serialisable ``info`` dict that says where
the data came from and what was done to it (``info["transforms"]`` lists the steps in order).
Nothing downloads at run time. Everything is seeded with its own ``torch.Generator`` or
``numpy.random.Generator``: the same seed gives identical tensors, and global RNG state is
left as it was.

The :class:`Split` container and its transforms live in :mod:`landscape.data.split`, the
built-in datasets in :mod:`landscape.data.datasets` (MNIST-1D, digits) and
:mod:`landscape.data.synthetic` (gaussians, moons, sparse regression, matrix sensing, modular
addition); your own data (:func:`from_arrays`, :func:`from_dataset`) and the registry
(``DATASETS``, :func:`load`) in :mod:`landscape.data.sources`; this package re-exports all
four.

Examples:
    >>> from landscape import data
    >>> split = data.load("digits", seed=0)
    >>> noisy = data.corrupt(data.standardize(split), 0.2, seed=1)
    >>> x, y = noisy.train
"""

from landscape.data.datasets import digits, mnist1d
from landscape.data.sources import DATASETS, from_arrays, from_dataset, load
from landscape.data.split import Split, corrupt, corrupt_labels, standardize, subset
from landscape.data.synthetic import (
    gaussians,
    matrix_sensing,
    matrix_sensing_truth,
    modular_addition,
    moons,
    sparse_regression,
)

__all__ = [
    "DATASETS",
    "Split",
    "corrupt",
    "corrupt_labels",
    "digits",
    "from_arrays",
    "from_dataset",
    "gaussians",
    "load",
    "matrix_sensing",
    "matrix_sensing_truth",
    "mnist1d",
    "modular_addition",
    "moons",
    "sparse_regression",
    "standardize",
    "subset",
]
