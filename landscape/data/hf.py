"""Hugging Face ``datasets`` as they come: mapping rows for the engine, or a :class:`Split`.

Two ways in:

- :func:`rows`: any dataset of mapping rows (a ``datasets.Dataset``, a list of dicts) as a
  torch ``Dataset`` of dicts of tensors; a ``DataLoader`` over it yields mapping batches, which
  every probe takes as they are (``model(**batch)``; ``loss_fn="model"`` is the model's own
  loss, e.g. a language model's given ``labels``).
- :func:`from_hf` (and :func:`hf_disk` for a dataset saved with ``save_to_disk``, the name a
  run spec uses): two columns as the tensors of a :class:`~landscape.data.split.Split`, the
  inputs (numbers, lists of numbers or images) and the targets: a class column, or
  ``y="next_token"`` for a language model's tokens (targets are the next token, ``-100`` at the
  last position, as Hugging Face's causal models shift their labels).

The ``datasets`` package is needed only by :func:`hf_disk` (to read the folder); the others
work on any object with the same interface. Nothing downloads.

Examples:
    >>> import datasets
    >>> ds = datasets.Dataset.from_dict({"input_ids": tokens, "labels": tokens})
    >>> loader = torch.utils.data.DataLoader(rows(ds), batch_size=8)   # mapping batches
    >>> split = from_hf(ds, x="input_ids", y="next_token")
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from landscape.data.images import image_tensor
from landscape.data.split import Split, _assemble, _split_indices
from landscape.engine.checks import _check_fraction, _check_int

__all__ = ["IGNORE_INDEX", "Rows", "from_hf", "hf_disk", "rows"]

IGNORE_INDEX = -100
"""The target of positions without a next token (what ``cross_entropy`` ignores)."""


def _value(v: Any, mode: str | None) -> Any:
    if isinstance(v, Image.Image):
        return image_tensor(v, mode)
    if isinstance(v, torch.Tensor):
        return v
    if isinstance(v, (str, bytes)):
        raise TypeError(f"a text value ({str(v)[:30]!r}...) cannot become a tensor; tokenize it")
    return torch.as_tensor(np.asarray(v))


class Rows(Dataset):
    """Mapping rows as dicts of tensors (see :func:`rows`).

    Args:
        source: a ``datasets.Dataset`` or a sequence of mappings.
        columns: the keys kept (default: all).
        mode: Pillow mode images are converted to (``"RGB"``, ``"L"``; None keeps theirs).
    """

    def __init__(self, source: Any, columns: Sequence[str] | None, mode: str | None) -> None:
        self.source, self.mode = source, mode
        self.columns = None if columns is None else list(columns)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.source[int(i)]
        keys = self.columns if self.columns is not None else list(row)
        try:
            return {k: _value(row[k], self.mode) for k in keys}
        except (TypeError, ValueError) as err:
            raise TypeError(f"rows: row {i}: {err}") from None


def rows(source: Any, columns: Sequence[str] | None = None, *, mode: str | None = None) -> Rows:
    """A dataset of mapping rows as a torch ``Dataset`` of dicts of tensors.

    Wrap it in a ``DataLoader`` for mapping batches (``{"input_ids": (B, T), "labels": ...}``);
    the engine calls ``model(**batch)`` on each.

    Args:
        source: a ``datasets.Dataset`` (or anything indexable whose items are mappings).
        columns: the columns kept (the model's keyword arguments); default all. Text columns
            cannot become tensors: leave them out or tokenize them first.
        mode: Pillow mode for image values (``"RGB"``, ``"L"``); None keeps each image's.

    Returns:
        A :class:`Rows` dataset.

    Raises:
        TypeError: ``source`` is not a sequence of mappings.
        ValueError: ``source`` is empty, or a column is not in it.
    """
    if not (hasattr(source, "__len__") and hasattr(source, "__getitem__")):
        raise TypeError(f"rows: expected a dataset of mapping rows, got {type(source).__name__}")
    if len(source) == 0:
        raise ValueError("rows: the dataset is empty")
    first = source[0]
    if not isinstance(first, Mapping):
        raise TypeError(
            f"rows: expected rows that are mappings (column -> value), got {type(first).__name__}"
        )
    missing = [c for c in columns or () if c not in first]
    if missing:
        raise ValueError(f"rows: no column {missing[0]!r}; columns: {', '.join(map(str, first))}")
    return Rows(source, columns, mode)


def _columns(ds: Any, which: str) -> list[str]:
    names = getattr(ds, "column_names", None)
    if not isinstance(names, list):
        raise TypeError(
            f"from_hf: {which} must be a datasets.Dataset (with column_names), got "
            f"{type(ds).__name__}"
        )
    return names


def _stack(ds: Any, col: str, mode: str | None, which: str) -> torch.Tensor:
    if col not in _columns(ds, which):
        raise ValueError(
            f"from_hf: {which} has no column {col!r}; columns: {', '.join(ds.column_names)}"
        )
    if len(ds) == 0:
        raise ValueError(f"from_hf: {which} is empty")
    try:
        values = [_value(v, mode) for v in ds[col]]
    except (TypeError, ValueError) as err:
        raise TypeError(f"from_hf: {which} column {col!r}: {err}") from None
    shapes = {tuple(v.shape) for v in values}
    if len(shapes) > 1:
        raise ValueError(
            f"from_hf: {which} column {col!r} has values of different shapes "
            f"({', '.join(map(str, sorted(shapes)[:3]))}); pad or resize them first"
        )
    return torch.stack(values)


def _next_token(x: torch.Tensor, col: str) -> torch.Tensor:
    if x.ndim != 2 or x.is_floating_point():
        raise ValueError(
            f"from_hf: y='next_token' needs integer tokens of shape (N, T) in column {col!r}, "
            f"got {tuple(x.shape)} of {x.dtype}"
        )
    y = torch.full_like(x, IGNORE_INDEX)
    y[:, :-1] = x[:, 1:]
    return y


def from_hf(
    train: Any,
    test: Any = None,
    *,
    x: str | None = None,
    y: str = "label",
    test_fraction: float = 0.2,
    seed: int = 0,
    stratify: bool = True,
    mode: str | None = "RGB",
    name: str = "hf",
    num_classes: int | None = None,
) -> Split:
    """Two columns of a Hugging Face dataset as a :class:`Split` of tensors.

    Args:
        train: a ``datasets.Dataset``, or a ``DatasetDict`` (its ``train`` split, and its
            ``test`` or ``validation`` split as the test set unless ``test`` is given).
        test: a test ``Dataset``; if None (and none in a ``DatasetDict``), ``train`` is split
            by ``test_fraction`` (seeded, stratified for class targets).
        x: the input column (numbers, lists of numbers, images); default: the one column
            other than ``y``.
        y: the class column, or ``"next_token"``: the targets are the inputs' next tokens
            (``-100`` where there is none), for a language model's cross-entropy.
        test_fraction: held-out fraction in (0, 1) when ``train`` is split.
        seed: seed of the split.
        stratify: stratify the split by class (class targets only).
        mode: Pillow mode for image columns (``"RGB"``, ``"L"``; None keeps theirs).
        name: the dataset's name.
        num_classes: number of classes (default: the ``ClassLabel``'s, else the largest label
            + 1; for ``next_token`` the largest token + 1).

    Returns:
        A :class:`Split`; for ``next_token`` its ``info`` holds ``vocab_size`` and
        ``context_length`` (what a model's arguments default to).

    Raises:
        TypeError: not a ``datasets.Dataset``; values that are text.
        ValueError: a missing column, an empty dataset, values of different shapes.
    """
    fn = "from_hf"
    if isinstance(train, Mapping):
        splits = dict(train)
        if "train" not in splits:
            raise ValueError(f"{fn}: the DatasetDict has no 'train' split; splits: {list(splits)}")
        train = splits["train"]
        if test is None:
            test = splits.get("test", splits.get("validation"))
    cols = _columns(train, "train")
    if x is None:
        others = [c for c in cols if c != y]
        if len(others) != 1:
            raise ValueError(f"{fn}: give x=, the input column; columns: {', '.join(cols)}")
        x = others[0]
    parts = [("train", train)] + ([] if test is None else [("test", test)])
    xs = [_stack(ds, x, mode, which) for which, ds in parts]
    info: dict[str, Any] = {
        "source": f"Hugging Face dataset ({len(train)} rows)",
        "columns": {"x": x, "y": y},
    }
    if y == "next_token":
        ys = [_next_token(t, x) for t in xs]
        vocab = int(max(int(t.max()) for t in xs)) + 1
        vocab = vocab if num_classes is None else _check_int(fn, "num_classes", num_classes, vocab)
        info |= {"vocab_size": vocab, "context_length": int(xs[0].shape[1])}
        if test is None:
            test_fraction = _check_fraction(fn, "test_fraction", test_fraction, closed=False)
            seed = _check_int(fn, "seed", seed)
            tr, te = _split_indices(fn, len(xs[0]), None, test_fraction, seed)
            xs, ys = [xs[0][tr], xs[0][te]], [ys[0][tr], ys[0][te]]
            info |= {"seed": seed, "options": {"test_fraction": test_fraction}}
        info["sizes"] = {"train": len(xs[0]), "test": len(xs[1])}
        return Split(xs[0], ys[0], xs[1], ys[1], name=name, num_classes=vocab, info=info)
    feature = getattr(train, "features", {}).get(y)
    known = getattr(feature, "num_classes", None)  # a ClassLabel's
    if num_classes is None and isinstance(known, int):
        num_classes = known
        info["classes"] = list(getattr(feature, "names", []) or []) or None
    ys = [_stack(ds, y, None, which) for which, ds in parts]
    tensors = [t for pair in zip(xs, ys, strict=True) for t in pair]
    dtype = xs[0].dtype if not xs[0].is_floating_point() else torch.float32
    return _assemble(fn, tensors, test_fraction, seed, stratify, name, num_classes, dtype, info)


def hf_disk(
    path: str,
    *,
    x: str | None = None,
    y: str = "label",
    train_split: str = "train",
    test_split: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    mode: str | None = "RGB",
) -> Split:
    """A Hugging Face dataset saved with ``save_to_disk``, as :func:`from_hf` reads it.

    Args:
        path: the folder ``save_to_disk`` wrote (a ``Dataset`` or a ``DatasetDict``).
        x: the input column, as :func:`from_hf`.
        y: the class column or ``"next_token"``, as :func:`from_hf`.
        train_split: a ``DatasetDict``'s training split.
        test_split: a ``DatasetDict``'s test split (default ``test``, else ``validation``,
            else ``train_split`` is split by ``test_fraction``).
        test_fraction: held-out fraction when ``train_split`` is split.
        seed: seed of that split.
        mode: Pillow mode for image columns.

    Returns:
        A :class:`Split`.

    Raises:
        ImportError: the ``datasets`` package is not installed.
        FileNotFoundError, ValueError: no saved dataset at ``path``; the errors of
            :func:`from_hf`.
    """
    try:
        # datasets imports pyarrow and pandas (~1 s): only when a saved dataset is read
        hf_datasets = importlib.import_module("datasets")
    except ImportError:
        raise ImportError("hf_disk needs the datasets package (pip install datasets)") from None
    where = os.path.expanduser(os.fspath(path))
    if not os.path.isdir(where):
        raise FileNotFoundError(f"hf_disk: {where} is not a directory (a save_to_disk folder)")
    try:
        ds = hf_datasets.load_from_disk(where)
    except (FileNotFoundError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"hf_disk: {where} is not a dataset saved with save_to_disk: {first}"
        ) from None
    test = None
    if isinstance(ds, Mapping):
        if train_split not in ds:
            raise ValueError(f"hf_disk: {where} has no split {train_split!r}; splits: {list(ds)}")
        if test_split is not None and test_split not in ds:
            raise ValueError(f"hf_disk: {where} has no split {test_split!r}; splits: {list(ds)}")
        names = [test_split] if test_split else ["test", "validation"]
        test = next((ds[n] for n in names if n in ds and n != train_split), None)
        ds = ds[train_split]
    split = from_hf(
        ds, test, x=x, y=y, test_fraction=test_fraction, seed=seed, mode=mode, name="hf_disk"
    )
    split.info["source"] = f"Hugging Face dataset saved in {where}"
    return split
