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
addition); image files you have in :mod:`landscape.data.images` (:func:`cifar10`,
:func:`cifar100` from their python pickles, read without running code; :func:`image_folder`);
Hugging Face datasets in :mod:`landscape.data.hf` (:func:`rows` for mapping batches,
:func:`from_hf`, :func:`hf_disk`); your own data (:func:`from_arrays`, :func:`from_dataset`, which
also takes torchvision datasets) and the registry (``DATASETS``, :func:`load`) in
:mod:`landscape.data.sources`; this package re-exports them all.

Examples:
    >>> from landscape import data
    >>> split = data.load("digits", seed=0)
    >>> noisy = data.corrupt(data.standardize(split), 0.2, seed=1)
    >>> x, y = noisy.train
"""

from landscape.data.datasets import digits, mnist1d
from landscape.data.hf import IGNORE_INDEX, Rows, from_hf, hf_disk, rows
from landscape.data.images import cifar10, cifar100, image_folder, image_tensor
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
    "IGNORE_INDEX",
    "Rows",
    "Split",
    "cifar10",
    "cifar100",
    "corrupt",
    "corrupt_labels",
    "digits",
    "from_arrays",
    "from_dataset",
    "from_hf",
    "gaussians",
    "hf_disk",
    "image_folder",
    "image_tensor",
    "load",
    "matrix_sensing",
    "matrix_sensing_truth",
    "mnist1d",
    "modular_addition",
    "moons",
    "rows",
    "sparse_regression",
    "standardize",
    "subset",
]
