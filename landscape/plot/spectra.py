"""The Hessian's spectral density from a file, on a log scale.

The density is the stored estimate of a :func:`probes.curvature.hessian.density` probe (stochastic
Lanczos quadrature, Ghorbani et al. 2019): a Gaussian-broadened sum over the Ritz values of a
few random start vectors. On a log scale the bulk near zero and the few outliers (the top
eigenvalues that training drives up) show together; the Ritz values are drawn as ticks on the
x axis, and ``lambda_max`` of an eigenvalue probe of the same run as a dashed line.

Examples:
    >>> fig = density("runs.h5", ["sgd", "adam"])                       # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape.plot.base import check_runs, figure, opened, run_colours
from probes.curvature.results import Density

__all__ = ["density", "top_eigenvalue"]


def top_eigenvalue(s: Any, run: str) -> float | None:
    """The largest stored Hessian eigenvalue of ``run``, or None.

    From its ``hessian.eigenvalues`` probes, ``hessian_eigenvalues`` first.
    """
    names = list(s.info(run).probes)
    names.sort(key=lambda n: n != "hessian_eigenvalues")
    for name in names:
        record = s.record(run, "probes", name)
        if record.attrs.get("probe") == "hessian.eigenvalues":
            values = np.asarray(record.arrays.get("values", ()), dtype=np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                return float(values.max())
    return None


def density(
    file: Any, run: str | Sequence[str], probe: str = "hessian_density", *, log: bool = True
) -> Figure:
    """The stored spectral density ``runs/<run>/probes/<probe>`` of one run or several.

    Several are overlaid; on a log scale by default.

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        run: a run, or a list of runs to overlay.
        probe: the stored density's name.
        log: log scale for the density (values more than six decades below the peak are
            left out).

    Raises:
        ValueError: an unknown run or probe, or a probe that is not a density.
    """
    with opened(file) as s:
        runs = check_runs(s, run, "density")
        results = {r: Density.from_record(s.record(r, "probes", probe)) for r in runs}
        tops = {r: top_eigenvalue(s, r) for r in runs}
        colour = run_colours(s)
    fig = figure(7.0, 4.6)
    ax = fig.add_subplot()
    bottom = np.inf
    for r, d in results.items():
        y = np.asarray(d.density, dtype=np.float64)
        if log:  # six decades below the peak: the outliers show, the gaps do not dominate
            floor = max(float(np.nanmax(y)), 1e-300) * 1e-6
            bottom = min(bottom, floor)
            y = np.where(y > floor, y, np.nan)
        ax.plot(
            d.grid,
            y,
            color=colour[r],
            label=f"{r} ({d.n_vectors} vectors x {d.steps} Lanczos steps, width {d.width:.2g})",
        )
        nodes = np.asarray(d.nodes, dtype=np.float64)
        nodes = nodes[np.isfinite(nodes)]
        ax.plot(
            nodes,
            np.full(nodes.shape, 0.02),
            "|",
            color=colour[r],
            markersize=8,
            transform=ax.get_xaxis_transform(),
        )
        top = tops[r]
        if top is not None:
            ax.axvline(
                top,
                color=colour[r],
                linestyle="--",
                linewidth=1,
                label=f"{r}: largest eigenvalue {top:.4g} (Lanczos)",
            )
    if log:
        ax.set_yscale("log")
        ax.set_ylim(bottom=bottom)
    curvature = next(iter(results.values())).curvature
    matrix = {"hessian": "Hessian", "ggn": "GGN", "fisher": "Fisher"}.get(curvature, curvature)
    ax.set_xlabel(f"eigenvalue of the {matrix} (loss per squared parameter unit)")
    ax.set_ylabel("spectral density (per unit eigenvalue)" + (", log scale" if log else ""))
    ax.legend(fontsize=8, loc="upper right")
    who = ", ".join(runs)
    ax.set_title(
        f"{who}: {matrix} spectral density ({probe})\n"
        "ticks on the x axis: Ritz values (stochastic Lanczos quadrature)"
    )
    return fig
