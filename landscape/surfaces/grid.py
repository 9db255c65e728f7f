"""Loss surfaces: the loss (and accuracy) on a 1-D or 2-D grid around a centre.

``surface(model, loss_fn, data, directions, x=..., y=...)`` evaluates the mean loss over
``data`` at ``theta = centre + x_i d_1 (+ y_j d_2)`` for every grid point, optionally on test
data too, through :class:`landscape.Objective` (the model is never written into). The data
are cached on the device when they fit, and in eval mode the batches of a DataLoader are
merged into large ones (the mean is the same; only its rounding differs). Points go in chunks
of ``chunk``, each chunk in one pass over the data with one evaluation context, so a point
costs about one bare forward pass; on a GPU the points of a chunk go through the model
together under ``torch.func.vmap`` (``vmap=True``, the default there), which keeps the device
busy on small models (on the CPU it is slower, so it is off there). A model that ``vmap``
cannot batch falls back to one point after the other.

**BatchNorm.** ``bn="keep"`` (default) evaluates every point with the centre's running
statistics (eval mode), as most published surfaces do; ``bn="recalibrate"`` recomputes the
statistics at each point from the training data first
(:func:`landscape.engine.batchnorm.recalibrate`: one more forward pass over the training data a
point, and points one at a time), which is what a BatchNorm network would have at that point.

**In the file.** With ``store=`` and ``run=``, the surface is written to
``runs/<run>/surfaces/<name>`` as it goes: the coordinates ``x`` (and ``y``) as HDF5
dimension scales of the grids ``train_loss``, ``train_accuracy``, ``test_loss``,
``test_accuracy``, the directions, and a mask ``done`` of the points computed. The file is
written in short sessions every ``flush_seconds`` (readers get in between) and each session
is committed whole, so a killed process loses at most the points since the last one; calling
``surface`` again with the same arguments resumes from the mask. Points are evaluated in fixed
chunks of the row-major order, so a resumed surface holds bit for bit the values an
uninterrupted one would.

**Over torch.distributed ranks.** ``parallel="data"`` (default): ``data`` is this rank's
shard, every point's sums go over all the shards (:mod:`landscape.engine.distributed`), every
rank gets every value. ``parallel="points"``: ``data`` is all the data on every rank, each rank
evaluates a block of the grid's chunks and the values are gathered. Either way rank 0 alone
writes the file (and reads what it holds for the others), and the values equal a
one-process surface.

**Inside.** :func:`surface` sets up the objectives, the centre and the directions, then hands
the grid to two parts that know nothing of each other: computing
(:mod:`landscape.surfaces.compute`: the chunks of points not done yet, through
:class:`landscape.engine.pointwise.Evaluator`) and persisting
(:mod:`landscape.surfaces.persist`: writing or resuming the record, flushing the points done).
The size limits, :func:`~landscape.surfaces.limits.check_size`, are
:mod:`landscape.surfaces.limits`'s; the result, :class:`~landscape.surfaces.result.Surface`,
lives in :mod:`landscape.surfaces.result` (NumPy only); both are re-exported here.

Examples:
    >>> d = torch.randn(2, n_params)               # or landscape.surfaces.directions.random
    >>> s = surface(model, nn.CrossEntropyLoss(), (X, y), d, x=np.linspace(-1, 1, 21),
    ...             y=np.linspace(-1, 1, 21), store="runs.h5", run="sgd", name="random")
    >>> s.train_loss.shape, s.done.all()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
from torch import Tensor, nn
from tqdm.auto import tqdm

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.params import ParamFilter
from landscape.surfaces.compute import _block, _coords, _evaluate_grid, _objectives, _plane, _Row
from landscape.surfaces.limits import MAX_BYTES_ENV, MAX_POINTS, MAX_POINTS_ENV, check_size
from landscape.surfaces.persist import _SurfaceFile
from landscape.surfaces.result import BN_MODES, METRICS, Surface, same_grid

__all__ = [
    "BN_MODES",
    "MAX_BYTES_ENV",
    "MAX_POINTS",
    "MAX_POINTS_ENV",
    "METRICS",
    "Surface",
    "check_size",
    "same_grid",
    "surface",
]

_DEFAULT_CHUNK = 16


def surface(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    directions: Any,
    *,
    x: Any,
    y: Any = None,
    test: Any = None,
    center: Tensor | None = None,
    bn: str = "keep",
    mode: str = "eval",
    params: ParamFilter | Iterable[str] | None = None,
    chunk: int = _DEFAULT_CHUNK,
    vmap: bool | None = None,
    accuracy: bool = True,
    batch_size: int | None = None,
    check: bool = True,
    store: Any = None,
    run: str | None = None,
    name: str = "surface",
    replace: bool = False,
    flush_seconds: float = 30.0,
    progress: bool = False,
    extras: Mapping[str, Any] | None = None,
    points: tuple[int, int] | None = None,
    parallel: str = "data",
) -> Surface:
    """The loss (and accuracy) on a 1-D or 2-D grid around ``center`` (module docstring).

    Args:
        model: the model (never modified).
        loss_fn: a mean loss.
        data: the training data (tensors, a Dataset or a DataLoader; cached on the device when
            they fit).
        directions: (1, P) or (P,) for a 1-D surface, (2, P) for 2-D, over the selected
            parameters (a tensor, an array, or a
            :class:`landscape.surfaces.directions.Directions`).
        x: coordinates along the first direction.
        y: coordinates along the second direction (2-D only).
        test: test data, evaluated at every point too.
        center: the centre (a flat (P,) tensor); default the directions' own centre where
            they have one (PCA of a trajectory, a difference), else the model's parameters.
        bn: ``"keep"`` the centre's BatchNorm statistics, or ``"recalibrate"`` them at every
            point (one more pass over the training data a point).
        mode: ``"eval"`` or ``"train"``, as for :class:`landscape.Objective`.
        params: the parameters the directions are over (default all trainable).
        chunk: points evaluated in one pass over the data (and written to the file
            together).
        accuracy: also the accuracy grids (where the targets are classes); False saves an
            argmax over the outputs a point.
        vmap: evaluate a chunk's points together under ``torch.func.vmap`` (default: on a
            GPU, where it keeps small models busy; not on the CPU, where it is slower).
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        store: write into ``runs/<run>/surfaces/<name>`` of this file as it goes, resuming what
            it holds.
        run: the run the surface is stored under.
        name: the surface's name.
        replace: start over instead of resuming.
        flush_seconds: seconds between writes to the file.
        progress: show a progress bar.
        extras: more arrays stored with the surface (e.g. a projected trajectory).
        points: ``(start, stop)``: evaluate only the grid points of these flat (row-major)
            indices, a block of a surface shared out among workers
            (:mod:`landscape.sweep.dist`); ``start`` a multiple of ``chunk``, so that the
            points are evaluated in the chunks of a whole-surface evaluation.
        parallel: under ``torch.distributed``, ``"data"`` (``data`` is this rank's shard) or
            ``"points"`` (``data`` is all the data; each rank evaluates a block of chunks).

    Returns:
        :class:`Surface` (with the values the file already held, when resuming).

    Raises:
        ValueError: bad directions, coordinates or options; a stored surface of that name
            made with other coordinates, directions or options (pass ``replace=True``).
    """
    started = time.perf_counter()
    _check_choice("surface", "bn", bn, BN_MODES)
    _check_choice("surface", "parallel", parallel, ("data", "points"))
    group = _dist.resolve(None)
    if parallel == "points" and group is not None:
        with _dist.distributed(False):  # every rank all the data: no sums over ranks
            return _by_points(
                group,
                model=model,
                loss_fn=loss_fn,
                data=data,
                directions=directions,
                x=x,
                y=y,
                test=test,
                center=center,
                bn=bn,
                mode=mode,
                params=params,
                chunk=chunk,
                vmap=vmap,
                accuracy=accuracy,
                batch_size=batch_size,
                check=check,
                store=store,
                run=run,
                name=name,
                replace=replace,
                flush_seconds=flush_seconds,
                progress=progress,
                extras=extras,
                points=points,
            )
    chunk = _check_int("surface", "chunk", chunk, 1)
    flush_seconds = _check_positive("surface", "flush_seconds", flush_seconds)
    if (store is None) != (run is None):
        raise ValueError("surface: give both store and run to write into a file, or neither")
    xs = _coords("x", x)
    ys = None if y is None else _coords("y", y)
    check_size((len(xs),) if ys is None else (len(xs), len(ys)))
    objectives = _objectives(
        model,
        loss_fn,
        data,
        test,
        params=params,
        mode=mode,
        bn=bn,
        batch_size=batch_size,
        check=check,
    )
    obj = objectives["train"]
    vmap = bool(obj.layout.device.type != "cpu" if vmap is None else vmap)
    theta0, d, info = _plane(obj, directions, center, 1 if ys is None else 2)
    shape = (len(xs),) if ys is None else (len(xs), len(ys))
    metrics = [
        f"{s}_{m}"
        for s in objectives
        for m in ("loss", "accuracy")
        if m == "loss" or (accuracy and obj.has_accuracy)
    ]
    result = Surface(
        x=xs,
        y=ys,
        directions=d.cpu().numpy(),
        grids={m: np.full(shape, np.nan) for m in metrics},
        done=np.zeros(shape, dtype=bool),
        bn=bn,
        mode=mode,
        chunk=chunk,
        vmap=vmap,
        params=tuple(obj.layout.names),
        info=info,
    )
    file = (
        None  # store and run come both or neither (checked above); rank 0 alone writes
        if store is None or run is None or _dist.rank(obj.group) != 0
        else _SurfaceFile(store, run, name, flush_seconds, started)
    )
    if file is not None:
        result = file.open(result, replace, extras)
    result = _dist.broadcast(result, group=obj.group)  # what the file held, on every rank

    first, stop = _block(points, result.done.size, chunk)
    bar = _progress(int((~result.done.reshape(-1)[first:stop]).sum()), progress, name)

    def chunk_done(rows: list[_Row]) -> None:
        bar.update(len(rows))
        if file is not None:
            file.add(rows, result)

    n_points = _evaluate_grid(
        objectives,
        theta0,
        d,
        result,
        metrics,
        (first, stop),
        bn=bn,
        vmap=vmap,
        accuracy=accuracy,
        on_chunk=chunk_done,
    )
    bar.close()
    seconds = time.perf_counter() - started
    if file is not None:
        file.close(result, seconds)
    passes = sum(o.cost.passes for o in objectives.values())
    return Surface(
        **{**result.__dict__, "n_points": n_points, "passes": passes, "seconds": seconds}
    )


def _by_points(group: Any, *, points: tuple[int, int] | None, chunk: int, **kw: Any) -> Surface:
    """A surface whose chunks are shared out among the ranks, each on all the data.

    Each rank evaluates its block of whole chunks without a file; the blocks are gathered and
    rank 0 writes them into the file (resuming what it holds: its points are kept).
    """
    store, run, name = kw.pop("store"), kw.pop("run"), kw.pop("name")
    replace, extras, flush = kw.pop("replace"), kw.pop("extras"), kw.pop("flush_seconds")
    started = time.perf_counter()
    size = len(_coords("x", kw["x"])) * (1 if kw["y"] is None else len(_coords("y", kw["y"])))
    first, stop = _block(points, size, chunk)
    chunks = range(first, stop, chunk)
    block = _dist.shard(len(chunks), index=_dist.rank(group), size=_dist.world_size(group))
    part = None
    if len(block):
        lo, hi = chunks[block.start], min(stop, chunks[block.stop - 1] + chunk)
        part = surface(**kw, chunk=chunk, points=(lo, hi))
    parts = _dist.gather_objects(None if part is None else (part.grids, part.done), group=group)
    base = part or surface(**kw, chunk=chunk, points=(first, min(first + chunk, stop)))
    result = Surface(
        **{
            **base.__dict__,
            "grids": {m: np.full(g.shape, np.nan) for m, g in base.grids.items()},
            "done": np.zeros_like(base.done),
        }
    )
    file = None
    if store is not None and run is not None and _dist.rank(group) == 0:
        file = _SurfaceFile(store, run, name, flush, started)
        result = file.open(result, replace, extras)
    for other in parts:
        if other is None:
            continue
        grids, done = other
        new = done & ~result.done
        for m in result.grids:
            result.grids[m][new] = grids[m][new]
        if file is not None:
            file.pending.extend(
                (tuple(int(i) for i in pt), {m: float(g[pt]) for m, g in grids.items()})
                for pt in zip(*np.nonzero(new), strict=True)
            )
        result.done[new] = True
    seconds = time.perf_counter() - started
    if file is not None:
        file.close(result, seconds)
    result = _dist.broadcast(result, group=group)  # rank 0's, with what the file held
    n_points = 0 if part is None else int(part.n_points)
    return Surface(**{**result.__dict__, "n_points": n_points, "seconds": seconds})


def _progress(total: int, show: bool, name: str) -> Any:
    return tqdm(total=total, disable=not show, desc=f"surface {name}", unit="pt")
