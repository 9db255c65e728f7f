"""The loss surfaces of the interactive report: rotatable 3-D surfaces and contours.

:func:`surface_blocks` reads every stored surface (``runs/<run>/surfaces/<name>``) of a file
and makes one figure block a surface name and dimension (:mod:`landscape.report.interactive`),
with a version a run (a picker chooses the run; only the chosen one is drawn):

- a 2-D surface: the 3-D surface (drag to rotate) beside its contour with the projected
  training trajectory, the centre of the plane marked; the training loss, and the test loss
  where stored (a menu switches). A loss that spans more than a decade is drawn as log10 of
  it, as the PNG figures do, with the value itself on hover;
- a 1-D surface: the losses against the coordinate.

Points not computed yet are left blank. Values go into the page as float32 (plotly's binary
arrays, base64), which keeps a 60-run report small; the figures are written as plain plotly
JSON (plotly's object model would take a third of a second a figure).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from landscape.report import interactive
from landscape.report.interactive import Block, figure_block, layout, text
from landscape.surfaces.result import Surface

__all__ = ["METRICS", "surface_blocks"]

METRICS = ("train_loss", "test_loss")
"""The grids drawn, where stored (accuracies are in the PNG figures)."""


def _values(s: Surface, metric: str) -> np.ndarray:
    v = np.array(s.grids[metric], dtype=np.float64)
    v[~s.done] = np.nan
    return v


def use_log(values: np.ndarray) -> bool:
    """Whether a loss grid is drawn as log10: all computed values > 0, spanning > a decade."""
    v = values[np.isfinite(values)]
    return bool(v.size and v.min() > 0 and v.max() / v.min() > 10)


def _axis(s: Surface, i: int) -> str:
    kind = s.info.get("kind", "")
    if kind == "pca":
        return f"PC {i + 1}"
    if kind == "hessian":
        return f"Hessian eigenvector {i + 1}"
    return f"{kind or 'direction'} {i + 1}"


def _plane(run: str, name: str, s: Surface, trajectory: np.ndarray | None) -> dict[str, Any]:
    x, y = s.x, s.y
    assert y is not None
    metrics = [m for m in METRICS if m in s.grids]
    data: list[dict[str, Any]] = []
    menu, coloraxes = [], {}
    for k, metric in enumerate(metrics):
        v = _values(s, metric)
        log = use_log(v)
        words = metric.replace("_", " ")
        axis = "coloraxis" if k == 0 else f"coloraxis{k + 1}"
        coloraxes[axis] = {
            "colorscale": "Viridis",
            "showscale": k == 0,
            "colorbar": {
                "title": {"text": f"log10 {words}" if log else words, "side": "right"},
                "x": 0.93,
            },
        }
        hover = (
            f"{_axis(s, 0)} %{{x:.3g}}<br>{_axis(s, 1)} %{{y:.3g}}<br>{words} "
            + ("%{customdata:.4g}" if log else "%{z:.4g}")
            + "<extra></extra>"
        )
        # grids are (len(x), len(y)); plotly wants z[row = y][column = x]
        common: dict[str, Any] = {
            "x": x,
            "y": y,
            "z": (np.log10(v) if log else v).T,
            "coloraxis": axis,
            "hovertemplate": hover,
            "visible": k == 0,
            "name": words,
        }
        if log:
            common["customdata"] = v.T  # the value itself, on hover
        data.append({"type": "surface", "scene": "scene", **common})
        data.append(
            {
                "type": "contour",
                "xaxis": "x",
                "yaxis": "y",
                "contours": {"coloring": "heatmap", "showlines": True},
                "line": {"width": 0.5},
                "ncontours": 20,
                "connectgaps": False,
                **common,
            }
        )
        menu.append((words, axis))
    n = len(data)
    if trajectory is not None and len(trajectory):
        data.append(
            {
                "type": "scatter",
                "x": trajectory[:, 0],
                "y": trajectory[:, 1],
                "customdata": trajectory[:, 2],
                "mode": "lines+markers",
                "line": {"color": "#d62728", "width": 2},
                "marker": {"size": 4},
                "name": f"training trajectory ({len(trajectory)} snapshots)",
                "hovertemplate": "step %{customdata:.0f}<br>(%{x:.3g}, %{y:.3g})<extra></extra>",
            }
        )
    data.append(
        {
            "type": "scatter",
            "x": [0.0],
            "y": [0.0],
            "mode": "markers",
            "name": "centre of the plane",
            "marker": {"symbol": "cross-thin", "size": 12, "line": {"width": 2, "color": "black"}},
            "hovertemplate": "centre of the plane<extra></extra>",
        }
    )
    buttons = [
        {
            "label": words,
            "method": "update",
            "args": [
                {"visible": [j // 2 == k for j in range(n)] + [True] * (len(data) - n)},
                {f"{a}.showscale": a == axis for _, a in menu},
            ],
        }
        for k, (words, axis) in enumerate(menu)
    ]
    done, total = int(s.done.sum()), s.done.size
    progress = "" if done == total else f"; {done}/{total} points computed"
    xr, yr = [float(x.min()), float(x.max())], [float(y.min()), float(y.max())]
    return {
        "data": data,
        "layout": layout(
            height=540,
            margin={"l": 10, "r": 10, "t": 50, "b": 70},
            title={
                "text": f"{text(run)}: surface {text(name)}{progress}",
                "x": 0.5,
                "font": {"size": 14},
            },
            legend={"orientation": "h", "y": -0.16, "x": 0.55},
            uirevision=name,  # the camera and zoom stay when another run is picked
            scene={
                "domain": {"x": [0.0, 0.52], "y": [0.0, 1.0]},
                "xaxis": {"title": {"text": _axis(s, 0)}},
                "yaxis": {"title": {"text": _axis(s, 1)}},
                "zaxis": {"title": {"text": ""}},
                "camera": {"eye": {"x": 1.5, "y": -1.5, "z": 1.0}},
            },
            xaxis={"domain": [0.58, 0.9], "title": {"text": _axis(s, 0)}, "range": xr},
            yaxis={"title": {"text": _axis(s, 1)}, "range": yr, "anchor": "x"},
            updatemenus=(
                [{"buttons": buttons, "x": 0.0, "y": 1.08, "xanchor": "left"}]
                if len(buttons) > 1
                else []
            ),
            **coloraxes,
        ),
    }


def _line(run: str, name: str, s: Surface) -> dict[str, Any]:
    data = []
    for metric in METRICS:
        if metric in s.grids:
            words = metric.replace("_", " ")
            data.append(
                {
                    "type": "scatter",
                    "x": s.x,
                    "y": _values(s, metric),
                    "mode": "lines+markers",
                    "name": words,
                    "line": {"dash": "dash" if metric.startswith("test") else "solid"},
                    "hovertemplate": f"{_axis(s, 0)} %{{x:.3g}}<br>{words} %{{y:.4g}}"
                    "<extra></extra>",
                }
            )
    return {
        "data": data,
        "layout": layout(
            title={"text": f"{text(run)}: surface {text(name)}", "x": 0.01},
            xaxis={"title": {"text": _axis(s, 0)}},
            yaxis={"title": {"text": "loss"}},
        ),
    }


def surface_blocks(store: Any) -> list[Block]:
    """A figure block for each surface name and dimension, a version a run (module docstring).

    Args:
        store: an open :class:`~landscape.store.Store`.

    Returns:
        The figure blocks (none where the file holds no surface or plotly is unavailable).
    """
    if interactive.UNAVAILABLE is not None:
        return []
    groups: dict[tuple[str, int], list[tuple[str, Any]]] = {}
    for run in store.runs():
        for name in store.info(run).surfaces:
            record = store.record(run, "surfaces", name)
            s = Surface.from_record(record)
            if not any(m in s.grids for m in METRICS) or not s.done.any():
                continue
            coords = record.arrays.get("trajectory_coords")
            steps = record.arrays.get("trajectory_steps")
            traj = None
            if coords is not None and s.y is not None:
                coords = np.asarray(coords, dtype=np.float64)
                at = np.arange(len(coords)) if steps is None else np.asarray(steps, np.float64)
                traj = np.column_stack([coords[:, :2], at]) if coords.shape[1] >= 2 else None
            dims = 1 if s.y is None else 2
            fig = _line(run, name, s) if dims == 1 else _plane(run, name, s, traj)
            groups.setdefault((name, dims), []).append((run, fig))
    out = []
    for (name, dims), figs in groups.items():
        what = (
            "The 3-D surface (drag to rotate, scroll to zoom) and its contour with the "
            "training trajectory; hover for the values"
            if dims == 2
            else "The losses along the direction; hover for the values"
        )
        pick = "; pick the run above the figure" if len(figs) > 1 else ""
        out.append(figure_block(f"Surface {name}", f"{what}{pick}.", figs))
    return out
