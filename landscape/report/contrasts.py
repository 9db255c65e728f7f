r"""Differences between configurations: each pair's difference of means, with Welch's interval.

For two configurations ``A`` and ``B`` (``A`` the earlier in the file) and a metric the report
summarises over seeds (test accuracy, gap, train loss, steps, the history milestones and every
measure), :func:`contrasts` gives ``mean(B) - mean(A)`` over their included seeds with Welch's
interval (unequal variances, Welch-Satterthwaite degrees of freedom; the interval of
:func:`scipy.stats.ttest_ind` with ``equal_var=False``):

.. math:: \bar b - \bar a \pm t_{(1+c)/2,\,\nu}\sqrt{s_a^2/n_a + s_b^2/n_b}.

Every pair goes to ``contrasts.csv``; the report's table shows the pairs that differ in one
axis (the effect of that axis alone) with the main metrics (:data:`MAIN_METRICS`), and every
pair where a file has at most :data:`ALL_PAIRS_UP_TO` configurations (a grid whose settings
move together, as a learning rate chosen per batch size, has no pair along one axis).

References:
    Welch, "The generalization of 'Student's' problem when several different population
    variances are involved", Biometrika 1947.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

import numpy as np

from landscape.report import study_stats as st
from landscape.report.render import MISSING
from landscape.report.study import _key  # one hashable key per setting value, as study's

__all__ = [
    "ALL_PAIRS_UP_TO",
    "MAIN_METRICS",
    "contrast_blocks",
    "contrasts",
    "contrasts_csv",
    "metric_names",
    "seed_values",
]

MAIN_METRICS = ("test_acc", "gap", "lambda_max")
"""The metrics of the report's table of differences (where any run has them)."""
ALL_PAIRS_UP_TO = 4
"""With at most this many configurations, the table shows every pair, not only one-axis ones."""
TOP_LEVEL = ("test_acc", "gap", "train_loss", "steps")
ORDER = ("step_train_acc_1", "test_acc_at_train_acc_1", "step_test_acc_0.95")

Block = tuple[Any, ...]


def _value(run: Mapping[str, Any], metric: str) -> float | None:
    if metric in TOP_LEVEL:
        v = run["metrics"].get(metric)
    elif metric in (run.get("milestones") or {}):
        v = run["milestones"][metric]
    else:
        v = (run.get("measures") or {}).get(metric)
    if v is None:
        return None
    x = float(v)
    return x if np.isfinite(x) else None


def metric_names(doc: Mapping[str, Any]) -> list[str]:
    """The metrics summarised by configuration: the top-level ones, milestones, measures."""
    used = [r for r in doc["runs"] if r["included"]]
    milestones = sorted(
        {k for r in used for k, v in (r.get("milestones") or {}).items() if v is not None},
        key=lambda k: (ORDER.index(k) if k in ORDER else len(ORDER), k),
    )
    measures = sorted({k for r in used for k in r["measures"]})
    return [*TOP_LEVEL, *milestones, *measures]


def seed_values(doc: Mapping[str, Any]) -> dict[str, list[tuple[Any, str, dict[str, Any]]]]:
    """Config -> ``[(seed, run, {metric: value or None}), ...]`` of its included runs.

    The runs behind each configuration's means, in the order of the file.
    """
    names = metric_names(doc)
    out: dict[str, list[tuple[Any, str, dict[str, Any]]]] = {}
    for r in doc["runs"]:
        if r["included"]:
            values = {m: _value(r, m) for m in names}
            out.setdefault(str(r["config"]), []).append((r["seed"], r["run"], values))
    return out


def _welch(a: list[float], b: list[float], confidence: float) -> dict[str, Any]:
    out: dict[str, Any] = {"estimate": None, "ci": None, "se": None, "df": None, "reason": None}
    if a and b:
        out["estimate"] = float(np.mean(b) - np.mean(a))
    if len(a) < 2 or len(b) < 2:
        out["reason"] = f"{len(a)} and {len(b)} seed(s): need 2 on each side for an interval"
        return out
    lo, hi, se, df = st.welch_interval(np.asarray(b), np.asarray(a), confidence)
    out.update(ci=[lo, hi], se=se, df=df)
    if df is None:
        out["reason"] = "no spread on either side: the interval is the point"
    return out


def contrasts(doc: Mapping[str, Any], confidence: float = 0.95) -> list[dict[str, Any]]:
    """Every pair of configurations, every metric: ``mean(B) - mean(A)`` with Welch's interval.

    Args:
        doc: the study document (:func:`landscape.report.analysis.analyse`): its ``runs``
            (included ones only) and ``configs`` (their axes).
        confidence: of the intervals, in (0, 1).

    Returns:
        One dict a (pair, metric), pairs in file order: ``a``, ``b`` (configurations),
        ``differs_in`` (the axes whose values differ), ``one_axis``, ``metric``, ``n_a``,
        ``n_b``, ``mean_a``, ``mean_b``, ``difference`` (``b - a``), ``ci``, ``se``, ``df``,
        ``reason`` (why there is no interval). A metric neither side has is left out.
    """
    if not 0 < confidence < 1:
        raise ValueError(f"contrasts: confidence must be in (0, 1), got {confidence!r}")
    values = seed_values(doc)
    configs = [c for c in doc["configs"] if c["n"] and str(c["config"]) in values]
    names = metric_names(doc)
    rows = []
    for i, ca in enumerate(configs):
        for cb in configs[i + 1 :]:
            xa, xb = dict(ca["axes"] or {}), dict(cb["axes"] or {})
            differs = sorted(k for k in {*xa, *xb} if _key(xa.get(k)) != _key(xb.get(k)))
            for m in names:
                a = [v[m] for _, _, v in values[str(ca["config"])] if v[m] is not None]
                b = [v[m] for _, _, v in values[str(cb["config"])] if v[m] is not None]
                if not a and not b:
                    continue
                w = _welch(a, b, confidence)
                rows.append(
                    {
                        "a": str(ca["config"]),
                        "b": str(cb["config"]),
                        "differs_in": differs,
                        "one_axis": len(differs) == 1,
                        "metric": m,
                        "n_a": len(a),
                        "n_b": len(b),
                        "mean_a": float(np.mean(a)) if a else None,
                        "mean_b": float(np.mean(b)) if b else None,
                        "difference": w["estimate"],
                        "ci": w["ci"],
                        "se": w["se"],
                        "df": w["df"],
                        "reason": w["reason"],
                    }
                )
    return rows


def _num(x: Any) -> str:
    return "" if x is None else repr(float(x))


def contrasts_csv(rows: list[Mapping[str, Any]]) -> str:
    """``contrasts.csv``: a line a (pair, metric), numbers in full (empty where missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["config_a", "config_b", "differs_in", "one_axis", "metric", "n_a", "mean_a", "n_b"]
        + ["mean_b", "difference_b_minus_a", "ci_low", "ci_high", "se", "df"]
    )
    for r in rows:
        lo, hi = r["ci"] if r["ci"] else (None, None)
        w.writerow(
            [r["a"], r["b"], ";".join(r["differs_in"]), r["one_axis"], r["metric"], r["n_a"]]
            + [_num(r["mean_a"]), r["n_b"], _num(r["mean_b"]), _num(r["difference"])]
            + [_num(lo), _num(hi), _num(r["se"]), _num(r["df"])]
        )
    return buf.getvalue()


def _cell(r: Mapping[str, Any] | None) -> str:
    if r is None or r["difference"] is None:
        return MISSING
    cell = f"{float(r['difference']) + 0.0:+.4g}"
    if r["ci"]:
        cell += f" [{float(r['ci'][0]) + 0.0:+.3g}, {float(r['ci'][1]) + 0.0:+.3g}]"
    return cell


def contrast_blocks(rows: list[Mapping[str, Any]], n_configs: int) -> list[Block]:
    """The table of differences (module docstring); nothing without a pair to show."""
    every = n_configs <= ALL_PAIRS_UP_TO
    shown = [r for r in rows if r["one_axis"] or every]
    main = [m for m in MAIN_METRICS if any(r["metric"] == m for r in shown)]
    if not shown or not main:
        return []
    pairs: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in shown:
        pairs.setdefault((r["a"], r["b"]), {})[r["metric"]] = r
    table = []
    for (a, b), by in pairs.items():
        first = next(iter(by.values()))
        table.append([a, b, ", ".join(first["differs_in"])] + [_cell(by.get(m)) for m in main])
    which = (
        "every pair of configurations"
        if every
        else "the pairs of configurations that differ in one axis"
    )
    return [
        ("h2", "Differences between configurations (Welch)"),
        (
            "p",
            f"For {which}: B - A of the means over their included seeds, with Welch's 95% "
            "interval (unequal variances). Every pair and every metric (train loss, steps, "
            "the history milestones, each measure) is in contrasts.csv.",
        ),
        ("table", ["A", "B", "differs in", *(f"{m}: B - A" for m in main)], table),
    ]
