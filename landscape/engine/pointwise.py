"""Evaluating one model at many points of parameter space, fast.

The engine of :func:`landscape.surfaces.grid.surface`.

- :class:`Points`: the points ``theta0 + c_k1 d_1 (+ c_k2 d_2)`` of a chunk, made when needed,
  with the same elementwise arithmetic on every path (so a point's value does not depend on
  its chunk, and a resumed surface is bit for bit an uninterrupted one);
- :class:`WorkCopy`: a private copy of the model whose parameters are views into one flat
  buffer, written in place at each point: a plain forward pass, no ``functional_call`` and no
  allocation per point (eval mode);
- :func:`chunk_metrics`: the mean loss and accuracy at the points of a chunk in one pass over
  the data, one point after the other or all together under ``torch.func.vmap``;
- :class:`Evaluator`: the metrics at a chunk for the training (and test) objectives, with the
  BatchNorm policy, as a context manager entered once for all chunks;
  over ``torch.distributed`` ranks each chunk's sums are summed over the shards;
- :func:`merged`: an eval-mode objective over the same cached examples in large batches.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import vmap
from torch.utils._pytree import tree_map

from landscape.engine import distributed as _dist
from landscape.engine.batches import Kwargs
from landscape.engine.batchnorm import recalibrate
from landscape.engine.context import evaluation
from landscape.engine.metrics import count_correct, count_counted
from landscape.engine.objective import Objective

__all__ = ["MERGED_BATCH", "Evaluator", "Points", "WorkCopy", "chunk_metrics", "merged"]

MERGED_BATCH = 4096  # examples a merged batch holds (eval mode, bn="keep")
"""Examples a merged batch holds (eval mode, ``bn="keep"``)."""


class Points:
    """The K points ``theta0 + c_k1 d_1 (+ c_k2 d_2)`` of a chunk, made when needed.

    Into a given buffer without allocating (:class:`WorkCopy`), one at a time, or stacked for vmap.
    The same elementwise arithmetic every way, so a point's parameters are bit for bit the same
    whatever path or chunk evaluates it.
    """

    def __init__(self, theta0: Tensor, d: Tensor, coef: np.ndarray) -> None:
        self.theta0, self.d = theta0, d
        self.coef = [[float(c) for c in row] for row in coef]  # host scalars: no device sync
        self.device = theta0.device

    def __len__(self) -> int:
        return len(self.coef)

    def write(self, i: int, out: Tensor) -> Tensor:
        """Point i into ``out``, in place: two fused operations a point on a 2-D grid."""
        c = self.coef[i]
        torch.add(self.theta0, self.d[0], alpha=c[0], out=out)
        for j in range(1, len(c)):
            out.add_(self.d[j], alpha=c[j])
        return out

    def theta(self, i: int) -> Tensor:
        """Point i as a new tensor."""
        return self.write(i, torch.empty_like(self.theta0))

    def all(self) -> list[Tensor]:
        """Every point of the chunk, each a new tensor."""
        return [self.theta(i) for i in range(len(self))]


class WorkCopy:
    """A private copy of the model whose parameters are views into one flat buffer.

    Each point is written into the buffer in place, for a plain forward pass without
    ``functional_call``'s cost per call and without allocating per point (eval mode only: nothing in
    the copy changes but its parameters). A tied parameter is replaced under every name it has. The
    caller's model is never touched.
    """

    def __init__(self, obj: Objective) -> None:
        self.model = copy.deepcopy(obj.model)
        self.flat = torch.empty_like(obj.theta)
        named = dict(self.model.named_parameters())
        views = {
            id(named[n]): nn.Parameter(part.view_as(named[n]), requires_grad=False)
            for n, part in zip(obj.layout.names, self.flat.split(obj.layout.sizes), strict=True)
        }
        for full, p in list(self.model.named_parameters(remove_duplicate=False)):
            if id(p) in views:
                owner, _, leaf = full.rpartition(".")
                setattr(self.model.get_submodule(owner), leaf, views[id(p)])

    def __call__(self, points: Points, i: int, inputs: Any) -> Any:
        """The copy's outputs on ``inputs`` at point i of ``points``."""
        points.write(i, self.flat)
        if isinstance(inputs, Kwargs):  # a mapping batch
            return self.model(**inputs)
        return self.model(inputs)


def chunk_metrics(
    obj: Objective,
    points: Points,
    batched: bool,
    work: WorkCopy | None = None,
    accuracy: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Mean loss and accuracy at each of the K ``points``, in one pass over the data.

    All at once under vmap (``batched``), or one after the other on each batch (the same arithmetic
    for a point whatever the other points are), written into ``work`` if given; each point's output
    is reduced at once, not kept, and ``work`` allocates nothing per point; the sums take one
    operation a batch for all points (on a GPU, small launches are what a point costs). Runs inside
    the contexts :class:`Evaluator` enters (no_grad, evaluation modes).
    """
    k = len(points)
    device = points.device
    # the points as tensors, unless each is written into the work copy's buffer in turn
    thetas = [] if work is not None and not batched else points.all()

    acc = obj.accumulator_dtype
    total = torch.zeros(k, dtype=acc, device=device)
    right = torch.zeros(k, dtype=torch.float64, device=device)
    counted: Any = 0 if accuracy else None  # None once a batch has no accuracy
    tokens = obj.tokens  # how sequence logits and labels align, or None

    def one(theta: Tensor, inputs: Any, targets: Tensor) -> tuple[Tensor, Tensor]:
        out = obj.outputs(theta, inputs)
        return obj.loss_fn(out, targets), out

    for batch in obj.batches:
        inputs, targets, n = batch.inputs, batch.targets, batch.weight
        hits: Tensor | None = None
        if batched:
            losses, outs = vmap(one, in_dims=(0, None, None))(torch.stack(thetas), inputs, targets)
            out = tree_map(lambda o: o[0], outs)  # the first point's outputs, any structure
            if counted is not None and count_correct(out, targets, tokens) is not None:
                hits = vmap(count_correct, in_dims=(0, None, None))(outs, targets, tokens)
        else:
            found: list[Tensor | None] = []
            each = []
            for i in range(k):
                if work is not None:  # then thetas is empty
                    out = work(points, i, inputs)
                    loss = obj.loss_fn(out, targets)
                else:
                    loss, out = one(thetas[i], inputs, targets)
                each.append(loss)  # each point's output reduced at once, not kept
                if counted is not None:
                    found.append(count_correct(out, targets, tokens))
            losses = torch.stack(each)
            present = [h for h in found if h is not None]
            if found and len(present) == len(found):
                hits = torch.stack(present)
        total.add_(losses, alpha=n)  # one operation a batch for all the points
        if counted is not None:
            if hits is None:  # this batch has no accuracy: neither has the chunk
                counted = None
            else:
                right += hits
                counted = counted + count_counted(out, targets, tokens)
    group = obj.group
    if group is not None:  # every rank's shard: the sums, and whether each had an accuracy
        flag = torch.tensor([float(counted is not None), float(counted or 0)], device=device)
        total, right, flag = _dist.all_reduce(total, right, flag, group=group)
        have = int(flag[0]) == _dist.world_size(group)
        counted = flag[1] if have else None
    counted = None if counted is None else int(counted)
    obj.add_cost(passes=1, loss_evals=k)
    losses = total / obj.n_terms
    return losses, (right / counted if counted else None)


class Evaluator:
    """The metrics at a chunk of points, in one pass over the data.

    Batched under vmap (``use_vmap``, unless the model does not allow it) or point after point; with
    ``bn="recalibrate"`` one point at a time, each with its own statistics. Used as a context
    manager around all the chunks of a surface.
    """

    def __init__(
        self, objectives: Mapping[str, Objective], bn: str, use_vmap: bool, accuracy: bool = True
    ) -> None:
        self.objectives, self.bn, self.use_vmap = dict(objectives), bn, use_vmap
        self.accuracy = accuracy
        self.work: dict[str, WorkCopy | None] = {}
        for split, obj in self.objectives.items():
            try:  # a model deepcopy cannot copy keeps the functional path
                self.work[split] = WorkCopy(obj) if obj.mode == "eval" and bn == "keep" else None
            except (RuntimeError, TypeError, copy.Error):
                self.work[split] = None

    def __enter__(self) -> Evaluator:
        """Enter no_grad and the evaluation modes once for all chunks (``bn="keep"``)."""
        self._stack = contextlib.ExitStack()
        if self.bn == "keep":
            self._stack.enter_context(torch.no_grad())
            for split, obj in self.objectives.items():
                self._stack.enter_context(obj.context())
                work = self.work[split]
                if work is not None:
                    self._stack.enter_context(evaluation(work.model, False))
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.close()

    def __call__(self, points: Points) -> dict[str, np.ndarray | None]:
        """The metrics at ``points`` by name (``train_loss``, ``test_accuracy``, ...).

        Each is a (K,) array, or None for an accuracy that some batch does not have.
        """
        out: dict[str, np.ndarray | None] = {}
        if self.bn == "keep":
            for split, obj in self.objectives.items():
                try:
                    losses, accs = chunk_metrics(
                        obj, points, self.use_vmap, self.work[split], self.accuracy
                    )
                except (RuntimeError, NotImplementedError, ValueError):
                    if not self.use_vmap:
                        raise
                    self.use_vmap = False  # a model or loss vmap cannot batch
                    losses, accs = chunk_metrics(
                        obj, points, False, self.work[split], self.accuracy
                    )
                out[f"{split}_loss"] = losses.cpu().numpy().astype(np.float64)
                out[f"{split}_accuracy"] = None if accs is None else accs.cpu().numpy()
            return out

        rows: dict[str, list] = {}
        for theta in points.all():
            buffers = recalibrate(self.objectives["train"], theta)
            for split, obj in self.objectives.items():
                m = obj.evaluate(theta, buffers)
                rows.setdefault(f"{split}_loss", []).append(m.loss)
                rows.setdefault(f"{split}_accuracy", []).append(m.accuracy)
        return {
            k: None if any(v is None for v in vals) else np.asarray(vals, dtype=np.float64)
            for k, vals in rows.items()
        }


def merged(obj: Objective) -> Objective:
    """The objective over the same (cached) examples in batches of up to :data:`MERGED_BATCH`.

    Fewer, larger forward passes. Only for eval mode, where a batch's composition does not change
    its outputs.
    """
    batches = list(obj.batches)
    if (
        not obj.batches.cached
        or len(batches) < 2
        or not all(isinstance(b.inputs, Tensor) and isinstance(b.targets, Tensor) for b in batches)
    ):
        return obj
    return obj.rebatched(MERGED_BATCH)
