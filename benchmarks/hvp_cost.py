"""Cost of one exact Hessian-vector product, relative to one gradient, by each strategy.

For an MLP on scikit-learn's digits and a CNN on MNIST-1D (whole training sets, one batch), and
two Hugging Face models built from configs (a GPT-2 on random tokens, its next-token
cross-entropy; a ResNet on random images), prints per strategy: milliseconds per product, the
ratio to a gradient, the ratio of floating-point operations (counted by
torch.utils.flop_counter: the ratio an implementation without overhead would reach), the
one-off cost of the cached kinds at a new point, and PyHessian's product (its cached double
backward; plain models only) for comparison. Also the automatic choice, with room for the
cached graph and without (memory_budget=1).

Run:  .venv/bin/python benchmarks/hvp_cost.py [--repeats 10] [--models gpt2,resnet]
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
from landscape.data import IGNORE_INDEX
from landscape.engine.hvp import CACHED, STRATEGIES
from landscape.train.pretrained import cross_entropy, import_transformers


def from_hf_targets(tokens: torch.Tensor) -> torch.Tensor:
    """Next-token targets of a language model (``-100`` at the last position)."""
    y = torch.full_like(tokens, IGNORE_INDEX)
    y[:, :-1] = tokens[:, 1:]
    return y


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


def bench(label: str, model: nn.Module, x, y, repeats: int, loss_fn=None) -> None:
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    base = Objective(model, loss_fn, (x, y), hvp="reverse-over-reverse")
    theta = base.theta
    v, block = torch.randn_like(theta), torch.randn(8, theta.numel())
    fns = {"gradient": lambda: base.grad(theta)}
    builds, chosen, failed = {}, {}, {}
    for strategy in STRATEGIES:
        obj = Objective(model, loss_fn, (x, y), hvp=strategy, check=False)
        start = time.perf_counter()
        try:
            obj.hvp(theta, v)  # builds what a cached strategy keeps at this point
        except RuntimeError as err:  # e.g. tracing through a model's data-dependent branches
            failed[strategy] = " ".join(str(err).split())[:90]
            continue
        builds[strategy] = time.perf_counter() - start
        fns[strategy] = lambda obj=obj: obj.hvp(theta, v)
    for budget, name in ((None, "auto (graph fits)"), (1, "auto (no room)")):
        obj = Objective(model, loss_fn, (x, y), memory_budget=budget, check=False)
        obj.hvp(theta, v)
        fns[name], chosen[name] = (lambda obj=obj: obj.hvp(theta, v)), obj.hvp_strategy
    auto = Objective(model, loss_fn, (x, y), check=False)
    auto.hvp(theta, block)
    fns["auto, block of 8"] = lambda: auto.hvp(theta, block)
    # PyHessian calls loss_fn on the model's outputs as tensors: plain models only
    peer = (
        pyhessian_product(model, loss_fn, x, y) if isinstance(model(x[:1]), torch.Tensor) else None
    )
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
    for name, why in failed.items():
        print(f"  {name:<22}   fails: {why}")
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
    parser.add_argument(
        "--models",
        default="mlp,cnn,gpt2,resnet",
        help="which rows, comma-separated (default all: mlp,cnn,gpt2,resnet)",
    )
    args = parser.parse_args()
    rows = set(args.models.split(","))
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU")
    if "mlp" in rows:
        digits = data.digits()
        mlp = models.build("mlp", in_features=64, num_classes=10, width=128, depth=2, seed=0)
        bench("MLP 64-128-128-10 on digits", mlp, *digits.train, args.repeats)
    if "cnn" in rows:
        mnist = data.mnist1d()
        cnn = models.build("cnn1d", seed=0)
        bench("CNN1d on MNIST-1D", cnn, *mnist.train, args.repeats)
    if rows & {"gpt2", "resnet"}:
        hf_rows(rows, args.repeats)


def hf_rows(rows: set, repeats: int) -> None:
    """The Hugging Face models, built from configs: next-token cross-entropy, classification."""
    tf = import_transformers()
    gen = torch.Generator().manual_seed(0)
    config = tf.GPT2Config(
        n_layer=2, n_embd=64, n_head=4, vocab_size=256, n_positions=32, use_cache=False,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    gpt2 = tf.GPT2LMHeadModel(config).eval()
    tokens = torch.randint(0, 256, (64, 32), generator=gen)
    targets = from_hf_targets(tokens)
    if "gpt2" in rows:
        bench(
            "GPT-2 (2 layers, width 64, context 32) on 64 random sequences",
            gpt2, tokens, targets, repeats, loss_fn=cross_entropy,
        )  # fmt: skip
    config = tf.ResNetConfig(
        num_channels=3, embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10,
        layer_type="basic",
    )  # fmt: skip
    resnet = tf.ResNetForImageClassification(config).eval()
    images = torch.rand(64, 3, 32, 32, generator=gen)
    labels = torch.randint(0, 10, (64,), generator=gen)
    if "resnet" in rows:
        bench(
            "HF ResNet (basic, widths 16-32) on 64 random 32x32 images",
            resnet, images, labels, repeats, loss_fn=cross_entropy,
        )  # fmt: skip


if __name__ == "__main__":
    main()
