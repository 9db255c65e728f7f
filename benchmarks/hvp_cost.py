"""Cost of one exact Hessian-vector product, relative to one gradient, by each strategy.

For an MLP on scikit-learn's digits and a CNN on MNIST-1D (whole training sets, one batch),
prints per strategy: milliseconds per product, the ratio to a gradient, the ratio of
floating-point operations (counted by torch.utils.flop_counter: the ratio an implementation
without overhead would reach), the one-off cost of the cached kinds at a new point, and
PyHessian's product (its cached double backward) for comparison. Also the automatic choice,
with room for the cached graph and without (memory_budget=1).

Run:  .venv/bin/python benchmarks/hvp_cost.py [--repeats 10]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from _timing import samples  # benchmarks/_timing.py: the script's folder is on sys.path
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from landscape import Objective, data, models
from landscape.engine.hvp import CACHED, STRATEGIES


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable, measured in interleaved rounds (after a warm-up)."""
    return {name: statistics.median(s) for name, s in samples(fns, repeats, warmup=True).items()}


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def pyhessian_product(model, loss_fn, x, y):
    """PyHessian's product at one batch (its graph of the gradient built once), or None."""
    try:
        # a peer, a dev extra: the comparison is left out without it
        from pyhessian import hessian  # noqa: PLC0415
        from pyhessian.utils import hessian_vector_product  # noqa: PLC0415
    except ImportError:
        return None
    peer = hessian(copy.deepcopy(model), loss_fn, data=(x, y), cuda=False)
    v = [torch.randn_like(p) for p in peer.params]
    return lambda: hessian_vector_product(peer.gradsH, peer.params, v)


def bench(label: str, model: nn.Module, x, y, repeats: int) -> None:
    loss_fn = nn.CrossEntropyLoss()
    base = Objective(model, loss_fn, (x, y), hvp="reverse-over-reverse")
    theta = base.theta
    v, block = torch.randn_like(theta), torch.randn(8, theta.numel())
    fns = {"gradient": lambda: base.grad(theta)}
    builds, chosen = {}, {}
    for strategy in STRATEGIES:
        obj = Objective(model, loss_fn, (x, y), hvp=strategy, check=False)
        start = time.perf_counter()
        obj.hvp(theta, v)  # builds what a cached strategy keeps at this point
        builds[strategy] = time.perf_counter() - start
        fns[strategy] = lambda obj=obj: obj.hvp(theta, v)
    for budget, name in ((None, "auto (graph fits)"), (1, "auto (no room)")):
        obj = Objective(model, loss_fn, (x, y), memory_budget=budget, check=False)
        obj.hvp(theta, v)
        fns[name], chosen[name] = (lambda obj=obj: obj.hvp(theta, v)), obj.hvp_strategy
    auto = Objective(model, loss_fn, (x, y), check=False)
    auto.hvp(theta, block)
    fns["auto, block of 8"] = lambda: auto.hvp(theta, block)
    peer = pyhessian_product(model, loss_fn, x, y)
    if peer is not None:
        fns["PyHessian 0.1"] = peer
    t = timed(fns, repeats)
    t["auto, block of 8"] /= 8
    t_grad = t["gradient"]
    f_grad = flops(fns["gradient"])
    print(
        f"\n{label}: {base.layout.numel} parameters, {base.n_examples} examples (one batch), "
        f"gradient {t_grad * 1e3:.1f} ms"
    )
    print(f"  {'':<22}{'ms/product':>11}{'x gradient':>12}{'x flops':>9}{'build (x grad)':>16}")
    for name in fns:
        if name == "gradient":
            continue
        note = ""
        if name in STRATEGIES:
            build = (builds[name] - t[name]) / t_grad if name in CACHED else float("nan")
            note = f"{flops(fns[name]) / f_grad:>9.2f}{build:>16.1f}"
        elif name in chosen:
            target = 1.5 if name == "auto (graph fits)" else 3.0
            note = (
                f"   -> {chosen[name]}; target <= {target}x: "
                f"{'met' if t[name] / t_grad <= target else 'NOT met'}"
            )
        elif name == "PyHessian 0.1":
            note = f"   ours (auto) / PyHessian: {t['auto (graph fits)'] / t[name]:.2f}"
        else:
            note = "   per product"
        print(f"  {name:<22}{t[name] * 1e3:>11.1f}{t[name] / t_grad:>12.2f}{note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    digits = data.digits()
    mlp = models.build("mlp", in_features=64, num_classes=10, width=128, depth=2, seed=0)
    bench("MLP 64-128-128-10 on digits", mlp, *digits.train, args.repeats)
    mnist = data.mnist1d()
    cnn = models.build("cnn1d", seed=0)
    bench("CNN1d on MNIST-1D", cnn, *mnist.train, args.repeats)


if __name__ == "__main__":
    main()
