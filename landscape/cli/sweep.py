"""``landscape sweep SPEC --out FILE``: run a sweep spec into a landscape file.

Part of the ``landscape`` command (:mod:`landscape.cli`); the spec format is in
:mod:`landscape.sweep`.
"""

from __future__ import annotations

import argparse
import time

__all__ = ["add_sweep"]


def _sweep(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from landscape.sweep.jobs import plan
    from landscape.sweep.run import run_sweep
    from landscape.sweep.spec import load, on_device, with_threads

    sweep = load(args.spec)
    if args.device:
        sweep = on_device(sweep, args.device)
    if args.threads is not None:
        sweep = with_threads(sweep, args.threads)
    if args.dry_run:
        jobs = plan(sweep, args.out)
        print(f"sweep {sweep.name!r}: {len(sweep.runs)} run(s) into {args.out}")
        print(f"  stop: {sweep.stop_rule() or 'no matched target ([stop] not set)'}")
        threads = sweep.resources.get("threads") or "the executor's ([resources] threads not set)"
        print(f"  threads: {threads}")
        for job in jobs:
            if job.pair:
                continue
            run = sweep.run(job.run_name)
            axes = ", ".join(f"{k}={v}" for k, v in run.axes.items())
            print(f"  {job.run}  [{axes}]  missing: {job.describe() if not job.empty else '-'}")
        pairs = [j for j in jobs if j.pair]
        if sweep.between:
            print(
                f"  compare: {len(pairs)} of {len(sweep.between)} path(s) missing"
                + "".join(f"\n    {j.describe()}" for j in pairs)
            )
        return 0
    start = time.perf_counter()
    done = run_sweep(
        sweep,
        args.out,
        workers=args.workers,
        executor=args.executor,
        address=args.address,
        take_over=args.take_over,
        progress=not args.quiet,
        say=tqdm.write if not args.quiet else None,
    )
    print(
        f"{args.out}: sweep {sweep.name!r}: {len(sweep.runs)} run(s), {len(done)} task(s) "
        f"done in {time.perf_counter() - start:.1f} s" + ("" if done else " (nothing was missing)")
    )
    if not args.no_report:
        from landscape.cli.report import summarize

        summarize(args.out, args.report, figures=not args.no_figures)
    return 0


def add_sweep(sub: argparse._SubParsersAction) -> None:
    """Register ``landscape sweep``."""
    p = sub.add_parser(
        "sweep",
        help="train and measure the runs of a sweep spec into a landscape file",
        description="Expand SPEC (TOML: [base] run spec, [grid] and/or [[runs]], "
        "[stop], [init.random_labels], [probes], [along], [surfaces.NAME], [paths]; see "
        "landscape.sweep) into named runs, and do what FILE does not hold yet: train the runs "
        "that are not complete, then compute the missing probes, surfaces and paths, and end "
        "with the report and figures (landscape report). Run it again after an interruption: "
        "finished work is not redone.",
        epilog="examples: landscape sweep experiments/quick.toml --out quick.h5 --workers 2; "
        "landscape sweep experiments/optimizers.toml --out o.h5 --executor ray --address auto",
    )
    p.add_argument("spec", help="the sweep spec (.toml)")
    p.add_argument("--out", required=True, metavar="FILE", help="the landscape file (.h5)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="list the runs and what FILE lacks of each; do nothing",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes (default 1: in this process); with --executor ray "
        "and no --address, the CPUs of the local Ray instance (default: all)",
    )
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local (this process or --workers processes) or ray: each run, "
        "block of surface points and path a Ray task (pip install "
        "'landscape[ray]')",
    )
    p.add_argument(
        "--address",
        metavar="ADDR",
        help="the Ray cluster to join (auto: the "
        "one this machine belongs to); default: start a local one",
    )
    p.add_argument(
        "--device",
        metavar="DEV",
        help="train and measure every run on DEV (e.g. cuda, cuda:1), whatever the spec says",
    )
    p.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads a task, on every executor (overrides the spec's "
        "[resources] threads; recorded in each run's attrs)",
    )
    p.add_argument(
        "--take-over",
        action="store_true",
        help="write FILE although a sweep "
        "on another host claims it (when that sweep is known to be gone)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument(
        "--report",
        metavar="DIR",
        help="where the report and figures go at the "
        "end (default: FILE's stem + _report, next to FILE)",
    )
    p.add_argument("--no-report", action="store_true", help="no report at the end")
    p.add_argument("--no-figures", action="store_true", help="a report without figures")
    p.set_defaults(run_command=_sweep)
