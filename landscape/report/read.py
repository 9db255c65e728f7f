"""What the report reads from a landscape file: each run's fit, measures, stopping and paths.

:func:`collect` returns plain dicts, one a run, and one a stored path between runs; the
report's tables and statistics are built from them. NumPy and h5py only (the probes' result
types are torch-free).

A run's study fields:

- ``config``: the configuration, runs that differ only in their seed.
  ``attrs["sweep"]["config"]`` where the sweep wrote it; else the sweep axes without any
  seed-like axis (:data:`SEED_AXES`) as text; a run without sweep axes is its own
  configuration. Runs of different sweeps never share one (the sweep's name prefixes the
  configuration when a file holds several sweeps).
- ``study_axes``: the sweep axes without the seed-like ones (and, with several sweeps,
  ``sweep``: the sweep's name), the hyperparameters the granulated tau and the CMI condition on.
- ``seed``: ``attrs["sweep"]["seed"]``, else the seed-like axis, else ``attrs["seed"]``.
- ``converged``: ``attrs["converged"]`` (True: the run reached the sweep-wide stopping target),
  None where the file has no such flag (a sweep without a stopping target).
- ``stop_reason``, ``steps``: why and when training stopped (``attrs``).
- ``stop``: the sweep-wide stopping target (``attrs["sweep"]["stop"]``), or None.
- ``milestones``: from the history, the first recorded step at which the training accuracy
  is 1 and the first at which the test accuracy is at least 0.95 (:data:`MILESTONES`; None
  where the history never gets there; resolution: the history's interval), and the test
  accuracy at the first of them; beside them the values of
  :func:`landscape.report.history_metrics.details` (late-window sharpness over its threshold,
  parameter norms at the milestones, outlier ratios, the density's bulk), None where the run
  lacks what one needs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from landscape.report.history_metrics import details
from landscape.report.render import _SKIP_KEYS, _fmt
from landscape.store.file import Store, StoreError
from landscape.store.summary import _optimizer as optimizer_text
from probes.curvature.outliers import outliers
from probes.curvature.results import Eigenvalues, Trace
from probes.implicit_bias.results import Measures
from probes.paths.results import Path as PathResult
from probes.sharpness.results import AverageCase, Epsilon, PacBayes, WorstCase

__all__ = ["MILESTONES", "SEED_AXES", "axes_text", "collect", "milestones", "number"]

SEED_AXES = ("train.seed", "seed")
"""Sweep axes that hold a seed: runs that differ only in them form one configuration."""

MILESTONES = {"step_train_acc_1": ("train_acc", 1.0), "step_test_acc_0.95": ("test_acc", 0.95)}
"""name -> (history column, threshold): the first step at which the column reaches it."""

_SHARPNESS: dict[str, Any] = {
    "sharpness.worst_case": WorstCase,
    "sharpness.average_case": AverageCase,
    "sharpness.epsilon": Epsilon,
}


def number(value: Any) -> float | None:
    """A finite-or-infinite float, or None for None, NaN, booleans and non-numbers."""
    if value is None or isinstance(value, (bool, np.bool_)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _value_text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value + 0.0)  # the shortest text that reads back as the same number
    return _fmt(value)


def axes_text(axes: Mapping[str, Any] | None) -> str | None:
    """Axes as ``"k=v, k=v"`` (sorted by key, numbers in full), or None without axes."""
    if not axes:
        return None
    return ", ".join(f"{k}={_value_text(v)}" for k, v in sorted(axes.items()))


def _config_label(config: Any) -> str:
    """The sweep's configuration id as text; an id that is a JSON object of axes, as axes."""
    if isinstance(config, str) and config.startswith("{"):
        try:
            parsed = json.loads(config)
        except ValueError:
            return config
        if isinstance(parsed, dict):
            return axes_text(parsed) or "(no axis)"
    return str(config)


def _final_metrics(store: Store, run: str, attrs: dict) -> dict[str, float | None]:
    final = attrs.get("final_metrics")
    final = dict(final) if isinstance(final, dict) else {}
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    if any(final.get(k) is None for k in keys):
        hist = store.history(run)
        for k in keys:
            if final.get(k) is None and k in hist and len(hist[k]):
                final[k] = float(hist[k][-1])
    return {k: number(final.get(k)) for k in keys}


def _probe_measures(
    store: Store, run: str, names: tuple[str, ...], notes: list[str]
) -> dict[str, float | None]:
    out: dict[str, float | None] = {}

    def put(key: str, record: str, default: str, value: Any) -> None:
        out[key if record == default else f"{key} [{record}]"] = number(value)

    for name in names:
        try:
            rec = store.record(run, "probes", name)
        except StoreError:
            continue
        probe = rec.attrs.get("probe")
        if rec.attrs.get("checkpoint", "final") != "final" or probe is None:
            continue  # not at the minimum, or a series recorded along training
        try:
            if probe == "hessian.eigenvalues":
                r = Eigenvalues.from_record(rec)
                if r.which != "smallest" and len(r.values):
                    put("lambda_max", name, "hessian_eigenvalues", np.max(r.values))
                    top = np.sort(np.asarray(r.values, dtype=float))[::-1]
                    count = outliers(top).count if len(top) > 1 else None
                    put("hessian_outliers", name, "hessian_eigenvalues", count)
            elif probe == "class_mean_overlap":
                # the record's scalars (the result type is torch's side of the probes)
                for key in ("overlap", "chance"):
                    if key not in rec.attrs:
                        raise KeyError(key)
                    put(f"class_mean_{key}", name, "class_mean_overlap", rec.attrs[key])
            elif probe == "hessian.trace":
                put("hessian_trace", name, "hessian_trace", Trace.from_record(rec).value)
            elif probe == "measures":
                for key, value in Measures.from_record(rec).values.items():
                    if key not in _SKIP_KEYS:
                        put(key, name, "measures", value)
            elif probe in _SHARPNESS:
                put(name, name, name, _SHARPNESS[probe].from_record(rec).value)
            elif probe == "sharpness.pac_bayes":
                put(name, name, name, PacBayes.from_record(rec).flatness)
        except (ValueError, KeyError, TypeError) as err:
            notes.append(f"run {run}: probe {name} could not be read ({err}); left out")
    return out


def _barriers(store: Store, runs: list[str], notes: list[str]) -> list[dict]:
    rows = []
    sources: list[tuple[str | None, str]] = [(None, name) for name in store.compares()]
    sources += [(run, name) for run in runs for name in store.info(run).paths]
    for run, name in sources:
        try:
            rec = store.record(run, "paths", name)
            if not str(rec.attrs.get("probe", "")).startswith("interpolation."):
                continue
            p = PathResult.from_record(rec)
        except (ValueError, KeyError, TypeError) as err:
            notes.append(f"path {name} could not be read ({err}); left out")
            continue
        ends = rec.attrs.get("ends")
        ends = ends if isinstance(ends, dict) else {}
        a, b = ends.get("from") or {}, ends.get("to") or {}
        settings = rec.attrs.get("settings")
        kind = settings.get("kind") if isinstance(settings, dict) else None
        if not isinstance(kind, str):  # a weight-matched line is a linear record
            kind = "aligned" if isinstance(p.info.get("aligned"), dict) else p.kind
        rows.append(
            {
                "a": str(a.get("run", run or "?")),
                "a_which": str(a.get("which", "?")),
                "b": str(b.get("run", run or "?")),
                "b_which": str(b.get("which", "?")),
                "kind": kind,
                "barrier": p.barrier,
                "accuracy barrier": p.accuracy_barrier,
                "test barrier": p.test_barrier,
                "stored as": f"compare/{name}" if run is None else f"runs/{run}/paths/{name}",
            }
        )
    return rows


def milestones(history: Mapping[str, Any]) -> dict[str, float | None]:
    """The first recorded step at which each of :data:`MILESTONES` is reached (else None).

    Args:
        history: columns of a run's history (``step`` and the accuracies), equal lengths.

    Returns:
        name -> step (a float), None where the column is missing or never reaches the
        threshold (an accuracy of 1 within 1e-9 counts as 1); and ``test_acc_at_train_acc_1``:
        the test accuracy recorded at the first of them (how far generalisation lags the fit).
    """
    out: dict[str, float | None] = {}
    steps = np.asarray(history.get("step", ()), dtype=float)
    first: dict[str, int] = {}
    for name, (column, threshold) in MILESTONES.items():
        values = np.asarray(history.get(column, ()), dtype=float)
        ok = len(values) > 0 and len(values) == len(steps)
        hit = np.flatnonzero(values >= threshold - 1e-9) if ok else np.zeros(0, np.int64)
        out[name] = float(steps[hit[0]]) if len(hit) else None
        if len(hit):
            first[name] = int(hit[0])
    test = np.asarray(history.get("test_acc", ()), dtype=float)
    at = first.get("step_train_acc_1")
    out["test_acc_at_train_acc_1"] = (
        number(test[at]) if at is not None and len(test) == len(steps) else None
    )
    return out


def _with_details(s: Store, run: str, hist: Mapping[str, Any], notes: list[str]) -> dict:
    out: dict[str, float | None] = milestones(hist)
    try:
        out.update(details(s, run, hist, out))
    except (ValueError, KeyError, TypeError) as err:
        notes.append(f"run {run}: values along training could not be read ({err}); left out")
    return out


def _optimizer(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    return optimizer_text(value) if isinstance(value, dict) else None


def _seed_like(key: str) -> bool:
    return key in SEED_AXES


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _run(s: Store, run: str, notes: list[str]) -> dict[str, Any]:
    info = s.info(run)
    a = info.attrs
    sweep = a.get("sweep") if isinstance(a.get("sweep"), dict) else None
    axes = sweep.get("axes") if sweep and isinstance(sweep.get("axes"), dict) else None
    fm = _final_metrics(s, run, a)
    seed = sweep.get("seed") if sweep else None
    if seed is None and axes:
        seed = next((v for k, v in axes.items() if _seed_like(str(k))), None)
    if seed is None:
        seed = a.get("seed")
    converged = a.get("converged")
    stop = sweep.get("stop") if sweep else None
    hist = s.history(run)
    steps = number(a.get("steps"))
    if steps is None:
        steps = number(hist["step"][-1]) if "step" in hist and len(hist["step"]) else None
    return {
        "run": run,
        "status": info.status,
        "optimizer": _optimizer(a.get("optimizer")),
        "axes": axes,
        "sweep": sweep.get("name") if sweep else None,
        "sweep_config": sweep.get("config") if sweep else None,
        "batch size": a.get("batch_size"),
        "seed": seed,
        **fm,
        "gap": _difference(fm["train_acc"], fm["test_acc"]),
        "loss gap": _difference(fm["test_loss"], fm["train_loss"]),
        "converged": bool(converged) if isinstance(converged, (bool, np.bool_)) else None,
        "stop_reason": a.get("stop_reason"),
        "steps": steps,
        "stop": dict(stop) if isinstance(stop, dict) else None,
        "measures": _probe_measures(s, run, info.probes, notes),
        "milestones": _with_details(s, run, hist, notes),
    }


def _assign_configs(runs: list[dict[str, Any]], notes: list[str]) -> None:
    """Each run's ``config`` and ``study_axes`` (module docstring)."""
    sweeps = {r["sweep"] for r in runs if r["axes"] is not None}
    several = len(sweeps) > 1
    for r in runs:
        if r["axes"] is None:
            r["config"], r["study_axes"], r["init"] = r["run"], {}, None
            continue
        axes = {str(k): v for k, v in r["axes"].items() if not _seed_like(str(k))}
        r["init"] = axes.get("init")
        if r["sweep_config"] is not None:
            label: str | None = _config_label(r["sweep_config"])
        else:
            label = axes_text(axes)
        label = label if label is not None else str(r["sweep"] or "")
        r["config"] = f"{r['sweep']}: {label}" if several else label
        if several:
            axes["sweep"] = r["sweep"]
        r["study_axes"] = axes
    # two configuration ids shown alike (e.g. "1" and 1): the ids as they are
    ids: dict[str, set[str]] = {}
    for r in runs:
        if r["sweep_config"] is not None:
            ids.setdefault(r["config"], set()).add(repr((r["sweep"], r["sweep_config"])))
    for r in runs:
        if len(ids.get(r["config"], ())) > 1:
            raw = str(r["sweep_config"])
            r["config"] = f"{r['sweep']}: {raw}" if several else raw
    # a configuration's runs differ only in their seed: an axis that varies within one is
    # not a hyperparameter of it (e.g. another seed-like axis); it is dropped everywhere
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["config"], []).append(r)
    varying = sorted(
        {
            k
            for members in by.values()
            for k in {k for m in members for k in m["study_axes"]}
            if len({repr(m["study_axes"].get(k)) for m in members}) > 1
        }
    )
    if varying:
        notes.append(
            f"axes that vary between runs of one configuration, treated as seeds and left out "
            f"of the granulated tau and the CMI: {', '.join(varying)}"
        )
        for r in runs:
            r["study_axes"] = {k: v for k, v in r["study_axes"].items() if k not in varying}


def collect(s: Store, notes: list[str]) -> tuple[list[dict], list[dict]]:
    """Every run of the file and every stored path between runs or along one.

    Args:
        s: the open store (a snapshot).
        notes: where problems met while reading are appended (a probe that cannot be read).

    Returns:
        ``(runs, paths)``: a dict a run (the module docstring's fields, the final metrics,
        ``gap``, ``loss gap`` and ``measures``), a dict a path (its ends, kind and barriers).
    """
    names = s.runs()
    runs = [_run(s, run, notes) for run in names]
    _assign_configs(runs, notes)
    return runs, _barriers(s, names, notes)
