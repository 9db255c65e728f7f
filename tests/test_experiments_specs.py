"""The shipped experiment specs follow their papers' designs (experiments/README.md).

Spec-level checks, no training: every stochastic experiment runs three seeds; the large-batch,
random-label, Hessian-outlier and mode-connectivity experiments compare runs as their papers
do (matched training loss or accuracy, Keskar's box, Papyan's tolerance, every pair of seeds).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from landscape.sweep.spec import load

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
SEEDED = (
    "large_batch",
    "random_labels",
    "hessian_outliers",
    "mode_connectivity",
    "bad_minima",
    "mnist1d_baselines",
    "grokking",
    "edge_of_stability",
    "optimizers",
)


@pytest.mark.parametrize("name", SEEDED)
def test_every_configuration_runs_seeds_0_1_2(name):
    sweep = load(EXPERIMENTS / f"{name}.toml")
    seeds: dict[str, set[int]] = {}
    for run in sweep.runs:
        seeds.setdefault(run.config, set()).add(run.seed)
    assert seeds and all(s == {0, 1, 2} for s in seeds.values()), seeds


def test_large_batch_follows_keskar():
    sweep = load(EXPERIMENTS / "large_batch.toml")
    assert sweep.stop.keys() == {"train_loss", "max_steps"}  # matched training loss
    n_train = {r.spec["data"]["n_train"] for r in sweep.runs}
    assert len(n_train) == 1
    batches = {r.spec["train"]["batch_size"] for r in sweep.runs}
    assert min(batches) in range(32, 257) and max(batches) == n_train.pop() // 10
    for b in batches:  # a small grid of step sizes per batch size
        lrs = {r.spec["optimizer"]["lr"] for r in sweep.runs if r.spec["train"]["batch_size"] == b}
        assert len(lrs) >= 2, (b, lrs)
    eps = {o["eps"] for _, fn, o in sweep.probes.values() if fn == "epsilon"}
    assert eps == {1e-3, 5e-4}
    assert "hessian_eigenvalues" in sweep.probes


def test_random_labels_compares_scale_normalised_sharpness_at_one_loss():
    sweep = load(EXPERIMENTS / "random_labels.toml")
    assert sweep.stop.keys() == {"train_loss", "max_steps"}
    assert {r.spec["data"]["label_noise"] for r in sweep.runs} == {0.0, 0.25, 0.5, 1.0}
    sharp = [(fn, o) for m, fn, o in sweep.probes.values() if m == "sharpness"]
    assert any(o.get("adaptive") and o.get("logit_normalize") for _, o in sharp)
    assert any(o.get("adaptive") and fn == "average_case" for fn, o in sharp)


def test_hessian_outliers_measures_cross_entropy_early_and_late_at_tol_1e5():
    sweep = load(EXPERIMENTS / "hessian_outliers.toml")
    train = [r.spec["train"] for r in sweep.runs]
    ce = {t["epochs"] for t in train if t["loss"] == "cross_entropy"}
    assert len(ce) == 2  # well above zero loss and at the end
    assert sweep.probes["hessian_eigenvalues"][2]["tol"] <= 1e-5
    assert sweep.probes["class_mean_overlap"][2]["tol"] <= 1e-5


def test_mode_connectivity_joins_every_pair_of_fitted_seeds():
    sweep = load(EXPERIMENTS / "mode_connectivity.toml")
    assert sweep.stop.keys() == {"train_accuracy", "max_steps"}
    assert sweep.stop["train_accuracy"] >= 0.99
    pairs = {(a, b) for a, b, _ in sweep.between}
    assert len(sweep.runs) >= 3 and len(pairs) == len(sweep.runs) * (len(sweep.runs) - 1) // 2
    assert {k for _, _, k in sweep.between} == {"linear", "bezier", "aligned"}
