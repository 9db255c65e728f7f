"""Data-parallel probes over the ranks of ``torch.distributed``.

When ``torch.distributed`` is initialised, an :class:`~landscape.engine.objective.Objective`'s
data are this rank's shard of one dataset: every sum over the data (loss, gradient,
Hessian- and Gauss-Newton-vector products, accuracy, the losses at the points of a surface) is
summed over the ranks, each shard weighted by its loss terms, and divided by the global number
of terms, so every rank gets the value one process gets on the union of the shards (up to the
rounding of a reordered sum). Random draws come from seeded generators, the same on every rank.

The group: ``Objective(..., group=g)``; otherwise the group of an enclosing
:func:`distributed` context; otherwise the default group when ``torch.distributed`` is
initialised; otherwise none (one process). ``group=False`` or ``distributed(False)``: this
process's data alone. Collectives run on tensors on the model's device (gloo on CPU, NCCL on
GPU). A rank that fails leaves the others waiting in a collective until the peer's socket closes
(gloo) or the timeout given to ``init_process_group(timeout=...)`` runs out (NCCL): set one.

What depends on how the examples are grouped, not only on sums over them (m-sharpness's
batches of m, a Bezier bend's minibatches, BatchNorm recalibration's batches), gathers the
shards onto every rank with :func:`union` and runs as one process on all the data.

Refused with one line: ranks whose parameters differ (a checksum compared at construction) and
sharded parameters (FSDP modules, ``DTensor`` parameters), see :func:`refuse_sharded`.

Examples:
    >>> torch.distributed.init_process_group("gloo")           # doctest: +SKIP
    >>> obj = Objective(model, loss_fn, my_shard)               # sums over every rank's shard
    >>> with distributed(False):                                # this rank's data alone
    ...     local = Objective(model, loss_fn, my_shard)
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils._pytree import tree_map

__all__ = [
    "TIMEOUT_ENV",
    "Group",
    "all_reduce",
    "broadcast",
    "gather_objects",
    "check_parameters",
    "communication",
    "distributed",
    "gather_rows",
    "launched",
    "merge_moments",
    "rank",
    "refuse_sharded",
    "resolve",
    "shard",
    "total",
    "union",
    "world_size",
]

Group = Any
"""A resolved group: a ``torch.distributed`` ProcessGroup of two ranks or more, or None."""
_UNSET = object()
_SETTING: ContextVar[Any] = ContextVar("landscape_distributed", default=_UNSET)
_SPENT = {"seconds": 0.0, "calls": 0}


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def distributed(group: Any = None) -> Iterator[None]:
    """Objectives built inside use ``group`` unless given one.

    Args:
        group: a ProcessGroup; None for the default group; False for none (this process's data
            alone, even when ``torch.distributed`` is initialised).
    """
    token = _SETTING.set(False if group is False else group)
    try:
        yield
    finally:
        _SETTING.reset(token)


def resolve(group: Any = None) -> Group:
    """The group an objective sums over, or None for this process alone.

    Args:
        group: a ProcessGroup, False (none), or None (the :func:`distributed` setting, else the
            default group when ``torch.distributed`` is initialised).

    Returns:
        A ProcessGroup of two ranks or more, or None.

    Raises:
        ValueError: a group given while ``torch.distributed`` is not initialised.
    """
    if group is False:
        return None
    if group is None:
        setting = _SETTING.get()
        if setting is False or (setting is _UNSET and not _initialised()):
            return None
        group = None if setting is _UNSET else setting
    if not _initialised():
        raise ValueError(
            "group: expected torch.distributed to be initialised (init_process_group), it is not"
        )
    group = dist.group.WORLD if group is None else group
    return group if dist.get_world_size(group) > 1 else None


TIMEOUT_ENV = "LANDSCAPE_DIST_TIMEOUT"
"""Seconds a collective waits for the other ranks when the CLI starts the group (default 600)."""


def launched(device: str | None = None) -> Group:
    """Start the default group when launched by ``torchrun`` (``WORLD_SIZE`` > 1), else nothing.

    NCCL when ``device`` is CUDA (each rank on ``cuda:LOCAL_RANK``), gloo otherwise; a
    collective waits at most :data:`TIMEOUT_ENV` seconds (default 600), so a rank that fails
    takes the others down with an error instead of leaving them waiting.

    Returns:
        The group (None outside torchrun).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or not dist.is_available():
        return None
    if not dist.is_initialized():
        cuda = device is not None and str(device).startswith("cuda")
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        seconds = float(os.environ.get(TIMEOUT_ENV, "600"))
        dist.init_process_group(
            "nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=seconds)
        )
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())
    return resolve(None)


def rank(group: Group = None) -> int:
    """This process's rank in ``group`` (0 without one)."""
    return dist.get_rank(group) if group is not None else 0


def world_size(group: Group = None) -> int:
    """The number of ranks of ``group`` (1 without one)."""
    return dist.get_world_size(group) if group is not None else 1


def communication() -> dict[str, float]:
    """Time spent in this module's collectives so far and their number (for benchmarks).

    Host time around each call: on a GPU (asynchronous NCCL) it is the launch, not the transfer.
    """
    return dict(_SPENT)


def _timed(call: Any, *args: Any, **kw: Any) -> None:
    start = time.perf_counter()
    call(*args, **kw)
    _SPENT["seconds"] += time.perf_counter() - start
    _SPENT["calls"] += 1


def all_reduce(*tensors: Tensor, group: Group, op: str = "sum") -> list[Tensor]:
    """The elementwise sums (or maxima) of ``tensors`` over the ranks of ``group``, in one call.

    The tensors are packed into one buffer of their common dtype on the first's device; the
    results come back in their shapes and dtypes. Without a group, the tensors themselves.

    Args:
        tensors: tensors of the same device.
        group: the group (None: this process alone).
        op: ``"sum"`` or ``"max"``.
    """
    if group is None:
        return list(tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.reshape(-1).to(dtype) for t in tensors])
    reduce_op = dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX
    _timed(dist.all_reduce, flat, op=reduce_op, group=group)
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].view(t.shape).to(t.dtype))
        start += t.numel()
    return out


def total(values: list[float], *, group: Group, device: torch.device) -> list[float]:
    """The sums of host numbers over the ranks (float64 on ``device``)."""
    if group is None:
        return list(values)
    (summed,) = all_reduce(torch.tensor(values, dtype=torch.float64, device=device), group=group)
    return [float(x) for x in summed.cpu()]


def broadcast(obj: Any, *, group: Group, source: int = 0) -> Any:
    """Rank ``source``'s ``obj`` on every rank (pickled; for small host objects)."""
    if group is None:
        return obj
    box = [obj]
    _timed(dist.broadcast_object_list, box, src=dist.get_global_rank(group, source), group=group)
    return box[0]


def gather_objects(obj: Any, *, group: Group) -> list[Any]:
    """Every rank's ``obj``, in rank order (pickled; for small host objects)."""
    if group is None:
        return [obj]
    out: list[Any] = [None] * world_size(group)
    _timed(dist.all_gather_object, out, obj, group=group)
    return out


def gather_rows(rows: Tensor, *, group: Group) -> Tensor:
    """Every rank's ``rows`` (n_r, ...) concatenated in rank order (the data order of shards).

    The ranks may hold different numbers of rows; the trailing shapes must agree.
    """
    if group is None:
        return rows
    size = world_size(group)
    counts = torch.zeros(size, dtype=torch.int64, device=rows.device)
    counts[rank(group)] = rows.shape[0]
    (counts,) = all_reduce(counts, group=group)
    longest = int(counts.max())
    padded = rows.new_zeros((longest, *rows.shape[1:]))
    padded[: rows.shape[0]] = rows
    parts = [torch.empty_like(padded) for _ in range(size)]
    _timed(dist.all_gather, parts, padded.contiguous(), group=group)
    return torch.cat([p[: int(c)] for p, c in zip(parts, counts.tolist(), strict=True)])


def union(batches: Iterable[Any], *, group: Group) -> tuple[Any, Tensor]:
    """Every rank's examples in rank order: the ``(inputs, targets)`` of one process on all shards.

    ``batches`` are this rank's (e.g. an objective's ``batches``): their inputs (a tensor or a
    nest of tensors) and targets are concatenated, then gathered over the ranks
    (:func:`gather_rows`, rank 0's shard first). Every rank gets the same tensors; each holds
    the whole data afterwards. Without a group, this rank's examples.

    Raises:
        ValueError: mapping batches, or a rank without batches.
    """
    held = list(batches)
    if not held or any(isinstance(b.inputs, dict) for b in held):
        what = "no batches" if not held else "mapping batches"
        raise ValueError(
            f"expected (inputs, targets) tensor batches to gather over the ranks, got {what}"
        )
    inputs = (
        tree_map(lambda *t: torch.cat(t), *[b.inputs for b in held])
        if len(held) > 1
        else held[0].inputs
    )
    targets = torch.cat([b.targets for b in held]) if len(held) > 1 else held[0].targets
    if group is None:
        return inputs, targets
    inputs = tree_map(lambda t: gather_rows(t, group=group) if isinstance(t, Tensor) else t, inputs)
    return inputs, gather_rows(targets, group=group)


def merge_moments(mean: Tensor, m2: Tensor, n: int, *, group: Group) -> tuple[Tensor, Tensor, int]:
    """The mean, centred sum of squares and count over the ranks of each rank's own.

    Exact (Chan et al.): ``M = sum_r n_r mean_r / N`` and
    ``m2 = sum_r m2_r + n_r (mean_r - M)^2``; two all-reduces.
    """
    if group is None:
        return mean, m2, n
    count = mean.new_tensor([float(n)])
    weighted, count = all_reduce(mean * n, count, group=group)
    total = int(count[0])
    merged = weighted / total
    (m2,) = all_reduce(m2 + (mean - merged).square() * n, group=group)
    return merged, m2, total


def check_parameters(theta: Tensor, *, group: Group) -> None:
    """Raise ``ValueError`` unless every rank of ``group`` holds the same ``theta``.

    A checksum (the size, the sum, a weighted sum and the sum of squares, in float64) is
    compared across the ranks with one all-reduce of its maximum and its negated minimum.
    """
    if group is None:
        return
    t = theta.detach().reshape(-1).double()
    weights = torch.linspace(1.0, 2.0, t.numel(), dtype=torch.float64, device=t.device)
    sums = torch.stack([t.new_tensor(float(t.numel())), t.sum(), (t * weights).sum(), t @ t])
    (both,) = all_reduce(torch.cat([sums, -sums]), group=group, op="max")
    high, low = both[:4], -both[4:]
    if not torch.equal(high, low):
        raise ValueError(
            f"the ranks hold different parameters (checksum {float(low[2]):.17g} on some rank, "
            f"{float(high[2]):.17g} on another): expected the same model on every rank; load "
            "the same checkpoint everywhere or broadcast the parameters from rank 0"
        )


def refuse_sharded(model: nn.Module) -> None:
    """Raise ``ValueError`` for a model whose parameters are sharded or wrapped over ranks.

    FSDP (``FullyShardedDataParallel`` or ``fully_shard``) and ``DTensor`` parameters hold a
    slice of each parameter on a rank; the probes need every parameter whole on every rank.
    ``DistributedDataParallel`` synchronises in its forward; pass its ``.module``.
    """
    if not isinstance(model, nn.Module):
        return  # not a model at all: the objective says so
    for module in model.modules():
        name = type(module).__name__
        if "FullyShardedDataParallel" in name or name.startswith("FSDP"):
            raise ValueError(
                "the model's parameters are sharded by FSDP: expected whole parameters on "
                "every rank; gather them (a full state dict) into an unwrapped model and "
                "probe that, data-parallel over the ranks"
            )
        if name == "DistributedDataParallel":
            raise ValueError(
                "the model is wrapped in DistributedDataParallel: expected the plain module; "
                "pass model.module (the probes sum over the ranks themselves)"
            )
    for pname, p in model.named_parameters():
        if type(p).__name__ == "DTensor" or type(p.data).__name__ == "DTensor":
            raise ValueError(
                f"parameter {pname!r} is a DTensor (sharded over ranks): expected whole "
                "parameters on every rank; gather them (a full state dict) into an unwrapped "
                "model and probe that"
            )


def shard(
    n: int, *, group: Group = None, index: int | None = None, size: int | None = None
) -> range:
    """This rank's contiguous block of ``range(n)``: the first ``n % size`` blocks one longer.

    Args:
        n: the number of examples.
        group: the group whose rank and size are used (default: the engine's setting).
        index: a rank given explicitly (with ``size``) instead of the group's.
        size: a number of ranks given explicitly (with ``index``).

    Returns:
        A ``range``.
    """
    if index is None or size is None:
        g = resolve(group)
        index, size = rank(g), world_size(g)
    base, extra = divmod(n, size)
    lo = index * base + min(index, extra)
    return range(lo, lo + base + (1 if index < extra else 0))
