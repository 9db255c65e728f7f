"""Hessian spectral density by stochastic Lanczos quadrature: ours against two peers.

At equal settings, 5 start vectors x 80 Lanczos steps, on a small trained MLP 64-32-32-10
(3466 parameters, 200 Adam steps) on standardised scikit-learn digits, the whole training set
as one batch:

- ours: ``probes.curvature.density.density(n_vectors=5, steps=80)``;
- hessian-eigenthings 1.0.0a5: ``spectral_density(HessianOperator(...), num_runs=5,
  lanczos_steps=80)`` (full reorthogonalisation);
- curvlinops 3.0.1: ``lanczos_approximate_spectrum(HessianLinearOperator(...), ncv=80,
  num_repeats=5)`` (no reorthogonalisation; it first estimates the spectrum's ends with
  ``eigsh(tol=1e-2)``, whose products are counted too).

Accuracy against the exact spectrum (the dense float64 Hessian from
``probes.curvature.hessian.matrix`` and ``numpy.linalg.eigvalsh``):

- the first two moments, ``tr(H)/P`` and ``||H||_F^2/P``, relative error; from the quadrature
  nodes and weights where the method returns them (ours, eigenthings), else from its density
  on its grid (curvlinops; the second moment less the broadening ``sigma^2``);
- L1 distance between the method's density and the exact eigenvalues broadened by the same
  Gaussian width, on the method's own grid (trapezoid rule).

Products are counted by wrapping the operator (eigenthings), by counting model forward calls
(curvlinops: one forward per product on one batch), or as reported (ours). Each method is timed
in interleaved rounds (median); prints seconds, products, the accuracy figures, and the ratio
of ours to each peer (target: faster than both). Ratios only; no absolute claims across
machines.

Run:  .venv/bin/python benchmarks/density_vs_peers.py [--repeats 5] [--width 32]
"""

from __future__ import annotations

import argparse
import math
import statistics

import numpy as np
import torch
from _timing import samples  # benchmarks/_timing.py: the script's folder is on sys.path
from torch import nn

from landscape import data, models
from landscape.train.config import TrainConfig
from landscape.train.fit import fit
from probes.curvature.density import density
from probes.curvature.hessian import matrix

N_VECTORS, STEPS = 5, 80


def timed(fns: dict, repeats: int) -> dict:
    """Median seconds of each callable (and min, max), in interleaved rounds."""
    return {
        name: (statistics.median(s), min(s), max(s)) for name, s in samples(fns, repeats).items()
    }


def broadened(eigs: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """(1/P) sum_i N(t; lambda_i, sigma^2) on grid, in chunks of eigenvalues."""
    out = np.zeros_like(grid)
    for chunk in np.array_split(eigs, max(1, eigs.size // 512)):
        out += np.exp(-0.5 * ((grid[:, None] - chunk[None, :]) / sigma) ** 2).sum(axis=1)
    return out / (eigs.size * sigma * math.sqrt(2 * math.pi))


# ------------------------------------------------------------------------------ methods
# each returns dict(grid, density, sigma, m1, m2, products)
def ours(model, loss_fn, xy):
    res = density(model, loss_fn, xy, n_vectors=N_VECTORS, steps=STEPS, seed=0)
    return dict(
        grid=np.asarray(res.grid),
        density=np.asarray(res.density),
        sigma=res.width,
        m1=res.moment(1),
        m2=res.moment(2),
        products=res.cost.hvp,
    )


def eigenthings(model, loss_fn, xy):
    import hessian_eigenthings as het  # noqa: PLC0415 (a peer, a dev extra: only here)

    op = het.HessianOperator(model, [xy], het.supervised_loss(loss_fn))
    count = [0]

    def matvec(v):
        count[0] += 1
        return op.matvec(v)

    counted = het.LambdaOperator(matvec, op.size, device=op.device, dtype=op.dtype)
    res = het.spectral_density(counted, num_runs=N_VECTORS, lanczos_steps=STEPS, seed=0)
    nodes = np.nan_to_num(res.raw_eigenvalues.double().numpy(), nan=0.0)
    weights = res.raw_weights.double().numpy()
    return dict(
        grid=res.grid.double().numpy(),
        density=res.density.double().numpy(),
        sigma=res.sigma,
        m1=float((weights * nodes).sum(1).mean()),
        m2=float((weights * nodes**2).sum(1).mean()),
        products=count[0],
    )


def curvlinops(model, loss_fn, xy):
    # a peer, a dev extra: imported only for its own run
    from curvlinops import HessianLinearOperator  # noqa: PLC0415
    from curvlinops.papyan2020traces.spectrum import lanczos_approximate_spectrum  # noqa: PLC0415

    count = [0]
    hook = model.register_forward_pre_hook(lambda *_: count.__setitem__(0, count[0] + 1))
    try:
        torch.manual_seed(0)  # its start vectors come from the global generator
        op = HessianLinearOperator(
            model, loss_fn, [p for p in model.parameters()], [xy], check_deterministic=False
        )
        grid, dens = lanczos_approximate_spectrum(op, STEPS, num_repeats=N_VECTORS)
    finally:
        hook.remove()
    grid, dens = grid.double().numpy(), dens.double().numpy()
    # its bump width: 2 / (ncv - 1) / sqrt(8 ln kappa) on [-1, 1], kappa = 3, scaled back
    sigma = 2 / (STEPS - 1) / math.sqrt(8 * math.log(3.0)) * (grid[-1] - grid[0]) / 2
    m1 = np.trapezoid(grid * dens, grid)
    m2 = np.trapezoid(grid**2 * dens, grid) - sigma**2
    return dict(grid=grid, density=dens, sigma=sigma, m1=m1, m2=m2, products=count[0])


# -------------------------------------------------------------------------------- bench
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--width", type=int, default=32, help="MLP width (dense reference)")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, float32, CPU; "
        f"{args.repeats} interleaved repeats, median (min-max); {N_VECTORS} vectors x "
        f"{STEPS} steps"
    )
    loss_fn = nn.CrossEntropyLoss()
    digits = data.standardize(data.digits())
    model = models.build("mlp", in_features=64, num_classes=10, width=args.width, depth=2, seed=0)
    fit(
        model,
        "cross_entropy",
        digits.train,
        TrainConfig("adam", lr=1e-3, max_steps=200, history_every=0, snapshot_every=0),
    )
    model.eval()
    xy = digits.train

    x64 = (xy[0].double(), xy[1])
    m64 = models.build(
        "mlp", in_features=64, num_classes=10, width=args.width, depth=2, seed=0
    ).double()
    m64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    dense = matrix(m64.eval(), loss_fn, x64).matrix
    eigs = np.linalg.eigvalsh((dense + dense.T) / 2)
    p = eigs.size
    exact = (eigs.mean(), (eigs**2).mean())
    print(
        f"\nMLP 64-{args.width}-{args.width}-10 on digits (one batch): {p} parameters; exact "
        f"tr(H)/P = {exact[0]:.4g}, ||H||_F^2/P = {exact[1]:.4g}, "
        f"spectrum [{eigs[0]:.3g}, {eigs[-1]:.3g}]"
    )

    methods = {"ours": ours, "eigenthings 1.0.0a5": eigenthings, "curvlinops 3.0.1": curvlinops}
    results = {name: fn(model, loss_fn, xy) for name, fn in methods.items()}  # also warm-up
    t = timed(
        {name: (lambda fn=fn: fn(model, loss_fn, xy)) for name, fn in methods.items()}, args.repeats
    )
    print(
        f"  {'':<21}{'seconds':>9}{'(min-max)':>16}{'products':>10}{'err m1':>9}"
        f"{'err m2':>9}{'L1':>8}{'sigma':>10}"
    )
    for name, r in results.items():
        med, lo, hi = t[name]
        e1 = abs(r["m1"] - exact[0]) / abs(exact[0])
        e2 = abs(r["m2"] - exact[1]) / abs(exact[1])
        l1 = np.trapezoid(np.abs(r["density"] - broadened(eigs, r["grid"], r["sigma"])), r["grid"])
        print(
            f"  {name:<21}{med:>9.3f}{f'({lo:.3f}-{hi:.3f})':>16}{r['products']:>10}"
            f"{e1:>9.1e}{e2:>9.1e}{l1:>8.3f}{r['sigma']:>10.3g}"
        )
    for name in methods:
        if name != "ours":
            ratio = t["ours"][0] / t[name][0]
            print(
                f"  ours / {name}: {ratio:.2f} in time, "
                f"{results['ours']['products'] / results[name]['products']:.2f} in products"
            )
    faster = all(t["ours"][0] < t[name][0] for name in methods if name != "ours")
    print(f"  target: faster than both peers: {'met' if faster else 'NOT met'}")


if __name__ == "__main__":
    main()
