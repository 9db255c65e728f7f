"""Your own model and DataLoader through every probe family.

A plain ``nn.Sequential`` MLP trained with a hand-written loop on scikit-learn's digits (64
pixels, 10 classes), then measured by each family of probes, each through the same
``(model, loss_fn, data)`` call:

- curvature: the top Hessian eigenvalues (Lanczos, certified by their residual bounds), the
  trace (Hutch++) and the spectral density (stochastic Lanczos quadrature);
- sharpness: adaptive worst-case and average-case sharpness;
- implicit bias: every measure at once (norms, distance from init, margins, spectra, ...);
- paths: the loss along the straight line between two minima trained from different seeds.

Nothing in the model or the loop knows about ``landscape``: the probes take any
``nn.Module``, a loss returning the batch mean and a ``DataLoader`` (or a pair of tensors),
and never write into the model.

Run it::

    python examples/own_model.py [OUT_DIR]

It writes ``own_model.png`` into ``OUT_DIR`` (default: the current folder). With
``LANDSCAPE_EXAMPLE_SCALE=tiny`` it trains and probes less (seconds, for the tests).
"""

import copy
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from probes import hessian, implicit_bias, interpolation, sharpness

TINY = os.environ.get("LANDSCAPE_EXAMPLE_SCALE") == "tiny"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
N_TRAIN = 300 if TINY else 1200
EPOCHS = 15 if TINY else 40


def make_model(seed: int) -> nn.Module:
    """A 64-32-32-10 ReLU MLP, initialised from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10)
    )


def train(model: nn.Module, loader: DataLoader, epochs: int) -> nn.Module:
    """A plain SGD loop with momentum: nothing here knows about the probes."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        for x, y in loader:
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    return model


def main() -> None:
    """Train two MLPs, probe one with every family and the line between them."""
    digits = load_digits()
    x = torch.tensor(digits.data / 16.0, dtype=torch.float32)
    y = torch.tensor(digits.target, dtype=torch.long)
    train_set = TensorDataset(x[:N_TRAIN], y[:N_TRAIN])
    test = (x[N_TRAIN : N_TRAIN + 400], y[N_TRAIN : N_TRAIN + 400])
    # A shuffling loader for training; the probes get a loader that reads the data in order
    # (they take the mean loss over all of it, and check that two passes agree).
    shuffled = DataLoader(train_set, batch_size=32, shuffle=True, generator=torch.Generator())
    loader = DataLoader(train_set, batch_size=256)
    loss_fn = nn.CrossEntropyLoss()

    model = make_model(0)
    init = copy.deepcopy(model)
    train(model, shuffled, EPOCHS)
    other = train(make_model(1), shuffled, EPOCHS)

    # curvature
    top = hessian.eigenvalues(model, loss_fn, loader, k=3, tol=1e-4)
    tr = hessian.trace(model, loss_fn, loader, n_products=30 if TINY else 90)
    esd = hessian.density(model, loss_fn, loader, n_vectors=2, steps=30 if TINY else 60)
    print(f"top eigenvalues {np.round(top.values[::-1], 4)} (errors <= {top.errors.max():.1e})")
    print(f"trace {tr.value:.3f} +- {tr.stderr:.3f} ({tr.cost.hvp} Hessian-vector products)")

    # sharpness
    worst = sharpness.worst_case(model, loss_fn, loader, rho=0.5, adaptive=True, steps=5)
    avg = sharpness.average_case(model, loss_fn, loader, rho=0.05, n_samples=5)
    print(f"adaptive worst-case sharpness {worst.value:.4f}, average-case {avg.value:.4f}")

    # implicit bias: every measure at once, distances measured from the initialisation
    m = implicit_bias.measures(
        model, loss_fn, loader, init=init, include=["norms", "margins", "spectra"]
    )
    for name in ("param_norm", "dist_init", "log_prod_spectral", "margin_q10"):
        print(f"{name:20s} {m.values[name]:.4f}")

    # paths: the straight line between the two minima, on training and test data
    path = interpolation.linear(model, other, loss_fn, loader, n=9 if TINY else 21, test=test)
    print(f"loss barrier between the seeds: {path.barrier:.4f}")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax0.semilogy(esd.grid, np.maximum(esd.density, 1e-8))
    for v in top.values:
        ax0.axvline(v, color="C3", lw=0.8, ls="--")
    ax0.set_ylim(bottom=1e-6)
    ax0.set(xlabel="eigenvalue", ylabel="density", title="Hessian spectral density (SLQ)")
    ax1.plot(path.alphas, path.loss, "o-", label="train")
    ax1.plot(path.alphas, path.test_loss, "s-", label="test")
    ax1.set(xlabel="alpha", ylabel="cross-entropy", title="seed 0 -> seed 1, straight line")
    ax1.legend()
    fig.tight_layout()
    OUT.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT / "own_model.png", dpi=100)
    print(f"wrote {OUT / 'own_model.png'}")


if __name__ == "__main__":
    main()
