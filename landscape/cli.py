"""The ``landscape`` command.

Subcommands arrive with the features they run (sweeps, probes, surfaces, plots, reports);
``landscape demo`` shows the engine on MNIST-1D: it trains a small model for a few seconds
and prints its loss, accuracy and gradient norm over the whole training and test sets, and
the cost of a Hessian-vector product relative to a gradient.

Errors are printed on one line (``landscape: error: ...``) with exit status 2, never as a
traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence

__all__ = ["main"]

log = logging.getLogger("landscape")


def _demo(args: argparse.Namespace) -> int:
    import torch
    from torch import nn
    from tqdm.auto import tqdm

    from . import data, models
    from .objective import Objective

    torch.manual_seed(args.seed)
    device = torch.device(args.device)
    split = data.standardize(data.mnist1d(seed=args.data_seed))
    x_train, y_train = (t.to(device) for t in split.train)
    x_test, y_test = (t.to(device) for t in split.test)
    model = models.build(
        args.model, {"in_features": 40, "num_classes": 10} if args.model == "mlp" else {},
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
    with tqdm(total=args.seconds, unit="s", bar_format="{l_bar}{bar}| {postfix}",
              disable=args.quiet) as bar:
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
    demo.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``landscape`` command; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s"
    )
    for name in ("seconds", "lr", "batch_size"):
        if getattr(args, name, 1) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    try:
        return args.run(args)
    except (ValueError, TypeError, RuntimeError, OSError) as exc:
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
