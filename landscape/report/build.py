r"""The report of a landscape file: the study of its runs, their measures against the gap.

:func:`report` reads the file (no model code, no training data), builds the tables as data
(:class:`Report`) and writes ``report.md``, ``report.html``, ``report.json``,
``contrasts.csv`` and ``per_seed.csv`` into ``out_dir``, each atomically (a temporary file
renamed into place: a reader never sees half a report).

**Definitions.**

- *Generalisation gap* (``gap``): training accuracy minus test accuracy of the final model
  (``final_metrics`` of the run, else the last history row). The *loss gap* is test loss minus
  training loss. Both are None where a value is missing.
- *Included runs*: complete runs that reached the sweep-wide stopping target
  (``attrs["converged"]``); a run that missed it is listed with its ``stop_reason`` and left
  out of every aggregate and ranking unless ``include_unconverged``. A file whose runs carry
  no ``converged`` flag (a sweep without a matched stopping target) includes every complete
  run, and the report says that the rankings then do not control for how far runs trained.
  Runs whose status is not ``"complete"`` are listed, never included.
- *Configurations* and *seeds*: :mod:`landscape.report.read`.
- *Measures*: every number the run's probes hold at the final parameters (probes computed at
  another checkpoint are left out): each key of the ``measures`` probe except ``loss`` and
  ``accuracy`` (the fit itself), ``lambda_max`` (the largest eigenvalue of a
  ``hessian_eigenvalues`` probe that looked for the largest, and ``hessian_outliers``: the
  count of its outliers by :func:`probes.curvature.outliers.outliers`, rule ``"ratio"``),
  ``class_mean_overlap`` and ``class_mean_chance`` (a ``class_mean_overlap`` probe),
  ``hessian_trace``, and each
  sharpness probe by its stored name (the value; for PAC-Bayes the flatness ``1 / sigma^2``).
  A probe stored under a name other than its default gets the name in brackets:
  ``lambda_max [hessian_top10]``.
- *The study* (configurations with intervals, the rankings with intervals, adjusted p-values,
  baselines, expected signs, Psi and CMI, good vs bad minima): :mod:`landscape.report.analysis`
  on :mod:`landscape.report.study` and :mod:`landscape.report.study_rank`; ``report.json``
  holds it (:attr:`Report.study`).
- :attr:`Report.ranking` keeps the plain per-run Kendall tau with the gap and the loss gap
  and the granulated tau per axis (:mod:`landscape.report.ranking`) over the included runs.
- *Barriers*: the loss barrier ``max_alpha L(alpha) - chord`` of every stored path between
  two runs (``/compare``) and from a run's init to its final parameters, each path under its
  kind (``linear``, ``aligned``: the line after weight matching, ``bezier``); over the pairs
  of seeds of each configuration, each kind's barriers as mean and Student-t interval
  (:mod:`landscape.report.paths_summary`; ``report.json``'s ``path_barriers``), and the
  share of the linear barrier that weight matching removes, ``1 - aligned / linear`` a pair,
  over the pairs (``matching_share``).
- *Values along training*: the history milestones and the values of
  :mod:`landscape.report.history_metrics` (sharpness over its stability threshold in the late
  window, parameter norms at the milestones, outlier ratios, the density's bulk), averaged by
  configuration like the measures but not ranked (``report.json``'s ``milestones``).
- *Seeds behind the means*: each configuration's values a seed (:mod:`landscape.report.seeds`;
  ``per_seed.csv``). *Differences*: for every pair of configurations and every metric, the
  difference of means with Welch's interval (:mod:`landscape.report.contrasts`;
  ``report.json``'s ``contrasts``, ``contrasts.csv``).

Missing values are shown as "–" in the Markdown and HTML, ``null`` in the JSON, never as 0.

Examples:
    >>> r = report("runs.h5")                       # doctest: +SKIP
    >>> r.markdown, r.json, r.study["rankings"][0]["tau"]
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from landscape.report import interactive as plotly_page
from landscape.report.analysis import analyse, to_json
from landscape.report.contrasts import contrast_blocks, contrasts, contrasts_csv
from landscape.report.interactive_surfaces import surface_blocks
from landscape.report.paths_summary import (
    barrier_blocks,
    matching_share,
    path_barriers,
    share_blocks,
)
from landscape.report.ranking import granulated_tau, kendall_tau
from landscape.report.read import axes_text, collect
from landscape.report.render import (
    _PICK,
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
from landscape.report.render_study import study_blocks
from landscape.report.seeds import seed_blocks, seeds_csv
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
        ranking: a :class:`MeasureRank` per measure over the included runs, sorted by
            ``|tau|`` with the gap (undefined taus last).
        axes: the sweep axes (seeds left out) behind the granulated tau (empty: plain tau only).
        figures: the image files, as returned by :func:`landscape.plot.all_figures`.
        notes: what the reader should know (runs left out, figures unavailable, ...).
        markdown, html: the files written.
        n_ranked: the runs included in the aggregates and rankings.
        json: ``report.json``. study: its content (:func:`landscape.report.analysis.analyse`
            plus ``file``, ``written``, ``notes``).
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
    json: Path | None = None
    study: Mapping[str, Any] = field(default_factory=dict)


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
            "axes": axes_text(r["axes"]),
            "stop reason": r["stop_reason"],
            "train acc": r["train_acc"],
            "train loss": r["train_loss"],
            "test loss": r["test_loss"],
            "test acc": r["test_acc"],
            **picked,
            "barriers": "; ".join(mine) if mine else None,
        }
        rows.append(tuple(values.get(c) for c in RUN_COLUMNS))
    return Table(RUN_COLUMNS, tuple(rows))


def _rank(
    runs: list[dict], included: set[str], notes: list[str], constant: list[str]
) -> tuple[tuple[MeasureRank, ...], tuple[str, ...]]:
    ranked = [r for r in runs if r["run"] in included]
    left = [r["run"] for r in runs if r["status"] != "complete"]
    if left:
        notes.append(f"not ranked (status not complete): {', '.join(left)}")
    missed = [r["run"] for r in runs if r["status"] == "complete" and r["run"] not in included]
    if missed:
        notes.append(f"not ranked (did not reach the stopping target): {', '.join(missed)}")
    with_axes = [r for r in ranked if r["study_axes"]]
    axes = tuple(sorted({k for r in with_axes for k in r["study_axes"]}))
    if not with_axes:
        notes.append("no run carries sweep axes: plain Kendall tau only, no granulated tau")
    elif len(with_axes) < len(ranked):
        notes.append(
            f"{len(ranked) - len(with_axes)} ranked run(s) without sweep axes take "
            "part in the plain tau only"
        )
    names = sorted({k for r in ranked for k in r["measures"]} - set(constant))
    gap = [r["gap"] for r in ranked]
    loss_gap = [r["loss gap"] for r in ranked]
    out = []
    for name in names:
        values = [r["measures"].get(name) for r in ranked]
        gran = (
            granulated_tau(
                values,
                gap,
                [r["study_axes"] or None for r in ranked],
                strata=[r["sweep"] for r in ranked],
            )
            if with_axes
            else None
        )
        out.append(MeasureRank(name, kendall_tau(values, gap), kendall_tau(values, loss_gap), gran))
    out.sort(key=lambda m: (m.tau.tau is None, -abs(m.tau.tau or 0.0), m.measure))
    return tuple(out), axes


@contextlib.contextmanager
def _writing(where: Path) -> Iterator[None]:
    """An operating system's error that names no file (a full disk) names ``where``."""
    try:
        yield
    except OSError as err:
        if err.filename is not None:
            raise
        raise OSError(err.errno, err.strerror or str(err), os.fspath(where)) from None


def _figures(file: Store, out_dir: Path) -> tuple[tuple[Path, ...], str | None]:
    try:
        # matplotlib only when figures are drawn; a missing plotting module is reported
        from landscape import plot  # noqa: PLC0415

        draw: Any = plot.all_figures
        with _writing(out_dir):
            paths = draw(file, out_dir, formats=("png",))
    except (ImportError, AttributeError) as err:
        return (), f"figures unavailable: {err}"
    except (OSError, StoreError):  # a figure not written (a full disk), a damaged file: fail
        raise
    except (ValueError, TypeError, RuntimeError, KeyError) as err:
        log.warning("report: figures failed: %s", err)
        return (), f"figures failed: {type(err).__name__}: {err}"
    return tuple(Path(p) for p in paths), None


# ------------------------------------------------------------------------------ entry point
def report(
    file: str | os.PathLike,
    out_dir: str | os.PathLike | None = None,
    *,
    figures: bool = True,
    interactive: bool = True,
    include_unconverged: bool = False,
    correction: str = "bh",
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
) -> Report:
    """Build the report of a landscape file; write ``report.md``, ``.html`` and ``.json``.

    Args:
        file: the landscape file (read only; another process may be writing it).
        out_dir: where to write (created if missing); default ``<file stem>_report`` next to
            the file. Figures go to ``out_dir/figures``.
        figures: render the figures with :func:`landscape.plot.all_figures` (PNG) and embed
            them; without the plotting module the report says "figures unavailable".
        interactive: add the interactive figures to ``report.html`` (plotly, inlined: loss
            surfaces to rotate, the study's intervals as error bars;
            :mod:`landscape.report.interactive`); its tables sort and filter either way.
        include_unconverged: also aggregate and rank the complete runs that did not reach the
            sweep's stopping target (default: listed with their reason, left out).
        correction: of the ranking p-values across measures: ``"bh"`` (Benjamini-Hochberg)
            or ``"holm"``.
        n_boot: bootstrap samples behind each tau's 95% interval.
        n_perm: permutations behind each tau's p-value.
        seed: of the bootstrap and the permutations.

    Returns:
        :class:`Report`: the tables as data and the paths written.

    Raises:
        StoreError: not a landscape file. FileNotFoundError: no such file. ValueError: an
            unknown ``correction``, a negative ``n_boot`` or ``n_perm``.
    """
    file = os.fspath(file)
    if not os.path.exists(file):
        raise FileNotFoundError(f"report: {file} does not exist")
    if correction not in ("bh", "holm"):
        raise ValueError(f"report: correction must be 'bh' or 'holm', got {correction!r}")
    if n_boot < 0 or n_perm < 0:
        raise ValueError(f"report: n_boot and n_perm must be >= 0, got {n_boot}, {n_perm}")
    out = (
        Path(out_dir) if out_dir is not None else Path(file).with_name(Path(file).stem + "_report")
    )
    notes: list[str] = []
    # one consistent snapshot for the tables and the figures; a sweep may write meanwhile
    with Store(file, snapshot=True) as snap:
        out.mkdir(parents=True, exist_ok=True)
        runs, barrier_rows = collect(snap, notes)
        figs, figure_note = _figures(snap, out / "figures") if figures else ((), None)
        surfaces = surface_blocks(snap) if interactive else []
    if interactive and plotly_page.UNAVAILABLE:
        notes.append(plotly_page.UNAVAILABLE)
    run_table = _run_table(runs, barrier_rows)
    cols = ("from", "to", "kind", "barrier", "accuracy barrier", "test barrier", "stored as")
    barriers = Table(
        cols,
        tuple(
            (f"{p['a']}:{p['a_which']}", f"{p['b']}:{p['b_which']}", *(p[c] for c in cols[2:]))
            for p in barrier_rows
        ),
    )
    doc = analyse(
        runs,
        barrier_rows,
        include_unconverged=include_unconverged,
        correction=correction,
        n_boot=n_boot,
        n_perm=n_perm,
        seed=seed,
    )
    doc["path_barriers"] = path_barriers(runs, barrier_rows)
    doc["matching_share"] = matching_share(runs, barrier_rows)
    doc["contrasts"] = contrasts(doc)
    included = {r["run"] for r in doc["runs"] if r["included"]}
    ranking, axes = _rank(runs, included, notes, doc["constant_measures"])
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    study_parts = study_blocks(doc, interactive=interactive)
    study_parts["configs"] += seed_blocks(doc) + contrast_blocks(
        doc["contrasts"], doc["counts"]["configs"]
    )
    blocks = _blocks(
        {
            "file": file,
            "runs": run_table,
            "barriers": barriers,
            "path_barriers": barrier_blocks(doc["path_barriers"])
            + share_blocks(doc["matching_share"]),
            "study": study_parts,
            "surfaces": surfaces,
            "figures": figs,
            "figure_note": figure_note,
            "notes": notes,
            "out_dir": out,
            "n_ranked": len(included),
            "when": when,
            # the axes column only where it tells more than the configuration and the seed
            "show_axes": any(r["axes"] and r["config"] != axes_text(r["study_axes"]) for r in runs),
        }
    )
    if figure_note:
        notes.append(figure_note)
    study = {"file": file, "written": when, **doc, "notes": list(notes)}
    md, htm, js = out / "report.md", out / "report.html", out / "report.json"
    with _writing(out):
        _write_atomic(md, _markdown(blocks))
        _write_atomic(htm, _html(blocks, f"Landscape report: {Path(file).name}"))
        _write_atomic(js, to_json(study))
        _write_atomic(out / "contrasts.csv", contrasts_csv(doc["contrasts"]))
        _write_atomic(out / "per_seed.csv", seeds_csv(doc))
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
        n_ranked=len(included),
        json=js,
        study=study,
    )
