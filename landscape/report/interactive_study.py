"""The study's interactive figures: its 95% intervals as error bars, its runs on hover.

From the document of :func:`landscape.report.analysis.analyse`, as figure blocks of
:mod:`landscape.report.interactive` (plain plotly JSON):

- the rankings: each measure's Kendall tau with the gap and its bootstrap interval, in the
  table's order, baselines grey, measures that beat them blue; n and the p-values on hover;
- the configurations: the mean of a quantity (picked from a menu: test accuracy, gap, train
  loss, steps, each measure) per configuration with its Student-t interval;
- good vs bad minima: test accuracy from a random and from a bad init per optimizer setting,
  with their intervals;
- each measure against the gap, one point a run (hollow: left out of the rankings), the run's
  name on hover; a picker chooses the measure.

Values that are missing, NaN or infinite are left out of the figures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from landscape.report import interactive
from landscape.report.analysis import jsonable
from landscape.report.interactive import Block, figure_block, layout, text

__all__ = ["study_figures"]

_BLUE, _GREY, _ORANGE = "#1f77b4", "#7f7f7f", "#ff7f0e"


def _bars(means: Sequence[float | None], cis: Sequence[Any]) -> dict[str, Any]:
    """Error bars from intervals (none where a value has no interval)."""
    up = [None if m is None or not c else c[1] - m for m, c in zip(means, cis, strict=True)]
    down = [None if m is None or not c else m - c[0] for m, c in zip(means, cis, strict=True)]
    return {"type": "data", "array": up, "arrayminus": down, "visible": True}


def _stat_text(s: Mapping[str, Any] | None) -> str:
    if not s or s.get("mean") is None:
        return "no value"
    if s.get("ci"):
        lo, hi = s["ci"]
        return f"{s['mean']:.4g} [{lo:.3g}, {hi:.3g}], n {s.get('n')}"
    return f"{s['mean']:.4g} (n {s.get('n')}, no interval)"


def _stats_trace(name: str, x: list[str], stats: list[Any], colour: str) -> dict[str, Any]:
    means = [None if not s else s.get("mean") for s in stats]
    return {
        "type": "scatter",
        "name": text(name),
        "x": [text(v) for v in x],
        "y": means,
        "mode": "markers",
        "marker": {"size": 9, "color": colour},
        "error_y": _bars(means, [None if not s else s.get("ci") for s in stats]),
        "text": [_stat_text(s) for s in stats],
        "hovertemplate": "%{x}<br>" + text(name) + ": %{text}<extra></extra>",
    }


def _p(x: float | None) -> str:
    return "\u2013" if x is None else f"{x:.2g}"


def _rankings(doc: Mapping[str, Any]) -> list[Block]:
    rows = [r for r in doc["rankings"] if r["tau"] is not None]
    if not rows:
        return []
    groups = (
        ("baseline", _GREY, lambda r: r["baseline"]),
        ("beats the baselines", _BLUE, lambda r: not r["baseline"] and r["beats_baselines"]),
        ("does not", _ORANGE, lambda r: not r["baseline"] and not r["beats_baselines"]),
    )
    data = []
    for name, colour, keep in groups:
        part = [r for r in rows if keep(r)]
        if not part:
            continue
        tau = [r["tau"] for r in part]
        bars = _bars(tau, [r["ci"] for r in part])
        del bars["visible"]
        data.append(
            {
                "type": "scatter",
                "name": name,
                "x": tau,
                "y": [text(r["measure"]) for r in part],
                "mode": "markers",
                "marker": {"color": colour, "size": 8},
                "error_x": bars,
                "customdata": [
                    [
                        r["n"],
                        "no interval"
                        if r["ci"] is None
                        else f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}]",
                        _p(r["p"]),
                        _p(r["p_adjusted"]),
                    ]
                    for r in part
                ],
                "hovertemplate": "%{y}: tau %{x:+.3f} %{customdata[1]}<br>n %{customdata[0]}, "
                "p %{customdata[2]}, p adj %{customdata[3]}<extra>%{fullData.name}</extra>",
            }
        )
    order = [text(r["measure"]) for r in rows][::-1]  # the table's order, from the top
    fig = {
        "data": data,
        "layout": layout(
            height=max(460, 90 + 24 * len(rows)),
            xaxis={
                "title": {"text": "Kendall's tau with the gap"},
                "range": [-1.05, 1.05],
                "zeroline": False,
            },
            yaxis={
                "type": "category",
                "categoryorder": "array",
                "categoryarray": order,
                "automargin": True,
            },
            shapes=[
                {
                    "type": "line",
                    "x0": 0,
                    "x1": 0,
                    "xref": "x",
                    "y0": 0,
                    "y1": 1,
                    "yref": "paper",
                    "line": {"color": "#444", "width": 1},
                }
            ],
            legend={"orientation": "h", "y": 1.0, "yanchor": "bottom"},
        ),
    }
    return [
        figure_block(
            "Kendall's tau with the gap",
            "Each measure's tau with its 95% bootstrap interval, in the table's order; "
            "baselines grey, measures whose whole interval for |tau| lies above every "
            "baseline's |tau| blue. Hover for n and the p-values.",
            [("tau", fig)],
        )
    ]


def _configs(doc: Mapping[str, Any]) -> list[Block]:
    rows = [c for c in doc["configs"] if c["n"]]
    if not rows:
        return []
    names = [str(c["config"]) for c in rows]
    quantities = [(k, k.replace("_", " ")) for k in ("test_acc", "gap", "train_loss", "steps")]
    quantities += [(m, m) for m in sorted({m for c in rows for m in c["measures"]})]
    data, buttons = [], []
    for i, (key, label) in enumerate(quantities):
        stats = [c["measures"].get(key) if i >= 4 else c.get(key) for c in rows]
        data.append({**_stats_trace(label, names, stats, _BLUE), "visible": i == 0})
        shown = [j == i for j in range(len(quantities))]
        buttons.append(
            {
                "label": label,
                "method": "update",
                "args": [{"visible": shown}, {"yaxis.title.text": text(label)}],
            }
        )
    fig = {
        "data": data,
        "layout": layout(
            height=540,
            margin={"l": 70, "r": 20, "t": 60, "b": 140},
            updatemenus=[
                {"buttons": buttons, "x": 0, "y": 1.12, "xanchor": "left", "yanchor": "top"}
            ],
            xaxis={"type": "category", "tickangle": -40, "automargin": True},
            yaxis={"title": {"text": text(quantities[0][1])}},
        ),
    }
    return [
        figure_block(
            "Configurations",
            "Mean over each configuration's included seeds with its 95% Student-t interval "
            "(no bar: one seed); pick the quantity in the menu.",
            [("configurations", fig)],
        )
    ]


def _good_vs_bad(doc: Mapping[str, Any]) -> list[Block]:
    rows = doc["good_vs_bad"]
    if not rows:
        return []
    names = [str(g["optimizer"]) for g in rows]
    data = [
        _stats_trace("random init", names, [g["random_init"] for g in rows], "#2ca02c"),
        _stats_trace("bad init (random labels)", names, [g["bad_init"] for g in rows], "#d62728"),
    ]
    fig = {
        "data": data,
        "layout": layout(
            scattermode="group",
            legend={"orientation": "h", "y": -0.25},
            xaxis={"type": "category", "automargin": True},
            yaxis={"title": {"text": "test accuracy"}},
        ),
    }
    return [
        figure_block(
            "Good vs bad minima",
            "Test accuracy of the minima from a random and from a bad init, per optimizer "
            "setting: mean with its 95% Student-t interval over seeds.",
            [("good vs bad", fig)],
        )
    ]


def _measure_vs_gap(doc: Mapping[str, Any]) -> list[Block]:
    runs = [r for r in doc["runs"] if r["metrics"]["gap"] is not None and r["measures"]]
    names = sorted({m for r in runs for m, v in r["measures"].items() if v is not None})
    if len(runs) < 2 or not names:
        return []
    options = []
    for m in names:
        data = []
        for included, symbol, label in (
            (True, "circle", "included"),
            (False, "circle-open", "left out"),
        ):
            part = [
                r for r in runs if r["included"] is included and r["measures"].get(m) is not None
            ]
            if part:
                data.append(
                    {
                        "type": "scatter",
                        "name": label,
                        "x": [r["measures"][m] for r in part],
                        "y": [r["metrics"]["gap"] for r in part],
                        "mode": "markers",
                        "marker": {"symbol": symbol, "size": 8, "color": _BLUE},
                        "text": [text(f"{r['run']} ({r['config']})") for r in part],
                        "hovertemplate": "%{text}<br>" + text(m) + " %{x:.4g}<br>gap %{y:.4g}"
                        "<extra></extra>",
                    }
                )
        fig = {
            "data": data,
            "layout": layout(
                xaxis={"title": {"text": text(m)}},
                yaxis={"title": {"text": "gap (train acc - test acc)"}},
            ),
        }
        options.append((m, fig))
    return [
        figure_block(
            "Measures against the gap",
            "One point a run (hollow: left out of the rankings); pick the measure.",
            options,
        )
    ]


def study_figures(doc: Mapping[str, Any]) -> dict[str, list[Block]]:
    """The study's interactive figures, by the section they follow (module docstring).

    Args:
        doc: the document of :func:`landscape.report.analysis.analyse`.

    Returns:
        ``{"configs", "rankings", "good_vs_bad"}``, each a list of figure blocks (empty where
        there is nothing to draw, or plotly is unavailable).
    """
    if interactive.UNAVAILABLE is not None:
        return {"configs": [], "rankings": [], "good_vs_bad": []}
    doc = jsonable(doc)  # NaN and infinities as None: not drawn
    return {
        "configs": _configs(doc),
        "rankings": _rankings(doc) + _measure_vs_gap(doc),
        "good_vs_bad": _good_vs_bad(doc),
    }
