"""How the study looks: its design, the runs left out, configurations, rankings, bad minima.

:func:`study_blocks` turns the document of :func:`landscape.report.analysis.analyse` into the
blocks that :mod:`landscape.report.render` writes as Markdown and HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from landscape.report.history_metrics import DESCRIPTIONS, END, LATE, ordered_details
from landscape.report.interactive_study import study_figures
from landscape.report.render import MISSING, _fmt
from landscape.report.sentences import stop_text

__all__ = ["MEASURES_PER_TABLE", "stat_cell", "study_blocks"]

MEASURES_PER_TABLE = 6
"""Measures per table of configuration means (the tables stay readable)."""

Block = tuple[Any, ...]


def stat_cell(s: Mapping[str, Any] | None, digits: int = 4) -> str:
    """A mean and its interval, ``"0.912 [0.901, 0.923]"``; one seed: ``"0.912 (1 seed)"``."""
    if not s or s.get("mean") is None:
        return MISSING
    mean = _fmt(s["mean"], digits)
    if s.get("ci"):
        lo, hi = s["ci"]
        return f"{mean} [{_fmt(lo, 3)}, {_fmt(hi, 3)}]"
    return f"{mean} (1 seed)" if s.get("n") == 1 else mean


def _signed(x: float | None) -> str:
    return MISSING if x is None else f"{x + 0.0:+.3f}"


def _p(x: float | None) -> str:
    return MISSING if x is None else f"{x:.2g}"


def _yes(x: bool | None) -> str:
    return MISSING if x is None else ("yes" if x else "no")


def _design(doc: Mapping[str, Any]) -> list[Block]:
    d = doc["design"]
    return [
        ("h2", "Study design"),
        ("ul", list(doc["summary"]["study"])),
        (
            "p",
            "Gap: train accuracy - test accuracy of the final model. A configuration is the "
            "runs that differ only in their seed; its values are the mean over its included "
            "seeds with a 95% Student-t interval (mean +- t(0.975, n-1) s/sqrt(n)); a "
            "configuration with one seed has no interval. tau: Kendall's tau-b of a measure "
            "with the gap over the included runs that have the measure (n); its 95% interval: "
            f"a two-level percentile bootstrap ({d['n_boot']} samples: configurations with "
            "replacement, then seeds within each); p: a two-sided permutation test of tau-b "
            f"between configuration means ({d['n_perm']} permutations, exact when all can be "
            f"listed); p adj: {d['correction_name']} across all {d['n_tests']} tests. "
            f"Fewer than {d['min_runs']} runs with a measure: no tau.",
        ),
    ]


def _left_out(doc: Mapping[str, Any]) -> list[Block]:
    d = doc["design"]
    items = []
    for r in doc["runs"]:
        if r["status"] != "complete":
            items.append(f"{r['run']}: status {r['status']}, not ranked")
        elif r["converged"] is False:
            what = "included on request" if r["included"] else "left out"
            steps = r["metrics"]["steps"]
            after = f" after {_fmt(steps)} steps" if steps is not None else ""
            items.append(
                f"{r['run']}: did not reach the target ({stop_text(d['stop'])}); stopped by "
                f"{r['stop_reason'] or 'an unrecorded reason'}{after}; {what}"
            )
    return [("h2", "Runs not converged or not complete"), ("ul", items)] if items else []


def _configs(doc: Mapping[str, Any]) -> list[Block]:
    out: list[Block] = [("h2", "Configurations")]
    rows = [c for c in doc["configs"] if c["n"]]
    empty = [c["config"] for c in doc["configs"] if not c["n"]]
    if not rows:
        out.append(("p", "No configuration has an included run: nothing to aggregate."))
        return out
    out.append(
        (
            "p",
            "Mean [95% Student-t interval] over each configuration's included seeds; "
            '"(1 seed)": one seed, no interval. n: included seeds; not conv.: seeds that '
            "missed the stopping target.",
        )
    )
    cols = ["config", "n", "not conv.", "test acc", "gap", "train loss", "steps"]
    out.append(
        (
            "table",
            cols,
            [
                [str(c["config"]), str(c["n"]), str(c["n_unconverged"])]
                + [stat_cell(c[k]) for k in ("test_acc", "gap", "train_loss", "steps")]
                for c in rows
            ],
        )
    )
    names = sorted({m for c in rows for m in c["measures"]})
    for i in range(0, len(names), MEASURES_PER_TABLE):
        part = names[i : i + MEASURES_PER_TABLE]
        out.append(
            (
                "table",
                ["config", *part],
                [
                    [str(c["config"])] + [stat_cell(c["measures"].get(m)) for m in part]
                    for c in rows
                ],
            )
        )
    out += _details(rows)
    if empty:
        out.append(("p", f"No included seed (left out): {', '.join(map(str, empty))}."))
    return out


def _details(rows: list[Mapping[str, Any]]) -> list[Block]:
    """The configurations' means of the history milestones and the values along training."""
    names = ordered_details({m for c in rows for m in c.get("milestones") or {}})
    if not names:
        return []
    out: list[Block] = [
        (
            "p",
            "Along training (history milestones and the values of "
            "landscape.report.history_metrics; not ranked), mean [95% interval] over the "
            f"seeds that have them; late window: the last {LATE:.0%} of the recorded steps, "
            f"end window: the last {END:.0%}. "
            + "; ".join(f"{m}: {DESCRIPTIONS[m]}" for m in names if m in DESCRIPTIONS)
            + ".",
        )
    ]
    for i in range(0, len(names), MEASURES_PER_TABLE):
        part = names[i : i + MEASURES_PER_TABLE]
        table = [
            [str(c["config"])] + [stat_cell((c.get("milestones") or {}).get(m)) for m in part]
            for c in rows
        ]
        out.append(("table", ["config", *part], table))
    return out


def _rankings(doc: Mapping[str, Any]) -> list[Block]:
    d = doc["design"]
    out: list[Block] = [("h2", "Measures ranked against the gap (Kendall's tau)")]
    rows = doc["rankings"]
    axes = sorted({k for r in rows for k, v in (r["psi_by_axis"] or {}).items() if v is not None})
    out.append(
        (
            "p",
            "Baselines (train loss at the stop, steps) first, then the measures by |tau|. "
            "tau > 0: a larger measure goes with a larger gap. expected: the sign the "
            "literature expects; agrees: the observed sign is that sign. beats baselines: the "
            "whole 95% interval for |tau| lies above every baseline's |tau|. "
            + (
                "psi[k]: the mean tau within groups of configurations that differ only in k; "
                "Psi: their mean; CMI: Jiang et al.'s conditional mutual information, the "
                "minimum over axes."
                if axes
                else "No axis varies between configurations: no Psi, no CMI."
            ),
        )
    )
    if doc["counts"]["included"] < d["min_runs"]:
        out.append(
            (
                "p",
                f"Fewer than {d['min_runs']} runs are included "
                f"({doc['counts']['included']}): no tau is computed.",
            )
        )
        return out
    cols = ["measure", "n", "tau", "95% CI", "p", "p adj", "expected", "agrees", "beats baselines"]
    cols += [f"psi[{k}]" for k in axes] + (["Psi", "CMI"] if axes else [])
    table = []
    for r in rows:
        ci = r["ci"]
        sign = r["expected_sign"]
        row = [
            f"{r['measure']} (baseline)" if r["baseline"] else r["measure"],
            str(r["n"]),
            _signed(r["tau"]),
            MISSING if not ci else f"[{ci[0]:+.3f}, {ci[1]:+.3f}]",
            _p(r["p"]),
            _p(r["p_adjusted"]),
            MISSING if sign is None else ("+" if sign > 0 else "-"),
            _yes(r["sign_agrees"]),
            "baseline" if r["baseline"] else _yes(r["beats_baselines"]),
        ]
        if axes:
            row += [_signed((r["psi_by_axis"] or {}).get(k)) for k in axes]
            row += [_signed(r["psi"]), MISSING if r["cmi"] is None else f"{r['cmi']:.3f}"]
        table.append(row)
    out.append(("table", cols, table))
    constant = doc.get("constant_measures") or []
    if constant:
        out.append(
            (
                "p",
                "Not ranked (the same value on every included run, it orders no pair): "
                + ", ".join(constant)
                + ".",
            )
        )
    out.append(("ul", list(doc["summary"]["rankings"])))
    return out


def _good_vs_bad(doc: Mapping[str, Any]) -> list[Block]:
    out: list[Block] = [("h2", "Good vs bad minima, per optimizer setting")]
    rows = doc["good_vs_bad"]
    if not rows:
        out.append(("p", doc["summary"]["good_vs_bad"][0]))
        return out
    out.append(
        (
            "p",
            "Test accuracy of the minima reached from a random init and from a bad init "
            "(pretrained on random labels): mean [95% Student-t interval] over seeds; "
            "difference: random minus bad, with Welch's 95% interval (positive: the bad init "
            "costs accuracy). Barrier: the loss barrier of the linear paths between a good and "
            "a bad minimum of the setting, mean [95% Student-t interval] over the paths.",
        )
    )
    cols = ["setting", "n random", "random init", "n bad", "bad init", "difference"]
    cols += ["barrier", "paths"]
    table = []
    for g in rows:
        diff = g["difference"]
        d_cell = MISSING if diff["mean"] is None else _fmt(diff["mean"], 4)
        if diff["ci"]:
            d_cell += f" [{_fmt(diff['ci'][0], 3)}, {_fmt(diff['ci'][1], 3)}]"
        table.append(
            [
                g["optimizer"],
                str(g["random_init"]["n"]),
                stat_cell(g["random_init"]),
                str(g["bad_init"]["n"]),
                stat_cell(g["bad_init"]),
                d_cell,
                stat_cell(g["barrier"]),
                str(g["barrier"]["n"]),
            ]
        )
    out.append(("table", cols, table))
    out.append(("ul", list(doc["summary"]["good_vs_bad"])))
    return out


def study_blocks(doc: Mapping[str, Any], *, interactive: bool = True) -> dict[str, list[Block]]:
    """The study's blocks, by where they go in the report.

    Args:
        doc: the document of :func:`landscape.report.analysis.analyse`.
        interactive: add the interactive figures (:mod:`landscape.report.interactive`) after
            the tables they draw; the Markdown report leaves them out.

    Returns:
        ``{"design", "left_out", "configs", "rankings", "good_vs_bad"}``, each a list of blocks
        (``("h2", text)``, ``("p", text)``, ``("ul", items)``, ``("table", cols, rows)``,
        ``("figure", title, caption, options)``).
    """
    out = {
        "design": _design(doc),
        "left_out": _left_out(doc),
        "configs": _configs(doc),
        "rankings": _rankings(doc),
        "good_vs_bad": _good_vs_bad(doc),
    }
    if interactive:
        for where, figures in study_figures(doc).items():
            out[where] += figures
    return out
