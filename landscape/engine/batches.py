"""A dataset seen as a sequence of ``(inputs, targets)`` batches on the model's device.

:class:`Batches` accepts what a researcher has at hand: a pair of tensors, a
:class:`~torch.utils.data.Dataset` or a :class:`~torch.utils.data.DataLoader` yielding pairs or
mappings. A mapping batch (e.g. ``{"input_ids", "attention_mask", "labels"}``) becomes a
:class:`Kwargs`, both the batch's inputs (the model is called as ``model(**batch)``) and its
targets (``loss_fn(outputs, batch)``); its size is the first dimension of its first tensor.
When the data fit a memory budget they are moved to the device once and kept there; otherwise
each pass iterates the source again and moves one batch at a time. Floating-point inputs and targets
take the model's dtype (so a float64 model works on float32 data); integer targets stay as
they are. Each batch knows its number of loss terms (:mod:`landscape.engine.terms`): its examples
by default, or what a ``terms`` callable counts in its targets (e.g. the tokens that are not
padding); a batch without terms is left out of every pass. Over the ranks of a
``torch.distributed`` group the data are this rank's shard: the numbers of examples and terms
become the totals over the ranks, all-reduced once at construction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import register_pytree_node, tree_flatten, tree_map
from torch.utils.data import DataLoader, Dataset

from landscape.engine import distributed as _dist
from landscape.engine.terms import Terms, count

__all__ = ["Batch", "Batches", "Kwargs", "default_memory_budget"]


class Kwargs(dict):
    """A mapping batch: the keyword arguments of the model and what ``loss_fn`` receives.

    A ``dict`` (registered as a pytree node, so ``tree_map`` and ``vmap`` go through it) whose
    type tells the engine to call ``model(**batch)`` rather than ``model(batch)``.
    """


register_pytree_node(
    Kwargs,
    lambda d: (list(d.values()), list(d.keys())),
    lambda values, keys: Kwargs(zip(keys, values, strict=True)),
    serialized_type_name="landscape.engine.batches.Kwargs",
)

DEFAULT_BATCH_SIZE = 4096


def default_memory_budget(device: torch.device) -> int:
    """Bytes the engine may keep on ``device`` for cached data and cached graphs.

    Args:
        device: where the data and graphs would live.

    Returns:
        Half of the free memory of a CUDA device, a quarter of the physical memory otherwise
        (2 GiB where the system does not say).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free // 2)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 4)
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


@dataclass(frozen=True)
class Batch:
    """One batch: ``inputs`` (a tensor or a nest of tensors), ``targets``, its size ``n``.

    For a mapping batch ``inputs`` and ``targets`` are the same :class:`Kwargs`. ``terms`` is
    its number of loss terms, the weight of its mean loss in a sum over batches (``n`` unless
    the data count terms otherwise; -1: not counted yet).
    """

    inputs: Any
    targets: Tensor
    n: int
    terms: int = -1

    @property
    def weight(self) -> int:
        """The weight of this batch's mean loss: its terms, or its examples when not counted."""
        return self.n if self.terms < 0 else self.terms


def _nbytes(obj: Any) -> int:
    leaves, _ = tree_flatten(obj)
    return sum(t.numel() * t.element_size() for t in leaves if isinstance(t, Tensor))


def _first_dim(inputs: Any) -> int | None:
    leaves, _ = tree_flatten(inputs)
    for t in leaves:
        if isinstance(t, Tensor) and t.ndim > 0:
            return int(t.shape[0])
    return None


class Batches:
    """Batches of a dataset on one device, cached there when they fit.

    Args:
        data: ``(inputs, targets)`` tensors, a ``Dataset`` of ``(input, target)`` pairs or of
            mappings, or a ``DataLoader`` yielding ``(inputs, targets)`` batches or mappings.
        device: where the batches are delivered.
        dtype: the floating dtype the batches are delivered in.
        batch_size: batch size used to split tensors and to wrap a ``Dataset`` (default 4096
            for tensors, 256 for a ``Dataset``); ignored for a ``DataLoader``.
        cache: ``"auto"`` keeps the batches on the device when they fit ``memory_budget``;
            ``True`` always, ``False`` never (each pass iterates the source again).
        memory_budget: bytes allowed for the cache (default :func:`default_memory_budget`).
        terms: a batch's number of loss terms from its targets (see
            :mod:`landscape.engine.terms`); None: its number of examples.
        group: a resolved ``torch.distributed`` group (see
            :func:`landscape.engine.distributed.resolve`) whose ranks hold the other shards, or
            None.

    Attributes:
        n_examples, n_batches: examples (over every rank's shard) and batches (of this rank)
            of one pass.
        n_terms: loss terms of one pass over every shard (the denominator of the mean loss).
        local_examples, local_terms: this rank's examples and terms.

    Raises:
        TypeError: ``data`` is none of the accepted kinds, or a batch is neither a pair nor a
            mapping.
        ValueError: empty data, or targets whose length differs from the inputs'.
    """

    def __init__(
        self,
        data: Any,
        *,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int | None = None,
        cache: bool | str = "auto",
        memory_budget: int | None = None,
        terms: Terms | None = None,
        group: _dist.Group = None,
    ) -> None:
        if terms is not None and not callable(terms):
            raise TypeError(f"terms must be callable or None, got {type(terms).__name__}")
        self.terms, self.group = terms, group
        if cache not in (True, False, "auto"):
            raise ValueError(f"cache must be True, False or 'auto', got {cache!r}")
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
        self.device, self.dtype = torch.device(device), dtype
        self.memory_budget = (
            default_memory_budget(self.device) if memory_budget is None else int(memory_budget)
        )
        self._cached: list[Batch] | None = None
        self._loader: DataLoader | None = None
        self.n_examples: int = 0
        self.n_terms: int = 0
        self.kind = type(data).__name__
        if isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[1], Tensor):
            self._from_tensors(data[0], data[1], batch_size or DEFAULT_BATCH_SIZE, cache)
        elif isinstance(data, DataLoader):
            self._loader = data
            self._first_pass(cache)
        elif isinstance(data, Dataset):
            self._loader = DataLoader(data, batch_size=batch_size or 256, shuffle=False)
            self._first_pass(cache)
        else:
            raise TypeError(
                "expected data as an (inputs, targets) pair of tensors, a torch Dataset or a "
                f"DataLoader, got {type(data).__name__}"
            )
        self.local_examples, self.local_terms = self.n_examples, self.n_terms
        if group is not None:
            (counts,) = _dist.all_reduce(
                torch.tensor([self.n_examples, self.n_terms], device=self.device), group=group
            )
            self.n_examples, self.n_terms = int(counts[0]), int(counts[1])
        self._total(self.n_terms)

    # -- construction ------------------------------------------------------------------
    def _from_tensors(self, inputs: Any, targets: Tensor, batch_size: int, cache) -> None:
        n = _first_dim(inputs)
        if n is None:
            raise TypeError(
                "expected inputs to be a tensor (or a nest of tensors) with a batch dimension, "
                f"got {type(inputs).__name__}"
            )
        if targets.ndim == 0 or targets.shape[0] != n:
            raise ValueError(
                f"targets must have one entry per example: inputs have {n} examples, targets "
                f"have shape {tuple(targets.shape)}"
            )
        if n == 0:
            raise ValueError("data is empty: expected at least one example, got 0")
        self.n_examples = n
        self.n_batches = -(-n // batch_size)
        fits = _nbytes((inputs, targets)) <= self.memory_budget
        self._on_device = cache is True or (cache == "auto" and fits)
        if self._on_device:
            inputs, targets = self._to_device(inputs), self._to_device(targets)
        self._cached = [
            self._counted(
                Batch(
                    tree_map(lambda t, i=i: t[i : i + batch_size], inputs),
                    targets[i : i + batch_size],
                    min(batch_size, n - i),
                )
            )
            for i in range(0, n, batch_size)
        ]
        self.n_terms = sum(b.weight for b in self._cached)

    def _first_pass(self, cache) -> None:
        kept: list[Batch] | None = [] if cache is not False else None
        n_examples = n_batches = size = n_terms = 0
        for batch in self._iterate_source(keep_on_device=False, skip_empty=False):
            n_examples, n_batches = n_examples + batch.n, n_batches + 1
            n_terms += batch.weight
            size += _nbytes(
                batch.inputs if isinstance(batch.inputs, Kwargs) else (batch.inputs, batch.targets)
            )
            if kept is not None and (cache is True or size <= self.memory_budget):
                kept.append(self._move(batch))
            else:
                kept = None  # over the budget: iterate the source on every pass
        self.n_examples, self.n_batches = n_examples, n_batches
        self.n_terms = n_terms
        self._cached, self._on_device = kept, kept is not None

    def _counted(self, batch: Batch) -> Batch:
        """``batch`` with its number of loss terms."""
        if self.terms is None:
            return Batch(batch.inputs, batch.targets, batch.n, batch.n)
        return Batch(batch.inputs, batch.targets, batch.n, count(self.terms, batch.targets, 0))

    def _total(self, n_terms: int) -> int:
        if n_terms == 0:
            raise ValueError(
                "the data hold no loss terms: expected at least one label that is not "
                "ignore_index (terms counted 0 in every batch)"
            )
        return n_terms

    # -- conversion --------------------------------------------------------------------
    def _to_device(self, obj: Any) -> Any:
        def move(t: Any) -> Any:
            if not isinstance(t, Tensor):
                return t
            dtype = self.dtype if t.is_floating_point() else t.dtype
            return t.to(device=self.device, dtype=dtype, non_blocking=True)

        return tree_map(move, obj)

    def _move(self, batch: Batch) -> Batch:
        if isinstance(batch.inputs, Kwargs):
            moved = self._to_device(batch.inputs)
            return Batch(moved, moved, batch.n, batch.terms)
        return Batch(
            self._to_device(batch.inputs), self._to_device(batch.targets), batch.n, batch.terms
        )

    def _parse(self, item: Any, index: int) -> Batch:
        if isinstance(item, Mapping):
            n = _first_dim(list(item.values()))
            if n is None:
                raise ValueError(
                    f"batch {index}: expected a mapping batch to hold a tensor with a batch "
                    f"dimension, got keys {', '.join(map(repr, list(item)[:5])) or 'none'}"
                )
            kwargs = Kwargs(item)
            return Batch(kwargs, kwargs, n)  # type: ignore[arg-type]
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise TypeError(
                f"expected each batch to be an (inputs, targets) pair or a mapping, got "
                f"{type(item).__name__} at batch {index}"
            )
        inputs, targets = item
        if not isinstance(targets, Tensor):
            targets = torch.as_tensor(targets)
        n = _first_dim(inputs)
        if n is None or targets.ndim == 0 or targets.shape[0] != n:
            raise ValueError(
                f"batch {index}: targets must have one entry per example, inputs have {n} "
                f"examples, targets have shape {tuple(targets.shape)}"
            )
        return Batch(inputs, targets, n)

    def _iterate_source(
        self, keep_on_device: bool = True, skip_empty: bool = True
    ) -> Iterator[Batch]:
        assert self._loader is not None
        seen = 0
        for i, item in enumerate(self._loader):
            batch = self._parse(item, i)
            seen += batch.n
            batch = self._counted(self._move(batch)) if keep_on_device else self._counted(batch)
            if batch.terms or not skip_empty:
                yield batch
        if seen == 0:
            raise ValueError("data is empty: expected at least one example, got 0")

    # -- iteration ---------------------------------------------------------------------
    @property
    def cached(self) -> bool:
        """True when every pass reuses batches kept on the device."""
        return self._cached is not None and self._on_device

    def __iter__(self) -> Iterator[Batch]:
        """One pass over the data, batches on the device."""
        if self._cached is not None:
            yield from (
                b if self._on_device else self._move(b) for b in self._cached if b.terms != 0
            )
        else:
            yield from self._iterate_source()

    def fresh_pass(self) -> Iterator[Batch]:
        """One pass that reads the source again, to check that two passes see the same data.

        A loader is iterated anew even when its batches are cached.
        """
        if self._loader is not None:
            return self._iterate_source()
        return iter(self)

    def first(self) -> Batch:
        """The first batch, on the device."""
        return next(iter(self))

    def describe(self) -> dict:
        """A JSON-able description: kind of source, examples, batches, caching."""
        return {
            "kind": self.kind,
            "n_examples": self.n_examples,
            "n_batches": self.n_batches,
            **({} if self.terms is None else {"n_terms": self.n_terms, "terms": repr(self.terms)}),
            "cached_on_device": self.cached,
        }
