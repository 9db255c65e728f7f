"""``landscape report FILE [--out DIR]``: the report of a landscape file, in Markdown and HTML.

Part of the ``landscape`` command (:mod:`landscape.cli`); the work is
:func:`landscape.report.report`.
"""

from __future__ import annotations

import argparse

__all__ = ["add_report", "summarize"]


def _report(args: argparse.Namespace) -> int:
    summarize(args.file, args.out, figures=not args.no_figures)
    return 0


def summarize(file: str, out: str | None, *, figures: bool = True) -> None:
    """Write the report of ``file`` and print where it went and its top measures.

    Also the last step of ``landscape sweep``.

    Args:
        file: the landscape file.
        out: the report's folder (default: next to ``file``).
        figures: render the figures too.
    """
    from landscape.report.build import report

    r = report(file, out, figures=figures)
    top = [m for m in r.ranking if m.tau.tau is not None][:3]
    print(
        f"{file}: report of {len(r.runs.rows)} run(s) ({r.n_ranked} ranked) written to "
        f"{r.markdown} and {r.html} ({len(r.figures)} figure(s))"
    )
    if top:
        print(
            "top measures by |Kendall tau| with the gap (train acc - test acc): "
            + ", ".join(f"{m.measure} {m.tau.tau:+.3f} ({m.tau.n} runs)" for m in top)
        )
    else:
        print("no measure has a Kendall tau: fewer than 2 complete runs hold probes")
    for note in r.notes:
        print(f"note: {note}")


def add_report(sub: argparse._SubParsersAction) -> None:
    """Register ``landscape report``."""
    p = sub.add_parser(
        "report",
        help="a Markdown and HTML report comparing the runs of a file",
        description="Tabulate every run of FILE (settings, train/test loss and accuracy, "
        "generalisation gap = train accuracy - test accuracy, lambda_max, Hessian trace, "
        "sharpness, PAC-Bayes flatness, distance from init, norms, margins, barriers between "
        "runs), rank every stored measure by Kendall's tau with the gap (and Jiang et al.'s "
        "granulated tau over the sweep's axes), render the figures, and write report.md and "
        "report.html into DIR.",
        epilog="example: landscape report runs.h5 --out runs_report",
    )
    p.add_argument("file", help="the landscape file (.h5)")
    p.add_argument(
        "--out", metavar="DIR", help="output folder (default: FILE's stem + _report, next to FILE)"
    )
    p.add_argument("--no-figures", action="store_true", help="tables only, no figures")
    p.set_defaults(run_command=_report)
