"""``landscape plot FILE [WHAT]``: figures from a landscape file, drawn by :mod:`landscape.plot`.

Part of the ``landscape`` command (:mod:`landscape.cli`). WHAT: ``surface``, ``curve``,
``density``, ``path``, ``history``, ``measure``, ``grid`` or ``all`` (the default: every figure
the file allows, :func:`landscape.plot.all_figures`). ``--out`` is a folder (default
``<FILE stem>_figures/``) or, for one figure, a file whose suffix gives the format. The paths
written are printed, one a line.
"""

from __future__ import annotations

import argparse
import pathlib
from typing import Any

__all__ = ["WHAT", "add_plot"]

WHAT = ("all", "surface", "curve", "density", "path", "history", "measure", "grid")


def _one(
    items: list[str] | None, what: str, flag: str, choices: list[str], has: str = "the file has"
) -> str:
    """The single value of a flag, or the only choice there is."""
    if items:
        if len(items) > 1:
            raise ValueError(
                f"plot {what}: one {flag} expected, got {len(items)}: {', '.join(items)}"
            )
        return items[0]
    if len(choices) == 1:
        return choices[0]
    raise ValueError(f"plot {what}: {flag} is needed; {has}: {', '.join(choices) or 'none'}")


def _surfaces(s: Any, run: str, dims: int) -> list[str]:
    return [
        n
        for n in s.info(run).surfaces
        if ("y" in s.record(run, "surfaces", n).arrays) == (dims == 2)
    ]


def _draw(args: argparse.Namespace) -> tuple[Any, str]:
    """The figure asked for and its default file name (without suffix)."""
    from landscape import plot
    from landscape.plot.base import safe
    from landscape.store.file import Store

    what, runs, metric = args.what, args.run, args.metric
    with Store(args.file) as s:
        for r in runs or ():
            s.info(r)  # an unknown run: one line that lists the runs
        if what in ("surface", "curve"):
            run = _one(runs, what, "--run", s.runs())
            name = _one(
                [args.name] if args.name else None,
                what,
                "--name",
                _surfaces(s, run, 2 if what == "surface" else 1),
                f"run {run!r} has {'2' if what == 'surface' else '1'}-D surfaces",
            )
            if what == "surface":
                fig = plot.surface(
                    s,
                    run,
                    name,
                    metric=metric[0] if metric else "train_loss",
                    kind="3d" if args.three_d else "contour",
                    log=args.log,
                )
                suffix = "_3d" if args.three_d else ""
                return fig, f"surface_{safe(run)}_{safe(name)}{suffix}"
            fig = plot.curve(
                s, run, name, metrics=metric or ("train_loss", "test_loss"), log=bool(args.log)
            )
            return fig, f"curve_{safe(run)}_{safe(name)}"
        if what == "density":
            chosen = runs or [
                r for r in s.runs() if (args.name or "hessian_density") in s.info(r).probes
            ]
            if not chosen:
                raise ValueError(
                    f"plot density: no run has a probe "
                    f"{args.name or 'hessian_density'!r}; give --run and --name"
                )
            probe = args.name or "hessian_density"
            fig = plot.density(s, chosen, probe, log=args.log is not False)
            return fig, f"density_{'_'.join(safe(r) for r in chosen)}_{safe(probe)}"
        if what == "path":
            from landscape.plot.paths import paths_in

            known = paths_in(s)
            if args.name and runs:
                where = f"runs/{_one(runs, what, '--run', [])}/paths/{args.name}"
            elif args.name and "/" in args.name:
                where = args.name
            elif args.name:
                hits = [w for w in known if w.split("/")[-1] == args.name]
                if len(hits) != 1:
                    raise ValueError(
                        f"plot path: {'more than one' if hits else 'no'} path "
                        f"named {args.name!r}; paths: {', '.join(known) or 'none'}"
                    )
                where = hits[0]
            else:
                where = _one(None, what, "--name", known)
            fig = plot.path(s, where)
            return fig, "path_" + "_".join(
                safe(p) for p in where.split("/") if p not in ("runs", "paths")
            )
        if what == "history":
            fig = plot.history(
                s, runs, metrics=metric or ("train_loss", "test_accuracy"), log=bool(args.log)
            )
            return fig, "history"
        if what == "measure":
            measure = args.name or (metric[0] if metric else "lambda_max")
            return plot.measure_vs_gap(s, measure, runs), f"measure_{safe(measure)}"
        names = sorted({n for r in s.runs() for n in s.info(r).surfaces})
        name = _one([args.name] if args.name else None, what, "--name", names)
        fig = plot.grid(s, name, runs, metric=metric[0] if metric else "train_loss", log=args.log)
        return fig, f"grid_{safe(name)}"


def _plot(args: argparse.Namespace) -> int:
    from landscape import plot

    file = pathlib.Path(args.file)
    out = pathlib.Path(args.out) if args.out else file.with_name(f"{file.stem}_figures")
    fmt = args.format
    if args.what == "all":
        if out.suffix.lower() in (".png", ".pdf", ".svg"):
            raise ValueError(f"plot all: --out must be a folder, got the file name {out}")
        written = plot.all_figures(file, out, formats=(fmt or "png",))
        if not written:
            print(f"{file}: nothing to plot (no surfaces, probes, paths or history)")
        for p in written:
            print(p)
        return 0
    if args.metric and len(args.metric) > 1 and args.what not in ("curve", "history"):
        raise ValueError(f"plot {args.what}: one --metric expected, got {', '.join(args.metric)}")
    fig, name = _draw(args)
    if out.suffix:
        if fmt and out.suffix.lower() != f".{fmt}":
            raise ValueError(f"plot: --out {out} and --format {fmt} disagree; give one")
        target = out
    else:
        target = out / f"{name}.{fmt or 'png'}"
    print(plot.save(fig, target))
    return 0


def add_plot(sub: argparse._SubParsersAction) -> None:
    """Register ``landscape plot`` on the subcommands of the ``landscape`` parser."""
    p = sub.add_parser(
        "plot",
        help="figures from a landscape file (PNG, PDF, SVG)",
        description="Draw figures from FILE alone (no model code): WHAT is surface (2-D "
        "contour with the trajectory over it, or --3d), curve (a 1-D surface), density (the "
        "Hessian spectral density, log scale), path (loss and accuracy along a path, barrier "
        "marked), history (training curves, lambda_max against 2/eta), measure (a measure "
        "against the generalisation gap, one point a run), grid (one surface of several runs "
        "on one colour scale) or all (default: every figure the file allows, into a folder). "
        "The paths written are printed.",
        epilog="examples: landscape plot runs.h5; landscape plot runs.h5 surface --run sgd "
        "--name pca_2d --metric test_loss --out sgd.pdf; landscape plot runs.h5 path --name "
        "compare/linear_sgd_final_adam_final; landscape plot runs.h5 measure --name "
        "lambda_max",
    )
    p.add_argument("file", help="the landscape file (.h5)")
    p.add_argument(
        "what",
        nargs="?",
        default="all",
        choices=WHAT,
        metavar="WHAT",
        help=f"one of {', '.join(WHAT)} (default all)",
    )
    p.add_argument(
        "--run",
        action="append",
        metavar="RUN",
        help="a run (repeat for history, density, measure and grid; default: the only run, or all)",
    )
    p.add_argument(
        "--name",
        metavar="NAME",
        help="surface/curve/grid: the surface's name; density: the probe's name "
        "(default hessian_density); path: runs/RUN/paths/NAME, compare/NAME or a "
        "path's name; measure: the measure (default lambda_max)",
    )
    p.add_argument(
        "--metric",
        action="append",
        metavar="METRIC",
        help="train_loss, test_loss, train_accuracy, test_accuracy (repeat for curve and history)",
    )
    p.add_argument(
        "--out",
        metavar="DIR_OR_FILE",
        help="a folder (default FILE_STEM_figures/) or, for one figure, a file "
        "name ending in .png, .pdf or .svg",
    )
    p.add_argument(
        "--format",
        choices=["png", "pdf", "svg"],
        help="file format when --out is a folder (default png)",
    )
    p.add_argument(
        "--3d",
        dest="three_d",
        action="store_true",
        help="surface: a 3-D surface instead of a contour",
    )
    scale = p.add_mutually_exclusive_group()
    scale.add_argument(
        "--log",
        dest="log",
        action="store_const",
        const=True,
        help="log scale for losses (and densities, the default there)",
    )
    scale.add_argument(
        "--linear", dest="log", action="store_const", const=False, help="linear scale"
    )
    p.set_defaults(run_command=_plot, log=None)
