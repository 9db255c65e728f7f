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
the grid to two parts that know nothing of each other: computing (``_evaluate_grid``: the
chunks of points not done yet, through :class:`landscape.engine.pointwise.Evaluator`) and
persisting (``_SurfaceFile``: writing or resuming the record, flushing the points done). The
result, :class:`~landscape.surfaces.result.Surface`, lives in :mod:`landscape.surfaces.result`
(NumPy only), re-exported here.

Examples:
    >>> d = torch.randn(2, n_params)               # or landscape.surfaces.directions.random
    >>> s = surface(model, nn.CrossEntropyLoss(), (X, y), d, x=np.linspace(-1, 1, 21),
    ...             y=np.linspace(-1, 1, 21), store="runs.h5", run="sgd", name="random")
    >>> s.train_loss.shape, s.done.all()
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.determinism import check_source
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from landscape.engine.pointwise import Evaluator, Points, merged
from landscape.store.file import Store
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
MAX_POINTS = 1_000_000
"""The most points a surface may have unless ``LANDSCAPE_MAX_POINTS`` says otherwise."""
MAX_POINTS_ENV = "LANDSCAPE_MAX_POINTS"
"""The environment variable that overrides :data:`MAX_POINTS`."""
MAX_BYTES_ENV = "LANDSCAPE_MAX_SURFACE_BYTES"
"""The most bytes a surface's grids may take in memory (default: half the machine's memory)."""


def _limit(env: str, default: float | None) -> float | None:
    text = os.environ.get(env)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{env} must be a number, got {text!r}") from None
    if not value > 0:
        raise ValueError(f"{env} must be a number > 0, got {text!r}")
    return value


def _bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _memory() -> int | None:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # not on this system
        return None


def check_size(shape: Sequence[int], what: str = "surface") -> int:
    """Refuse a grid too large to hold, before anything is computed; its number of points.

    The limits: :data:`MAX_POINTS` points (``LANDSCAPE_MAX_POINTS`` raises it), and grids
    (``METRICS`` in float64 and the ``done`` mask) within half the machine's memory
    (``LANDSCAPE_MAX_SURFACE_BYTES`` sets another number of bytes).

    Args:
        shape: the grid's shape, ``(nx,)`` or ``(nx, ny)``.
        what: who asks, for the message.

    Raises:
        ValueError: one line naming the size, the limit and the variable that raises it.

    Examples:
        >>> check_size((21, 21))
        441
    """
    points = 1
    for n in shape:
        points *= int(n)
    dims = " x ".join(str(int(n)) for n in shape)
    most = _limit(MAX_POINTS_ENV, MAX_POINTS)
    if most is not None and points > most:
        raise ValueError(
            f"{what}: a {dims} grid has {points} points, more than the limit of {most:.0f}; "
            f"set {MAX_POINTS_ENV}={points} to allow it"
        )
    memory = _memory()
    need = points * (8 * len(METRICS) + 1)
    most = _limit(MAX_BYTES_ENV, memory / 2 if memory else None)
    if most is not None and need > most:
        raise ValueError(
            f"{what}: the grids of a {dims} surface need {_bytes(need)} of memory, "
            f"more than the limit of {_bytes(most)}"
            + (" (half this machine's)" if MAX_BYTES_ENV not in os.environ else "")
            + f"; set {MAX_BYTES_ENV}={need} to allow it"
        )
    return points


# A point done: its grid index and its values by metric.
_Row = tuple[tuple[int, ...], dict[str, float]]


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


# ---------------------------------------------------------------------------- computing
def _objectives(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    test: Any,
    *,
    params: Any,
    mode: str,
    bn: str,
    batch_size: int | None,
    check: bool,
) -> dict[str, Objective]:
    """The objectives evaluated at each point, ``"train"`` (and ``"test"``).

    Over the cached data in large batches where that keeps the values (eval mode,
    ``bn="keep"``), checked to be deterministic on the data as evaluated (a loader's data read
    anew).
    """
    given = {
        "train": Objective(
            model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=False
        )
    }
    if test is not None:
        given["test"] = Objective(
            model, loss_fn, test, params=params, mode=mode, batch_size=batch_size, check=False
        )
    objectives = {k: merged(o) if mode == "eval" and bn == "keep" else o for k, o in given.items()}
    if check:
        for split, o in objectives.items():
            o.check_determinism()
            if o is not given[split]:
                check_source(given[split])
    return objectives


def _plane(
    obj: Objective, directions: Any, center: Any, k: int
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The centre (P,) and the ``k`` directions (k, P) on the objective's device and dtype.

    Returns:
        ``(theta0, d, info)``, ``info`` what the directions are.
    """
    if center is None and getattr(directions, "center", None) is not None:
        center = directions.center  # e.g. PCA or difference directions: their own point
    d, info = _as_directions(directions, obj.layout.numel)
    if d.shape[0] != k:
        raise ValueError(f"surface: {k} direction(s) expected for a {k}-D grid, got {d.shape[0]}")
    d = d.to(obj.layout.device, obj.layout.dtype)
    if center is not None and not isinstance(center, Tensor):
        center = torch.as_tensor(np.asarray(center))
    theta0 = (
        obj.theta
        if center is None
        else obj.check_theta(center.to(obj.layout.device, obj.layout.dtype), "center")
    )
    return theta0, d, info


def _evaluate_grid(
    objectives: Mapping[str, Objective],
    theta0: Tensor,
    d: Tensor,
    result: Surface,
    metrics: list[str],
    block: tuple[int, int],
    *,
    bn: str,
    vmap: bool,
    accuracy: bool,
    on_chunk: Callable[[list[_Row]], None],
) -> int:
    """Evaluate the points of a block of the grid that ``result`` does not hold yet.

    The points go in the fixed chunks of ``result.chunk`` points of the row-major order, their
    values into ``result``'s grids and ``done`` mask (in place).

    Args:
        objectives: ``{"train": ..., "test": ...}`` to evaluate at each point.
        theta0: the centre (P,).
        d: the directions (k, P).
        result: the surface to fill (fresh, or as resumed from a file).
        metrics: the grids to fill.
        block: ``(first, stop)`` of the flat indices.
        bn: as for :func:`surface`.
        vmap: as for :func:`surface`.
        accuracy: as for :func:`surface`.
        on_chunk: called after each chunk with its points and their values.

    Returns:
        The number of points evaluated.
    """
    xs, ys, shape, chunk = result.x, result.y, result.shape, result.chunk
    flat = result.done.reshape(-1)
    first, stop = block
    evaluate = Evaluator(objectives, bn, vmap, accuracy)
    todo = [c for c in range(first, stop, chunk) if not flat[c : min(c + chunk, stop)].all()]
    n_points = 0
    with evaluate:
        for start in todo:
            idx = [i for i in range(start, min(start + chunk, stop)) if not flat[i]]
            pts = [np.unravel_index(i, shape) for i in idx]
            coef = np.array([[xs[pt[0]]] if ys is None else [xs[pt[0]], ys[pt[1]]] for pt in pts])
            values = evaluate(Points(theta0, d, coef))
            rows: list[_Row] = []
            for n, pt in enumerate(pts):
                row = {m: float(col[n]) for m in metrics if (col := values.get(m)) is not None}
                for m, v in row.items():
                    result.grids[m][pt] = v
                result.done[pt] = True
                rows.append((tuple(int(i) for i in pt), row))
            n_points += len(pts)
            on_chunk(rows)
    return n_points


def _as_directions(directions: Any, p: int) -> tuple[Tensor, dict[str, Any]]:
    """(k, P) tensor and a JSON-able description of the given directions.

    From a tensor, an array or a result with ``vectors`` (e.g.
    :class:`landscape.surfaces.directions.Directions`).
    """
    info: dict[str, Any] = {}
    if hasattr(directions, "vectors"):
        if hasattr(directions, "to_record"):
            info = {k: v for k, v in directions.to_record()[1].items() if k != "probe"}
        directions = directions.vectors
    if isinstance(directions, np.ndarray):
        directions = torch.from_numpy(directions)
    if (
        not isinstance(directions, Tensor)
        or directions.ndim not in (1, 2)
        or directions.shape[-1] != p
        or not directions.is_floating_point()
    ):
        got = (
            f"{tuple(directions.shape)} {directions.dtype}"
            if hasattr(directions, "shape")
            else type(directions).__name__
        )
        raise ValueError(
            f"surface: directions must be a float tensor (k, P) or (P,) with "
            f"P={p} (the selected parameters), got {got}"
        )
    d = directions.detach().reshape(-1, p)
    if not bool(torch.isfinite(d).all()) or bool((d.norm(dim=1) == 0).any()):
        raise ValueError("surface: directions must be finite and non-zero")
    return d, info


def _coords(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or not np.isfinite(arr).all():
        raise ValueError(
            f"surface: {name} must be a 1-D array of finite coordinates, got shape {arr.shape}"
        )
    return arr


def _block(points: Any, size: int, chunk: int) -> tuple[int, int]:
    if points is None:
        return 0, size
    ok = (
        isinstance(points, (tuple, list))
        and len(points) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in points)
    )
    if ok:
        start, stop = int(points[0]), int(points[1])
        ok = 0 <= start < stop <= size and not start % chunk
    if not ok:
        raise ValueError(
            f"surface: points must be (start, stop) with 0 <= start < stop <= "
            f"{size} (the grid's points) and start a multiple of chunk={chunk}, "
            f"got {points!r}"
        )
    return start, stop


def _progress(total: int, show: bool, name: str) -> Any:
    return tqdm(total=total, disable=not show, desc=f"surface {name}", unit="pt")


# ---------------------------------------------------------------------------- persisting
class _SurfaceFile:
    """Where a surface goes as it is computed: ``runs/<run>/surfaces/<name>`` of a file.

    :meth:`open` writes the empty surface or resumes the one held; :meth:`add` keeps the points
    done and writes them every ``flush_seconds`` in one short session (readers get in
    between); :meth:`close` writes the rest. ``started``: when this call began (the stored
    time is that of the earlier calls plus this one's).
    """

    def __init__(
        self, path: Any, run: str, name: str, flush_seconds: float, started: float
    ) -> None:
        self.path, self.run, self.name = path, run, name
        self.flush_seconds, self.started = flush_seconds, started
        self.previous = 0.0  # seconds the stored surface took before this call
        self.pending: list[_Row] = []
        self.last = time.perf_counter()

    def open(self, fresh: Surface, replace: bool, extras: Mapping[str, Any] | None) -> Surface:
        """The surface to fill.

        Returns:
            ``fresh``, written empty (with ``extras``), or the one the file holds (checked to
            be the same grid; its time counts on).
        """
        with Store(self.path, "a", timeout=60) as s:
            if s.has_record(self.run, "surfaces", self.name) and not replace:
                held = Surface.from_record(s.record(self.run, "surfaces", self.name))
                if not same_grid(held, fresh):
                    raise ValueError(
                        f"surface: {self.path}: run {self.run!r} already holds a surface "
                        f"{self.name!r} made with other coordinates, directions or options; "
                        "pass replace=True (CLI: --replace) to start over, or another name"
                    )
                self.previous, self.last = held.seconds, time.perf_counter()
                return held
            arrays, attrs, dims = fresh.to_record()
            arrays.update(extras or {})
            s.write_record(self.run, "surfaces", self.name, arrays=arrays, attrs=attrs, dims=dims)
        self.previous, self.last = 0.0, time.perf_counter()
        return fresh

    def add(self, rows: list[_Row], result: Surface) -> None:
        """Keep ``rows`` (points of ``result`` just done); write what is kept if it is time."""
        self.pending.extend(rows)
        if time.perf_counter() - self.last >= self.flush_seconds:
            self._flush(result, self.previous + time.perf_counter() - self.started)
            self.pending, self.last = [], time.perf_counter()

    def close(self, result: Surface, seconds: float) -> None:
        """Write what is kept; ``seconds``: this call's time."""
        if self.pending:
            self._flush(result, self.previous + seconds)
            self.pending = []

    def _flush(self, result: Surface, seconds: float) -> None:
        points = [pt for pt, _ in self.pending]
        arrays: dict[str, list] = {"done": [True] * len(points)}
        for m in result.grids:
            arrays[m] = [row.get(m, np.nan) for _, row in self.pending]
        with Store(self.path, "a", timeout=60) as s:
            s.update_record(
                self.run,
                "surfaces",
                self.name,
                points=points,
                arrays=arrays,
                attrs={"n_points": int(result.done.sum()), "seconds": float(seconds)},
            )
