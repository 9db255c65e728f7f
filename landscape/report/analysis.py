r"""The study section of the report: configurations, rankings, good vs bad minima, as data.

:func:`analyse` turns the runs read by :func:`landscape.report.read.collect` into the document
that ``report.json`` holds and the report renders (:func:`to_json` writes it). The statistics
are :mod:`landscape.report.study`'s and :mod:`landscape.report.study_rank`'s; this module
chooses the runs that go in:

- *Included runs*: complete runs that reached the sweep-wide stopping target
  (``converged``), or every complete run with ``include_unconverged``. A file without
  ``converged`` flags (a sweep without a matched stopping target) includes every complete
  run, and the document says that the rankings then do not control for how far runs trained.
- *Configurations*: mean and Student-t 95% interval over each configuration's included seeds
  (:func:`~landscape.report.study.configurations`).
- *Rankings*: every measure and the baselines ``train_loss`` and ``steps``
  (:func:`~landscape.report.study_rank.rank_all`): tau-b with the gap, a two-level bootstrap
  interval, a permutation p-value of configuration means, adjusted across all rows
  (Benjamini-Hochberg by default), Psi per axis and the CMI.
- *Good vs bad minima*: for each optimizer setting (the axes without ``init`` and the seed),
  test accuracy from the ``random`` and the ``random_labels`` init and their difference
  (Welch interval, :func:`~landscape.report.study.good_vs_bad`), and the loss barrier of the
  linear paths between a good and a bad minimum of that setting (mean and Student-t interval
  over the paths, one a seed pair).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from landscape.report.read import axes_text
from landscape.report.sentences import summarise
from landscape.report.study import configurations, good_vs_bad, mean_ci
from landscape.report.study_rank import MIN_RUNS, rank_all

__all__ = [
    "BAD",
    "BASELINES",
    "GOOD",
    "INIT_AXIS",
    "analyse",
    "constant_measures",
    "jsonable",
    "to_json",
]

BASELINES = ("train_loss", "steps")
"""The baselines every measure must beat (Jiang et al. 2020): train loss at the stop and the
steps taken."""
INIT_AXIS, GOOD, BAD = "init", "random", "random_labels"
"""The init axis and its values for a random and for a bad (random-label) init."""
CORRECTION_NAMES = {"bh": "Benjamini-Hochberg", "holm": "Holm"}


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as None, NumPy scalars and arrays as Python values."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        return x if math.isfinite(x) else None
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, Path):
        return str(value)
    return str(value)


def to_json(doc: Mapping[str, Any]) -> str:
    """The document as JSON text (NaN and infinities as null; fails on anything else odd)."""
    return json.dumps(jsonable(doc), indent=1, allow_nan=False) + "\n"


def _stat(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: s.get(k) for k in ("mean", "ci", "n", "sd", "reason")}


def _design(
    runs: list[dict], *, include: bool, correction: str, n_boot: int, n_perm: int, seed: int
) -> dict[str, Any]:
    complete = [r for r in runs if r["status"] == "complete"]
    stops = {json.dumps(r["stop"], sort_keys=True) for r in complete if r["stop"]}
    flagged = bool(complete) and all(r["converged"] is not None for r in complete)
    return {
        "gap": "train accuracy - test accuracy of the final model",
        "confidence": 0.95,
        "matched_stopping": flagged and len(stops) <= 1,
        "stop": json.loads(next(iter(stops))) if len(stops) == 1 else None,
        "stops_found": [json.loads(s) for s in sorted(stops)],
        "include_unconverged": include,
        "config_interval": "Student t over the included seeds of a configuration "
        "(mean +- t_{0.975, n-1} s / sqrt(n)); one seed: no interval",
        "tau": "Kendall tau-b of each measure with the gap over the included runs",
        "tau_interval": "two-level percentile bootstrap: configurations with replacement, "
        "then seeds with replacement within each",
        "n_boot": n_boot,
        "p_value": "two-sided permutation test of tau-b between configuration means "
        "(exact when every pairing can be listed)",
        "n_perm": n_perm,
        "correction": correction,
        "correction_name": CORRECTION_NAMES[correction],
        "min_runs": MIN_RUNS,
        "baselines": list(BASELINES),
        "beats_baselines": "the lower end of the measure's 95% interval for |tau| lies above "
        "|tau| of every baseline",
        "psi": "granulated tau per axis over configuration means (Jiang et al. 2020)",
        "cmi": "conditional mutual information between the signs of measure and gap "
        "differences, normalised, minimum over axes (Jiang et al. 2020)",
        "difference_interval": "Welch (unequal variances) for random-init minus bad-init "
        "test accuracy",
        "seed": seed,
    }


def _run_doc(r: dict[str, Any], included: bool) -> dict[str, Any]:
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "gap")
    return {
        "run": r["run"],
        "config": r["config"],
        "seed": r["seed"],
        "converged": r["converged"],
        "stop_reason": r["stop_reason"],
        "included": included,
        "status": r["status"],
        "sweep": r["sweep"],
        "axes": r["study_axes"],
        "optimizer": r["optimizer"],
        "metrics": {
            **{k: r[k] for k in keys},
            "loss_gap": r["loss gap"],
            "steps": r["steps"],
        },
        "measures": dict(r["measures"]),
        "milestones": dict(r.get("milestones") or {}),
    }


def _setting_key(axes: Mapping[str, Any]) -> str:
    return json.dumps({k: v for k, v in axes.items() if k != INIT_AXIS}, sort_keys=True)


def _good_vs_bad(
    runs: list[dict], paths: list[dict], included: set[str], study_runs: list[dict]
) -> list[dict[str, Any]]:
    by_run = {r["run"]: r for r in runs}
    rows = []
    for g in good_vs_bad(study_runs, init_axis=INIT_AXIS, good=GOOD, bad=BAD):
        key = _setting_key(g["setting"])
        barriers, names = [], []
        for p in paths:
            a, b = by_run.get(p["a"]), by_run.get(p["b"])
            if p["kind"] != "linear" or a is None or b is None or p["a"] == p["b"]:
                continue
            if not {a["run"], b["run"]} <= included or {a["init"], b["init"]} != {GOOD, BAD}:
                continue
            if _setting_key(a["study_axes"]) == key == _setting_key(b["study_axes"]):
                barriers.append(p["barrier"])
                names.append(p["stored as"])
        d = g["difference"]
        rows.append(
            {
                "optimizer": axes_text(g["setting"]) or "(no other axis)",
                "setting": g["setting"],
                "random_init": _stat(g["good"]),
                "bad_init": _stat(g["bad"]),
                "difference": {
                    "mean": d["estimate"],
                    "ci": d["ci"],
                    "se": d["se"],
                    "df": d["df"],
                    "reason": d["reason"],
                },
                "barrier": {**_stat(mean_ci(barriers)), "paths": names},
            }
        )
    return rows


def constant_measures(runs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The measures that take one value on every converged run that has them (2 or more).

    Such a measure (a chance level, a count that never changes) orders no pair of runs: it
    is left out of the rankings, and the report lists it under the table.
    """
    values: dict[str, set[float]] = {}
    counts: dict[str, int] = {}
    for r in runs:
        if not r["converged"]:
            continue
        for k, v in (r.get("measures") or {}).items():
            if v is not None and math.isfinite(float(v)):
                values.setdefault(k, set()).add(float(v))
                counts[k] = counts.get(k, 0) + 1
    return sorted(k for k, v in values.items() if len(v) == 1 and counts[k] >= 2)


def analyse(
    runs: list[dict[str, Any]],
    paths: list[dict[str, Any]],
    *,
    include_unconverged: bool = False,
    correction: str = "bh",
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
) -> dict[str, Any]:
    """The study of the runs: the document behind ``report.json`` (module docstring).

    Args:
        runs: the runs from :func:`landscape.report.read.collect`.
        paths: the paths from :func:`landscape.report.read.collect`.
        include_unconverged: also aggregate and rank complete runs that missed the target.
        correction: ``"bh"`` (Benjamini-Hochberg) or ``"holm"``.
        n_boot: bootstrap samples of each tau's interval.
        n_perm: permutations of each tau's p-value.
        seed: of the bootstrap and the permutations.

    Returns:
        ``{"design", "counts", "runs", "configs", "rankings", "good_vs_bad",
        "good_vs_bad_one_init", "constant_measures", "summary"}`` (``good_vs_bad``: the
        settings with included runs from both inits; ``good_vs_bad_one_init``: the others, by
        name; ``constant_measures``: those of :func:`constant_measures`, not ranked; a
        configuration's ``milestones``: the history milestones any included run reached);
        ``summary`` holds the sentences of :func:`landscape.report.sentences.summarise`.
    """
    design = _design(
        runs,
        include=include_unconverged,
        correction=correction,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    complete = [r for r in runs if r["status"] == "complete"]
    included = {r["run"] for r in complete if include_unconverged or r["converged"] is not False}
    study_runs = [
        {
            "run": r["run"],
            "config": r["config"],
            "seed": r["seed"],
            "axes": r["study_axes"],
            "converged": r["run"] in included,
            "gap": r["gap"],
            "test_acc": r["test_acc"],
            "train_loss": r["train_loss"],
            "steps": r["steps"],
            "measures": {k: v for k, v in r["measures"].items() if v is not None},
            "milestones": dict(r.get("milestones") or {}),
        }
        for r in complete
    ]
    unconverged: dict[str, int] = {}
    for r in complete:
        if r["converged"] is False:
            unconverged[r["config"]] = unconverged.get(r["config"], 0) + 1
    reached = sorted(
        {
            k
            for r in study_runs
            if r["converged"]
            for k, v in r["milestones"].items()
            if v is not None
        }
    )
    configs = []
    for c in configurations(study_runs):
        members = [r for r in study_runs if r["config"] == c["config"] and r["converged"]]
        configs.append(
            {
                "config": c["config"],
                "axes": c["axes"],
                "n": c["n"],
                "n_unconverged": unconverged.get(c["config"], 0),
                "runs": c["runs"],
                "seeds": c["seeds"],
                **{k: _stat(c[k]) for k in ("test_acc", "gap", "train_loss", "steps")},
                "measures": {m: _stat(s) for m, s in c["measures"].items()},
                "milestones": {
                    k: _stat(mean_ci([r["milestones"].get(k) for r in members])) for k in reached
                },
            }
        )
    constant = constant_measures(study_runs)
    ranked = rank_all(
        study_runs,
        sorted({k for r in study_runs if r["converged"] for k in r["measures"]} - set(constant)),
        baselines=BASELINES,
        method=correction,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    base = [r for r in ranked["rows"] if r["baseline"]]
    measures = sorted(
        (r for r in ranked["rows"] if not r["baseline"]),
        key=lambda r: (r["tau"] is None, -abs(r["tau"] or 0.0), r["measure"]),
    )
    gvb = _good_vs_bad(runs, paths, included, study_runs)
    both = [g for g in gvb if g["random_init"]["n"] and g["bad_init"]["n"]]
    doc = {
        "design": {**design, "n_tests": ranked["n_tests"]},
        "counts": {
            "runs": len(runs),
            "complete": len(complete),
            "included": len(included),
            "unconverged": sum(r["converged"] is False for r in complete),
            "configs": sum(c["n"] > 0 for c in configs),
        },
        "runs": [_run_doc(r, r["run"] in included) for r in runs],
        "configs": configs,
        "rankings": base + measures,
        "good_vs_bad": both,
        # measures with one value on every included run: nothing to rank, left out
        "constant_measures": constant,
        # optimizer settings with included runs from one of the two inits only
        "good_vs_bad_one_init": [g["optimizer"] for g in gvb if g not in both],
    }
    doc["summary"] = summarise(doc)
    return doc
