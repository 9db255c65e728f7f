"""The interactive report: figures as plotly JSON, sortable tables, and the page's scripts.

``report.html`` stays one self-contained file that works offline: plotly.js is inlined once
(:func:`scripts`, from the installed ``plotly`` package, never a CDN; run after the page's
load event, so that the text and the tables come first), then each figure is its plotly JSON
in a ``<script type="application/json">`` beside an empty ``<div>``, drawn by the small script
of ``assets/report.js``, which also makes every table sortable (a click on a column header;
numbers by value, words alphabetically, missing values last) and filterable (the words typed
above a table must all occur in a row). A figure with several versions (one a run, one a
measure) has a picker and draws only the chosen one.

A figure block is ``("figure", title, caption, options)``, ``options`` a list of ``(label,
plotly JSON)``; the Markdown report leaves it out. The figures are written as plain plotly JSON
(``{"data", "layout"}``, arrays as float32 :func:`typed` arrays) rather than through plotly's
object model, which takes a third of a second a figure (a 60-run report has a hundred); the
tests check every figure against plotly's schema. They are
:mod:`landscape.report.interactive_study` (the study's intervals as error bars) and
:mod:`landscape.report.interactive_surfaces` (rotatable loss surfaces and contours).

plotly is a dependency; where it does not import, the report is the static one (tables still
sort) and says why (:data:`UNAVAILABLE`).
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from importlib import resources
from typing import Any

import numpy as np

try:
    from plotly.offline import get_plotlyjs
except ImportError as _err:  # a broken install: the static report, with a note
    get_plotlyjs = None
    UNAVAILABLE: str | None = f"interactive figures unavailable: {_err}"
else:
    UNAVAILABLE = None

__all__ = [
    "UNAVAILABLE",
    "figure_block",
    "figure_html",
    "figure_json",
    "layout",
    "scripts",
    "table_html",
    "text",
    "typed",
]

Block = tuple[Any, ...]
FILTER_ROWS = 6
"""Tables with at least this many rows get a filter box."""
_HEIGHT = 460


def layout(**kw: Any) -> dict[str, Any]:
    """A compact plotly layout (no default template: it would be repeated in every figure)."""
    base: dict[str, Any] = {
        "template": "none",
        "font": {"family": "system-ui, sans-serif", "size": 12},
        "margin": {"l": 60, "r": 20, "t": 40, "b": 60},
        "height": _HEIGHT,
        "hoverlabel": {"namelength": -1},
        "plot_bgcolor": "#fafafa",
    }
    base.update(kw)
    return base


def text(value: Any) -> str:
    """A name as plotly shows it: plotly reads ``<b>``, ``<br>`` and ``&amp;`` in labels."""
    return html.escape(str(value), quote=False)


def typed(a: Any) -> dict[str, str]:
    """A float array as plotly's binary array (float32, base64): what plotly.js decodes."""
    v = np.ascontiguousarray(a, dtype="<f4")
    out = {"dtype": "f4", "bdata": base64.b64encode(v.tobytes()).decode("ascii")}
    if v.ndim > 1:
        out["shape"] = ", ".join(map(str, v.shape))
    return out


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return typed(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"figure_json: cannot write {type(value).__name__}")


def figure_json(fig: dict[str, Any]) -> str:
    """A figure (``{"data", "layout"}``) as plotly JSON, safe inside a ``<script>`` element.

    NumPy arrays become float32 :func:`typed` arrays; NaN elsewhere is refused.
    """
    text = json.dumps(fig, default=_plain, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e")


def figure_block(title: str, caption: str, options: Sequence[tuple[str, dict]]) -> Block:
    """A figure block: ``options`` are ``(label, figure dict)``; several get a picker."""
    return ("figure", title, caption, [(label, figure_json(f)) for label, f in options])


def figure_html(block: Block, slot: str) -> str:
    """The HTML of a figure block; ``slot`` is an id unique in the page."""
    _, title, caption, options = block
    e = html.escape
    out = [f'<figure class="figure-slot" id="{slot}" data-figure="{slot}-0">']
    if len(options) > 1:
        out.append(f'<label>Show <select aria-label="{e(title)}">')
        out += [
            f'<option value="{slot}-{i}">{e(label)}</option>'
            for i, (label, _) in enumerate(options)
        ]
        out.append("</select></label>")
    out.append('<div class="plot"></div>')
    out += [
        f'<script type="application/json" id="{slot}-{i}">{text}</script>'
        for i, (_, text) in enumerate(options)
    ]
    out.append(f"<figcaption><b>{e(title)}.</b> {e(caption)}</figcaption></figure>")
    return "\n".join(out)


def table_html(cols: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table that the page's script sorts (click a header) and filters (a box above it)."""
    e = html.escape
    head = "".join(f'<th scope="col">{e(c)}</th>' for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{e(v)}</td>" for v in r) + "</tr>" for r in rows)
    box = (
        '<div class="tools"><input type="search" class="filter" placeholder="Filter rows" '
        'aria-label="Filter rows"> <span class="count"></span></div>'
        if len(rows) >= FILTER_ROWS
        else ""
    )
    return (
        f'<div class="table">{box}<div class="wrap"><table class="sortable"><thead><tr>{head}'
        f"</tr></thead><tbody>{body}</tbody></table></div></div>"
    )


def scripts(plotly: bool) -> str:
    """The page's scripts, inline: plotly.js (only if a figure needs it), then the report's."""
    own = resources.files("landscape.report").joinpath("assets/report.js").read_text("utf-8")
    out = []
    if plotly and get_plotlyjs is not None:
        # not run while the page loads: report.js runs it after the load event, so that the
        # text and the tables show (and sort) before plotly.js is compiled and figures drawn
        js = get_plotlyjs().replace("</script", "<\\/script")
        out.append(f'<script type="text/x-deferred" id="plotly-js">{js}</script>')
    out.append(f"<script>{own}</script>")
    return "\n".join(out)
