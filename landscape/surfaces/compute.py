"""Computing a surface: its objectives, its plane and the points of its grid not done yet.

The computing part of :func:`landscape.surfaces.grid.surface`, which knows nothing of the file:
the objectives evaluated at each point (``_objectives``), the centre and the directions on
their device (``_plane``), the coordinates and the block of points asked for (``_coords``,
``_block``), and the points of the grid that the surface does not hold yet, evaluated in the
fixed chunks of the row-major order through :class:`landscape.engine.pointwise.Evaluator`
(``_evaluate_grid``), each chunk's values handed on as rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.determinism import check_source
from landscape.engine.objective import Objective
from landscape.engine.pointwise import Evaluator, Points, merged
from landscape.surfaces.result import Surface

__all__: list[str] = []

# A point done: its grid index and its values by metric.
_Row = tuple[tuple[int, ...], dict[str, float]]


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
