"""Throughput of a 2-D loss surface: points per second against the bound and two peers.

On MNIST-1D (4000 training examples), for the default MLP (40-100-100-10) and the 1-D CNN, a
10 x 10 grid of points around the initialisation (``--steps``), the training loss (and accuracy)
at each point:

- ours: :func:`landscape.surfaces.grid.surface` at its defaults (chunks of 16 points a pass,
  data cached on the device; vmap over points only on GPUs), given the training set as tensors;
- (a) the bound: bare ``model(x)`` + the loss + the argmax over the same data, once a point,
  with nothing else (no weights changed): what a point cannot cost less than when evaluated
  alone; target ours >= 0.9x;
- (b) loss-landscapes 3.0.6: ``random_plane(model, Loss(loss_fn, x, y), steps=10,
  normalization="filter")``, the same number of points on one batch of the whole set; it
  computes the loss only, so it is compared with ours at ``accuracy=False``; target >= 1x;
- (c) a per-point DataLoader loop as in Goldstein et al.'s code: the weights written into the
  model, then a ``DataLoader(batch_size=128)`` pass computing loss and accuracy; ours given the
  same DataLoader (it caches the batches on the device); target ours >= 5x.

Each callable is timed in interleaved rounds (median). Prints points per second and the ratios.
The C allocator is primed first (:func:`landscape.engine.allocator.prime`, as any Objective on
the CPU does), so the bound and the peer run with the same, fault-free allocator as ours.

Run:  .venv/bin/python benchmarks/surface_throughput.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch
from _timing import samples  # benchmarks/_timing.py: the script's folder is on sys.path
from torch import nn
from torch.nn.utils import vector_to_parameters
from torch.utils.data import DataLoader, TensorDataset

from landscape import data, models
from landscape.engine import allocator
from landscape.surfaces.grid import surface


def problem_bench(
    label: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int, steps: int
) -> None:
    # a peer, a dev extra: imported only for its own run
    import loss_landscapes  # noqa: PLC0415
    from loss_landscapes.metrics import Loss  # noqa: PLC0415

    loss_fn = nn.CrossEntropyLoss()
    model = model.eval()
    p = sum(q.numel() for q in model.parameters())
    gen = torch.Generator().manual_seed(0)
    d = torch.randn(2, p, generator=gen) * 1e-2
    coords = np.linspace(-1, 1, steps)
    points = steps * steps
    loader = DataLoader(TensorDataset(x, y), batch_size=128, shuffle=False)
    theta0 = torch.nn.utils.parameters_to_vector(model.parameters()).detach()

    def ours() -> None:
        surface(model, loss_fn, (x, y), d, x=coords, y=coords)

    def ours_loss() -> None:
        surface(model, loss_fn, (x, y), d, x=coords, y=coords, accuracy=False)

    def ours_loader() -> None:
        surface(model, loss_fn, loader, d, x=coords, y=coords)

    def bound() -> None:
        with torch.no_grad():
            for _ in range(points):
                out = model(x)
                loss_fn(out, y)
                (out.t().argmax(0) == y).sum()  # argmax(1), the fast way on the CPU

    def peer() -> None:
        torch.manual_seed(0)
        loss_landscapes.random_plane(
            copy.deepcopy(model),
            Loss(loss_fn, x, y),
            distance=1,
            steps=steps,
            normalization="filter",
        )

    work = copy.deepcopy(model)

    def goldstein() -> None:
        with torch.no_grad():
            for a in coords:
                for b in coords:
                    vector_to_parameters(theta0 + a * d[0] + b * d[1], work.parameters())
                    total, right, n = 0.0, 0, 0
                    for xb, yb in loader:
                        out = work(xb)
                        total += float(loss_fn(out, yb)) * len(yb)
                        right += int((out.argmax(1) == yb).sum())
                        n += len(yb)

    fns = {
        "ours": ours,
        "bound": bound,
        "ours, loss only": ours_loss,
        "loss-landscapes": peer,
        "ours (DataLoader)": ours_loader,
        "DataLoader loop": goldstein,
    }
    t = {k: statistics.median(v) for k, v in samples(fns, repeats, warmup=True).items()}
    rate = {k: points / v for k, v in t.items()}
    print(f"\n{label}: {p} parameters, {len(y)} examples, {steps} x {steps} points")
    for name in fns:
        print(f"  {name:<20}{rate[name]:>10.1f} points/s")
    print(
        f"  (a) ours / bound:                    {rate['ours'] / rate['bound']:.2f} (target >= 0.9)"
    )
    print(
        f"  (b) ours / loss-landscapes (loss only, as it computes): "
        f"{rate['ours, loss only'] / rate['loss-landscapes']:.2f} (target >= 1)"
    )
    print(
        f"  (c) ours / DataLoader loop (loader): "
        f"{rate['ours (DataLoader)'] / rate['DataLoader loop']:.2f} (target >= 5)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="grid points along each axis")
    parser.add_argument("--models", default="mlp,cnn1d", help="comma-separated: mlp, cnn1d")
    args = parser.parse_args()
    allocator.prime()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU; "
        f"{args.repeats} interleaved repeats, median"
    )
    split = data.standardize(data.mnist1d())
    x, y = split.train
    chosen = args.models.split(",")
    if "mlp" in chosen:
        mlp = models.build("mlp", in_features=40, num_classes=10, seed=0)
        problem_bench(
            "MLP 40-100-100-10 (the default), MNIST-1D", mlp, x, y, args.repeats, args.steps
        )
    if "cnn1d" in chosen:
        problem_bench(
            "CNN1d, MNIST-1D", models.build("cnn1d", seed=0), x, y, args.repeats, args.steps
        )


if __name__ == "__main__":
    main()
