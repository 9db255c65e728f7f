"""``landscape demo``: the engine on MNIST-1D, a small model trained for a few seconds.

Prints the loss, accuracy and gradient norm over the whole training and test sets, and the cost
of a Hessian-vector product relative to a gradient. Part of the ``landscape`` command
(:mod:`landscape.cli`).
"""

from __future__ import annotations

import argparse
import time

__all__ = ["add_demo"]


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


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Add ``landscape demo`` to the subcommands ``sub``."""
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
