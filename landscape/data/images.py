"""Image datasets from files on disk: CIFAR-10/100 (their python format) and class folders.

Nothing downloads: each loader reads a directory the user already has. CIFAR's python
version (``data_batch_1`` .. ``data_batch_5`` and ``test_batch`` for CIFAR-10; ``train`` and
``test`` for CIFAR-100) is a set of pickles; they are read by a restricted unpickler that
builds only plain containers, numbers, strings and numpy arrays and refuses anything else, so
no code in the files can run. Class folders (``root/<class>/<image>``, as torchvision's
``ImageFolder`` reads them) are read with Pillow.

Images become float32 tensors ``(N, C, H, W)`` in [0, 1], as torchvision's ``ToTensor``
makes them, and labels int64 classes; each loader returns a :class:`~landscape.data.split.Split`
whose ``info`` says where the data came from. :func:`image_tensor` converts one Pillow image
(what a torchvision dataset without a transform returns).

Examples:
    >>> from landscape import data
    >>> split = data.cifar10("~/data")    # reads ~/data/cifar-10-batches-py  # doctest: +SKIP
    >>> split = data.image_folder("photos/train", test_root="photos/val", size=64)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from landscape.data.split import Split, _split_indices
from landscape.engine.checks import _check_fraction, _check_int

__all__ = ["IMAGE_EXTENSIONS", "cifar10", "cifar100", "image_folder", "image_tensor"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
"""The file endings :func:`image_folder` reads (torchvision's ``ImageFolder`` list)."""

# the classes a CIFAR pickle may name: numpy's array and scalar reconstruction and the codec
# Python 3 uses for bytes in protocol 2; nothing else is ever looked up
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Builds dicts, lists, bytes, strings, numbers and numpy arrays; refuses any other class."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refused {module}.{name}: only plain data and numpy arrays are read"
        )


def _read_pickle(path: Path) -> dict:
    """A CIFAR batch file, read without running code; its keys as ``str``."""
    try:
        with open(path, "rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise FileNotFoundError(f"CIFAR file {path} does not exist") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(
            f"{path} is not a CIFAR batch of plain data and numpy arrays (read without running "
            f"code): {err}"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a CIFAR batch (a dict)")
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_dir(root: str | os.PathLike, folder: str, first: str) -> Path:
    """The folder holding CIFAR's files: ``root/folder`` (torchvision's root) or ``root``."""
    base = Path(os.path.expanduser(os.fspath(root)))
    for d in (base / folder, base):
        if (d / first).is_file():
            return d
    raise FileNotFoundError(
        f"no CIFAR files under {base}: expected {base / folder / first} (the python version, "
        "as torchvision and the CIFAR site lay it out); nothing is downloaded"
    )


def _cifar_part(d: Path, files: list[str], key: str) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for name in files:
        batch = _read_pickle(d / name)
        if "data" not in batch or key not in batch:
            raise ValueError(
                f"{d / name}: expected keys data and {key}, found {', '.join(sorted(batch))}"
            )
        x = np.asarray(batch["data"])
        y = np.asarray(batch[key])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32 or len(x) != len(y):
            raise ValueError(
                f"{d / name}: expected data of shape (N, 3072) uint8 and N labels, got "
                f"{x.shape} {x.dtype} and {y.shape}"
            )
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs).reshape(-1, 3, 32, 32)
    x_t = torch.from_numpy(x).to(torch.float32).div_(255)
    return x_t, torch.from_numpy(np.concatenate(ys).astype(np.int64))


def _names(d: Path, meta: str, key: str) -> list[str] | None:
    if not (d / meta).is_file():
        return None
    names = _read_pickle(d / meta).get(key)
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None


def cifar10(root: str | os.PathLike) -> Split:
    """CIFAR-10 from its python version on disk (read without running code).

    Args:
        root: the folder holding ``cifar-10-batches-py`` (torchvision's ``root``) or that
            folder itself, with ``data_batch_1`` .. ``data_batch_5``, ``test_batch`` and
            ``batches.meta``.

    Returns:
        A :class:`Split` of 50 000 / 10 000 images ``(3, 32, 32)`` in [0, 1], 10 classes.

    Raises:
        FileNotFoundError: no CIFAR-10 files there (nothing is downloaded).
        ValueError: a file that is not a CIFAR batch, or one that asks for other code.
    """
    d = _cifar_dir(root, "cifar-10-batches-py", "test_batch")
    x_tr, y_tr = _cifar_part(d, [f"data_batch_{i}" for i in range(1, 6)], "labels")
    x_te, y_te = _cifar_part(d, ["test_batch"], "labels")
    info: dict[str, Any] = {"source": f"CIFAR-10 python files in {d}", "classes": None}
    info["classes"] = _names(d, "batches.meta", "label_names")
    info["sizes"] = {"train": len(y_tr), "test": len(y_te)}
    return Split(x_tr, y_tr, x_te, y_te, name="cifar10", num_classes=10, info=info)


def cifar100(root: str | os.PathLike, *, labels: str = "fine") -> Split:
    """CIFAR-100 from its python version on disk (read without running code).

    Args:
        root: the folder holding ``cifar-100-python`` (torchvision's ``root``) or that folder
            itself, with ``train``, ``test`` and ``meta``.
        labels: ``"fine"`` (100 classes) or ``"coarse"`` (20 superclasses).

    Returns:
        A :class:`Split` of 50 000 / 10 000 images ``(3, 32, 32)`` in [0, 1].

    Raises:
        FileNotFoundError: no CIFAR-100 files there (nothing is downloaded).
        ValueError: a bad ``labels``, a file that is not a CIFAR batch, or one that asks for
            other code.
    """
    if labels not in ("fine", "coarse"):
        raise ValueError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    d = _cifar_dir(root, "cifar-100-python", "test")
    key = f"{labels}_labels"
    x_tr, y_tr = _cifar_part(d, ["train"], key)
    x_te, y_te = _cifar_part(d, ["test"], key)
    info: dict[str, Any] = {"source": f"CIFAR-100 python files in {d}", "labels": labels}
    info["classes"] = _names(d, "meta", f"{labels}_label_names")
    info["sizes"] = {"train": len(y_tr), "test": len(y_te)}
    k = 100 if labels == "fine" else 20
    return Split(x_tr, y_tr, x_te, y_te, name="cifar100", num_classes=k, info=info)


# --------------------------------------------------------------------------- class folders


def image_tensor(image: Image.Image, mode: str | None = None) -> torch.Tensor:
    """One Pillow image as a float32 tensor ``(C, H, W)`` in [0, 1] (torchvision's ToTensor).

    Args:
        image: a Pillow image (8 bits a channel).
        mode: convert to this Pillow mode first (``"RGB"``, ``"L"``); None keeps it.

    Returns:
        The tensor.
    """
    if mode is not None and image.mode != mode:
        image = image.convert(mode)
    a = np.array(image)  # a copy: Pillow's buffer is read-only
    if a.dtype != np.uint8:
        raise ValueError(
            f"image_tensor: expected an image of 8 bits a channel, got mode {image.mode!r}"
        )
    a = a[:, :, None] if a.ndim == 2 else a
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).to(torch.float32) / 255


def _folder(fn: str, root: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list]:
    if not root.is_dir():
        raise FileNotFoundError(f"{fn}: {root} is not a directory")
    found = sorted(e.name for e in os.scandir(root) if e.is_dir())
    classes = found if classes is None else classes
    if not classes:
        raise ValueError(f"{fn}: {root} has no class folders (expected root/<class>/<image>)")
    if sorted(classes) != sorted(found):
        raise ValueError(
            f"{fn}: {root} has class folders {found}, but the training folders are {classes}"
        )
    files, labels = [], []
    for k, c in enumerate(classes):
        for dirpath, _, names in sorted(os.walk(root / c, followlinks=True)):
            for name in sorted(names):
                if name.lower().endswith(IMAGE_EXTENSIONS):
                    files.append(Path(dirpath) / name)
                    labels.append(k)
    if not files:
        raise ValueError(
            f"{fn}: no images under {root} (endings read: {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files, labels, classes


def _images(fn: str, files: list[Path], mode: str, size: int | None) -> torch.Tensor:
    out, first = [], None
    for path in files:
        try:
            with Image.open(path) as opened:
                img = opened.convert(mode)
                if size is not None:
                    img = img.resize((size, size), Image.Resampling.BILINEAR)
                t = image_tensor(img)
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"{fn}: cannot read {path} as an image: {err}") from None
        if first is None:
            first = (path, t.shape)
        elif t.shape != first[1]:
            raise ValueError(
                f"{fn}: {path} is {tuple(t.shape)} but {first[0]} is {tuple(first[1])}; "
                "give size=N to resize every image to N x N"
            )
        out.append(t)
    return torch.stack(out)


def image_folder(
    root: str | os.PathLike,
    *,
    test_root: str | os.PathLike | None = None,
    size: int | None = None,
    mode: str = "RGB",
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Split:
    """Images in class folders (``root/<class>/<image>``), as torchvision's ``ImageFolder``.

    Classes are the sorted folder names (label k is the k-th), files are read in sorted order
    with Pillow and converted to ``mode``.

    Args:
        root: the training folder.
        test_root: a test folder with the same class folders; if None, ``root`` is split by
            ``test_fraction`` (stratified, seeded).
        size: resize every image to ``size x size`` (bilinear); None: they must agree.
        mode: Pillow mode, ``"RGB"`` (3 channels) or ``"L"`` (1).
        test_fraction: held-out fraction in (0, 1) when ``root`` is split.
        seed: seed of the split.

    Returns:
        A :class:`Split` of ``(C, H, W)`` images in [0, 1]; ``info["classes"]`` names them.

    Raises:
        FileNotFoundError: ``root`` (or ``test_root``) is not a directory.
        ValueError: no class folders, no images, unreadable images, sizes that differ.
    """
    fn = "image_folder"
    if mode not in ("RGB", "L"):
        raise ValueError(f"{fn}: mode must be 'RGB' or 'L', got {mode!r}")
    if size is not None:
        size = _check_int(fn, "size", size, 1)
    base = Path(os.path.expanduser(os.fspath(root)))
    files, labels, classes = _folder(fn, base, None)
    x, y = _images(fn, files, mode, size), torch.tensor(labels, dtype=torch.int64)
    info: dict[str, Any] = {"source": f"image folders in {base}", "classes": classes}
    info["options"] = {"size": size, "mode": mode}
    if test_root is None:
        test_fraction = _check_fraction(fn, "test_fraction", test_fraction, closed=False)
        seed = _check_int(fn, "seed", seed)
        tr, te = _split_indices(fn, len(y), y.numpy(), test_fraction, seed)
        x_tr, y_tr, x_te, y_te = x[tr], y[tr], x[te], y[te]
        info["options"] |= {"test_fraction": test_fraction}
        info["seed"] = seed
    else:
        test = Path(os.path.expanduser(os.fspath(test_root)))
        t_files, t_labels, _ = _folder(fn, test, classes)
        x_tr, y_tr = x, y
        x_te, y_te = _images(fn, t_files, mode, size), torch.tensor(t_labels, dtype=torch.int64)
        info["source"] += f" and {test}"
    info["sizes"] = {"train": len(y_tr), "test": len(y_te)}
    return Split(x_tr, y_tr, x_te, y_te, name="image_folder", num_classes=len(classes), info=info)
