"""``landscape surface`` and ``path``: loss surfaces around stored runs, paths between them.

``surface`` evaluates a 1-D or 2-D grid around a stored run (random, PCA or Hessian
directions), written into the file as it goes and resumed if interrupted; ``path`` the loss
along the straight line, a trained Bezier curve or an aligned line between two stored models.
The work is :mod:`landscape.surfaces.stored`. Part of the ``landscape`` command
(:mod:`landscape.cli`).
"""

from __future__ import annotations

import argparse

from landscape.cli.args import axis, checkpoint, data_table, run_and_checkpoint

__all__ = ["add_landscapes"]


def _surface(args: argparse.Namespace) -> int:
    import numpy as np

    from landscape.engine import distributed as dist
    from landscape.surfaces.grid import check_size
    from landscape.surfaces.stored import surface_of_run

    group = dist.launched(args.device)  # under torchrun: each rank a shard, rank 0 writes
    axes = [axis(args.x, "--x")] + ([axis(args.y, "--y")] if args.dims == 2 else [])
    check_size([num for _, _, num in axes])  # before the grids are made
    x, y = np.linspace(*axes[0]), np.linspace(*axes[1]) if args.dims == 2 else None
    data, which = data_table(args), checkpoint(args.which_params)
    s = surface_of_run(
        args.file,
        args.run,
        x=x,
        y=y,
        which=which,
        directions=args.directions,
        seed=args.seed,
        normalization=args.normalization,
        ignore=None if args.ignore == "none" else args.ignore,
        bn=args.bn,
        test=not args.no_test,
        n=args.n,
        data=data,
        device=args.device,
        name=args.name,
        replace=args.replace,
        progress=not args.quiet,
    )
    if dist.rank(group) != 0:
        return 0
    loss = s.train_loss
    name = args.name or f"{args.directions}_{args.dims}d"
    print(
        f"{args.file}: run {args.run!r}: surface {name} {'x'.join(map(str, s.shape))}, "
        f"{int(s.done.sum())}/{s.done.size} points (this call {s.n_points}, "
        f"{s.seconds:.1f} s); train loss {np.nanmin(loss):.4g} to {np.nanmax(loss):.4g}; "
        f"stored as runs/{args.run}/surfaces/{name}"
    )
    return 0


def _path(args: argparse.Namespace) -> int:
    from landscape.engine import distributed as dist
    from landscape.surfaces.stored import path_between

    group = dist.launched(args.device)  # under torchrun: each rank a shard, rank 0 writes

    (run_a, which_a), (run_b, which_b) = (
        run_and_checkpoint(args.src),
        run_and_checkpoint(args.dst),
    )
    data = data_table(args)
    result, where = path_between(
        args.file,
        run_a,
        run_b,
        which_a=which_a,
        which_b=which_b,
        kind=args.kind,
        n=args.n,
        recalibrate=args.recalibrate or None,
        steps=args.steps,
        lr=args.lr_bend,
        seed=args.seed,
        test=not args.no_test,
        n_examples=args.examples,
        data=data,
        device=args.device,
        name=args.name,
        replace=args.replace,
    )
    if dist.rank(group) != 0:
        return 0
    print(
        f"{args.file}: {args.kind} path {run_a}:{which_a} -> {run_b}:{which_b}: loss "
        f"{result.loss[0]:.4g} .. {result.loss[-1]:.4g}, barrier {result.barrier:.4g}; "
        f"stored as {where}"
    )
    return 0


def add_landscapes(sub: argparse._SubParsersAction) -> None:
    """Add ``landscape surface`` and ``landscape path`` to the subcommands ``sub``."""
    p = sub.add_parser(
        "surface",
        help="a 1-D or 2-D loss surface around a stored run",
        description="Evaluate the training (and test) loss and accuracy on a grid around a "
        "stored run's parameters, along random (filter-normalised), PCA (of the run's "
        "trajectory) or Hessian directions, writing into FILE as it goes; run it again to "
        "resume an interrupted surface.",
        epilog="example: landscape surface runs.h5 --run sgd --x=-1:1:21 --y=-0.5:0.5:11 "
        "(write --x=START:STOP:NUM with an = when START is negative)",
    )
    p.add_argument("file")
    p.add_argument(
        "--run",
        "--run-name",
        dest="run",
        required=True,
        help="the run (--run-name: the same, for torchrun, which takes --run for its own)",
    )
    p.add_argument(
        "--params",
        dest="which_params",
        default="final",
        help="init, final (default) or a trajectory step: the centre",
    )
    p.add_argument("--directions", default="random", help="random (default), pca or hessian")
    p.add_argument("--dims", type=int, choices=[1, 2], default=2)
    p.add_argument("--x", default="-1:1:21", help="START:STOP:NUM (default -1:1:21)")
    p.add_argument("--y", default="-1:1:21", help="START:STOP:NUM (default -1:1:21)")
    p.add_argument("--seed", type=int, default=0, help="seed of random directions")
    p.add_argument("--normalization", default="filter", help="filter (default), layer, none")
    p.add_argument("--ignore", default="biasbn", help="biasbn (default) or none")
    p.add_argument("--bn", default="keep", help="BatchNorm statistics: keep or recalibrate")
    p.add_argument("--no-test", action="store_true", help="skip the test data")
    p.add_argument("--n", "--n-examples", dest="n", type=int, help="use the first N examples only")
    p.add_argument("--name", help="name of the stored surface (default DIRECTIONS_DIMSd)")
    p.add_argument("--replace", action="store_true", help="start a stored surface over")
    p.add_argument("--data", help="dataset, for runs that do not record theirs")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--device", help="torch device (default: the run's)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run_command=_surface)
    p = sub.add_parser(
        "path",
        help="the loss along a path between two stored models",
        description="The training (and test) loss and accuracy along the straight line, or a "
        "trained quadratic Bezier curve, between two stored models (RUN or RUN:init, "
        "RUN:final, RUN:STEP), and the loss barrier; stored under the run (both ends in one "
        "run) or under /compare.",
        epilog="example: landscape path runs.h5 --from sgd --to adam --n 25",
    )
    p.add_argument("file")
    p.add_argument("--from", dest="src", required=True, metavar="RUN[:WHICH]")
    p.add_argument("--to", dest="dst", required=True, metavar="RUN[:WHICH]")
    p.add_argument(
        "--kind",
        default="linear",
        help="linear (default), bezier or aligned (linear after weight matching)",
    )
    p.add_argument(
        "--n",
        "--n-points",
        dest="n",
        type=int,
        default=25,
        help="points along the path (default 25)",
    )
    p.add_argument(
        "--recalibrate", action="store_true", help="recompute BatchNorm statistics at every point"
    )
    p.add_argument("--steps", type=int, default=1000, help="bezier: training steps of the bend")
    p.add_argument("--lr-bend", type=float, default=1e-3, help="bezier: learning rate")
    p.add_argument("--seed", type=int, default=0, help="bezier: seed")
    p.add_argument("--no-test", action="store_true", help="skip the test data")
    p.add_argument("--examples", type=int, help="use the first N examples only")
    p.add_argument("--name", help="name of the stored path")
    p.add_argument(
        "--replace",
        action="store_true",
        help="overwrite a stored path of that name made with other settings",
    )
    p.add_argument("--data", help="dataset, for runs that do not record theirs")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--device", help="torch device (default: the run's)")
    p.set_defaults(run_command=_path)
