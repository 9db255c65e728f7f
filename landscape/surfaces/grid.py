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

Examples:
    >>> d = torch.randn(2, n_params)                         # or landscape.surfaces.directions.random
    >>> s = surface(model, nn.CrossEntropyLoss(), (X, y), d, x=np.linspace(-1, 1, 21),
    ...             y=np.linspace(-1, 1, 21), store="runs.h5", run="sgd", name="random")
    >>> s.train_loss.shape, s.done.all()
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.determinism import check_source
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from landscape.engine.pointwise import Evaluator, Points, merged

__all__ = ["BN_MODES", "METRICS", "Surface", "same_grid", "surface"]

BN_MODES = ("keep", "recalibrate")
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
_DEFAULT_CHUNK = 16


@dataclass(frozen=True, eq=False)
class Surface:
    """A loss surface on a grid (see the module docstring).

    Attributes:
        x, y: coordinates along the first and second direction (``y`` None for 1-D).
        directions: (k, P) the directions (k = 1 or 2), flat over ``params``.
        grids: ``{"train_loss": ..., "train_accuracy": ..., "test_loss": ...,
            "test_accuracy": ...}`` of shape (len(x),) or (len(x), len(y)); NaN where not
            computed; accuracy grids absent for regression, test grids without test data.
        done: bool grid of the points computed.
        bn, mode, chunk, vmap: options. params: parameter names, in flat order. info: what the
            directions are (kind, seed, normalisation, ...), as given.
        n_points: points evaluated by this call. passes: passes over the data. seconds: wall
            time of this call.
    """

    x: np.ndarray
    y: np.ndarray | None
    directions: np.ndarray
    grids: dict[str, np.ndarray]
    done: np.ndarray
    bn: str
    mode: str
    chunk: int
    vmap: bool
    params: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    n_points: int = 0
    passes: float = 0.0
    seconds: float = 0.0

    def __getattr__(self, name: str) -> np.ndarray:
        grids = self.__dict__.get("grids", {})
        if name in grids:
            return grids[name]
        raise AttributeError(f"Surface has no attribute or grid {name!r} (grids: "
                             f"{', '.join(grids)})")

    @property
    def shape(self) -> tuple[int, ...]:
        return self.done.shape

    def _options(self) -> dict[str, Any]:
        return {"bn": self.bn, "mode": self.mode, "chunk": self.chunk, "vmap": self.vmap,
                "params": list(self.params), "directions_info": self.info}

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, tuple]]:
        """``(arrays, attrs, dims)`` for :meth:`landscape.store.Store.write_record`."""
        axes = ("x",) if self.y is None else ("x", "y")
        arrays = {"x": self.x, "directions": self.directions, "done": self.done,
                  **self.grids}
        if self.y is not None:
            arrays["y"] = self.y
        attrs = {"probe": "surface", **self._options(), "n_points": self.n_points,
                 "passes": float(self.passes), "seconds": float(self.seconds)}
        dims = {k: axes for k in (*self.grids, "done")}
        return arrays, attrs, dims

    @classmethod
    def from_record(cls, record: Any) -> Surface:
        """The surface from a :class:`landscape.store.Record` (possibly partly done)."""
        from landscape.engine.records import check_record

        a, at = check_record(record, "surface", "Surface.from_record")
        return cls(x=np.asarray(a["x"]), y=np.asarray(a["y"]) if "y" in a else None,
                   directions=np.asarray(a["directions"]),
                   grids={k: np.asarray(a[k]) for k in METRICS if k in a},
                   done=np.asarray(a["done"], dtype=bool), bn=at["bn"], mode=at["mode"],
                   chunk=int(at["chunk"]), vmap=bool(at["vmap"]), params=tuple(at["params"]),
                   info=dict(at.get("directions_info") or {}), n_points=int(at["n_points"]),
                   passes=float(at["passes"]), seconds=float(at["seconds"]))


# ---------------------------------------------------------------------------- the surface
def _as_directions(directions: Any, p: int) -> tuple[Tensor, dict[str, Any]]:
    """(k, P) tensor and a JSON-able description from a tensor, an array or a result with
    ``vectors`` (e.g. :class:`landscape.surfaces.directions.Directions`)."""
    info: dict[str, Any] = {}
    if hasattr(directions, "vectors"):
        if hasattr(directions, "to_record"):
            info = {k: v for k, v in directions.to_record()[1].items() if k != "probe"}
        directions = directions.vectors
    if isinstance(directions, np.ndarray):
        directions = torch.from_numpy(directions)
    if not isinstance(directions, Tensor) or directions.ndim not in (1, 2) \
            or directions.shape[-1] != p or not directions.is_floating_point():
        got = (f"{tuple(directions.shape)} {directions.dtype}" if hasattr(directions, "shape")
               else type(directions).__name__)
        raise ValueError(f"surface: directions must be a float tensor (k, P) or (P,) with "
                         f"P={p} (the selected parameters), got {got}")
    d = directions.detach().reshape(-1, p)
    if not bool(torch.isfinite(d).all()) or bool((d.norm(dim=1) == 0).any()):
        raise ValueError("surface: directions must be finite and non-zero")
    return d, info


def _coords(name: str, values: Any) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < 1 or not np.isfinite(arr).all():
        raise ValueError(f"surface: {name} must be a 1-D array of finite coordinates, got "
                         f"shape {arr.shape}")
    return arr


def surface(model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor], data: Any,
            directions: Any, *, x: Any, y: Any = None, test: Any = None,
            center: Tensor | None = None, bn: str = "keep", mode: str = "eval",
            params: ParamFilter | Iterable[str] | None = None, chunk: int = _DEFAULT_CHUNK,
            vmap: bool | None = None, accuracy: bool = True,
            batch_size: int | None = None, check: bool = True, store: Any = None,
            run: str | None = None, name: str = "surface", replace: bool = False,
            flush_seconds: float = 30.0, progress: bool = False,
            extras: Mapping[str, Any] | None = None,
            points: tuple[int, int] | None = None) -> Surface:
    """The loss (and accuracy) on a 1-D or 2-D grid around ``center`` (module docstring).

    Args:
        model, loss_fn, data: the model (never modified), a mean loss and the training data
            (tensors, a Dataset or a DataLoader; cached on the device when they fit).
        directions: (1, P) or (P,) for a 1-D surface, (2, P) for 2-D, over the selected
            parameters (a tensor, an array, or a :class:`landscape.surfaces.directions.Directions`).
        x, y: coordinates along the directions (``y`` only for 2-D).
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
        batch_size, check: passed to :class:`landscape.Objective`.
        store, run, name: write into ``runs/<run>/surfaces/<name>`` of this file as it goes,
            resuming what it holds. replace: start over instead of resuming.
        flush_seconds: seconds between writes to the file. progress: show a progress bar.
        extras: more arrays stored with the surface (e.g. a projected trajectory).
        points: ``(start, stop)``: evaluate only the grid points of these flat (row-major)
            indices, a block of a surface shared out among workers
            (:mod:`landscape.sweep.dist`); ``start`` a multiple of ``chunk``, so that the
            points are evaluated in the chunks of a whole-surface evaluation.

    Returns:
        :class:`Surface` (with the values the file already held, when resuming).

    Raises:
        ValueError: bad directions, coordinates or options; a stored surface of that name
            made with other coordinates, directions or options (pass ``replace=True``).
    """
    started = time.perf_counter()
    _check_choice("surface", "bn", bn, BN_MODES)
    chunk = _check_int("surface", "chunk", chunk, 1)
    flush_seconds = _check_positive("surface", "flush_seconds", flush_seconds)
    if (store is None) != (run is None):
        raise ValueError("surface: give both store and run to write into a file, or neither")
    xs = _coords("x", x)
    ys = None if y is None else _coords("y", y)
    given = {"train": Objective(model, loss_fn, data, params=params, mode=mode,
                                batch_size=batch_size, check=False)}
    if test is not None:
        given["test"] = Objective(model, loss_fn, test, params=params, mode=mode,
                                  batch_size=batch_size, check=False)
    objectives = {k: merged(o) if mode == "eval" and bn == "keep" else o
                  for k, o in given.items()}
    if check:  # the model on the data as evaluated; a loader's data read anew
        for split, o in objectives.items():
            o.check_determinism()
            if o is not given[split]:
                check_source(given[split])
    obj = objectives["train"]
    if vmap is None:
        vmap = obj.layout.device.type != "cpu"
    vmap = bool(vmap)
    p = obj.layout.numel
    if center is None and getattr(directions, "center", None) is not None:
        center = directions.center  # e.g. PCA or difference directions: their own point
    d, info = _as_directions(directions, p)
    if d.shape[0] != (1 if ys is None else 2):
        raise ValueError(f"surface: {'1' if ys is None else '2'} direction(s) expected for a "
                         f"{'1' if ys is None else '2'}-D grid, got {d.shape[0]}")
    d = d.to(obj.layout.device, obj.layout.dtype)
    if center is not None and not isinstance(center, Tensor):
        center = torch.as_tensor(np.asarray(center))
    theta0 = obj.theta if center is None else obj._check(
        center.to(obj.layout.device, obj.layout.dtype), "center")
    shape = (len(xs),) if ys is None else (len(xs), len(ys))
    metrics = [f"{s}_{m}" for s in objectives for m in ("loss", "accuracy")
               if m == "loss" or (accuracy and obj.has_accuracy)]
    result = Surface(x=xs, y=ys, directions=d.cpu().numpy(),
                     grids={m: np.full(shape, np.nan) for m in metrics},
                     done=np.zeros(shape, dtype=bool), bn=bn, mode=mode, chunk=chunk, vmap=vmap,
                     params=tuple(obj.layout.names), info=info)
    previous = 0.0
    if store is not None:
        result, previous = _open_record(store, run, name, result, replace, extras)

    flat = result.done.reshape(-1)
    first, stop = _block(points, flat.size, chunk)
    evaluate = Evaluator(objectives, bn, vmap, accuracy)
    todo = [c for c in range(first, stop, chunk) if not flat[c:min(c + chunk, stop)].all()]
    pending: list[tuple[tuple[int, ...], dict[str, float]]] = []
    last = time.perf_counter()
    bar = _progress(int((~flat[first:stop]).sum()), progress, name)
    n_points = 0
    with evaluate:
        for start in todo:
            idx = [i for i in range(start, min(start + chunk, stop)) if not flat[i]]
            pts = [np.unravel_index(i, shape) for i in idx]
            coef = np.array([[xs[pt[0]]] if ys is None else [xs[pt[0]], ys[pt[1]]]
                             for pt in pts])
            values = evaluate(Points(theta0, d, coef))
            for n, pt in enumerate(pts):
                row = {m: float(values[m][n]) for m in metrics if values.get(m) is not None}
                for m, v in row.items():
                    result.grids[m][pt] = v
                result.done[pt] = True
                pending.append((tuple(int(i) for i in pt), row))
            n_points += len(pts)
            bar.update(len(pts))
            if store is not None and time.perf_counter() - last >= flush_seconds:
                _flush(store, run, name, pending, result, previous + time.perf_counter() - started)
                pending, last = [], time.perf_counter()
    bar.close()
    seconds = time.perf_counter() - started
    if store is not None and pending:
        _flush(store, run, name, pending, result, previous + seconds)
    passes = sum(o.cost.passes for o in objectives.values())
    return Surface(**{**result.__dict__, "n_points": n_points, "passes": passes,
                      "seconds": seconds})


def _block(points: Any, size: int, chunk: int) -> tuple[int, int]:
    if points is None:
        return 0, size
    ok = (isinstance(points, (tuple, list)) and len(points) == 2
          and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in points))
    start, stop = (int(points[0]), int(points[1])) if ok else (None, None)
    if not ok or not 0 <= start < stop <= size or start % chunk:
        raise ValueError(f"surface: points must be (start, stop) with 0 <= start < stop <= "
                         f"{size} (the grid's points) and start a multiple of chunk={chunk}, "
                         f"got {points!r}")
    return start, stop


def _progress(total: int, show: bool, name: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not show, desc=f"surface {name}", unit="pt")


def same_grid(a: Surface, b: Surface) -> bool:
    """Whether two surfaces (e.g. one held in a file and one about to be computed, or two
    blocks of one surface) have the same coordinates, directions, options and grids."""
    return (np.array_equal(a.x, b.x)
            and (a.y is None) == (b.y is None)
            and (a.y is None or np.array_equal(a.y, b.y))
            and a.directions.shape == b.directions.shape
            and np.array_equal(a.directions, b.directions)
            and a._options() == b._options()
            and set(a.grids) == set(b.grids))


def _open_record(path: Any, run: str, name: str, fresh: Surface, replace: bool,
                 extras: Mapping[str, Any] | None) -> tuple[Surface, float]:
    """Write the empty surface, or read the one the file holds (checked to be the same)."""
    from landscape.store.file import Store

    with Store(path, "a", timeout=60) as s:
        if s.has_record(run, "surfaces", name) and not replace:
            held = Surface.from_record(s.record(run, "surfaces", name))
            if not same_grid(held, fresh):
                raise ValueError(f"surface: {path}: run {run!r} already holds a surface "
                                 f"{name!r} made with other coordinates, directions or options; "
                                 "pass replace=True (CLI: --replace) to start over, or another "
                                 "name")
            return held, held.seconds
        arrays, attrs, dims = fresh.to_record()
        arrays.update(extras or {})
        s.write_record(run, "surfaces", name, arrays=arrays, attrs=attrs, dims=dims)
    return fresh, 0.0


def _flush(path: Any, run: str, name: str, pending: list, result: Surface,
           seconds: float) -> None:
    from landscape.store.file import Store

    points = [pt for pt, _ in pending]
    arrays: dict[str, list] = {"done": [True] * len(points)}
    for m in result.grids:
        arrays[m] = [row.get(m, np.nan) for _, row in pending]
    with Store(path, "a", timeout=60) as s:
        s.update_record(run, "surfaces", name, points=points, arrays=arrays,
                        attrs={"n_points": int(result.done.sum()), "seconds": float(seconds)})
