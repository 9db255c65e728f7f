"""Built-in datasets that work offline, and the transforms the experiments need.

Every loader returns a :class:`Split`: train and test tensors (inputs float32, class labels
int64), a name, the number of classes and a JSON-serialisable ``info`` dict that says where
the data came from and what was done to it (``info["transforms"]`` lists the steps in order).
Nothing downloads at run time. Everything is seeded with its own ``torch.Generator`` or
``numpy.random.Generator``: the same seed gives identical tensors, and global RNG state is
left as it was.

Examples:
    >>> from landscape import data
    >>> split = data.load("digits", seed=0)
    >>> noisy = data.corrupt(data.standardize(split), 0.2, seed=1)
    >>> x, y = noisy.train
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import random
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "DATASETS", "Split", "corrupt", "corrupt_labels", "digits", "from_arrays", "from_dataset",
    "gaussians", "load", "mnist1d", "moons", "standardize", "subset",
]

_MNIST1D_REF = "Greydanus & Kobak, 'Scaling down deep learning with MNIST-1D', ICML 2024"


def _check_int(fn: str, name: str, value: Any, low: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{fn}: {name} must be an int >= {low}, got {value!r}")
    return int(value)


def _check_number(fn: str, name: str, value: Any, low: float = 0, strict: bool = False) -> float:
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool)
    if not ok or not (value > low if strict else value >= low):
        raise ValueError(f"{fn}: {name} must be a number {'>' if strict else '>='} {low}, "
                         f"got {value!r}")
    return float(value)


def _check_split(fn: str, split: Any) -> None:
    if not isinstance(split, Split):
        raise TypeError(f"{fn}: split must be a Split, got {type(split).__name__}")


def _tensor(a: np.ndarray, dtype: type) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=dtype))


def _check_fraction(fn: str, name: str, value: Any, closed: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool)
    ok = ok and (0 <= value <= 1 if closed else 0 < value < 1)
    if not ok:
        interval = "[0, 1]" if closed else "(0, 1)"
        raise ValueError(f"{fn}: {name} must be in {interval}, got {value!r}")
    return float(value)


@dataclass(frozen=True, eq=False)
class Split:
    """A train/test split of tensors with a JSON-serialisable description.

    Attributes:
        x_train, y_train, x_test, y_test: tensors; inputs float, ``y`` int64 class labels.
        name: the dataset's name. num_classes: number of classes.
        info: JSON-serialisable dict: source, sizes, options, seed, ``transforms``.
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    name: str
    num_classes: int
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                raise TypeError(f"Split: x_{part} and y_{part} must be tensors, "
                                f"got {type(x).__name__} and {type(y).__name__}")
            if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
                raise ValueError(f"Split: x_{part} has shape {tuple(x.shape)} but y_{part} has "
                                 f"shape {tuple(y.shape)}; expected the same number of rows")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(f"Split: train inputs {tuple(self.x_train.shape[1:])} and test inputs "
                             f"{tuple(self.x_test.shape[1:])} differ in shape")

    @property
    def train(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(x_train, y_train)`` pair."""
        return self.x_train, self.y_train

    @property
    def test(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``(x_test, y_test)`` pair."""
        return self.x_test, self.y_test

    def describe(self) -> dict:
        """A JSON-serialisable description (name, sizes, shapes, dtypes, info)."""
        return {"name": self.name, "num_classes": self.num_classes,
                "n_train": len(self.y_train), "n_test": len(self.y_test),
                "input_shape": list(self.x_train.shape[1:]),
                "input_dtype": str(self.x_train.dtype).removeprefix("torch."),
                "target_dtype": str(self.y_train.dtype).removeprefix("torch."),
                "info": json.loads(json.dumps(self.info))}

    def to(self, device: str | torch.device | None = None,
           dtype: torch.dtype | None = None) -> Split:
        """A copy with tensors on ``device``; ``dtype`` (e.g. float64) applies to inputs only."""
        def mv(t: torch.Tensor, dt: torch.dtype | None) -> torch.Tensor:
            return t.to(device=device, dtype=dt)
        return replace(self, x_train=mv(self.x_train, dtype), y_train=mv(self.y_train, None),
                       x_test=mv(self.x_test, dtype), y_test=mv(self.y_test, None))

    def with_corrupted_labels(self, fraction: float, *, seed: int,
                              exclude_true: bool = False) -> Split:
        """Same as :func:`corrupt` ``(self, fraction, seed=seed, exclude_true=exclude_true)``."""
        return corrupt(self, fraction, seed=seed, exclude_true=exclude_true)


def _with_transform(split: Split, step: dict, **changes: Any) -> Split:
    info = json.loads(json.dumps(split.info))
    info["transforms"] = [*info.get("transforms", []), step]
    x_tr, x_te = changes.get("x_train", split.x_train), changes.get("x_test", split.x_test)
    info["sizes"] = {"train": len(x_tr), "test": len(x_te)}
    return replace(split, info=info, **changes)


def _split_indices(fn: str, n: int, y: np.ndarray | None, test_fraction: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    try:
        tr, te = train_test_split(np.arange(n), test_size=test_fraction, random_state=seed,
                                  stratify=y)
    except ValueError as err:
        raise ValueError(f"{fn}: cannot split {n} examples with test_fraction={test_fraction}"
                         f"{' stratified' if y is not None else ''}: {err}") from None
    return np.sort(tr), np.sort(te)


# --------------------------------------------------------------------------- MNIST-1D


def _cache_root(cache_dir: str | os.PathLike | None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("LANDSCAPE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "landscape"


def _mnist1d_args(seed: int) -> dict:
    from mnist1d.data import get_dataset_args

    args = dict(get_dataset_args(as_dict=True))
    args.pop("url", None)  # generation never downloads; the url is not a generation argument
    args["seed"] = seed
    return args


def _mnist1d_key(args: dict) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        pkg = version("mnist1d")
    except PackageNotFoundError:
        pkg = "unknown"
    blob = json.dumps({"generator": "mnist1d", "version": pkg, "args": args}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _generate_mnist1d(args: dict) -> dict[str, np.ndarray]:
    """Run the package's generator; it seeds ``random`` and ``np.random``, so restore them."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

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
        warnings.warn(f"mnist1d: cache file {path} is unreadable ({err}); regenerating",
                      RuntimeWarning, stacklevel=3)
        return None
    x, xt, y, yt = arrays["x"], arrays["x_test"], arrays["y"], arrays["y_test"]
    ok = stored == args_json and x.ndim == xt.ndim == 2 and len(x) == len(y) and len(xt) == len(yt)
    if not ok:
        warnings.warn(f"mnist1d: cache file {path} does not match its key; regenerating",
                      RuntimeWarning, stacklevel=3)
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray], args_json: str) -> None:
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, args=np.array(args_json), **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a cache is shared like any file
        os.replace(tmp, path)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)
        warnings.warn(f"mnist1d: could not write cache {path} ({err})", RuntimeWarning,
                      stacklevel=3)


def mnist1d(*, seed: int = 42, cache_dir: str | os.PathLike | None = None,
            shuffle_spatial: bool = False) -> Split:
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
    info = {"source": f"mnist1d package, generated locally ({_MNIST1D_REF})",
            "sizes": {"train": len(y), "test": len(yt)}, "seed": seed, "options": options,
            "generator_args": args, "cache_key": key}
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
    from sklearn.datasets import load_digits

    test_fraction = _check_fraction("digits", "test_fraction", test_fraction, closed=False)
    seed = _check_int("digits", "seed", seed)
    bunch = load_digits()
    x, y = _tensor(bunch.data / 16.0, np.float32), _tensor(bunch.target, np.int64)
    if image:
        x = x.reshape(-1, 1, 8, 8)
    tr, te = _split_indices("digits", len(y), bunch.target, test_fraction, seed)
    info = {"source": "sklearn.datasets.load_digits (UCI optical recognition of handwritten "
                      "digits)", "sizes": {"train": len(tr), "test": len(te)}, "seed": seed,
            "options": {"test_fraction": test_fraction, "image": bool(image), "stratified": True}}
    return Split(x[tr], y[tr], x[te], y[te], name="digits", num_classes=10, info=info)


def gaussians(*, n_train: int = 200, n_test: int = 1000, dim: int = 2, margin: float = 0.1,
              separation: float = 3.0, seed: int = 0) -> Split:
    """Two linearly separable Gaussian classes, separated by a hyperplane through the origin.

    A random unit direction ``w`` is drawn; class ``c`` in {0, 1} (sign ``s = 2c - 1``) is
    ``N(s * separation / 2 * w, I)`` truncated to ``s * w.x >= margin`` (the component along
    ``w`` is drawn from a truncated normal, the rest from ``N(0, I)``), so every point, train
    and test, lies at least ``margin`` from the plane ``w.x = 0`` (up to float32 rounding).
    Classes are balanced (up to one point). Used for the implicit bias of gradient descent
    on separable data (Soudry et al. 2018).

    Args:
        n_train, n_test: number of points (>= 2 and >= 1). dim: input dimension (>= 1).
        margin: guaranteed distance from the hyperplane (>= 0).
        separation: distance between the class means before truncation (> 0).
        seed: seed of the direction and the points.

    Returns:
        A :class:`Split` with inputs ``(N, dim)`` float32, labels int64 in {0, 1};
        ``info["direction"]`` is the true unit normal ``w``.

    Examples:
        >>> s = gaussians(n_train=50, dim=5, seed=1)
        >>> w = torch.tensor(s.info["direction"])
    """
    fn = "gaussians"
    n_train, n_test = _check_int(fn, "n_train", n_train, 2), _check_int(fn, "n_test", n_test, 1)
    dim, seed = _check_int(fn, "dim", dim, 1), _check_int(fn, "seed", seed)
    from scipy.stats import truncnorm

    margin = _check_number(fn, "margin", margin)
    separation = _check_number(fn, "separation", separation, strict=True)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(dim)
    w /= np.linalg.norm(w)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.arange(n) % 2)
        z = rng.standard_normal((n, dim))
        t = truncnorm.rvs(margin - separation / 2, np.inf, loc=separation / 2, size=n,
                          random_state=rng)
        return z - np.outer(z @ w, w) + np.outer((2 * y - 1) * t, w), y

    (x, y), (xt, yt) = draw(n_train), draw(n_test)
    info = {"source": "synthetic: truncated Gaussians", "sizes": {"train": n_train, "test": n_test},
            "seed": seed, "options": {"dim": dim, "margin": margin, "separation": separation},
            "direction": w.tolist(),
            "min_margin_train": float(((2 * y - 1) * (x @ w)).min())}
    return Split(_tensor(x, np.float32), _tensor(y, np.int64), _tensor(xt, np.float32),
                 _tensor(yt, np.int64), name="gaussians", num_classes=2, info=info)


def moons(*, n_train: int = 200, n_test: int = 1000, noise: float = 0.1, seed: int = 0) -> Split:
    """Two interleaving half circles (scikit-learn ``make_moons``), labels {0, 1}.

    Args:
        n_train, n_test: number of points (>= 1). noise: std of Gaussian noise (>= 0).
        seed: seed (``random_state`` of ``make_moons``).

    Returns:
        A :class:`Split` with inputs ``(N, 2)`` float32 and labels int64.

    Examples:
        >>> moons(n_train=100, noise=0.2, seed=0).x_train.shape
        torch.Size([100, 2])
    """
    from sklearn.datasets import make_moons

    n_train, n_test = (_check_int("moons", k, v, 1) for k, v in (("n_train", n_train),
                                                                  ("n_test", n_test)))
    seed, noise = _check_int("moons", "seed", seed), _check_number("moons", "noise", noise)
    x, y = make_moons(n_samples=n_train + n_test, noise=noise, random_state=seed)
    x, y = _tensor(x, np.float32), _tensor(y, np.int64)
    info = {"source": "sklearn.datasets.make_moons", "sizes": {"train": n_train, "test": n_test},
            "seed": seed, "options": {"noise": float(noise)}}
    return Split(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name="moons",
                 num_classes=2, info=info)


# --------------------------------------------------------------------------- transforms


def standardize(split: Split, *, eps: float = 1e-8) -> Split:
    """Standardise every input feature with the mean and std of the training set only.

    Features whose training std is below ``eps`` (e.g. always-blank pixels) are only centred.

    Args:
        split: the data. eps: threshold below which a std counts as zero (> 0).

    Returns:
        A new :class:`Split`; ``info["transforms"][-1]`` records the mean and std used.

    Examples:
        >>> s = standardize(digits())
    """
    _check_split("standardize", split)
    eps = _check_number("standardize", "eps", eps, strict=True)
    x = split.x_train.double()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    scale = torch.where(std < eps, torch.ones_like(std), std)

    def f(t: torch.Tensor) -> torch.Tensor:
        return ((t.double() - mean) / scale).to(t.dtype)

    step = {"op": "standardize", "eps": eps, "mean": mean.flatten().tolist(),
            "std": std.flatten().tolist()}
    return _with_transform(split, step, x_train=f(split.x_train), x_test=f(split.x_test))


def _corrupt(fn: str, y: torch.Tensor, fraction: float, num_classes: int, seed: int,
             exclude_true: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(f"{fn}: labels must be a 1-D integer tensor, got "
                         f"{getattr(y, 'shape', type(y).__name__)} {getattr(y, 'dtype', '')}")
    fraction = _check_fraction(fn, "fraction", fraction)
    num_classes = _check_int(fn, "num_classes", num_classes, 2 if exclude_true else 1)
    seed = _check_int(fn, "seed", seed)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(f"{fn}: labels must lie in [0, {num_classes}), got values in "
                         f"[{int(y.min())}, {int(y.max())}]")
    gen = torch.Generator().manual_seed(seed)
    n = round(fraction * len(y))
    idx = torch.randperm(len(y), generator=gen)[:n].sort().values
    if exclude_true:
        shift = torch.randint(1, num_classes, (n,), generator=gen)
        new = (y.cpu()[idx] + shift) % num_classes
    else:
        new = torch.randint(0, num_classes, (n,), generator=gen)
    out = y.detach().cpu().clone()
    out[idx] = new.to(out.dtype)
    return out.to(y.device), idx


def corrupt_labels(y: torch.Tensor, fraction: float, num_classes: int, *, seed: int,
                   exclude_true: bool = False) -> torch.Tensor:
    """Replace ``round(fraction * len(y))`` randomly chosen labels by uniformly random ones.

    With ``exclude_true=False`` (default, as in Zhang et al. 2017) a new label is uniform over
    all ``num_classes`` classes and may equal the old one, so about ``1/num_classes`` of the
    chosen labels stay unchanged. With ``exclude_true=True`` it is uniform over the other
    classes, so exactly ``round(fraction * len(y))`` labels change.

    Args:
        y: 1-D integer labels in ``[0, num_classes)``; not modified.
        fraction: fraction of labels to replace, in [0, 1]. num_classes: number of classes.
        seed: seed of the choice of indices and of the new labels.
        exclude_true: draw the new label from the other classes only.

    Returns:
        A new tensor of the same dtype and device.

    Examples:
        >>> corrupt_labels(torch.tensor([0, 1, 2, 3]), 0.5, 4, seed=0, exclude_true=True)
    """
    return _corrupt("corrupt_labels", y, fraction, num_classes, seed, exclude_true)[0]


def corrupt(split: Split, fraction: float, *, seed: int, exclude_true: bool = False) -> Split:
    """Corrupt a fraction of the training labels (the test labels stay clean).

    See :func:`corrupt_labels` for the sampling. ``info["transforms"][-1]`` records the
    fraction, seed, ``exclude_true``, the corrupted ``indices`` and ``n_changed``.

    Examples:
        >>> noisy = corrupt(digits(), 1.0, seed=0)   # all random labels
    """
    _check_split("corrupt", split)
    y, idx = _corrupt("corrupt", split.y_train, fraction, split.num_classes, seed, exclude_true)
    step = {"op": "corrupt_labels", "fraction": float(fraction), "seed": seed,
            "exclude_true": bool(exclude_true), "indices": idx.tolist(),
            "n_changed": int((y != split.y_train).sum())}
    return _with_transform(split, step, y_train=y)


def _pick(n_total: int, n: int, y: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    if y is None:
        return torch.randperm(n_total, generator=gen)[:n]
    classes, counts = torch.unique(y, return_counts=True)
    quota = counts.double() * n / n_total
    take = quota.floor().long()
    extra = torch.argsort(quota - take, descending=True, stable=True)[: n - int(take.sum())]
    take[extra] += 1
    parts = []
    for c, k in zip(classes.tolist(), take.tolist(), strict=True):
        members = torch.nonzero(y == c).flatten()
        parts.append(members[torch.randperm(len(members), generator=gen)[:k]])
    idx = torch.cat(parts)
    return idx[torch.randperm(len(idx), generator=gen)]


def subset(split: Split, n_train: int | None = None, n_test: int | None = None, *,
           seed: int = 0, stratify: bool = False) -> Split:
    """Random subsets of the training and/or test set (``None`` keeps a set whole).

    Args:
        split: the data. n_train, n_test: sizes to keep, at most the current sizes.
        seed: seed of the choice. stratify: keep the class proportions (largest remainder).

    Returns:
        A new :class:`Split`, examples in random order.

    Examples:
        >>> small = subset(digits(), n_train=100, stratify=True, seed=0)
    """
    _check_split("subset", split)
    seed = _check_int("subset", "seed", seed)
    gen, changes = torch.Generator().manual_seed(seed), {}
    step = {"op": "subset", "n_train": None, "n_test": None, "seed": seed,
            "stratify": bool(stratify)}
    for part, n in (("train", n_train), ("test", n_test)):
        x, y = getattr(split, f"x_{part}"), getattr(split, f"y_{part}")
        if n is None:
            continue
        if (n := _check_int("subset", f"n_{part}", n, 1)) > len(y):
            raise ValueError(f"subset: n_{part} must be <= {len(y)} (the {part} size), got {n}")
        idx = _pick(len(y), n, y.cpu() if stratify else None, gen).to(y.device)
        changes.update({f"x_{part}": x[idx], f"y_{part}": y[idx]})
        step[f"n_{part}"] = n
    return _with_transform(split, step, **changes)


# --------------------------------------------------------------------------- your own data


def _assemble(fn: str, parts: Sequence[Any], test_fraction: float, seed: int, stratify: bool,
              name: str, num_classes: int | None, dtype: torch.dtype, info: dict) -> Split:
    try:
        ts = [p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)) for p in parts]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: arrays must be numeric, got {err}") from None
    for i in (1, 3)[: len(ts) // 2]:
        y = ts[i].long() if ts[i].dtype == torch.bool else ts[i]
        if y.ndim != 1 or y.is_complex() or not torch.equal(y, y.round()):
            raise ValueError(f"{fn}: labels must be 1-D integer class labels, got shape "
                             f"{tuple(y.shape)} of {y.dtype}")
        ts[i] = y.long()
        if ts[i - 1].is_complex():
            raise ValueError(f"{fn}: inputs must be real numbers, got {ts[i - 1].dtype}")
    y_all = torch.cat(ts[1::2])
    if len(y_all) and int(y_all.min()) < 0:
        raise ValueError(f"{fn}: class labels must be >= 0, got {int(y_all.min())}")
    top = int(y_all.max()) + 1 if len(y_all) else 1
    num_classes = top if num_classes is None else _check_int(fn, "num_classes", num_classes, 1)
    if top > num_classes:
        raise ValueError(f"{fn}: num_classes={num_classes} but labels go up to {top - 1}")
    if len(ts) == 2:
        test_fraction = _check_fraction(fn, "test_fraction", test_fraction, closed=False)
        seed = _check_int(fn, "seed", seed)
        x, y = ts
        if len(x) != len(y):
            raise ValueError(f"{fn}: x has {len(x)} rows but y has {len(y)}")
        strat = y.cpu().numpy() if stratify else None
        tr, te = _split_indices(fn, len(y), strat, test_fraction, seed)
        ts = [x[tr], y[tr], x[te], y[te]]
        info.update(seed=seed, options={"test_fraction": test_fraction, "stratified": stratify})
    x_tr, y_tr, x_te, y_te = ts
    info["sizes"] = {"train": len(y_tr), "test": len(y_te)}
    return Split(x_tr.to(dtype), y_tr, x_te.to(dtype), y_te, name=name,
                 num_classes=num_classes, info=info)


def _load_npy(fn: str, path: str | os.PathLike) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        raise ValueError(f"{fn}: cannot load {path} without pickle ({err}); save plain numeric "
                         "arrays") from None


def from_arrays(source: str | os.PathLike | Mapping[str, Any] | Sequence[Any], *,
                test_fraction: float = 0.2, seed: int = 0, stratify: bool = True,
                name: str = "arrays", num_classes: int | None = None,
                dtype: torch.dtype = torch.float32) -> Split:
    """Your own data from a ``.npz`` file, a pair of ``.npy`` files, or arrays in memory.

    ``source`` may be: a ``.npz`` path or a mapping with keys ``x_train, y_train, x_test,
    y_test`` (used as given) or ``x, y`` (split by ``test_fraction``); a pair of ``.npy``
    paths ``(x_path, y_path)``; or a pair of arrays ``(x, y)``. Files are loaded with
    ``allow_pickle=False``. Labels must be integer-valued; they become int64 classes
    (``num_classes`` defaults to ``max + 1``).

    Args:
        source: see above. test_fraction: held-out fraction in (0, 1) when splitting.
        seed: seed of the split. stratify: stratify the split by class.
        name: name of the dataset. num_classes: number of classes. dtype: input dtype.

    Returns:
        A :class:`Split`.

    Examples:
        >>> np.savez("d.npz", x=np.random.rand(100, 3), y=np.arange(100) % 2)
        >>> split = from_arrays("d.npz", test_fraction=0.25)
    """
    fn, info = "from_arrays", {"source": "arrays in memory"}
    if isinstance(source, (str, os.PathLike)):
        if str(source).endswith(".npy"):
            raise ValueError(f"{fn}: a single .npy file holds one array; pass (x_path, y_path) "
                             f"or a .npz file, got {str(source)!r}")
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
            raise ValueError(f"{fn}: expected keys x_train, y_train, x_test, y_test (or x, y); "
                             f"found: {', '.join(sorted(map(str, keys))) or 'none'}")
    elif isinstance(source, Sequence) and len(source) == 2:
        if all(isinstance(s, (str, os.PathLike)) for s in source):
            info["source"] = f"files {os.fspath(source[0])}, {os.fspath(source[1])}"
            parts = [_load_npy(fn, s) for s in source]
        else:
            parts = list(source)
    else:
        raise TypeError(f"{fn}: source must be a .npz path, a mapping of arrays, or a pair "
                        f"(x, y) of arrays or .npy paths, got {type(source).__name__}")
    return _assemble(fn, parts, test_fraction, seed, stratify, name, num_classes, dtype, info)


def from_dataset(train: Any, test: Any = None, *, test_fraction: float = 0.2, seed: int = 0,
                 stratify: bool = True, name: str = "dataset", num_classes: int | None = None,
                 dtype: torch.dtype = torch.float32) -> Split:
    """Stack any (small) map-style ``Dataset`` of ``(x, y)`` pairs into tensors.

    Args:
        train: a dataset with ``__len__`` and ``__getitem__`` returning ``(x, y)``.
        test: a test dataset; if None, ``train`` is split by ``test_fraction``.
        test_fraction, seed, stratify, name, num_classes, dtype: as in :func:`from_arrays`.

    Returns:
        A :class:`Split`.

    Examples:
        >>> ds = torch.utils.data.TensorDataset(torch.randn(50, 3), torch.arange(50) % 2)
        >>> split = from_dataset(ds, test_fraction=0.2)
    """
    def stack(ds: Any, which: str) -> list[torch.Tensor]:
        if not (hasattr(ds, "__len__") and hasattr(ds, "__getitem__")):
            raise TypeError(f"from_dataset: {which} must be a map-style Dataset with __len__ and "
                            f"__getitem__, got {type(ds).__name__}")
        if len(ds) == 0:
            raise ValueError(f"from_dataset: {which} is empty")
        items = [ds[i] for i in range(len(ds))]
        if not all(isinstance(it, (tuple, list)) and len(it) == 2 for it in items):
            raise ValueError(f"from_dataset: {which} items must be (x, y) pairs, got "
                             f"{type(items[0]).__name__}")
        return [torch.stack([torch.as_tensor(it[j]) for it in items]) for j in (0, 1)]

    parts = stack(train, "train") + ([] if test is None else stack(test, "test"))
    info = {"source": f"torch Dataset {type(train).__name__}"}
    return _assemble("from_dataset", parts, test_fraction, seed, stratify, name, num_classes,
                     dtype, info)


# --------------------------------------------------------------------------- registry

DATASETS: dict[str, Callable[..., Split]] = {
    "mnist1d": mnist1d, "digits": digits, "gaussians": gaussians, "moons": moons,
}


def load(name: str, **kwargs: Any) -> Split:
    """Load a built-in dataset by name (see ``DATASETS``) with its keyword arguments.

    Args:
        name: ``"mnist1d"``, ``"digits"``, ``"gaussians"`` or ``"moons"`` (case, ``-`` and
            ``_`` ignored). kwargs: passed to the dataset's function.

    Returns:
        The dataset's :class:`Split`.

    Raises:
        ValueError: unknown name (the message lists the known names).
        TypeError: a keyword the dataset does not accept (the message names it).

    Examples:
        >>> split = load("gaussians", n_train=100, dim=10, seed=3)
    """
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in DATASETS:
        raise ValueError(f"load: unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}")
    fn = DATASETS[key]
    accepted = list(inspect.signature(fn).parameters)
    bad = sorted(set(kwargs) - set(accepted))
    if bad:
        raise TypeError(f"load({key!r}): unexpected keyword argument(s) {', '.join(bad)}; "
                        f"{key} accepts: {', '.join(accepted)}")
    return fn(**kwargs)
