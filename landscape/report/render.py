"""How a report looks: the tables' columns, how values are shown, the Markdown and HTML.

:mod:`landscape.report` gathers the data; this module writes it.
"""

from __future__ import annotations

import contextlib
import html
import math
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from landscape.report.interactive import figure_html, scripts, table_html
from landscape.report.ranking import GranulatedTau, Tau

__all__ = ["GAP", "LOSS_GAP", "MISSING", "RUN_COLUMNS", "MeasureRank", "Table"]


MISSING = "\u2013"
"""How a missing value is shown (an en dash)."""

GAP = "train accuracy - test accuracy"
LOSS_GAP = "test loss - train loss"

RUN_COLUMNS = (
    "run",
    "status",
    "config",
    "seed",
    "converged",
    "stop reason",
    "steps",
    "optimizer",
    "axes",
    "batch size",
    "train loss",
    "train acc",
    "test loss",
    "test acc",
    "gap",
    "loss gap",
    "lambda_max",
    "hessian trace",
    "adaptive sharpness",
    "PAC-Bayes flatness",
    "dist init",
    "param norm",
    "log prod spectral",
    "path norm",
    "margin q10",
    "barriers",
)
_FIT = RUN_COLUMNS[: RUN_COLUMNS.index("loss gap") + 1]
_MINIMA = ("run",) + RUN_COLUMNS[len(_FIT) :]
# which measure fills a column of the run table: the first one a run has
_PICK = {
    "lambda_max": ("lambda_max",),
    "hessian trace": ("hessian_trace",),
    "adaptive sharpness": ("sharpness_worst_adaptive", "sharpness_worst_case_adaptive"),
    "PAC-Bayes flatness": (
        "pac_bayes_flatness_magnitude",
        "sharpness_pac_bayes",
        "pac_bayes_flatness",
    ),
    "dist init": ("dist_init",),
    "param norm": ("param_norm",),
    "log prod spectral": ("log_prod_spectral",),
    "path norm": ("path_norm",),
    "margin q10": ("margin_q10",),
}
_SKIP_KEYS = ("loss", "accuracy")


@dataclass(frozen=True)
class Table:
    """A table as data: column names and rows of raw values (None where missing)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    def column(self, name: str) -> tuple[Any, ...]:
        """The values of one column, a row each."""
        i = self.columns.index(name)
        return tuple(r[i] for r in self.rows)


@dataclass(frozen=True)
class MeasureRank:
    """How one measure ranks the runs: Kendall's tau with the accuracy gap and the loss gap.

    ``granulated`` is the granulated tau with the accuracy gap (None where no run has sweep
    axes).
    """

    measure: str
    tau: Tau
    loss_tau: Tau
    granulated: GranulatedTau | None = None


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return f"{float(value) + 0.0:.{digits}g}"  # + 0.0: no "-0"
    return str(value)


def _blocks(rep: dict) -> list[tuple]:
    """The report as a list of blocks, rendered to Markdown and HTML alike.

    ``rep["study"]`` holds the study's blocks (:func:`landscape.report.render_study.study_blocks`).
    """
    runs: Table = rep["runs"]
    study: dict[str, list[tuple]] = rep["study"]
    n = len(runs.rows)
    b: list[tuple] = []
    b.append(("h1", f"Landscape report: {Path(rep['file']).name}"))
    b.append(
        (
            "p",
            f"File {rep['file']}; {n} run(s), {rep['n_ranked']} included in the aggregates "
            f"and rankings; written {rep['when']}.",
        )
    )
    b.append(
        (
            "p",
            f"Generalisation gap: {GAP} (final model); loss gap: {LOSS_GAP}. "
            f"Missing values are shown as {MISSING}.",
        )
    )
    if not n:
        b.append(("p", "The file holds no runs."))
    b += study["design"]
    fit = [runs.columns.index(c) for c in _FIT if c != "axes" or rep.get("show_axes", True)]
    b.append(("h2", "Runs"))
    b.append(
        ("table", [runs.columns[i] for i in fit], [[_fmt(r[i]) for i in fit] for r in runs.rows])
    )
    b += study["left_out"] + study["configs"] + study["rankings"] + study["good_vs_bad"]
    minima = [runs.columns.index(c) for c in _MINIMA]
    b.append(("h2", "Minima"))
    b.append(
        (
            "p",
            "Every run, as stored. lambda_max: the largest Hessian eigenvalue; adaptive "
            "sharpness: worst-case, in a ball scaled by |w|; PAC-Bayes flatness: 1/sigma^2; "
            "barriers: the loss barrier of the linear path to each other run (and "
            "init->final).",
        )
    )
    b.append(
        (
            "table",
            [runs.columns[i] for i in minima],
            [[_fmt(r[i]) for i in minima] for r in runs.rows],
        )
    )
    bt: Table = rep["barriers"]
    if bt.rows:
        b.append(("h2", "Paths and barriers"))
        b.append(("table", list(bt.columns), [[_fmt(v) for v in r] for r in bt.rows]))
    b += rep.get("path_barriers") or []
    if rep.get("surfaces"):
        b.append(("h2", "Loss surfaces"))
        b += rep["surfaces"]
    b.append(("h2", "Figures"))
    for path in rep["figures"]:
        rel = Path(os.path.relpath(path, rep["out_dir"])).as_posix()
        b.append(("img", rel, Path(path).stem))
    if not rep["figures"] and not rep["figure_note"]:
        b.append(("p", "No figures."))
    if rep["figure_note"]:
        b.append(("p", rep["figure_note"]))
    if rep["notes"]:
        b.append(("h2", "Notes"))
        b.append(("ul", list(rep["notes"])))
    return b


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _md(text: str) -> str:
    text = html.escape(str(text), quote=False).replace("\n", " ")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _markdown(blocks: list[tuple]) -> str:
    # the interactive figures are report.html's; a section of nothing else is left out
    blocks = [b for b in blocks if b[0] != "figure"]
    blocks = [
        b
        for i, b in enumerate(blocks)
        if b[0] != "h2" or (i + 1 < len(blocks) and blocks[i + 1][0] not in ("h1", "h2"))
    ]
    out = []
    for kind, *args in blocks:
        if kind in ("h1", "h2"):
            out.append(("#" if kind == "h1" else "##") + " " + _md(args[0]))
        elif kind == "p":
            out.append(_md(args[0]))
        elif kind == "ul":
            out.append("\n".join(f"- {_md(x)}" for x in args[0]))
        elif kind == "table":
            cols, rows = args
            out.append(
                "\n".join(
                    [
                        "| " + " | ".join(_md(c) for c in cols) + " |",
                        "|" + "|".join("---" for _ in cols) + "|",
                        *("| " + " | ".join(_md(v) for v in r) + " |" for r in rows),
                    ]
                )
            )
        elif kind == "img":
            out.append(f"![{_md(args[1])}]({quote(args[0])})")
    return "\n\n".join(out) + "\n"


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2em auto;
max-width:75em;padding:0 1em;color:#222;line-height:1.4}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #ccc;padding:0.25em 0.6em;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}figure{margin:1em 0}
img{max-width:100%;border:1px solid #ddd}figcaption{font-size:0.85em;color:#555}
.wrap{overflow-x:auto}
th{cursor:pointer;user-select:none}th:focus{outline:2px solid #1f77b4}
th[aria-sort=ascending]::after{content:" \\25B2";font-size:0.7em}
th[aria-sort=descending]::after{content:" \\25BC";font-size:0.7em}
.tools{margin:0.5em 0 -0.5em}.tools input{padding:0.2em 0.4em;width:18em}
.count{font-size:0.85em;color:#555}.figure-slot{border:1px solid #eee;padding:0.5em}
.figure-slot label{font-size:0.9em}.plot{min-height:2em}.failed{color:#b00}"""


def _html(blocks: list[tuple], title: str) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
    ]
    figures = 0
    for kind, *args in blocks:
        if kind in ("h1", "h2"):
            out.append(f"<{kind}>{e(args[0])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{e(args[0])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{e(x)}</li>" for x in args[0]) + "</ul>")
        elif kind == "table":
            out.append(table_html(*args))
        elif kind == "figure":
            figures += 1
            out.append(figure_html((kind, *args), f"fig{figures}"))
        elif kind == "img":
            out.append(
                f'<figure><img src="{e(quote(args[0]))}" alt="{e(args[1])}">'
                f"<figcaption>{e(args[1])}</figcaption></figure>"
            )
    out += [scripts(plotly=figures > 0), "</body>", "</html>"]
    return "\n".join(out) + "\n"


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
