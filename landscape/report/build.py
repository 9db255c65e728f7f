r"""The report of a landscape file: the runs side by side, the measures ranked against the
generalisation gap, the figures; written as Markdown and HTML.

:func:`report` reads the file (no model code, no training data), builds the tables as data
(:class:`Report`) and writes ``report.md`` and ``report.html`` into ``out_dir``, each
atomically (a temporary file renamed into place: a reader never sees half a report).

**Definitions.**

- *Generalisation gap* (``gap``): training accuracy minus test accuracy of the final model
  (``final_metrics`` of the run, else the last history row). The *loss gap* is test loss minus
  training loss. Both are None where a value is missing.
- *Runs ranked*: only runs with status ``"complete"``; others are listed, not ranked.
- *Measures*: every number the run's probes hold at the final parameters (probes computed at
  another checkpoint are left out): each key of the ``measures`` probe except ``loss`` and
  ``accuracy`` (the fit itself), ``lambda_max`` (the largest eigenvalue of a
  ``hessian_eigenvalues`` probe that looked for the largest), ``hessian_trace``, and each
  sharpness probe by its stored name (the value; for PAC-Bayes the flatness ``1 / sigma^2``).
  A probe stored under a name other than its default gets the name in brackets:
  ``lambda_max [hessian_top10]``.
- *Kendall's tau* of each measure with the gap over the ranked runs, and the granulated tau
  per sweep axis and ``Psi`` where runs carry sweep axes (``attrs["sweep"]["axes"]``; runs
  of different sweeps never share a group): :mod:`landscape.report.ranking` says how ties, missing
  values and small groups are handled. Runs without axes take part in the plain tau only.
- *Barriers*: the loss barrier ``max_alpha L(alpha) - chord`` of every stored path between
  two runs (``/compare``) and from a run's init to its final parameters.

Missing values are shown as "–", never as 0.

Examples:
    >>> r = report("runs.h5")                       # doctest: +SKIP
    >>> r.markdown, r.html, r.ranking[0].measure, r.ranking[0].tau.tau
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from landscape.report.ranking import granulated_tau, kendall_tau
from landscape.report.render import (
    _PICK,
    _SKIP_KEYS,
    MISSING,
    RUN_COLUMNS,
    MeasureRank,
    Table,
    _blocks,
    _fmt,
    _html,
    _markdown,
    _write_atomic,
)
from landscape.store.file import Store, StoreError

__all__ = ["MISSING", "MeasureRank", "Report", "Table", "report"]

log = logging.getLogger("landscape")


@dataclass(frozen=True)
class Report:
    """What :func:`report` built and wrote.

    Attributes:
        file: the landscape file. out_dir: where the report went.
        runs: a row per run, :data:`RUN_COLUMNS` (raw values; None where missing).
        barriers: a row per stored path: from, to, kind, barrier, accuracy barrier,
            test barrier, where it is stored.
        ranking: a :class:`MeasureRank` per measure, sorted by ``|tau|`` with the gap
            (undefined taus last).
        axes: the sweep axes behind the granulated tau (empty: plain tau only).
        figures: the image files, as returned by :func:`landscape.plot.all_figures`.
        notes: what the reader should know (runs left out, figures unavailable, ...).
        markdown, html: the files written.
    """

    file: str
    out_dir: Path
    runs: Table
    barriers: Table
    ranking: tuple[MeasureRank, ...]
    axes: tuple[str, ...]
    figures: tuple[Path, ...]
    notes: tuple[str, ...]
    markdown: Path
    html: Path
    n_ranked: int = 0


# ------------------------------------------------------------------------------ reading
def _num(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _final_metrics(store: Store, run: str, attrs: dict) -> dict[str, float | None]:
    final = attrs.get("final_metrics")
    final = dict(final) if isinstance(final, dict) else {}
    keys = ("train_loss", "train_acc", "test_loss", "test_acc")
    if any(final.get(k) is None for k in keys):
        hist = store.history(run)
        for k in keys:
            if final.get(k) is None and k in hist and len(hist[k]):
                final[k] = float(hist[k][-1])
    return {k: _num(final.get(k)) for k in keys}


def _probe_measures(
    store: Store, run: str, names: tuple[str, ...], notes: list[str]
) -> dict[str, float | None]:
    from probes.curvature.results import Eigenvalues, Trace
    from probes.implicit_bias.results import Measures
    from probes.sharpness.results import AverageCase, Epsilon, PacBayes, WorstCase

    out: dict[str, float | None] = {}

    def put(key: str, record: str, default: str, value: Any) -> None:
        out[key if record == default else f"{key} [{record}]"] = _num(value)

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
            elif probe == "hessian.trace":
                put("hessian_trace", name, "hessian_trace", Trace.from_record(rec).value)
            elif probe == "measures":
                for key, value in Measures.from_record(rec).values.items():
                    if key not in _SKIP_KEYS:
                        put(key, name, "measures", value)
            elif probe in ("sharpness.worst_case", "sharpness.average_case", "sharpness.epsilon"):
                cls = {
                    "sharpness.worst_case": WorstCase,
                    "sharpness.average_case": AverageCase,
                    "sharpness.epsilon": Epsilon,
                }[probe]
                put(name, name, name, cls.from_record(rec).value)
            elif probe == "sharpness.pac_bayes":
                put(name, name, name, PacBayes.from_record(rec).flatness)
        except (ValueError, KeyError, TypeError) as err:
            notes.append(f"run {run}: probe {name} could not be read ({err}); left out")
    return out


def _barriers(store: Store, runs: list[str], notes: list[str]) -> list[dict]:
    from probes.paths.results import Path as PathResult

    rows = []
    sources = [(None, name) for name in store.compares()]
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
        ends = rec.attrs.get("ends") if isinstance(rec.attrs.get("ends"), dict) else {}
        a, b = ends.get("from") or {}, ends.get("to") or {}
        rows.append(
            {
                "a": str(a.get("run", run or "?")),
                "a_which": str(a.get("which", "?")),
                "b": str(b.get("run", run or "?")),
                "b_which": str(b.get("which", "?")),
                "kind": p.kind,
                "barrier": p.barrier,
                "accuracy barrier": p.accuracy_barrier,
                "test barrier": p.test_barrier,
                "stored as": f"compare/{name}" if run is None else f"runs/{run}/paths/{name}",
            }
        )
    return rows


def _optimizer(value: Any) -> str | None:
    from landscape.store.summary import _optimizer as label

    if isinstance(value, str):
        return value
    return label(value) if isinstance(value, dict) else None


def _axes_text(axes: dict | None) -> str | None:
    if not axes:
        return None
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(axes.items()))


def _collect(s: Store, notes: list[str]) -> tuple[list[dict], list[dict]]:
    runs = []
    names = s.runs()
    for run in names:
        info = s.info(run)
        a = info.attrs
        sweep = a.get("sweep") if isinstance(a.get("sweep"), dict) else None
        axes = sweep.get("axes") if sweep and isinstance(sweep.get("axes"), dict) else None
        fm = _final_metrics(s, run, a)
        gap = (
            fm["train_acc"] - fm["test_acc"]
            if None not in (fm["train_acc"], fm["test_acc"])
            else None
        )
        loss_gap = (
            fm["test_loss"] - fm["train_loss"]
            if None not in (fm["train_loss"], fm["test_loss"])
            else None
        )
        runs.append(
            {
                "run": run,
                "status": info.status,
                "optimizer": _optimizer(a.get("optimizer")),
                "axes": axes,
                "sweep": sweep.get("name") if sweep else None,
                "batch size": a.get("batch_size"),
                "seed": a.get("seed"),
                **fm,
                "gap": gap,
                "loss gap": loss_gap,
                "measures": _probe_measures(s, run, info.probes, notes),
            }
        )
    barriers = _barriers(s, names, notes)
    return runs, barriers


# ------------------------------------------------------------------------------ tables
def _run_table(runs: list[dict], barriers: list[dict]) -> Table:
    rows = []
    for r in runs:
        m = r["measures"]
        picked = {
            col: next((m[k] for k in keys if m.get(k) is not None), None)
            for col, keys in _PICK.items()
        }
        mine = []
        for p in barriers:
            if r["run"] not in (p["a"], p["b"]) or p["barrier"] is None:
                continue
            label = (
                f"{p['a_which']}->{p['b_which']}"
                if p["a"] == p["b"]
                else p["b"]
                if p["a"] == r["run"]
                else p["a"]
            )
            kind = "" if p["kind"] == "linear" else f" ({p['kind']})"
            mine.append(f"{label} {_fmt(p['barrier'])}{kind}")
        values = {
            **r,
            "axes": _axes_text(r["axes"]),
            "train acc": r["train_acc"],
            "train loss": r["train_loss"],
            "test loss": r["test_loss"],
            "test acc": r["test_acc"],
            **picked,
            "barriers": "; ".join(mine) if mine else None,
        }
        rows.append(tuple(values.get(c) for c in RUN_COLUMNS))
    return Table(RUN_COLUMNS, tuple(rows))


def _rank(runs: list[dict], notes: list[str]) -> tuple[tuple[MeasureRank, ...], tuple[str, ...]]:
    ranked = [r for r in runs if r["status"] == "complete"]
    left = [r["run"] for r in runs if r["status"] != "complete"]
    if left:
        notes.append(f"not ranked (status not complete): {', '.join(left)}")
    with_axes = [r for r in ranked if r["axes"]]
    axes = tuple(sorted({k for r in with_axes for k in r["axes"]}))
    if not with_axes:
        notes.append("no run carries sweep axes: plain Kendall tau only, no granulated tau")
    elif len(with_axes) < len(ranked):
        notes.append(
            f"{len(ranked) - len(with_axes)} ranked run(s) without sweep axes take "
            "part in the plain tau only"
        )
    names = sorted({k for r in ranked for k in r["measures"]})
    gap = [r["gap"] for r in ranked]
    loss_gap = [r["loss gap"] for r in ranked]
    out = []
    for name in names:
        values = [r["measures"].get(name) for r in ranked]
        gran = (
            granulated_tau(
                values,
                gap,
                [r["axes"] or None for r in ranked],
                strata=[r["sweep"] for r in ranked],
            )
            if with_axes
            else None
        )
        out.append(MeasureRank(name, kendall_tau(values, gap), kendall_tau(values, loss_gap), gran))
    out.sort(key=lambda m: (m.tau.tau is None, -abs(m.tau.tau or 0.0), m.measure))
    return tuple(out), axes


def _figures(file: Store, out_dir: Path) -> tuple[tuple[Path, ...], str | None]:
    try:
        from landscape import plot

        paths = plot.all_figures(file, out_dir, formats=("png",))
    except (ImportError, AttributeError) as err:
        return (), f"figures unavailable: {err}"
    except (ValueError, TypeError, RuntimeError, OSError, KeyError) as err:
        log.warning("report: figures failed: %s", err)
        return (), f"figures failed: {type(err).__name__}: {err}"
    return tuple(Path(p) for p in paths), None


# ------------------------------------------------------------------------------ entry point
def report(
    file: str | os.PathLike, out_dir: str | os.PathLike | None = None, *, figures: bool = True
) -> Report:
    """Build the report of a landscape file and write ``report.md`` and ``report.html``.

    Args:
        file: the landscape file (read only; another process may be writing it).
        out_dir: where to write (created if missing); default ``<file stem>_report`` next to
            the file. Figures go to ``out_dir/figures``.
        figures: render the figures with :func:`landscape.plot.all_figures` (PNG) and embed
            them; without the plotting module the report says "figures unavailable".

    Returns:
        :class:`Report`: the tables as data and the paths written.

    Raises:
        StoreError: not a landscape file. FileNotFoundError: no such file.
    """
    file = os.fspath(file)
    if not os.path.exists(file):
        raise FileNotFoundError(f"report: {file} does not exist")
    out = (
        Path(out_dir) if out_dir is not None else Path(file).with_name(Path(file).stem + "_report")
    )
    notes: list[str] = []
    # one consistent snapshot for the tables and the figures; a sweep may write meanwhile
    with Store(file, snapshot=True) as snap:
        out.mkdir(parents=True, exist_ok=True)
        runs, barrier_rows = _collect(snap, notes)
        figs, figure_note = _figures(snap, out / "figures") if figures else ((), None)
    run_table = _run_table(runs, barrier_rows)
    cols = ("from", "to", "kind", "barrier", "accuracy barrier", "test barrier", "stored as")
    barriers = Table(
        cols,
        tuple(
            (f"{p['a']}:{p['a_which']}", f"{p['b']}:{p['b_which']}", *(p[c] for c in cols[2:]))
            for p in barrier_rows
        ),
    )
    ranking, axes = _rank(runs, notes)
    n_ranked = sum(r["status"] == "complete" for r in runs)
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    blocks = _blocks(
        {
            "file": file,
            "runs": run_table,
            "barriers": barriers,
            "ranking": ranking,
            "axes": axes,
            "figures": figs,
            "figure_note": figure_note,
            "notes": notes,
            "out_dir": out,
            "n_ranked": n_ranked,
            "when": when,
        }
    )
    md, htm = out / "report.md", out / "report.html"
    _write_atomic(md, _markdown(blocks))
    _write_atomic(htm, _html(blocks, f"Landscape report: {Path(file).name}"))
    if figure_note:
        notes.append(figure_note)
    return Report(
        file=file,
        out_dir=out,
        runs=run_table,
        barriers=barriers,
        ranking=ranking,
        axes=axes,
        figures=figs,
        notes=tuple(notes),
        markdown=md,
        html=htm,
        n_ranked=n_ranked,
    )
