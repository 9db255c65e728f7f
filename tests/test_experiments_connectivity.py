"""The experiments on mode connectivity and matrix sensing, at tiny scale.

Each test asserts the qualitative outcome of one spec in ``experiments/`` (see
``experiments/README.md``) on a reduced budget, with margins that hold for the fixed seeds:

- ``mode_connectivity.toml`` (Garipov et al. 2018; Ainsworth et al. 2022): between two SGD
  solutions of the same MLP (seeds 0 and 1) the straight line has a loss barrier; a trained
  quadratic Bezier curve and the straight line after weight matching both have a smaller one.
- ``matrix_sensing.toml`` (Gunasekar et al. 2017): GD on ``X = U U^T`` from ``alpha I`` fits
  the measurements; the smaller ``alpha``, the smaller the nuclear norm of the learned ``X``,
  the closer to ``||X*||_*`` (the minimum, under restricted isometry) and to ``X*`` itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from landscape.engine.losses import get
from landscape.report.read import collect
from landscape.report.study import mean_ci
from landscape.store.file import Store
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import load
from landscape.train.fit import fit
from landscape.train.spec import build
from probes.implicit_bias.recovery import matrix_recovery
from probes.paths import interpolation

pytestmark = pytest.mark.usefixtures("one_thread")
EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"


def _trained(spec):
    model, split, loss, config, _, _ = build(spec)
    fit(model, loss, split, config)
    return model, split, get(loss) if isinstance(loss, str) else loss


def test_mode_connectivity_bezier_and_weight_matching_lower_the_barrier():
    def spec(seed):
        return {
            "model": {"name": "mlp", "width": 64, "depth": 2},
            "data": {"name": "mnist1d", "n_train": 500, "n_test": 200},
            "optimizer": {"name": "sgd", "lr": 0.05},
            "train": {
                "epochs": 30,
                "batch_size": 32,
                "seed": seed,
                "history_every": 0,
                "snapshot_every": 0,
            },
        }

    a, split, loss = _trained(spec(0))
    b, _, _ = _trained(spec(1))
    linear = interpolation.linear(a, b, loss, split.train, n=11)
    curve = interpolation.bezier(a, b, loss, split.train, n=11, steps=300, lr=0.01, seed=0)
    aligned = interpolation.linear(
        a, interpolation.align(a, b, seed=0).model, loss, split.train, n=11
    )
    assert linear.barrier > 0.3  # the two minima: a barrier
    assert curve.barrier < 0.5 * linear.barrier  # a curve nearly flat
    assert aligned.barrier < 0.75 * linear.barrier  # permutations explain much
    assert aligned.loss[-1] == pytest.approx(linear.loss[-1], rel=1e-4)  # b's function kept
    sweep = load(EXPERIMENTS / "mode_connectivity.toml")
    assert {k for _, _, k in sweep.between} == {"linear", "bezier", "aligned"}


@pytest.mark.skipif(
    not os.environ.get("LANDSCAPE_SLOW"),
    reason="the full mode-connectivity spec (3 seeds to 99% train accuracy, 9 paths, minutes);"
    " set LANDSCAPE_SLOW=1",
)
def test_the_full_spec_connects_every_pair_of_seeds(tmp_path):
    """mode_connectivity.toml as it is: 3 seeds to >= 99% train accuracy, all 3 pairs.

    experiments/README.md (one thread a task): linear train-loss barrier 1.99 / 2.12 / 2.12,
    Bezier 0 / 0.008 / 0, weight-matched linear 0.50 / 0.55 / 0.56 (74% [73%, 76%] of the
    linear barrier removed, mean and 95% interval over the pairs). Margins: a linear barrier
    of at least 1 in every pair, a Bezier barrier under 5% of it, and weight matching removes
    more than half of it in every pair and not all of it on average.
    """
    path = tmp_path / "mode_connectivity.h5"
    run_sweep(load(EXPERIMENTS / "mode_connectivity.toml"), path)
    with Store(path) as s:
        runs, bars = collect(s, [])
    assert len(runs) == 3 and all(r["converged"] and r["train_acc"] >= 0.99 for r in runs)
    by_pair: dict[tuple[str, str], dict[str, float]] = {}
    for b in bars:
        kind = "aligned" if "aligned" in b["stored as"] else b["kind"]
        by_pair.setdefault((b["a"], b["b"]), {})[kind] = b["barrier"]
    assert len(by_pair) == 3, by_pair
    removed = []
    for pair, got in by_pair.items():
        assert got["linear"] > 1.0, (pair, got)
        assert got["bezier"] < 0.05 * got["linear"], (pair, got)
        assert got["aligned"] < 0.5 * got["linear"], (pair, got)
        removed.append(1 - got["aligned"] / got["linear"])
    assert mean_ci(removed)["ci"][1] < 1.0, removed  # a barrier is left after matching


def test_matrix_sensing_small_init_approaches_the_minimum_nuclear_norm():
    def recovery(alpha):
        spec = {
            "model": {"name": "symmetric_factorization", "n": 10, "init_scale": alpha},
            "data": {
                "name": "matrix_sensing",
                "n_train": 30,
                "n_test": 50,
                "dim": 10,
                "rank": 2,
                "seed": 0,
                "standardize": False,
            },
            "optimizer": {"name": "gd", "lr": 0.1},
            "train": {
                "max_steps": 4000,
                "seed": 0,
                "loss": "mse",
                "dtype": "float64",
                "history_every": 0,
                "snapshot_every": 0,
            },
        }
        model, split, _ = _trained(spec)
        return matrix_recovery(model, None, split.train, rank=2, seed=0)

    large, small = recovery(1.0), recovery(0.01)
    truth = small.truth_nuclear_norm
    for r in (large, small):
        assert r.residual < 0.01  # both fit the measurements
    assert small.nuclear_norm < large.nuclear_norm
    assert truth - 1e-3 <= small.nuclear_norm < truth * 1.05  # near ||X*||_*, not below
    assert large.nuclear_norm > 1.5 * truth
    assert small.relative_distance < 0.1 < large.relative_distance
    assert small.effective_rank < 2.5 < large.effective_rank  # low rank from small init
    sweep = load(EXPERIMENTS / "matrix_sensing.toml")
    assert len(sweep.runs) == 6 and "matrix_recovery" in sweep.probes
