"""``landscape report FILE [--out DIR]``: the report of a landscape file (Markdown, HTML, JSON).

Part of the ``landscape`` command (:mod:`landscape.cli`); the work is
:func:`landscape.report.report`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_report", "summarize"]


def _report(args: argparse.Namespace) -> int:
    summarize(
        args.file,
        args.out,
        figures=not args.no_figures,
        include_unconverged=args.include_unconverged,
    )
    return 0


def summarize(
    file: str, out: str | None, *, figures: bool = True, include_unconverged: bool = False
) -> None:
    """Write the report of ``file`` and print where it went and its top measures.

    Also the last step of ``landscape sweep``.

    Args:
        file: the landscape file.
        out: the report's folder (default: next to ``file``).
        figures: render the figures too.
        include_unconverged: also rank the runs that missed the sweep's stopping target.
    """
    from landscape.report.build import report

    r = report(file, out, figures=figures, include_unconverged=include_unconverged)
    rows = [x for x in r.study["rankings"] if not x["baseline"] and x["tau"] is not None]
    print(
        f"{file}: report of {len(r.runs.rows)} run(s) ({r.n_ranked} ranked) written to "
        f"{r.markdown}, {r.html} and {r.json} ({len(r.figures)} figure(s))"
    )
    for sentence in r.study["summary"]["study"]:
        print(sentence)
    if rows:

        def ci(x: dict) -> str:
            return f"[{x['ci'][0]:+.2f}, {x['ci'][1]:+.2f}]" if x["ci"] else "no interval"

        def p(x: dict) -> str:
            return "" if x["p_adjusted"] is None else f", p_adj {x['p_adjusted']:.2g}"

        print(
            "top measures by |Kendall tau| with the gap (train acc - test acc), 95% CI: "
            + ", ".join(
                f"{x['measure']} {x['tau']:+.3f} {ci(x)}{p(x)} ({x['n']} runs)" for x in rows[:3]
            )
        )
        for sentence in r.study["summary"]["rankings"][:3]:
            print(sentence)
    else:
        print(
            "no measure has a Kendall tau: fewer than "
            f"{r.study['design']['min_runs']} included runs hold probes"
        )
    for note in r.notes:
        print(f"note: {note}")


def add_report(sub: argparse._SubParsersAction) -> None:
    """Register ``landscape report``."""
    p = sub.add_parser(
        "report",
        help="a Markdown, HTML and JSON report comparing the runs of a file",
        description="Tabulate every run of FILE (configuration, seed, whether it reached the "
        "sweep's stopping target and why it stopped, train/test loss and accuracy, "
        "generalisation gap = train accuracy - test accuracy, lambda_max, Hessian trace, "
        "sharpness, PAC-Bayes flatness, distance from init, norms, margins, barriers); average "
        "each configuration over its seeds with 95% Student-t intervals; rank every measure and "
        "the baselines (train loss, steps) by Kendall's tau-b with the gap, with a 95% "
        "bootstrap interval, a permutation p-value adjusted across measures "
        "(Benjamini-Hochberg), the expected sign, Jiang et al.'s granulated tau and CMI; "
        "compare minima from random and bad inits per optimizer; list the seeds behind each "
        "mean (per_seed.csv); give every pair of configurations' differences with Welch "
        "intervals (contrasts.csv) and the share of each linear barrier that weight matching "
        "removes; render the figures; write "
        "report.md, report.html and report.json into DIR. Runs that missed the stopping target "
        "are listed and left out unless --include-unconverged.",
        epilog="example: landscape report runs.h5 --out runs_report",
    )
    p.add_argument("file", help="the landscape file (.h5)")
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default: FILE's stem + _report, next to FILE)"
    )
    p.add_argument("--no-figures", action="store_true", help="tables only, no figures")
    p.add_argument(
        "--include-unconverged",
        action="store_true",
        help="also aggregate and rank the runs that did not reach the sweep's stopping target",
    )
    p.set_defaults(run_command=_report)
