"""Built-in real datasets that work offline: MNIST-1D (with a disk cache) and digits.

Each function returns a :class:`~landscape.data.split.Split` whose ``info`` records the source,
sizes, options and seed. Nothing downloads at run time: MNIST-1D is generated locally by the
``mnist1d`` package, digits ships with scikit-learn. Everything is seeded with its own
``torch.Generator`` or ``numpy.random.Generator``: the same seed gives identical tensors, and
global RNG state is left as it was. The synthetic sets (gaussians, moons, sparse_regression,
matrix_sensing, modular_addition) are in :mod:`landscape.data.synthetic`.

All names here are re-exported by :mod:`landscape.data`, which also has ``load`` by name.

Examples:
    >>> from landscape import data
    >>> split = data.mnist1d(seed=42)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
import warnings
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from landscape.data.split import Split, _split_indices
from landscape.engine.checks import _check_fraction, _check_int

__all__ = ["digits", "mnist1d"]

_MNIST1D_REF = "Greydanus & Kobak, 'Scaling down deep learning with MNIST-1D', ICML 2024"


def _tensor(a: np.ndarray, dtype: type) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))


# --------------------------------------------------------------------------- MNIST-1D


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "landscape"


def _mnist1d_args(seed: int) -> dict:
    # mnist1d imports scipy.interpolate and matplotlib (~0.7 s): only when it is used
    from mnist1d.data import get_dataset_args  # noqa: PLC0415

    args = dict(get_dataset_args(as_dict=True))
    args.pop("url", None)  # generation never downloads; the url is not a generation argument
    args["seed"] = seed
    return args


def _mnist1d_key(args: dict) -> str:
    try:
        pkg = version("mnist1d")
    except PackageNotFoundError:
        pkg = "unknown"
    blob = json.dumps({"generator": "mnist1d", "version": pkg, "args": args}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator; it seeds ``random`` and ``np.random``, so restore them."""
    from mnist1d.data import make_dataset  # noqa: PLC0415 (import cost, see _mnist1d_args)
    from mnist1d.utils import ObjectView  # noqa: PLC0415

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}


def _read_cache(path: Path, args_json: str) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
            stored = str(z["args"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(
            f"mnist1d: cache file {path} is unreadable ({err}); regenerating",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    x, xt, y, yt = arrays["x"], arrays["x_test"], arrays["y"], arrays["y_test"]
    ok = stored == args_json and x.ndim == xt.ndim == 2 and len(x) == len(y) and len(xt) == len(yt)
    if not ok:
        warnings.warn(
            f"mnist1d: cache file {path} does not match its key; regenerating",
            RuntimeWarning,
            stacklevel=3,
        )
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray], args_json: str) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                args=np.array(args_json),
                x=arrays["x"],
                y=arrays["y"],
                x_test=arrays["x_test"],
                y_test=arrays["y_test"],
            )
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is shared like any file
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        warnings.warn(
            f"mnist1d: could not write cache {path} ({err})", RuntimeWarning, stacklevel=3
        )


def mnist1d(
    *, seed: int = 42, cache_dir: str | os.PathLike | None = None, shuffle_spatial: bool = False
) -> Split:
    """MNIST-1D: 4000 train and 1000 test sequences of length 40, 10 classes.

    Generated locally by the ``mnist1d`` package (``make_dataset(get_dataset_args())`` with
    ``seed`` set; about 4 s), then cached as ``mnist1d-<hash>.npz`` in ``cache_dir`` (default:
    ``$LANDSCAPE_CACHE`` or ``~/.cache/landscape``), keyed by a hash of the generation
    arguments and package version. The cache is written atomically; an unreadable or
    mismatched cache file is regenerated with a ``RuntimeWarning``. The package standardises
    the inputs over all 5000 sequences. Reported test accuracy (seed 42): logistic
    regression ~32%, MLP ~68%, CNN ~94%.

    Args:
        seed: generator seed (42, the package default, is the published dataset).
        cache_dir: where to cache the arrays.
        shuffle_spatial: apply one fixed permutation of the 40 positions (drawn from
            ``seed``) to train and test, as in Zhang et al. 2017; the CNN drops to ~56%.

    Returns:
        A :class:`Split` with inputs ``(N, 40)`` float32 and labels int64 in ``0..9``.

    Examples:
        >>> split = mnist1d(cache_dir="/tmp/cache")
        >>> split.x_train.shape
        torch.Size([4000, 40])

    References:
        Greydanus & Kobak, "Scaling down deep learning with MNIST-1D", ICML 2024.
    """
    seed = _check_int("mnist1d", "seed", seed)
    args = _mnist1d_args(seed)
    args_json = json.dumps(args, sort_keys=True)
    key = _mnist1d_key(args)
    path = _cache_root(cache_dir) / f"mnist1d-{key}.npz"
    arrays = _read_cache(path, args_json) if path.exists() else None
    if arrays is None:
        arrays = _generate_mnist1d(args)
        _write_cache(path, arrays, args_json)
    x, xt = _tensor(arrays["x"], np.float32), _tensor(arrays["x_test"], np.float32)
    y, yt = _tensor(arrays["y"], np.int64), _tensor(arrays["y_test"], np.int64)
    options: dict[str, Any] = {"shuffle_spatial": bool(shuffle_spatial)}
    if shuffle_spatial:
        perm = torch.randperm(x.shape[1], generator=torch.Generator().manual_seed(seed))
        x, xt = x[:, perm].contiguous(), xt[:, perm].contiguous()
        options["permutation"] = perm.tolist()
    info = {
        "source": f"mnist1d package, generated locally ({_MNIST1D_REF})",
        "sizes": {"train": len(y), "test": len(yt)},
        "seed": seed,
        "options": options,
        "generator_args": args,
        "cache_key": key,
    }
    return Split(x, y, xt, yt, name="mnist1d", num_classes=10, info=info)


# --------------------------------------------------------------------------- small sets


def digits(*, test_fraction: float = 0.2, seed: int = 0, image: bool = False) -> Split:
    """scikit-learn's handwritten digits (1797 8x8 images, 10 classes), ships with sklearn.

    Args:
        test_fraction: fraction held out for the test set, in (0, 1); stratified by class.
        seed: seed of the split.
        image: return inputs as ``(N, 1, 8, 8)`` instead of ``(N, 64)``.

    Returns:
        A :class:`Split` with inputs scaled to [0, 1] (pixel / 16), float32; labels int64.

    Examples:
        >>> digits(seed=0).x_train.shape
        torch.Size([1437, 64])
    """
    # scikit-learn takes ~0.7 s to import: only for the datasets that need it
    from sklearn.datasets import load_digits  # noqa: PLC0415

    test_fraction = _check_fraction("digits", "test_fraction", test_fraction, closed=False)
    seed = _check_int("digits", "seed", seed)
    bunch = load_digits()
    x, y = _tensor(bunch.data / 16.0, np.float32), _tensor(bunch.target, np.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    tr, te = _split_indices("digits", len(y), bunch.target, test_fraction, seed)
    info = {
        "source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten digits)",
        "sizes": {"train": len(tr), "test": len(te)},
        "seed": seed,
        "options": {"test_fraction": test_fraction, "image": bool(image), "stratified": True},
    }
    return Split(x[tr], y[tr], x[te], y[te], name="digits", num_classes=10, info=info)
