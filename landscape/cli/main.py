"""The ``landscape`` command.

- ``landscape train FILE``: train a model into a landscape file (flags or a TOML config).
- ``landscape info FILE``: the runs in a file, their settings, status and final metrics.
- ``landscape import FILE``: bring your own checkpoints (state_dict files) in as a run.
- ``landscape probe FILE --run R hessian|trace|density|sharpness|measures``: a probe on a
  stored run (Hessian spectra, sharpness, every implicit-bias measure), stored with it.
- ``landscape surface FILE --run R``: a 1-D or 2-D loss surface around a stored run (random,
  PCA or Hessian directions), written into the file as it goes and resumed if interrupted.
- ``landscape path FILE --from A --to B``: the loss along the straight line (or a trained
  Bezier curve) between two stored models, and its barrier.
- ``landscape sweep SPEC --out FILE``: train and measure the runs of a sweep spec
  (:mod:`landscape.sweep`), resuming what FILE already holds.
- ``landscape report FILE``: tables, the Kendall tau of every measure with the generalisation
  gap, and the figures, as Markdown and HTML (:mod:`landscape.report`).
- ``landscape plot FILE [WHAT]``: figures from a file (:mod:`landscape.plot`).
- ``landscape demo``: the engine on MNIST-1D: trains a small model for a few seconds and
  prints its loss, accuracy and gradient norm over the whole training and test sets, and the
  cost of a Hessian-vector product relative to a gradient.

Errors are printed on one line (``landscape: error: ...``) with exit status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

from landscape.cli.args import checkpoint, data_table, grid, pairs, run_and_checkpoint
from landscape.cli.plot import add_plot
from landscape.cli.probe import add_probe
from landscape.cli.report import add_report
from landscape.cli.sweep import add_sweep

__all__ = ["main"]

log = logging.getLogger("landscape")


def _demo(args: argparse.Namespace) -> int:
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from landscape import data, models
    from landscape.engine.objective import Objective

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    split = data.standardize(data.mnist1d(seed=args.data_seed))
    x_train, y_train = (t.to(device) for t in split.train)
    x_test, y_test = (t.to(device) for t in split.test)
    model = models.build(
        args.model,
        {"in_features": 40, "num_classes": 10} if args.model == "mlp" else {},
        seed=args.seed,
    ).to(device)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator(device="cpu").manual_seed(args.seed)
    print(
        f"MNIST-1D: {len(y_train)} training and {len(y_test)} test sequences of length 40; "
        f"model {args.model} ({sum(p.numel() for p in model.parameters())} parameters) on "
        f"{device}; Adam lr={args.lr}, batch {args.batch_size}, {args.seconds:g} s"
    )
    start, step = time.perf_counter(), 0
    with tqdm(
        total=args.seconds, unit="s", bar_format="{l_bar}{bar}| {postfix}", disable=args.quiet
    ) as bar:
        while (elapsed := time.perf_counter() - start) < args.seconds:
            model.train()
            idx = torch.randint(len(y_train), (args.batch_size,), generator=gen).to(device)
            loss = loss_fn(model(x_train[idx]), y_train[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
            if step % 50 == 0:
                bar.n = min(elapsed, args.seconds)
                bar.set_postfix(step=step, batch_loss=f"{loss.item():.3f}")
        bar.n = args.seconds
        bar.refresh()
    train = Objective(model, loss_fn, (x_train, y_train))
    test = Objective(model, loss_fn, (x_test, y_test))
    theta = train.theta
    tr, te = train.evaluate(theta), test.evaluate(theta)
    before = train.cost
    g = train.grad(theta)
    grad_s = (train.cost - before).seconds
    v = torch.randn_like(theta)
    train.hvp(theta, v)  # builds what the strategy caches at this point
    before = train.cost
    hv = train.hvp(theta, v)
    hvp_s = (train.cost - before).seconds
    print(f"after {step} steps:")
    print(f"  train  loss {tr.loss:.4f}  accuracy {tr.accuracy:.2%}")
    print(f"  test   loss {te.loss:.4f}  accuracy {te.accuracy:.2%}")
    print(f"  gradient norm (whole training set) {float(g.norm()):.4g}")
    print(
        f"  v.Hv/|v|^2 for a random v {float(v @ hv / (v @ v)):.4g}; one Hessian-vector "
        f"product ({train.hvp_strategy}) {hvp_s / grad_s:.2f}x a gradient"
    )
    return 0


def _train(args: argparse.Namespace) -> int:
    from landscape.train import spec as runspec

    spec = runspec.load(args.config) if args.config else {}
    flags: dict = {
        "model": pairs(args.model_arg, "--model-arg"),
        "data": pairs(args.data_arg, "--data-arg"),
        "optimizer": pairs(args.opt, "--opt"),
        "train": {},
    }
    if args.model:
        flags["model"]["name"] = args.model
    if args.data:
        flags["data"]["name"] = args.data
    if args.optimizer:

        def canonical(name: object) -> str:
            return str(name).strip().lower().replace("-", "_")

        if canonical(spec.get("optimizer", {}).get("name", args.optimizer)) != canonical(
            args.optimizer
        ):
            spec["optimizer"] = {}  # another optimizer: the config's settings do not apply
        flags["optimizer"]["name"] = args.optimizer
    if args.lr is not None:
        flags["optimizer"]["lr"] = args.lr
    for key in (
        "batch_size",
        "max_steps",
        "epochs",
        "target_loss",
        "target_accuracy",
        "seed",
        "history_every",
        "snapshot_every",
        "loss",
        "device",
        "dtype",
    ):
        if getattr(args, key) is not None:
            flags["train"][key] = getattr(args, key)
    spec = runspec.merge(spec, {k: v for k, v in flags.items() if v})
    spec.setdefault("model", {}).setdefault("name", "mlp")
    spec.setdefault("data", {}).setdefault("name", "mnist1d")
    spec.setdefault("optimizer", {}).setdefault("name", "sgd")
    train = spec.setdefault("train", {})
    if "max_steps" not in train and "epochs" not in train:
        train["epochs"] = 10
    result = runspec.execute(
        spec, args.file, run=args.run, replace=args.replace, progress=not args.quiet
    )
    f = result.final
    print(
        f"{args.file}: run {result.run!r} complete after {result.steps} steps "
        f"({result.epochs:.1f} epochs, stopped by {result.stop_reason}, "
        f"{result.seconds:.1f} s): train loss {f['train_loss']:.4g} acc {f['train_acc']:.4g}, "
        f"test loss {f['test_loss']:.4g} acc {f['test_acc']:.4g}"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from landscape.store.summary import text

    print(text(args.file, args.run))
    return 0


def _import(args: argparse.Namespace) -> int:
    import json

    from landscape.train.checkpoints import build_model, import_run

    try:
        kwargs = json.loads(args.model_kwargs) if args.model_kwargs else {}
    except json.JSONDecodeError as err:
        raise ValueError(
            f"--model-kwargs must be a JSON object, got {args.model_kwargs!r} ({err})"
        ) from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--model-kwargs must be a JSON object, got {args.model_kwargs!r}")
    checkpoints = {}
    for item in args.checkpoint or ():
        step, sep, path = item.partition("=")
        if not sep or not step.isdigit():
            raise ValueError(f"--checkpoint expects STEP=PATH with an integer step, got {item!r}")
        checkpoints[int(step)] = path
    model = build_model(args.model, kwargs)
    attrs = {"model": {"factory": args.model, "kwargs": kwargs}, **pairs(args.attr, "--attr")}
    import_run(
        args.file,
        args.run,
        model,
        final=args.final,
        init=args.init,
        checkpoints=checkpoints,
        attrs=attrs,
        replace=args.replace,
    )
    print(f"{args.file}: imported run {args.run!r} ({len(checkpoints)} checkpoints)")
    return 0


def _surface(args: argparse.Namespace) -> int:
    import numpy as np

    from landscape.surfaces.stored import surface_of_run

    x = grid(args.x, "--x")
    y = grid(args.y, "--y") if args.dims == 2 else None
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
    from landscape.surfaces.stored import path_between

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
    )
    print(
        f"{args.file}: {args.kind} path {run_a}:{which_a} -> {run_b}:{which_b}: loss "
        f"{result.loss[0]:.4g} .. {result.loss[-1]:.4g}, barrier {result.barrier:.4g}; "
        f"stored as {where}"
    )
    return 0


def _add_landscapes(sub: argparse._SubParsersAction) -> None:
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
    p.add_argument("--run", required=True)
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
    p.add_argument("--n", type=int, help="use the first N examples only")
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
    p.add_argument("--n", type=int, default=25, help="points along the path (default 25)")
    p.add_argument(
        "--recalibrate", action="store_true", help="recompute BatchNorm statistics at every point"
    )
    p.add_argument("--steps", type=int, default=1000, help="bezier: training steps of the bend")
    p.add_argument("--lr-bend", type=float, default=1e-3, help="bezier: learning rate")
    p.add_argument("--seed", type=int, default=0, help="bezier: seed")
    p.add_argument("--no-test", action="store_true", help="skip the test data")
    p.add_argument("--examples", type=int, help="use the first N examples only")
    p.add_argument("--name", help="name of the stored path")
    p.add_argument("--data", help="dataset, for runs that do not record theirs")
    p.add_argument("--data-arg", action="append", metavar="KEY=VALUE")
    p.add_argument("--device", help="torch device (default: the run's)")
    p.set_defaults(run_command=_path)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model into a landscape file",
        description="Train a model with one optimizer and record it as a run of FILE: initial "
        "and final parameters, trajectory snapshots, history (losses, accuracies, learning rate, "
        "gradient norm, time). Settings come from --config (TOML: tables [model], [data], "
        "[optimizer], [train]) and/or the flags, which win. Defaults: an MLP on MNIST-1D, SGD, "
        "10 epochs.",
        epilog="example: landscape train runs.h5 --model cnn1d --optimizer adam --lr 0.01 "
        "--epochs 50 --run adam",
    )
    p.add_argument("file", help="the landscape file (.h5), created if missing")
    p.add_argument("--config", help="a TOML run spec")
    p.add_argument("--run", help="name of the run in the file (default: the optimizer's name)")
    p.add_argument("--replace", action="store_true", help="replace a complete run of that name")
    p.add_argument("--model", help="model name: mlp, cnn1d, resnet, linear, ...")
    p.add_argument("--model-arg", action="append", metavar="KEY=VALUE", help="model argument")
    p.add_argument("--data", help="dataset: mnist1d, digits, gaussians, moons")
    p.add_argument(
        "--data-arg",
        action="append",
        metavar="KEY=VALUE",
        help="dataset option, e.g. label_noise=0.2 or n_train=1000",
    )
    p.add_argument(
        "--optimizer",
        help="gd, sgd, momentum, nesterov, adam, adamw, sam, label_noise_sgd, sign_descent",
    )
    p.add_argument("--lr", type=float, help="learning rate")
    p.add_argument(
        "--opt",
        action="append",
        metavar="KEY=VALUE",
        help="optimizer setting, e.g. momentum=0.9 or schedule=cosine",
    )
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", dest="max_steps", type=int, help="stop after this many steps")
    p.add_argument("--epochs", type=float, help="stop after this many epochs")
    p.add_argument("--target-loss", type=float, help="stop at this training loss")
    p.add_argument("--target-accuracy", type=float, help="stop at this training accuracy")
    p.add_argument("--seed", type=int, help="seed of the model's init and the batch order")
    p.add_argument("--history-every", type=int, metavar="STEPS")
    p.add_argument("--snapshot-every", type=int, metavar="STEPS")
    p.add_argument("--loss", help="cross_entropy (default), mse or logistic")
    p.add_argument("--device", help="torch device (default cpu)")
    p.add_argument("--dtype", help="float32 (default) or float64")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run_command=_train)


def _add_info_import(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="list the runs of a landscape file",
        description="The runs of FILE as a table: status, model, optimizer, "
        "steps, final metrics, and what each holds (snapshots, history, probes, "
        "surfaces, paths).",
    )
    p.add_argument("file")
    p.add_argument("--run", help="also print this run's settings in full")
    p.set_defaults(run_command=_info)
    p = sub.add_parser(
        "import",
        help="bring your own checkpoints into a landscape file as a run",
        description="Build the model with your code (--model package.module:factory, called "
        "with --model-kwargs), load state_dict files into it (torch.load with "
        "weights_only=True) and store them as a complete run.",
        epilog="example: landscape import runs.h5 --model mynets:resnet20 --model-kwargs "
        "'{\"num_classes\": 10}' --final sgd.pt --init init.pt --checkpoint 1000=sgd_1000.pt "
        "--run sgd",
    )
    p.add_argument("file")
    p.add_argument("--model", required=True, metavar="MODULE:FACTORY")
    p.add_argument("--model-kwargs", metavar="JSON")
    p.add_argument("--final", required=True, help="state_dict file of the final model")
    p.add_argument("--init", help="state_dict file of the initial model (default: as built)")
    p.add_argument(
        "--checkpoint",
        action="append",
        metavar="STEP=PATH",
        help="a state_dict along training (repeat)",
    )
    p.add_argument("--run", required=True)
    p.add_argument("--replace", action="store_true")
    p.add_argument(
        "--attr",
        action="append",
        metavar="KEY=VALUE",
        help="a setting to record with the run, e.g. optimizer=sgd",
    )
    p.set_defaults(run_command=_import)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape",
        description="Measure and compare the minima that optimizers choose.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser(
        "demo",
        help="train a small model on MNIST-1D for a few seconds and print what the engine sees",
        description="Train a small model on MNIST-1D (generated offline by the mnist1d "
        "package, cached after the first run) and print loss, accuracy and gradient norm "
        "over the whole training and test sets.",
    )
    demo.add_argument("--model", choices=["mlp", "cnn1d"], default="mlp")
    demo.add_argument("--seconds", type=float, default=5.0, help="training time (default 5)")
    demo.add_argument("--lr", type=float, default=1e-2, help="Adam learning rate")
    demo.add_argument("--batch-size", type=int, default=128)
    demo.add_argument("--seed", type=int, default=0, help="seed of model and batch order")
    demo.add_argument("--data-seed", type=int, default=42, help="seed of MNIST-1D generation")
    demo.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run_command=_demo)
    _add_train(sub)
    _add_info_import(sub)
    add_probe(sub)
    add_report(sub)
    _add_landscapes(sub)
    add_plot(sub)
    add_sweep(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landscape`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    for name in ("seconds", "lr", "batch_size"):
        value = getattr(args, name, None)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {value}")
    try:
        return args.run_command(args)
    except (ValueError, TypeError, RuntimeError, OSError, KeyError, ArithmeticError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"landscape: error: {message}", file=sys.stderr)
        if args.verbose:
            log.exception("details")
        return 2
    except KeyboardInterrupt:
        print("landscape: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
