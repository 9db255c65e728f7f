"""The :class:`Split` container and the transforms that return new splits.

A :class:`Split` holds train and test tensors (inputs float, class labels int64), a name,
the number of classes and a JSON-serialisable ``info`` dict that says where the data came
from and what was done to it. Transforms never modify their input: each returns a new
:class:`Split` and appends a step to ``info["transforms"]``. Everything random is seeded with
its own ``torch.Generator``; global RNG state is left as it was.

All names here are re-exported by :mod:`landscape.data`, the public entry point.

Examples:
    >>> from landscape import data
    >>> noisy = data.corrupt(data.standardize(data.digits()), 0.2, seed=1)
    >>> x, y = noisy.train
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from landscape.engine.checks import _check_fraction, _check_int, _check_number

__all__ = ["Split", "corrupt", "corrupt_labels", "standardize", "subset"]


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
                raise TypeError(
                    f"Split: x_{part} and y_{part} must be tensors, "
                    f"got {type(x).__name__} and {type(y).__name__}"
                )
            if x.ndim == 0 or y.ndim == 0 or len(x) != len(y):
                raise ValueError(
                    f"Split: x_{part} has shape {tuple(x.shape)} but y_{part} has "
                    f"shape {tuple(y.shape)}; expected the same number of rows"
                )
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise ValueError(
                f"Split: train inputs {tuple(self.x_train.shape[1:])} and test inputs "
                f"{tuple(self.x_test.shape[1:])} differ in shape"
            )

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
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "n_train": len(self.y_train),
            "n_test": len(self.y_test),
            "input_shape": list(self.x_train.shape[1:]),
            "input_dtype": str(self.x_train.dtype).removeprefix("torch."),
            "target_dtype": str(self.y_train.dtype).removeprefix("torch."),
            "info": json.loads(json.dumps(self.info)),
        }

    def to(
        self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
    ) -> Split:
        """A copy with tensors on ``device``; ``dtype`` (e.g. float64) applies to inputs only."""

        def mv(t: torch.Tensor, dt: torch.dtype | None) -> torch.Tensor:
            return t.to(device=device, dtype=dt)

        return replace(
            self,
            x_train=mv(self.x_train, dtype),
            y_train=mv(self.y_train, None),
            x_test=mv(self.x_test, dtype),
            y_test=mv(self.y_test, None),
        )

    def with_corrupted_labels(
        self, fraction: float, *, seed: int, exclude_true: bool = False
    ) -> Split:
        """Same as :func:`corrupt` ``(self, fraction, seed=seed, exclude_true=exclude_true)``."""
        return corrupt(self, fraction, seed=seed, exclude_true=exclude_true)


def _check_split(fn: str, split: Any) -> None:
    if not isinstance(split, Split):
        raise TypeError(f"{fn}: split must be a Split, got {type(split).__name__}")


def _with_transform(split: Split, step: dict, **changes: Any) -> Split:
    info = json.loads(json.dumps(split.info))
    info["transforms"] = [*info.get("transforms", []), step]
    x_tr, x_te = changes.get("x_train", split.x_train), changes.get("x_test", split.x_test)
    info["sizes"] = {"train": len(x_tr), "test": len(x_te)}
    return replace(split, info=info, **changes)


def _split_indices(
    fn: str, n: int, y: np.ndarray | None, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    # scikit-learn takes ~0.7 s to import: only when a split is made
    from sklearn.model_selection import train_test_split  # noqa: PLC0415

    try:
        tr, te = train_test_split(
            np.arange(n), test_size=test_fraction, random_state=seed, stratify=y
        )
    except ValueError as err:
        raise ValueError(
            f"{fn}: cannot split {n} examples with test_fraction={test_fraction}"
            f"{' stratified' if y is not None else ''}: {err}"
        ) from None
    return np.sort(tr), np.sort(te)


def _assemble(
    fn: str,
    parts: Sequence[Any],
    test_fraction: float,
    seed: int,
    stratify: bool,
    name: str,
    num_classes: int | None,
    dtype: torch.dtype,
    info: dict,
) -> Split:
    try:
        ts = [p if isinstance(p, torch.Tensor) else torch.as_tensor(np.asarray(p)) for p in parts]
    except (TypeError, ValueError) as err:
        raise ValueError(f"{fn}: arrays must be numeric, got {err}") from None
    for i in (1, 3)[: len(ts) // 2]:
        y = ts[i].long() if ts[i].dtype == torch.bool else ts[i]
        if y.ndim != 1 or y.is_complex() or not torch.equal(y, y.round()):
            raise ValueError(
                f"{fn}: labels must be 1-D integer class labels, got shape "
                f"{tuple(y.shape)} of {y.dtype}"
            )
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
    return Split(
        x_tr.to(dtype), y_tr, x_te.to(dtype), y_te, name=name, num_classes=num_classes, info=info
    )


# --------------------------------------------------------------------------- transforms


def standardize(split: Split, *, eps: float = 1e-8) -> Split:
    """Standardise every input feature with the mean and std of the training set only.

    Features whose training std is below ``eps`` (e.g. always-blank pixels) are only centred.

    Args:
        split: the data.
        eps: threshold below which a std counts as zero (> 0).

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

    step = {
        "op": "standardize",
        "eps": eps,
        "mean": mean.flatten().tolist(),
        "std": std.flatten().tolist(),
    }
    return _with_transform(split, step, x_train=f(split.x_train), x_test=f(split.x_test))


def _corrupt(
    fn: str, y: torch.Tensor, fraction: float, num_classes: int, seed: int, exclude_true: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.is_floating_point() or y.is_complex():
        raise ValueError(
            f"{fn}: labels must be a 1-D integer tensor, got "
            f"{getattr(y, 'shape', type(y).__name__)} {getattr(y, 'dtype', '')}"
        )
    fraction = _check_fraction(fn, "fraction", fraction)
    num_classes = _check_int(fn, "num_classes", num_classes, 2 if exclude_true else 1)
    seed = _check_int(fn, "seed", seed)
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        raise ValueError(
            f"{fn}: labels must lie in [0, {num_classes}), got values in "
            f"[{int(y.min())}, {int(y.max())}]"
        )
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


def corrupt_labels(
    y: torch.Tensor, fraction: float, num_classes: int, *, seed: int, exclude_true: bool = False
) -> torch.Tensor:
    """Replace ``round(fraction * len(y))`` randomly chosen labels by uniformly random ones.

    With ``exclude_true=False`` (default, as in Zhang et al. 2017) a new label is uniform over
    all ``num_classes`` classes and may equal the old one, so about ``1/num_classes`` of the
    chosen labels stay unchanged. With ``exclude_true=True`` it is uniform over the other
    classes, so exactly ``round(fraction * len(y))`` labels change.

    Args:
        y: 1-D integer labels in ``[0, num_classes)``; not modified.
        fraction: fraction of labels to replace, in [0, 1].
        num_classes: number of classes.
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
    step = {
        "op": "corrupt_labels",
        "fraction": float(fraction),
        "seed": seed,
        "exclude_true": bool(exclude_true),
        "indices": idx.tolist(),
        "n_changed": int((y != split.y_train).sum()),
    }
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


def subset(
    split: Split,
    n_train: int | None = None,
    n_test: int | None = None,
    *,
    seed: int = 0,
    stratify: bool = False,
) -> Split:
    """Random subsets of the training and/or test set (``None`` keeps a set whole).

    Args:
        split: the data.
        n_train: training examples to keep, at most the current number.
        n_test: test examples to keep, at most the current number.
        seed: seed of the choice.
        stratify: keep the class proportions (largest remainder).

    Returns:
        A new :class:`Split`, examples in random order.

    Examples:
        >>> small = subset(digits(), n_train=100, stratify=True, seed=0)
    """
    _check_split("subset", split)
    seed = _check_int("subset", "seed", seed)
    gen, changes = torch.Generator().manual_seed(seed), {}
    step = {
        "op": "subset",
        "n_train": None,
        "n_test": None,
        "seed": seed,
        "stratify": bool(stratify),
    }
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
