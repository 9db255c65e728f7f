"""A measure of each run against its generalisation gap.

Does flatness (or a norm, a margin) order the runs the way their gaps do?

A run's measures come from its stored probes: every value of its ``measures`` probe
(:func:`probes.implicit_bias.measures`: norms, distance from init, margins, spectra, noise,
sharpness), ``lambda_max`` (the largest eigenvalue of its Hessian eigenvalue probe),
``trace`` (its Hessian trace probe), and each sharpness probe under its own name (the value of
worst-case, average-case and epsilon sharpness, the flatness of PAC-Bayes). The gap is the
training accuracy minus the test accuracy of the run's final model (its ``final_metrics``).

Examples:
    >>> fig = measure_vs_gap("runs.h5", "sharpness_worst_adaptive")      # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape.plot.base import (
    check_runs,
    figure,
    final_metrics,
    opened,
    optimizer_text,
    run_colours,
)
from landscape.plot.spectra import top_eigenvalue

__all__ = ["KEY_MEASURES", "gap", "measure_vs_gap", "run_measures"]

KEY_MEASURES = ("lambda_max", "trace", "sharpness_worst_adaptive", "dist_init", "path_norm")
"""The measures that :func:`landscape.plot.all_figures` plots against the gap."""

_DESCRIPTIONS = {
    "lambda_max": "largest Hessian eigenvalue (loss per squared parameter unit)",
    "trace": "Hessian trace (loss per squared parameter unit)",
    "dist_init": "distance from the initialisation (L2, parameter units)",
    "param_norm": "parameter norm (L2)",
}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def run_measures(s: Any, run: str) -> dict[str, float]:
    """Every scalar measure stored for ``run`` (see the module docstring), by name."""
    out: dict[str, float] = {}
    for name in s.info(run).probes:
        attrs = s.record(run, "probes", name).attrs
        probe = str(attrs.get("probe", ""))
        if probe == "measures":
            for key, value in (attrs.get("values") or {}).items():
                if (v := _number(value)) is not None:
                    out.setdefault(key, v)
        elif probe == "hessian.trace" and (v := _number(attrs.get("value"))) is not None:
            out.setdefault("trace", v)
        elif probe.startswith("sharpness."):
            v = _number(attrs.get("flatness" if probe == "sharpness.pac_bayes" else "value"))
            if v is not None:
                out[name] = v
    top = top_eigenvalue(s, run)
    if top is not None:
        out.setdefault("lambda_max", top)
    return out


def gap(attrs: dict[str, Any]) -> float | None:
    """Training minus test accuracy of a run's final model (its ``final_metrics``), or None."""
    fm = final_metrics(attrs)
    train, test = _number(fm.get("train_acc")), _number(fm.get("test_acc"))
    return None if train is None or test is None else train - test


def measure_vs_gap(file: Any, measure: str, runs: Sequence[str] | None = None) -> Figure:
    """A scatter of ``measure`` (x) against the generalisation gap (y) over the runs.

    Each point is labelled with its run's name; a run that did not reach its sweep's stopping
    target (``attrs["converged"]`` False) is drawn hollow and labelled "not converged" (the
    report leaves it out of its rankings).

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        measure: a measure name (``lambda_max``, ``trace``, a key of the ``measures`` probe's
            values such as ``sharpness_worst_adaptive`` or ``path_norm``, or the name of a
            sharpness probe).
        runs: the runs (default: all).

    Returns:
        The figure.

    Raises:
        ValueError: an unknown run; no run with both the measure and final metrics.
    """
    if not isinstance(measure, str) or not measure:
        raise ValueError(f"measure_vs_gap: measure must be a measure name, got {measure!r}")
    with opened(file) as s:
        runs = check_runs(s, runs, "measure_vs_gap")
        found = {r: run_measures(s, r) for r in runs}
        attrs = {r: s.info(r).attrs for r in runs}
        colour = run_colours(s)
    points: dict[str, tuple[float, float]] = {}
    for r in runs:
        g = gap(attrs[r])
        if measure in found[r] and g is not None:
            points[r] = (found[r][measure], g)
    if not points:
        known = sorted({k for v in found.values() for k in v})
        raise ValueError(
            f"measure_vs_gap: no run has measure {measure!r} and final metrics; "
            f"measures stored: {', '.join(known) or 'none'}"
        )
    fig = figure(6.4, 4.8)
    ax = fig.add_subplot()
    missed = [r for r in points if attrs[r].get("converged") is False]
    for r, (x, y) in points.items():
        if r in missed:  # hollow: the run did not reach the sweep's stopping target
            ax.scatter([x], [y], facecolors="none", edgecolors=colour[r], s=50, zorder=3)
        else:
            ax.scatter([x], [y], color=colour[r], s=50, zorder=3)
        ax.annotate(
            f"{r}{' (not converged)' if r in missed else ''}\n{optimizer_text(attrs[r])}",
            (x, y),
            xytext=(6, 4),
            textcoords="offset points",
            fontsize=8,
        )
    ax.axhline(0, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel(_DESCRIPTIONS.get(measure, measure.replace("_", " ")))
    ax.set_ylabel("generalisation gap: train - test accuracy (fraction)")
    missing = [r for r in runs if r not in points]
    note = f"; not stored for {', '.join(missing)}" if missing else ""
    if missed:
        note += f"; hollow: {len(missed)} not converged"
    ax.set_title(f"{measure} against the generalisation gap ({len(points)} runs{note})")
    ax.margins(0.2)
    ax.grid(True, alpha=0.3)
    return fig
