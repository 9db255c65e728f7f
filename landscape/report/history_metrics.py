r"""Values a run's history, its series along training and its spectra give, by written rules.

:func:`details` reads them for one run; the report keeps them beside the history milestones
(:func:`landscape.report.read.milestones`): each configuration's mean with its interval over
seeds, each seed's value (``per_seed.csv``), the differences between configurations. They
are not ranked against the gap. Each is None where the run lacks what it needs.

**Windows** (fractions of the run's recorded steps, ``0 .. S``, ``S`` the last step of the
history):

- *late* (:data:`LATE`, default 0.5): the recorded steps ``s >= (1 - late) S``, the second
  half of training (steps 1500-3000 of 3000).
- *end* (:data:`END`, default 0.1): the recorded steps ``s >= (1 - end) S``, the last tenth
  (steps 5400-6000 of 6000).

**Values** (:data:`DESCRIPTIONS` says each in a line):

- Edge of stability, where the run has ``probes/lambda_max`` along training and a gradient
  descent optimizer with a stability threshold ``thr`` (2/eta, 2(1+beta)/eta with heavy-ball
  momentum beta; :func:`stability_threshold`, the dashed line of the history figure):
  ``lambda_max/thr first`` (at the first recorded step), ``step lambda_max/thr 0.9`` (the
  first recorded step at which it is >= :data:`RISE`), ``lambda_max/thr late median``,
  ``late min``, ``late max`` over the late window, and
  ``loss_rises``: the history points at which the training loss is above the one before.
- Adaptive edge of stability, where the run has ``probes/preconditioned_sharpness``:
  ``lambda_max(P^-1 H)`` over its threshold ``(2 + 2 beta1) / ((1 - beta1) eta)`` (the
  series' ``ratio``): the same five values (non-finite points, as the NaN at step 0 before
  Adam has second moments, left out), and ``loss_rises``.
- Grokking: ``test_acc end median`` (any run with a test accuracy in its history); from
  ``probes/param_norm``'s ``value``, the norm at step 0 and at each milestone (the last
  recorded value at or before its step); ``grok_step_ratio``: ``step_test_acc_0.95 /
  step_train_acc_1``.
- Hessian spectrum, from the final ``hessian.eigenvalues`` record (the top ones): the ratio
  rule of :func:`probes.curvature.outliers.outliers`, its largest ratio
  ``lambda_i / lambda_{i+1}`` and the runner-up; from the final ``hessian.density`` record:
  ``density_bulk_share``, the density's mass within :data:`BULK` lambda_1 of zero
  (trapezoid rule on its grid; lambda_1 the largest of the eigenvalues record, else the
  largest Ritz node of the density).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from landscape.store.file import Store, StoreError
from probes.curvature.outliers import outliers
from probes.curvature.results import Density, Eigenvalues

__all__ = [
    "BULK",
    "DESCRIPTIONS",
    "END",
    "LATE",
    "NORM_AT",
    "RISE",
    "density_bulk_share",
    "details",
    "late_stats",
    "loss_rises",
    "ordered_details",
    "rise",
    "stability_threshold",
]

LATE = 0.5
"""The late window: the last half of the recorded steps."""
END = 0.1
"""The end window: the last tenth of the recorded steps."""
RISE = 0.9
"""The level of sharpness over its threshold that counts as having risen to it."""
BULK = 0.05
"""The bulk of a spectral density: its mass within this fraction of lambda_1 of zero."""
NORM_AT = {
    "param_norm_at_init": None,
    "param_norm_at_train_acc_1": "step_train_acc_1",
    "param_norm_at_test_acc_0.95": "step_test_acc_0.95",
}
"""name -> the milestone at whose step the parameter norm is read (None: step 0)."""

LAMBDA_MAX, PRECONDITIONED = "lambda_max", "preconditioned_sharpness"
_GD_FAMILY = ("gd", "sgd", "momentum", "nesterov", "label_noise_sgd")
_EOS = "lambda_max/thr late"
_PRE = "lambda_max(P^-1 H)/thr late"
DESCRIPTIONS = {
    "step_train_acc_1": "the first recorded step with training accuracy 1",
    "test_acc_at_train_acc_1": "the test accuracy there",
    "step_test_acc_0.95": "the first recorded step with test accuracy >= 0.95",
    f"{_EOS[:-5]} first": "lambda_max along training over 2/eta (2(1+beta)/eta with "
    "momentum), at its first recorded step",
    f"step {_EOS[:-5]} 0.9": "the first recorded step at which it is >= 0.9",
    f"{_EOS} median": "its median over the late window",
    f"{_EOS} min": "its smallest value in the late window",
    f"{_EOS} max": "its largest value in the late window",
    "loss_rises": "history points at which the training loss rose",
    f"{_PRE[:-5]} first": "the preconditioned sharpness lambda_max(P^-1 H) over Adam's "
    "threshold (2+2beta1)/((1-beta1)eta), at its first finite recorded step",
    f"step {_PRE[:-5]} 0.9": "the first recorded step at which it is >= 0.9",
    f"{_PRE} median": "its median over the late window",
    f"{_PRE} min": "its smallest value in the late window",
    f"{_PRE} max": "its largest value in the late window",
    "test_acc end median": "median test accuracy over the end window",
    "param_norm_at_init": "||theta|| at step 0 (probes/param_norm)",
    "param_norm_at_train_acc_1": "||theta|| at step_train_acc_1",
    "param_norm_at_test_acc_0.95": "||theta|| at step_test_acc_0.95",
    "grok_step_ratio": "step_test_acc_0.95 / step_train_acc_1",
    "outlier_ratio": "the largest ratio lambda_i / lambda_(i+1) of the top Hessian "
    "eigenvalues (the outlier count's gap)",
    "outlier_runner_up": "the second largest such ratio",
    "density_bulk_share": "the spectral density's mass within 5% of lambda_1 of zero",
}
"""Each value's name and what it is, in the order the report lists them (the history
milestones of :func:`landscape.report.read.milestones` first)."""


def ordered_details(names: Any) -> list[str]:
    """``names`` in the order of :data:`DESCRIPTIONS`, any others after them, sorted."""
    known = list(DESCRIPTIONS)
    return sorted(set(names), key=lambda k: (known.index(k) if k in known else len(known), k))


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def stability_threshold(attrs: Mapping[str, Any]) -> float | None:
    """The largest curvature gradient descent with a run's settings is stable on, or None.

    ``2/eta``; ``2(1+beta)/eta`` with heavy-ball momentum beta; ``(2+2beta)/((1+2beta)eta)``
    with Nesterov's; ``eta`` the learning rate times ``1 - dampening``. None for other
    optimizers (adaptive ones, SAM). The same rule as the history figure's
    ``landscape.plot.training.stability_threshold`` (kept here: reading a file needs no
    plotting library).

    Args:
        attrs: the run's attributes; the settings are ``attrs["optimizer"]``.

    Returns:
        The threshold, or None.
    """
    opt = attrs.get("optimizer")
    if not isinstance(opt, Mapping) or opt.get("name") not in _GD_FAMILY:
        return None
    lr = opt.get("lr")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not lr > 0:
        return None
    beta = float(opt.get("momentum") or 0.0)
    eta = float(lr) * (1.0 - float(opt.get("dampening") or 0.0))
    if not eta > 0:
        return None
    if beta and (opt.get("nesterov") or opt.get("name") == "nesterov"):
        return (2 + 2 * beta) / ((1 + 2 * beta) * eta)
    return 2 * (1 + beta) / eta


def _window(steps: np.ndarray, last: float, fraction: float) -> np.ndarray:
    if not 0 < fraction <= 1:
        raise ValueError(f"history window: expected a fraction in (0, 1], got {fraction!r}")
    return steps >= (1.0 - fraction) * last - 1e-9


def late_stats(
    steps: Any, values: Any, last: float, fraction: float = LATE
) -> dict[str, float | None]:
    """Median, min and max of the finite ``values`` recorded at steps ``>= (1 - fraction) last``.

    Args:
        steps: the series' steps.
        values: its values, as many.
        last: the last step of the run's history (the end of training).
        fraction: the window, a fraction of the steps in (0, 1].

    Returns:
        ``{"median", "min", "max"}``, each None where the window holds no finite value.
    """
    s = np.asarray(steps, dtype=float).reshape(-1)
    v = np.asarray(values, dtype=float).reshape(-1)
    if len(s) != len(v):
        raise ValueError(f"history window: {len(s)} steps against {len(v)} values")
    w = v[_window(s, last, fraction) & np.isfinite(v)]
    if not len(w):
        return {"median": None, "min": None, "max": None}
    return {"median": float(np.median(w)), "min": float(w.min()), "max": float(w.max())}


def rise(steps: Any, ratios: Any, level: float = RISE) -> tuple[float | None, float | None]:
    """The first finite ratio and the first step at which the ratio is ``>= level``.

    Args:
        steps: the series' steps.
        ratios: sharpness over its threshold at those steps.
        level: the level that counts as having reached the threshold.

    Returns:
        ``(first, step)``, each None where there is none.
    """
    s = np.asarray(steps, dtype=float).reshape(-1)
    r = np.asarray(ratios, dtype=float).reshape(-1)
    finite = np.flatnonzero(np.isfinite(r))
    hit = np.flatnonzero(np.isfinite(r) & (r >= level))
    first = float(r[finite[0]]) if len(finite) else None
    return first, float(s[hit[0]]) if len(hit) else None


def loss_rises(loss: Any) -> int | None:
    """How many recorded values are above the one before (None for fewer than two)."""
    x = np.asarray(loss, dtype=float).reshape(-1)
    x = x[np.isfinite(x)]
    return int(np.sum(np.diff(x) > 0)) if len(x) >= 2 else None


def density_bulk_share(density: Density, lambda_1: float | None = None) -> float | None:
    """The mass of ``density`` on its grid within :data:`BULK` ``lambda_1`` of zero.

    Args:
        density: a :class:`probes.curvature.results.Density`.
        lambda_1: the top eigenvalue; None: the largest finite Ritz node of the density.

    Returns:
        The trapezoid-rule mass over the grid points with ``|x| < BULK lambda_1``, or None
        without a positive lambda_1 or with fewer than two such points.
    """
    if lambda_1 is None:
        nodes = np.asarray(density.nodes, dtype=float)
        nodes = nodes[np.isfinite(nodes)]
        lambda_1 = float(nodes.max()) if len(nodes) else None
    if lambda_1 is None or not lambda_1 > 0:
        return None
    grid = np.asarray(density.grid, dtype=float)
    near = np.abs(grid) < BULK * lambda_1
    if near.sum() < 2:
        return None
    return float(np.trapezoid(np.asarray(density.density, dtype=float)[near], grid[near]))


def _sharpness(
    name: str, steps: Any, ratio: Any, last: float, late: float
) -> dict[str, float | None]:
    first, step = rise(steps, ratio)
    out = {f"{name[:-5]} first": first, f"step {name[:-5]} {RISE:g}": step}
    return out | {f"{name} {k}": v for k, v in late_stats(steps, ratio, last, late).items()}


def _value_at(series: Mapping[str, np.ndarray], step: float | None) -> float | None:
    if step is None or "step" not in series or "value" not in series:
        return None
    s = np.asarray(series["step"], dtype=float)
    idx = np.flatnonzero(s <= step + 1e-9)
    return _finite(series["value"][idx[-1]]) if len(idx) else None


def _final_record(store: Store, run: str, names: tuple[str, ...], probe: str) -> Any:
    for name in sorted(names, key=lambda n: n != probe.replace(".", "_")):
        try:
            rec = store.record(run, "probes", name)
        except StoreError:
            continue
        if rec.attrs.get("probe") == probe and rec.attrs.get("checkpoint", "final") == "final":
            if probe == "hessian.eigenvalues" and rec.attrs.get("which") == "smallest":
                continue
            return rec
    return None


def _spectrum(store: Store, run: str, names: tuple[str, ...]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    top: np.ndarray | None = None
    rec = _final_record(store, run, names, "hessian.eigenvalues")
    if rec is not None:
        r = Eigenvalues.from_record(rec)
        if r.which != "smallest" and len(r.values):
            top = np.sort(np.asarray(r.values, dtype=float))[::-1]
    if top is not None and len(top) > 1:
        o = outliers(top)
        out["outlier_ratio"], out["outlier_runner_up"] = _finite(o.ratio), _finite(o.runner_up)
    rec = _final_record(store, run, names, "hessian.density")
    if rec is not None:
        lam = float(top[0]) if top is not None and len(top) else None
        out["density_bulk_share"] = density_bulk_share(Density.from_record(rec), lam)
    return out


def details(
    store: Store,
    run: str,
    history: Mapping[str, Any],
    milestones: Mapping[str, float | None],
    *,
    late: float = LATE,
    end: float = END,
) -> dict[str, float | None]:
    """The values of the module docstring that ``run`` has (the others left out).

    Args:
        store: the open store.
        run: the run.
        history: its history columns (``step``, ``train_loss``, ``test_acc``, ...).
        milestones: its milestones (:func:`landscape.report.read.milestones`).
        late: the late window, a fraction of the recorded steps.
        end: the end window, a fraction of the recorded steps.

    Returns:
        name -> value (None where the window or the run has no value).
    """
    out: dict[str, float | None] = {}
    steps = np.asarray(history.get("step", ()), dtype=float)
    if not len(steps):
        return out
    last = float(steps[-1])
    info = store.info(run)
    test = np.asarray(history.get("test_acc", ()), dtype=float)
    if len(test) == len(steps):
        out["test_acc end median"] = late_stats(steps, test, last, end)["median"]
    thr = stability_threshold(info.attrs)
    if LAMBDA_MAX in info.probes and thr is not None:
        lam = store.series(run, f"probes/{LAMBDA_MAX}")
        if "step" in lam and "value" in lam:
            ratio = np.asarray(lam["value"], dtype=float) / thr
            out.update(_sharpness(_EOS, lam["step"], ratio, last, late))
            out["loss_rises"] = _finite(loss_rises(history.get("train_loss", ())))
    if PRECONDITIONED in info.probes:
        pre = store.series(run, f"probes/{PRECONDITIONED}")
        if "step" in pre and "ratio" in pre:
            out.update(_sharpness(_PRE, pre["step"], pre["ratio"], last, late))
            out["loss_rises"] = _finite(loss_rises(history.get("train_loss", ())))
    if "param_norm" in info.probes:
        norm = store.series(run, "probes/param_norm")
        for name, milestone in NORM_AT.items():
            at = 0.0 if milestone is None else milestones.get(milestone)
            out[name] = _value_at(norm, at)
    fit, grok = milestones.get("step_train_acc_1"), milestones.get("step_test_acc_0.95")
    if fit and grok is not None:
        out["grok_step_ratio"] = grok / fit
    out.update(_spectrum(store, run, info.probes))
    return out
