"""Training curves from a file: the metrics of each run against the step, and ``lambda_max``.

The top Hessian eigenvalue recorded along training is drawn against the edge of stability.

**Edge of stability.** Gradient descent with step size ``eta`` on a quadratic diverges along a
direction of curvature ``lambda > 2 / eta``; with heavy-ball momentum ``beta`` the bound is
``2 (1 + beta) / eta``, with Nesterov momentum ``(2 + 2 beta) / ((1 + 2 beta) eta)``. Cohen et
al. (2021) found that under full-batch GD ``lambda_max`` rises to about that bound and hovers
there. The bound is drawn (dashed, in the run's colour) for the gradient-descent family (gd,
sgd, momentum, nesterov, label_noise_sgd), following the learning rate's schedule when the
history records it; not for adaptive optimizers (Adam, AdamW) nor SAM, whose stability is
governed by a preconditioned or perturbed curvature instead. For Adam the preconditioned
sharpness ``lambda_max(P^-1 H)`` (the series ``probes/preconditioned_sharpness``,
:func:`probes.along.preconditioned_sharpness`) is drawn in the same panel against
``(2 + 2 beta1) / ((1 - beta1) eta)`` (38/eta for beta1 = 0.9), the threshold of Cohen et al.
(2022), at which they found it hovers.

Examples:
    >>> fig = history("runs.h5", metrics=("train_loss", "test_accuracy"))   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from landscape.plot.base import (
    check_runs,
    figure,
    is_accuracy,
    metric_label,
    opened,
    optimizer_text,
    resolve,
    run_colours,
    words,
)

__all__ = [
    "LAMBDA_MAX",
    "PRECONDITIONED",
    "adaptive_threshold",
    "history",
    "stability_threshold",
]

LAMBDA_MAX = "lambda_max"
"""The series (``probes/lambda_max``) of the top eigenvalue along training
(:func:`probes.along.top_eigenvalues`)."""

PRECONDITIONED = "preconditioned_sharpness"
"""The series (``probes/preconditioned_sharpness``) of Adam's ``lambda_max(P^-1 H)``
(:func:`probes.along.preconditioned_sharpness`)."""

_GD_FAMILY = ("gd", "sgd", "momentum", "nesterov", "label_noise_sgd")


def stability_threshold(attrs: Mapping[str, Any]) -> tuple[float, str] | None:
    """The largest curvature that gradient descent with a run's optimizer settings is stable on.

    Args:
        attrs: the run's attributes; the settings are ``attrs["optimizer"]``.

    Returns:
        ``(threshold, formula)``, or None where there is no such simple bound (adaptive
        optimizers, SAM, unknown settings).

    Examples:
        >>> stability_threshold({"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}})
        (38.0, '2(1+beta)/eta')
    """
    opt = attrs.get("optimizer")
    if not isinstance(opt, Mapping) or opt.get("name") not in _GD_FAMILY:
        return None
    lr = opt.get("lr")
    if not isinstance(lr, (int, float)) or lr <= 0:
        return None
    beta = float(opt.get("momentum") or 0.0)
    damp = float(opt.get("dampening") or 0.0)
    eta = float(lr) * (1.0 - damp)
    if eta <= 0:
        return None
    if beta and (opt.get("nesterov") or opt.get("name") == "nesterov"):
        return (2 + 2 * beta) / ((1 + 2 * beta) * eta), "(2+2beta)/((1+2beta)eta)"
    if beta:
        return 2 * (1 + beta) / eta, "2(1+beta)/eta"
    return 2 / eta, "2/eta"


def adaptive_threshold(attrs: Mapping[str, Any]) -> tuple[float, str] | None:
    """Adam's stability threshold on ``lambda_max(P^-1 H)`` (Cohen et al. 2022), of a run.

    Args:
        attrs: the run's attributes; the settings are ``attrs["optimizer"]``.

    Returns:
        ``((2 + 2 beta1) / ((1 - beta1) eta), formula)`` for ``adam`` and ``adamw``, or None.

    Examples:
        >>> adaptive_threshold({"optimizer": {"name": "adam", "lr": 1e-3}})
        (38000.0, '(2+2beta1)/((1-beta1)eta)')
    """
    opt = attrs.get("optimizer")
    if not isinstance(opt, Mapping) or opt.get("name") not in ("adam", "adamw"):
        return None
    lr, betas = opt.get("lr"), opt.get("betas") or (0.9, 0.999)
    beta1 = betas[0] if isinstance(betas, (list, tuple)) and betas else None
    if not isinstance(lr, (int, float)) or lr <= 0 or not isinstance(beta1, (int, float)):
        return None
    if not 0 <= beta1 < 1:
        return None
    return (2 + 2 * float(beta1)) / ((1 - float(beta1)) * float(lr)), "(2+2beta1)/((1-beta1)eta)"


def _lambda_series(s: Any, run: str, name: str = LAMBDA_MAX) -> dict[str, np.ndarray] | None:
    if name not in s.info(run).probes:
        return None
    cols = s.series(run, f"probes/{name}")
    if "step" not in cols or "value" not in cols:
        return None
    return cols


def history(
    file: Any,
    runs: Sequence[str] | None = None,
    *,
    metrics: Sequence[str] = ("train_loss", "test_accuracy"),
    lambda_max: bool = True,
    log: bool = False,
) -> Figure:
    """The training curves of each run: one panel per metric against the training step.

    A last panel shows ``lambda_max`` along training (when a run records the
    ``probes/lambda_max`` series) with each run's stability threshold ``2/eta``
    (``2(1+beta)/eta`` with momentum) dashed.

    Args:
        file: the landscape file (a path or an open :class:`~landscape.store.Store`).
        runs: the runs (default: every run with a history).
        metrics: history columns; ``train_accuracy`` / ``test_accuracy`` also find the
            columns ``train_acc`` / ``test_acc``.
        lambda_max: add the lambda_max panel when any run has the series.
        log: log scale for the loss panels.

    Returns:
        The figure.

    Raises:
        ValueError: an unknown run; a metric that none of the runs records; no history.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = list(metrics)
    if not metrics:
        raise ValueError("history: metrics must name at least one history column")
    with opened(file) as s:
        if runs is None:
            runs = [r for r in s.runs() if s.info(r).n_history]
            if not runs:
                raise ValueError(f"history: no run of {s.path} has a history")
        runs = check_runs(s, runs, "history")
        hist = {r: s.history(r) for r in runs}
        attrs = {r: s.info(r).attrs for r in runs}
        lam = {r: _lambda_series(s, r) for r in runs} if lambda_max else {}
        pre = {r: _lambda_series(s, r, PRECONDITIONED) for r in runs} if lambda_max else {}
        colour = run_colours(s)
    lam = {r: v for r, v in lam.items() if v is not None}
    pre = {r: v for r, v in pre.items() if v is not None}
    for m in metrics:
        if not any(_find(hist[r], m) for r in runs):
            known = sorted({k for h in hist.values() for k in h if k != "step"})
            raise ValueError(
                f"history: no run records {m!r}; the histories have: "
                f"{', '.join(known) or 'nothing'}"
            )
    panels = len(metrics) + bool(lam or pre)
    fig = figure(7.0, 2.6 * panels + 0.8)
    axes = fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0]
    for ax, m in zip(axes, metrics, strict=False):
        for r in runs:
            key = _find(hist[r], m)
            if key is None or "step" not in hist[r]:
                continue
            ax.plot(
                hist[r]["step"],
                hist[r][key],
                color=colour[r],
                marker=".",
                label=f"{r} ({optimizer_text(attrs[r])})",
            )
        ax.set_ylabel(metric_label(m, attrs[runs[0]]), fontsize=8)
        if log and not is_accuracy(m):
            ax.set_yscale("log")
        ax.set_title(words(m), fontsize=9)
        ax.grid(True, alpha=0.3)
    if lam or pre:
        _lambda_panel(axes[-1], lam, hist, attrs, colour)
        _preconditioned_lines(axes[-1], pre, attrs, colour)
    axes[0].legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("training step (optimizer updates)")
    fig.suptitle(f"training history of {', '.join(runs)}")
    return fig


def _find(h: Mapping[str, np.ndarray], metric: str) -> str | None:
    try:
        return resolve(metric, list(h), "history")
    except ValueError:
        return None


def _lambda_panel(ax: Any, lam: dict, hist: dict, attrs: dict, colour: dict) -> None:
    for r, cols in lam.items():
        ax.plot(cols["step"], cols["value"], color=colour[r], marker=".", label=f"{r}: lambda_max")
        bound = stability_threshold(attrs[r])
        if bound is None:
            continue
        value, formula = bound
        lr = hist[r].get("lr")
        lr0 = (attrs[r].get("optimizer") or {}).get("lr")
        steps = hist[r].get("step")
        if (
            lr is not None
            and steps is not None
            and len(lr) > 1
            and np.ptp(lr[np.isfinite(lr)]) > 0
            and lr0
        ):
            thr = value * float(lr0) / np.where(lr > 0, lr, np.nan)  # follows the schedule
            ax.plot(
                steps,
                thr,
                "--",
                color=colour[r],
                drawstyle="steps-post",
                label=f"{r}: {formula} (with the lr schedule)",
            )
        else:
            ax.axhline(
                value, linestyle="--", color=colour[r], label=f"{r}: {formula} = {value:.4g}"
            )
    ax.set_ylabel("top Hessian eigenvalue\n(loss per squared parameter unit)", fontsize=8)
    ax.set_title("lambda_max along training; dashed: edge of stability", fontsize=9)
    if lam:
        ax.legend(fontsize=7, loc="best")
    ax.grid(True, alpha=0.3)


def _preconditioned_lines(ax: Any, pre: dict, attrs: dict, colour: dict) -> None:
    """Adam's lambda_max(P^-1 H) and its threshold (dotted), in the lambda_max panel."""
    for r, cols in pre.items():
        ax.plot(
            cols["step"],
            cols["value"],
            color=colour[r],
            marker="x",
            label=f"{r}: lambda_max(P^-1 H)",
        )
        bound = adaptive_threshold(attrs[r])
        if bound is not None:
            value, formula = bound
            ax.axhline(value, linestyle=":", color=colour[r], label=f"{r}: {formula} = {value:.4g}")
    if pre:
        ax.legend(fontsize=7, loc="best")
        ax.grid(True, alpha=0.3)
