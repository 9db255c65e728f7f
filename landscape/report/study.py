r"""The study's runs and aggregates: configurations over seeds, and good vs bad minima.

NumPy and SciPy only (no torch): the inputs are plain Python. A *run* is a mapping::

    {"run": "sgd-lr0.1-s0", "config": "sgd-lr0.1", "seed": 0,
     "axes": {"lr": 0.1, "init": "random"}, "converged": True, "gap": 0.12,
     "test_acc": 0.87, "train_loss": 0.01, "steps": 1200,
     "measures": {"dist_init": 4.1, "sharpness_worst_adaptive": 0.3, ...}}

Runs that differ only in their seed share ``config`` (and ``axes``, which never hold the seed).
Jiang et al. (2020) train every model to the same stopping criterion and drop those that miss
it; here ``converged`` says which made it, and only those are ranked.

A configuration's value is the mean over its seeds with a Student-t interval
(:func:`mean_ci`, :func:`configurations`); :func:`good_vs_bad` compares the test accuracy
reached from a random and from a bad init, per optimizer setting (Welch interval). How well
each measure orders the runs by their gap (Kendall's tau with intervals and p-values, Psi, CMI)
is :mod:`landscape.report.study_rank`, with the run checks of this module; the signs the
literature expects, :mod:`landscape.report.expectations`.

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where
    to find them", ICLR 2020. Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas,
    Roy, "In search of robust measures of generalization", NeurIPS 2020. Liu, Papailiopoulos,
    Achlioptas, "Bad global minima exist and SGD can reach them", NeurIPS 2020. See
    :mod:`landscape.report.study_stats` for the statistical references.
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np

from landscape.report import study_stats as st

__all__ = ["configurations", "good_vs_bad", "mean_ci"]


# ------------------------------------------------------------------------------ inputs
def _finite(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"study: values must be numbers or None, got {value!r}") from None
    return x if math.isfinite(x) else None


def _key(value: Any) -> Hashable:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Hashable):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _check(runs: Iterable[Mapping[str, Any]], where: str) -> list[Mapping[str, Any]]:
    if isinstance(runs, (str, bytes, Mapping)):
        raise TypeError(f"{where}: runs must be a list of run mappings")
    out = list(runs)
    for i, r in enumerate(out):
        if not isinstance(r, Mapping):
            raise TypeError(f"{where}: run {i} is a {type(r).__name__}, not a mapping")
        missing = [k for k in ("run", "config", "converged") if k not in r]
        if missing:
            raise ValueError(f"{where}: run {r.get('run', i)!r} lacks {', '.join(missing)}")
        if r.get("axes") is not None and not isinstance(r["axes"], Mapping):
            raise TypeError(f"{where}: axes of run {r['run']!r} must be a mapping or None")
    return out


def _groups(runs: list[Mapping[str, Any]], where: str) -> dict[Hashable, list[Mapping]]:
    """Runs by configuration, in order of first appearance; one axes mapping per config."""
    groups: dict[Hashable, list[Mapping]] = {}
    seen: dict[Hashable, Any] = {}
    for r in runs:
        axes = dict(r.get("axes") or {})
        sig = tuple(sorted((str(k), _key(v)) for k, v in axes.items()))
        if r["config"] in seen and seen[r["config"]] != sig:
            raise ValueError(
                f"{where}: runs of configuration {r['config']!r} have different "
                f"axes ({dict(seen[r['config']])} and {axes}); a configuration "
                "differs from another only in the seed"
            )
        seen[r["config"]] = sig
        groups.setdefault(r["config"], []).append(r)
    return groups


def _value(run: Mapping[str, Any], name: str) -> float | None:
    """A measure of the run, or a top-level number (``train_loss``, ``steps``, ...)."""
    measures = run.get("measures") or {}
    if name in measures:
        return _finite(measures[name])
    if name in ("run", "config", "seed", "axes", "converged", "measures"):
        return None
    return _finite(run.get(name))


def _confidence(confidence: float, where: str) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"{where}: confidence must be in (0, 1), got {confidence!r}")
    return float(confidence)


# ------------------------------------------------------------------------------ aggregates
def mean_ci(values: Iterable[float | None], confidence: float = 0.95) -> dict[str, Any]:
    r"""Mean over seeds and its Student-t interval.

    .. math:: \bar x \pm t_{(1+c)/2,\,n-1}\, s/\sqrt n, \qquad
              s^2 = \tfrac{1}{n-1}\textstyle\sum_i (x_i-\bar x)^2

    (``c = confidence``): the interval for the mean of seeds drawn independently from a
    normal distribution, the usual assumption for a handful of seeds. None and NaN (and
    infinities) are dropped and counted.

    Args:
        values: one value a seed (None or NaN where missing).
        confidence: the interval's level, in (0, 1).

    Returns:
        ``{"mean", "ci": [low, high] or None, "n", "n_dropped", "sd", "confidence",
        "reason"}``: with one value, the mean and no interval (``reason`` says so); with none,
        no mean either. ``sd`` is the sample standard deviation (``ddof=1``).

    References:
        Student, "The probable error of a mean", Biometrika 1908.
    """
    confidence = _confidence(confidence, "mean_ci")
    raw = (
        list(np.asarray(values, dtype=object).ravel())
        if isinstance(values, np.ndarray)
        else list(values)
    )
    kept = [x for x in (_finite(v) for v in raw) if x is not None]
    out: dict[str, Any] = {
        "mean": None,
        "ci": None,
        "n": len(kept),
        "n_dropped": len(raw) - len(kept),
        "sd": None,
        "confidence": confidence,
        "reason": None,
    }
    if not kept:
        out["reason"] = "no finite value"
        return out
    out["mean"] = float(np.mean(kept))
    if len(kept) == 1:
        out["reason"] = "one value: no interval from a single seed"
        return out
    lo, hi, s = st.student_t_interval(np.asarray(kept), confidence)
    out.update(ci=[lo, hi], sd=s)
    return out


def configurations(
    runs: Iterable[Mapping[str, Any]], include_unconverged: bool = False, confidence: float = 0.95
) -> list[dict[str, Any]]:
    """Each configuration's seeds summarised: mean and Student-t interval (:func:`mean_ci`).

    Args:
        runs: run mappings (module docstring).
        include_unconverged: also average the runs that missed the stopping criterion
            (default: left out, as Jiang et al. drop them).
        confidence: of the intervals.

    Returns:
        One dict a configuration, in order of first appearance: ``config``, ``axes``, ``n``
        (runs averaged: the converged seeds, or all with ``include_unconverged``),
        ``n_converged``, ``n_unconverged``, ``runs`` and ``seeds`` (those averaged), and
        ``test_acc``, ``gap``, ``train_loss``, ``steps`` and ``measures`` (every measure any
        run has, name -> :func:`mean_ci`). A configuration with no run to average has ``n``
        0 and no means.

    Raises:
        ValueError: a run without ``run``, ``config`` or ``converged``; runs of one
            configuration with different axes.
    """
    runs = _check(runs, "configurations")
    names = sorted({k for r in runs for k in (r.get("measures") or {})})
    out = []
    for config, members in _groups(runs, "configurations").items():
        used = [r for r in members if include_unconverged or r["converged"]]
        n_conv = sum(bool(r["converged"]) for r in members)
        row: dict[str, Any] = {
            "config": config,
            "axes": dict(members[0].get("axes") or {}),
            "n": len(used),
            "n_converged": n_conv,
            "n_unconverged": len(members) - n_conv,
            "runs": [r["run"] for r in used],
            "seeds": [r.get("seed") for r in used],
        }
        for field in ("test_acc", "gap", "train_loss", "steps"):
            row[field] = mean_ci([_finite(r.get(field)) for r in used], confidence)
        row["measures"] = {m: mean_ci([_value(r, m) for r in used], confidence) for m in names}
        out.append(row)
    return out


# ------------------------------------------------------------------------------ bad minima
def good_vs_bad(
    runs: Iterable[Mapping[str, Any]],
    *,
    init_axis: str = "init",
    good: Any = "random",
    bad: Any = "random_labels",
    metric: str = "test_acc",
    include_unconverged: bool = False,
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    r"""Test accuracy from a random and from a bad init, per optimizer setting (Liu et al.).

    Runs are grouped by their axes without ``init_axis`` (the optimizer setting); in each
    group the seeds from ``good`` and from ``bad`` are summarised by :func:`mean_ci` and the
    difference ``good - bad`` gets Welch's interval (unequal variances):

    .. math:: \bar a - \bar b \pm t_{(1+c)/2,\,\nu}\sqrt{s_a^2/n_a + s_b^2/n_b},

    ``nu`` by Welch-Satterthwaite. Positive: the bad init costs accuracy.

    Args:
        runs: run mappings whose axes hold ``init_axis``.
        init_axis: the axis of the init.
        good: its value for the random init (the sweep's ``"random"``).
        bad: its value for the bad init (the sweep's ``"random_labels"``).
        metric: the top-level number compared.
        include_unconverged: also use runs that missed the stopping criterion.
        confidence: of the intervals.

    Returns:
        One dict a setting, in order of first appearance: ``setting`` (axes without the
        init), ``good`` and ``bad`` (:func:`mean_ci`), ``difference``: ``{"estimate", "ci",
        "se", "df", "confidence", "interval": "welch", "reason"}`` (no interval with fewer
        than 2 seeds on a side; ``df`` None when neither side varies).

    References:
        Liu, Papailiopoulos, Achlioptas 2020; Welch 1947.
    """
    confidence = _confidence(confidence, "good_vs_bad")
    runs = _check(runs, "good_vs_bad")
    settings: dict[Hashable, dict[str, Any]] = {}
    for r in runs:
        axes = dict(r.get("axes") or {})
        if init_axis not in axes or not (include_unconverged or r["converged"]):
            continue
        init = axes.pop(init_axis)
        key = tuple(sorted((str(k), _key(v)) for k, v in axes.items()))
        s = settings.setdefault(key, {"setting": axes, "good": [], "bad": []})
        if _key(init) == _key(good):
            s["good"].append(_finite(r.get(metric)))
        elif _key(init) == _key(bad):
            s["bad"].append(_finite(r.get(metric)))
    out = []
    for s in settings.values():
        a = np.array([v for v in s["good"] if v is not None])
        b = np.array([v for v in s["bad"] if v is not None])
        diff: dict[str, Any] = {
            "estimate": None,
            "ci": None,
            "se": None,
            "df": None,
            "confidence": confidence,
            "interval": "welch",
            "reason": None,
        }
        if len(a) and len(b):
            diff["estimate"] = float(a.mean() - b.mean())
        if len(a) < 2 or len(b) < 2:
            diff["reason"] = (
                f"{len(a)} seed(s) from {good!r} and {len(b)} from {bad!r}: "
                "need 2 on each side for an interval"
            )
        else:
            lo, hi, se, df = st.welch_interval(a, b, confidence)
            diff.update(ci=[lo, hi], se=se, df=df)
            if df is None:
                diff["reason"] = "no spread on either side: the interval is the point"
        out.append(
            {
                "setting": s["setting"],
                "metric": metric,
                "good": mean_ci(s["good"], confidence),
                "bad": mean_ci(s["bad"], confidence),
                "difference": diff,
            }
        )
    return out
