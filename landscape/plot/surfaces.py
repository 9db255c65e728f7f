"""Loss surfaces from a file: 2-D contours, 3-D surfaces, 1-D curves, and runs side by side.

A 2-D contour with the projected trajectory over it, a 3-D surface, a 1-D curve, and the same
surface of several runs side by side on one colour scale.

The surfaces are those of ``runs/<run>/surfaces/<name>`` (:mod:`landscape.surfaces.grid`);
points not computed yet (a surface still running or interrupted) are left blank. Coordinates are
multiples of the surface's directions: for PCA and Hessian directions (unit vectors) that is
the Euclidean distance in parameter space; for random filter-normalised directions a unit step
changes each filter by its own norm (Li et al. 2018).

Examples:
    >>> fig = surface("runs.h5", "sgd", "pca_2d")                       # doctest: +SKIP
    >>> fig = grid("runs.h5", "pca_2d", metric="test_loss", log=True)   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure

from landscape.plot.base import (
    check_runs,
    figure,
    finite,
    is_accuracy,
    metric_label,
    opened,
    optimizer_text,
    resolve,
    words,
)
from landscape.surfaces.result import Surface

__all__ = ["curve", "grid", "surface"]

KINDS = ("contour", "3d")
_LEVELS = 20


class _Loaded:
    """A stored surface with what its plots need."""

    def __init__(self, s: Any, run: str, name: str) -> None:
        record = s.record(run, "surfaces", name)
        self.run, self.name = run, name
        self.surface = Surface.from_record(record)
        self.attrs = s.info(run).attrs
        coords = record.arrays.get("trajectory_coords")
        self.trajectory = None if coords is None else np.asarray(coords, dtype=np.float64)
        steps = record.arrays.get("trajectory_steps")
        self.steps = None if steps is None else np.asarray(steps)

    @property
    def dims(self) -> int:
        return 1 if self.surface.y is None else 2

    @property
    def y(self) -> np.ndarray:
        """The coordinates along the second direction (a 2-D surface's only)."""
        if self.surface.y is None:
            raise ValueError(f"{self.where()} is a 1-D surface: it has no second coordinate")
        return self.surface.y

    def values(self, metric: str) -> np.ndarray:
        key = resolve(
            metric, list(self.surface.grids), f"surface runs/{self.run}/surfaces/{self.name}"
        )
        v = np.array(self.surface.grids[key], dtype=np.float64)
        v[~self.surface.done] = np.nan
        return v

    def where(self) -> str:
        return f"runs/{self.run}/surfaces/{self.name}"

    def axis_label(self, i: int) -> str:
        info = self.surface.info
        kind = info.get("kind", "")
        if kind == "pca":
            return f"PC {i + 1} of the trajectory (parameter-space distance)"
        if kind == "hessian":
            return f"Hessian eigenvector {i + 1} (parameter-space distance)"
        norm = info.get("normalization")
        how = f", {norm}-normalised" if norm and norm != "none" else ""
        return f"{kind or 'direction'} direction {i + 1} (multiples of it{how})"

    def progress(self) -> str:
        done, n = int(self.surface.done.sum()), self.surface.done.size
        return "" if done == n else f", {done}/{n} points computed"

    def subtitle(self) -> str:
        kind = self.surface.info.get("kind", "")
        opt = optimizer_text(self.attrs)
        return (
            f"{opt}; {kind} directions{self.progress()}"
            if opt
            else f"{kind} directions{self.progress()}"
        )


def _auto_log(metric: str, values: Any, log: bool | None) -> bool:
    if is_accuracy(metric):
        if log:
            raise ValueError(f"plot: a log scale is for losses, not {metric!r}")
        return False
    v = finite(values)
    if log is None:  # a loss over more than a decade: log scale
        return bool(v.size and v.min() > 0 and v.max() / v.min() > 10)
    if log and v.size and v.min() <= 0:
        raise ValueError(
            f"plot: log scale asked for {metric!r}, but it has values <= 0 (min {v.min():.3g})"
        )
    return bool(log)


def _scale(values: Sequence[np.ndarray], log: bool) -> tuple[np.ndarray, Normalize]:
    """Shared contour levels and colour norm over every array in ``values``."""
    v = np.concatenate([finite(a) for a in values])
    if not v.size:
        raise ValueError("plot: the surface has no computed point yet")
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        hi = lo + (abs(lo) * 1e-6 or 1e-6)
    if log:
        return np.geomspace(lo, hi, _LEVELS), LogNorm(lo, hi)
    return np.linspace(lo, hi, _LEVELS), Normalize(lo, hi)


def _load(s: Any, run: str, name: str, fn: str) -> _Loaded:
    if not isinstance(run, str) or not isinstance(name, str):
        raise ValueError(f"{fn}: run and name must be strings, got {run!r} and {name!r}")
    return _Loaded(s, run, name)


def _contour(
    ax: Any, loaded: _Loaded, z: np.ndarray, levels: np.ndarray, norm: Normalize, trajectory: bool
) -> Any:
    x, y = loaded.surface.x, loaded.y
    zt = np.ma.masked_invalid(z.T)  # grids are (len(x), len(y)); contour wants (ny, nx)
    filled = ax.contourf(x, y, zt, levels=levels, norm=norm, cmap="viridis", extend="neither")
    ax.contour(x, y, zt, levels=levels[::3], norm=norm, colors="k", linewidths=0.4, alpha=0.5)
    ax.plot(
        [0],
        [0],
        marker="+",
        color="k",
        markersize=10,
        linestyle="none",
        label="centre of the plane",
    )
    if trajectory and loaded.trajectory is not None and loaded.trajectory.shape[1] >= 2:
        t = loaded.trajectory
        steps = loaded.steps if loaded.steps is not None else np.arange(len(t))
        outside = int(
            np.sum(
                (t[:, 0] < x.min())
                | (t[:, 0] > x.max())
                | (t[:, 1] < y.min())
                | (t[:, 1] > y.max())
            )
        )
        note = f", {outside} outside the plotted plane" if outside else ""
        ax.plot(t[:, 0], t[:, 1], color="white", linewidth=2.2, zorder=3)
        ax.plot(
            t[:, 0],
            t[:, 1],
            color="#d62728",
            linewidth=1.2,
            marker=".",
            markersize=4,
            zorder=4,
            label=f"training trajectory ({len(t)} snapshots{note})",
        )
        ax.plot(
            t[0, 0],
            t[0, 1],
            marker="o",
            color="#d62728",
            markeredgecolor="white",
            linestyle="none",
            zorder=5,
            label=f"step {int(steps[0])}",
        )
        ax.plot(
            t[-1, 0],
            t[-1, 1],
            marker="*",
            color="#ffdd00",
            markeredgecolor="k",
            markersize=12,
            linestyle="none",
            zorder=5,
            label=f"step {int(steps[-1])}",
        )
    ax.set_xlim(x.min(), x.max())  # the surface's plane; the trajectory is clipped to it
    ax.set_ylim(y.min(), y.max())
    ax.set_xlabel(loaded.axis_label(0))
    ax.set_ylabel(loaded.axis_label(1))
    return filled


def _colorbar(fig: Figure, filled: Any, ax: Any, levels: np.ndarray, label: str, **kw: Any) -> None:
    fig.colorbar(filled, ax=ax, label=label, ticks=levels[::2], format="%.3g", **kw)


def surface(
    file: Any,
    run: str,
    name: str,
    *,
    metric: str = "train_loss",
    kind: str = "contour",
    trajectory: bool = True,
    log: bool | None = None,
) -> Figure:
    """A stored 2-D surface as a filled contour or as a 3-D surface.

    The contour has the projected training trajectory over it, when the surface stores one.

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        run: the run that holds the surface (``runs/<run>/surfaces/<name>``).
        name: the surface's name in the run.
        metric: ``train_loss``, ``test_loss``, ``train_accuracy`` or ``test_accuracy``.
        kind: ``"contour"`` or ``"3d"``.
        trajectory: draw the trajectory (contour only).
        log: log colour scale (3-D: log10 of the values); None: for a loss that spans more
            than a decade.

    Returns:
        A :class:`matplotlib.figure.Figure` (Agg canvas).

    Raises:
        ValueError: an unknown run, surface or metric; a 1-D surface (use :func:`curve`).
    """
    if kind not in KINDS:
        raise ValueError(f"surface: kind must be 'contour' or '3d', got {kind!r}")
    with opened(file) as s:
        loaded = _load(s, run, name, "surface")
    if loaded.dims != 2:
        raise ValueError(
            f"surface: {loaded.where()} is 1-D ({len(loaded.surface.x)} points); "
            "plot it with curve() (landscape plot FILE curve)"
        )
    z = loaded.values(metric)
    log = _auto_log(metric, z, log)
    label = metric_label(metric, loaded.attrs)
    title = f"{run}: {words(metric)} on surface {name}\n{loaded.subtitle()}"
    if kind == "3d":
        fig = figure(7.0, 5.6)
        ax = fig.add_subplot(projection="3d")
        xx, yy = np.meshgrid(loaded.surface.x, loaded.y, indexing="ij")
        zz = np.log10(z) if log else z
        shown = finite(zz)
        if not shown.size:
            raise ValueError(f"surface: {loaded.where()} has no computed point yet")
        norm = Normalize(shown.min(), shown.max())
        art = ax.plot_surface(
            xx,
            yy,
            zz,
            cmap="viridis",
            norm=norm,
            linewidth=0,
            antialiased=True,
            rstride=1,
            cstride=1,
        )
        ax.set_xlabel(loaded.axis_label(0).replace(" (", "\n("), fontsize=7, labelpad=8)
        ax.set_ylabel(loaded.axis_label(1).replace(" (", "\n("), fontsize=7, labelpad=8)
        ax.tick_params(labelsize=7)
        zlabel = f"log10 of {label}" if log else label
        ax.set_zlabel(zlabel, fontsize=8)
        fig.colorbar(art, ax=ax, shrink=0.6, pad=0.1, label=zlabel)
        ax.set_title(title)
        return fig
    fig = figure(7.0, 5.6)
    ax = fig.add_subplot()
    levels, norm = _scale([z], log)
    filled = _contour(ax, loaded, z, levels, norm, trajectory)
    _colorbar(fig, filled, ax, levels, label + (", log scale" if log else ""))
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=8)
    ax.set_title(title)
    return fig


def curve(
    file: Any,
    run: str,
    name: str,
    *,
    metrics: Sequence[str] = ("train_loss", "test_loss"),
    log: bool = False,
) -> Figure:
    """A stored 1-D surface: the metrics against the coordinate along its direction.

    Losses on the left axis (log scale with ``log``), accuracies on a right axis.

    Raises:
        ValueError: an unknown run, surface or metric; a 2-D surface (use :func:`surface`).
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    with opened(file) as s:
        loaded = _load(s, run, name, "curve")
    if loaded.dims != 1:
        shape = "x".join(map(str, loaded.surface.shape))
        raise ValueError(
            f"curve: {loaded.where()} is 2-D ({shape}); plot it with surface() "
            "(landscape plot FILE surface)"
        )
    available = [m for m in metrics if _has(loaded, m)]
    if not available:
        raise ValueError(
            f"curve: {loaded.where()} has none of {', '.join(metrics)}; it has: "
            f"{', '.join(loaded.surface.grids)}"
        )
    fig = figure(7.0, 4.6)
    ax = fig.add_subplot()
    right = None
    x = loaded.surface.x
    for m in available:
        z = loaded.values(m)
        style = "--" if m.startswith("test") else "-"
        if is_accuracy(m):
            right = right or ax.twinx()
            right.plot(x, z, style, color="#2ca02c", marker=".", label=words(m))
            right.set_ylabel("accuracy (fraction correct)")
        else:
            ax.plot(x, z, style, color="#1f77b4", marker=".", label=words(m))
    losses = [m for m in available if not is_accuracy(m)]
    if losses:
        ax.set_ylabel(metric_label(losses[0], loaded.attrs).replace(words(losses[0]), "loss"))
        if log:
            ax.set_yscale("log")
    ax.axvline(0, color="grey", linestyle=":", linewidth=1, label="centre")
    ax.set_xlabel(loaded.axis_label(0))
    handles, labels = ax.get_legend_handles_labels()
    if right is not None:
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, fontsize=8, loc="best")
    ax.set_title(f"{run}: surface {name} along one direction\n{loaded.subtitle()}")
    return fig


def _has(loaded: _Loaded, metric: str) -> bool:
    try:
        loaded.values(metric)
    except ValueError:
        return False
    return True


def grid(
    file: Any,
    name: str,
    runs: Sequence[str] | None = None,
    *,
    metric: str = "train_loss",
    log: bool | None = None,
    trajectory: bool = True,
    columns: int = 3,
) -> Figure:
    """The surface ``name`` of several runs side by side, on ONE colour scale.

    The same contour levels in every panel and one colour bar, so that the basins compare at a
    glance. 1-D surfaces share the y axis instead.

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        name: the surface's name in each run.
        runs: the runs (default: every run that has it).
        metric: as in :func:`surface`.
        log: as in :func:`surface`.
        trajectory: as in :func:`surface`.
        columns: panels per row.

    Raises:
        ValueError: no run holds the surface; a run asked for lacks it; 1-D and 2-D mixed.
    """
    with opened(file) as s:
        if runs is None:
            runs = [r for r in s.runs() if name in s.info(r).surfaces]
            if not runs:
                raise ValueError(f"grid: no run of {s.path} has a surface {name!r}")
        runs = check_runs(s, runs, "grid")
        loaded = [_load(s, r, name, "grid") for r in runs]
    dims = {item.dims for item in loaded}
    if len(dims) != 1:
        raise ValueError(f"grid: surface {name!r} is 1-D in some runs and 2-D in others")
    values = [item.values(metric) for item in loaded]
    log = _auto_log(metric, np.concatenate([v.ravel() for v in values]), log)
    label = metric_label(metric, loaded[0].attrs)
    n = len(loaded)
    cols = max(1, min(columns, n))
    rows = -(-n // cols)
    fig = figure(4.2 * cols + 1.2, 3.9 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=dims == {1})
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_visible(False)
    if dims == {2}:
        levels, norm = _scale(values, log)
        filled = None
        for ax, item, z in zip(flat, loaded, values, strict=False):
            filled = _contour(ax, item, z, levels, norm, trajectory)
            ax.set_title(f"{item.run}\n{item.subtitle()}", fontsize=9)
            ax.xaxis.label.set_fontsize(8)
            ax.yaxis.label.set_fontsize(8)
        _colorbar(fig, filled, flat[:n], levels, label + (", log scale" if log else ""), shrink=0.9)
        fig.legend(
            *flat[0].get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=8
        )
    else:
        for ax, item, z in zip(flat, loaded, values, strict=False):
            ax.plot(item.surface.x, z, marker=".")
            ax.axvline(0, color="grey", linestyle=":", linewidth=1)
            ax.set_xlabel(item.axis_label(0), fontsize=8)
            ax.set_title(f"{item.run}\n{item.subtitle()}", fontsize=9)
            if log:
                ax.set_yscale("log")
        flat[0].set_ylabel(label)
    fig.suptitle(f"surface {name}: {words(metric)} of {n} runs, one shared scale")
    return fig
