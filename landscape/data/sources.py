"""Your own data (arrays, files, any ``Dataset``) and the registry of datasets by name.

The built-in datasets are in :mod:`landscape.data.datasets` and :mod:`landscape.data.synthetic`,
image files you have (CIFAR, class folders) in :mod:`landscape.data.images`, Hugging Face
datasets in :mod:`landscape.data.hf`, the :class:`Split` container and its transforms in
:mod:`landscape.data.split`; :mod:`landscape.data` re-exports them all. The registry
(``DATASETS``) is what a run spec's ``[data] name`` names.

Examples:
    >>> from landscape import data
    >>> split = data.from_arrays({"x": x, "y": y}, test_fraction=0.2, seed=0)
    >>> data.load("digits", seed=0).num_classes
    10
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from landscape.data.datasets import digits, mnist1d
from landscape.data.hf import hf_disk
from landscape.data.images import cifar10, cifar100, image_folder, image_tensor
from landscape.data.split import Split, _assemble
from landscape.data.synthetic import (
    gaussians,
    matrix_sensing,
    modular_addition,
    moons,
    sparse_regression,
)

__all__ = ["DATASETS", "from_arrays", "from_dataset", "load"]


# --------------------------------------------------------------------------- your own data


def _load_npy(fn: str, path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(
            f"{fn}: cannot load {path} without pickle ({err}); save plain numeric arrays"
        ) from None


def from_arrays(
    source: str | os.PathLike | Mapping[str, Any] | Sequence[Any],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    name: str = "arrays",
    num_classes: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Split:
    """Your own data from a ``.npz`` file, a pair of ``.npy`` files, or arrays in memory.

    ``source`` may be: a ``.npz`` path or a mapping with keys ``x_train, y_train, x_test,
    y_test`` (used as given) or ``x, y`` (split by ``test_fraction``); a pair of ``.npy``
    paths ``(x_path, y_path)``; or a pair of arrays ``(x, y)``. Files are loaded with
    ``allow_pickle=False``. Labels must be integer-valued; they become int64 classes
    (``num_classes`` defaults to ``max + 1``).

    Args:
        source: see above.
        test_fraction: held-out fraction in (0, 1) when splitting.
        seed: seed of the split.
        stratify: stratify the split by class.
        name: name of the dataset.
        num_classes: number of classes (default: the largest label + 1).
        dtype: input dtype.

    Returns:
        A :class:`Split`.

    Examples:
        >>> np.savez("d.npz", x=np.random.rand(100, 3), y=np.arange(100) % 2)
        >>> split = from_arrays("d.npz", test_fraction=0.25)
    """
    fn, info = "from_arrays", {"source": "arrays in memory"}
    if isinstance(source, (str, os.PathLike)):
        if str(source).endswith(".npy"):
            raise ValueError(
                f"{fn}: a single .npy file holds one array; pass (x_path, y_path) "
                f"or a .npz file, got {str(source)!r}"
            )
        info["source"] = f"file {os.fspath(source)}"
        try:
            z = np.load(source, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{fn}: cannot read {source} as .npz without pickle ({err})") from None
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError(f"{fn}: {source} holds a single array, expected a .npz archive")
        with z:
            source = {k: z[k] for k in z.files}
    if isinstance(source, Mapping):
        keys = set(source)
        if {"x_train", "y_train", "x_test", "y_test"} <= keys:
            parts = [source[k] for k in ("x_train", "y_train", "x_test", "y_test")]
        elif {"x", "y"} <= keys:
            parts = [source["x"], source["y"]]
        else:
            raise ValueError(
                f"{fn}: expected keys x_train, y_train, x_test, y_test (or x, y); "
                f"found: {', '.join(sorted(map(str, keys))) or 'none'}"
            )
    elif isinstance(source, Sequence) and len(source) == 2:
        if all(isinstance(s, (str, os.PathLike)) for s in source):
            info["source"] = f"files {os.fspath(source[0])}, {os.fspath(source[1])}"
            parts = [_load_npy(fn, s) for s in source]
        else:
            parts = list(source)
    else:
        raise TypeError(
            f"{fn}: source must be a .npz path, a mapping of arrays, or a pair "
            f"(x, y) of arrays or .npy paths, got {type(source).__name__}"
        )
    return _assemble(fn, parts, test_fraction, seed, stratify, name, num_classes, dtype, info)


def from_dataset(
    train: Any,
    test: Any = None,
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    name: str = "dataset",
    num_classes: int | None = None,
    dtype: torch.dtype = torch.float32,
) -> Split:
    """Stack any (small) map-style ``Dataset`` of ``(x, y)`` pairs into tensors.

    Inputs may be tensors, arrays or Pillow images (what a torchvision dataset without a
    transform returns: ``torchvision.datasets.CIFAR10(root)``, ``ImageFolder(root)``), which
    become ``(C, H, W)`` in [0, 1] as torchvision's ``ToTensor`` makes them.

    Args:
        train: a dataset with ``__len__`` and ``__getitem__`` returning ``(x, y)``.
        test: a test dataset; if None, ``train`` is split by ``test_fraction``.
        test_fraction: held-out fraction in (0, 1) when ``train`` is split.
        seed: seed of the split.
        stratify: stratify the split by class.
        name: name of the dataset.
        num_classes: number of classes (default: the largest label + 1).
        dtype: input dtype.

    Returns:
        A :class:`Split`.

    Examples:
        >>> ds = torch.utils.data.TensorDataset(torch.randn(50, 3), torch.arange(50) % 2)
        >>> split = from_dataset(ds, test_fraction=0.2)
    """

    def stack(ds: Any, which: str) -> list[torch.Tensor]:
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise TypeError(
                f"from_dataset: {which} must be a map-style Dataset with __len__ and "
                f"__getitem__, got {type(ds).__name__}"
            )
        if len(ds) == 0:
            raise ValueError(f"from_dataset: {which} is empty")
        items = [ds[i] for i in range(len(ds))]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise ValueError(
                f"from_dataset: {which} items must be (x, y) pairs, got {type(items[0]).__name__}"
            )
        return [torch.stack([_tensor(it[j]) for it in items]) for j in (0, 1)]

    parts = stack(train, "train") + ([] if test is None else stack(test, "test"))
    info = {"source": f"torch Dataset {type(train).__name__}"}
    return _assemble(
        "from_dataset", parts, test_fraction, seed, stratify, name, num_classes, dtype, info
    )


def _tensor(v: Any) -> torch.Tensor:
    if isinstance(v, Image.Image):
        return image_tensor(v)
    return torch.as_tensor(v if isinstance(v, torch.Tensor) else np.asarray(v))


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Split]] = {
    "mnist1d": mnist1d,
    "digits": digits,
    "gaussians": gaussians,
    "moons": moons,
    "sparse_regression": sparse_regression,
    "matrix_sensing": matrix_sensing,
    "modular_addition": modular_addition,
    "cifar10": cifar10,
    "cifar100": cifar100,
    "image_folder": image_folder,
    "hf_disk": hf_disk,
}
"""The built-in datasets by name (:func:`load` takes these names and their arguments)."""


def load(name: str, **kwargs: Any) -> Split:
    """Load a built-in dataset by name (see ``DATASETS``) with its keyword arguments.

    Args:
        name: ``"mnist1d"``, ``"digits"``, ``"gaussians"``, ``"moons"``,
            ``"sparse_regression"``, ``"matrix_sensing"``, ``"modular_addition"``; files you
            have: ``"cifar10"``, ``"cifar100"`` (``root=``), ``"image_folder"`` (``root=``),
            ``"hf_disk"`` (``path=``, a saved Hugging Face dataset) (case, ``-`` and ``_``
            ignored).
        **kwargs: passed to the dataset's function.

    Returns:
        The dataset's :class:`Split`.

    Raises:
        ValueError: unknown name (the message lists the known names).
        TypeError: a keyword the dataset does not accept (the message names it).

    Examples:
        >>> split = load("gaussians", n_train=100, dim=10, seed=3)
    """
    known = {k.replace("_", ""): k for k in DATASETS}
    key = known.get(str(name).lower().replace("-", "").replace("_", ""))
    if key is None:
        raise ValueError(f"load: unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    fn = DATASETS[key]
    accepted = list(inspect.signature(fn).parameters)
    bad = sorted(set(kwargs) - set(accepted))
    if bad:
        raise TypeError(
            f"load({key!r}): unexpected keyword argument(s) {', '.join(bad)}; "
            f"{key} accepts: {', '.join(accepted)}"
        )
    params = inspect.signature(fn).parameters
    missing = [k for k, p in params.items() if p.default is p.empty and k not in kwargs]
    if missing:
        raise TypeError(f"load({key!r}): {key} needs {', '.join(missing)} (e.g. the folder)")
    return fn(**kwargs)
