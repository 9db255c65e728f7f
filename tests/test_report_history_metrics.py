"""Values along training in the report: late-window sharpness, norms at milestones, spectra.

Each value of :mod:`landscape.report.history_metrics` against a truth planted in a hand-written
file (histories, series along training, eigenvalue and density records), then through the
report: the configuration means, the seeds behind them and ``per_seed.csv``.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from landscape.engine.cost import Cost
from landscape.plot.training import stability_threshold as figure_threshold
from landscape.report import report
from landscape.report.history_metrics import (
    DESCRIPTIONS,
    density_bulk_share,
    late_stats,
    loss_rises,
    ordered_details,
    rise,
    stability_threshold,
)
from landscape.store.file import Store
from probes.curvature.results import Density, Eigenvalues

pytestmark = pytest.mark.usefixtures("one_thread")

STEPS = np.arange(0, 1001, 10)  # the history: 101 points, the last step 1000
LAM_STEPS = np.arange(0, 1001, 25)
TOP = np.array([10.0, 5.0, 4.0, 1.0])  # ratios 2, 1.25, 4: the largest 4, the runner-up 2
CONFIGS = {
    "gd": {"name": "gd", "lr": 0.1},  # 2/eta = 20
    "momentum": {"name": "gd", "lr": 0.1, "momentum": 0.9},  # 2(1+beta)/eta = 38
    "adam": {"name": "adam", "lr": 1e-3},  # 38/eta = 38000, on P^-1 H
}


def _lambda_ratio(seed: int) -> np.ndarray:
    """lambda_max / threshold along training: rising to 1 + 0.01 seed, then a zig-zag."""
    late = LAM_STEPS >= 500
    ratio = np.minimum(LAM_STEPS / 500.0, 1.0) * 0.8
    n = int(late.sum())  # 21 points: a shuffle of n evenly spaced offsets in [-0.05, 0.05]
    offsets = ((np.arange(n) * 8) % n - (n - 1) / 2) / ((n - 1) / 2) * 0.05
    ratio[late] = 1.0 + 0.01 * seed + offsets
    return ratio


def _loss(rises: int) -> np.ndarray:
    loss = np.linspace(1.0, 0.1, len(STEPS))
    for i in range(rises):
        loss[10 + 5 * i] = loss[9 + 5 * i] + 0.01  # a rise, then the descent goes on
    return loss


def _fit_grok(seed: int) -> tuple[int, int]:
    return 100 + 10 * seed, 600 + 50 * seed


def _eigenvalues(top: np.ndarray) -> Eigenvalues:
    n = len(top)
    return Eigenvalues(
        values=np.sort(top),
        vectors=None,
        residuals=np.zeros(n),
        errors=np.zeros(n),
        converged=np.ones(n, bool),
        which="largest",
        k=n,
        tol=1e-6,
        curvature="hessian",
        params=("w",),
        cost=Cost(hvp=5),
    )


def _density(lambda_1: float) -> Density:
    """Uniform on [-0.1 lambda_1, 0.9 lambda_1]: mass 0.1 within 5% of lambda_1 of 0."""
    grid = np.linspace(-0.1 * lambda_1, 0.9 * lambda_1, 2001)
    return Density(
        grid=grid,
        density=np.full(len(grid), 1.0 / lambda_1),
        nodes=np.array([[0.0, 0.4 * lambda_1]]),
        weights=np.array([[0.5, 0.5]]),
        width=0.1,
        steps=2,
        n_vectors=1,
        cost=Cost(hvp=2),
        curvature="hessian",
        seed=0,
        n_params=3,
    )


def _write(path):
    with Store(path, "w") as s:
        for config, opt in CONFIGS.items():
            for seed in range(3):
                run = f"{config}-{seed}"
                s.create_run(run, names=["w"], shapes=[(3,)], init=np.zeros(3))
                fit, grok = _fit_grok(seed)
                s.append_series(
                    run,
                    "history",
                    {
                        "step": STEPS,
                        "train_loss": _loss(seed + 2),
                        "train_acc": np.where(STEPS >= fit, 1.0, 0.5),
                        # test accuracy 0.9 + 0.001 seed over the last tenth (900-1000)
                        "test_acc": np.where(STEPS >= grok, np.where(STEPS >= 900, 0.9, 0.96), 0.1)
                        + 0.001 * seed,
                    },
                )
                norm = 30.0 - STEPS / 100.0 - seed  # read at 0, fit and grok
                s.append_series(
                    run, "probes/param_norm", {"step": STEPS, "value": norm, "weights": norm}
                )
                if config == "adam":
                    ratio = _lambda_ratio(seed)
                    ratio[0] = np.nan  # before Adam has second moments
                    s.append_series(
                        run,
                        "probes/preconditioned_sharpness",
                        {"step": LAM_STEPS, "value": 38000 * ratio, "ratio": ratio},
                    )
                else:
                    thr = figure_threshold({"optimizer": opt})[0]
                    s.append_series(
                        run,
                        "probes/lambda_max",
                        {"step": LAM_STEPS, "value": thr * _lambda_ratio(seed)},
                    )
                sweep = {
                    "name": "hm",
                    "axes": {"optimizer": config, "train.seed": seed},
                    "config": config,
                    "seed": seed,
                }
                attrs = {
                    "final_metrics": {
                        "train_acc": 1.0,
                        "test_acc": 0.9,
                        "train_loss": 0.1,
                        "test_loss": 0.5,
                    },
                    "steps": 1000,
                    "optimizer": opt,
                    "sweep": sweep,
                }
                s.set_final(run, np.ones(3), status="complete", attrs=attrs)
                arrays, rec = _eigenvalues(TOP * (1 + seed)).to_record()
                s.write_record(run, "probes", "hessian_eigenvalues", arrays=arrays, attrs=rec)
                arrays, rec = _density(10.0 * (1 + seed)).to_record()
                s.write_record(run, "probes", "hessian_density", arrays=arrays, attrs=rec)
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = _write(tmp_path_factory.mktemp("history_metrics") / "hm.h5")
    rep = report(path, path.parent / "out", figures=False, interactive=False)
    return rep, json.loads(rep.json.read_text("utf-8"))


def _truth(config: str, seed: int) -> dict[str, float]:
    fit, grok = _fit_grok(seed)
    late = _lambda_ratio(seed)[LAM_STEPS >= 500]
    out = {
        "step_train_acc_1": fit,
        "step_test_acc_0.95": grok,
        "test_acc end median": 0.9 + 0.001 * seed,
        "param_norm_at_init": 30.0 - seed,
        "param_norm_at_train_acc_1": 30.0 - fit / 100 - seed,
        "param_norm_at_test_acc_0.95": 30.0 - grok / 100 - seed,
        "grok_step_ratio": grok / fit,
        "outlier_ratio": 4.0,
        "outlier_runner_up": 2.0,
    }
    pre = "lambda_max(P^-1 H)/thr late" if config == "adam" else "lambda_max/thr late"
    out |= {
        f"{pre[:-5]} first": 0.04 if config == "adam" else 0.0,  # adam: step 25, after the NaN
        f"step {pre[:-5]} 0.9": 500,
        f"{pre} median": 1.0 + 0.01 * seed,  # the offsets' median: 0
        f"{pre} min": late.min(),
        f"{pre} max": late.max(),
    }
    return out | {"loss_rises": seed + 2}


# ------------------------------------------------------------------------------ the rules
def test_late_stats_take_the_second_half_and_skip_nan():
    steps = np.arange(0, 101, 10)
    values = np.array([np.nan, 9, 9, 9, 9, 1.0, 2.0, np.nan, 3.0, 4.0, 5.0])
    assert late_stats(steps, values, 100) == {"median": 3.0, "min": 1.0, "max": 5.0}
    assert late_stats(steps, values, 100, 0.1) == {"median": 4.5, "min": 4.0, "max": 5.0}
    assert late_stats(steps, np.full(11, np.nan), 100)["median"] is None
    with pytest.raises(ValueError, match="fraction in"):
        late_stats(steps, values, 100, 0.0)


def test_rise_skips_nan_and_finds_the_first_step_at_the_level():
    assert rise([0, 10, 20, 30], [np.nan, 0.5, 0.95, 0.8]) == (0.5, 20.0)
    assert rise([0, 10], [0.1, 0.2]) == (0.1, None)


def test_loss_rises_counts_increases():
    assert loss_rises([3.0, 2.0, 2.5, 1.0, 1.0, 1.2]) == 2
    assert loss_rises([1.0]) is None


@pytest.mark.parametrize(
    "opt",
    [
        {"name": "gd", "lr": 0.1},
        {"name": "sgd", "lr": 0.05, "momentum": 0.9},
        {"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True},
        {"name": "momentum", "lr": 0.2, "momentum": 0.5, "dampening": 0.5},
        {"name": "adam", "lr": 1e-3},
        {"name": "gd", "lr": 0},
    ],
)
def test_stability_threshold_is_the_history_figure_s(opt):
    mine, figure = stability_threshold({"optimizer": opt}), figure_threshold({"optimizer": opt})
    assert (mine is None and figure is None) or mine == pytest.approx(figure[0], rel=1e-15)


def test_density_bulk_share_closed_form():
    d = _density(4.0)  # density 1/4 on [-0.4, 3.6], grid spacing h = 0.002
    h = 0.002
    # |x| < 0.2: mass 0.4 / 4, to the grid's resolution (the points strictly inside)
    assert density_bulk_share(d, 4.0) == pytest.approx(0.1, abs=2 * h / 4)
    # without lambda_1: the largest Ritz node, 1.6: |x| < 0.08, mass 0.16 / 4
    assert density_bulk_share(d) == pytest.approx(0.04, abs=2 * h / 4)
    assert density_bulk_share(d, 0.0) is None


def test_descriptions_order_the_values():
    assert ordered_details(["zz", "loss_rises", "step_train_acc_1"]) == [
        "step_train_acc_1",
        "loss_rises",
        "zz",
    ]


# ------------------------------------------------------------------------------ the report
def test_each_run_holds_the_planted_values(built):
    _, doc = built
    for r in doc["runs"]:
        config, seed = r["run"].rsplit("-", 1)
        truth = _truth(config, int(seed))
        got = {k: r["milestones"][k] for k in truth}
        assert got == pytest.approx(truth, abs=1e-12), r["run"]
        # uniform density 1/lambda_1, grid step lambda_1/2000: 0.1 less at most 2 steps' mass
        assert r["milestones"]["density_bulk_share"] == pytest.approx(0.1, abs=2 / 2000 + 1e-12)
        other = "lambda_max/thr" if config == "adam" else "lambda_max(P^-1 H)/thr"
        assert not any(k.startswith(other) for k in r["milestones"]), r["run"]


def test_configuration_means_and_seed_lists(built):
    rep, doc = built
    for c in doc["configs"]:
        for name, value in _truth(c["config"], 0).items():
            mine = [_truth(c["config"], s)[name] for s in range(3)]
            s = c["milestones"][name]
            assert s["n"] == 3 and s["mean"] == pytest.approx(np.mean(mine), abs=1e-12), name
            assert value == mine[0]
    rows = list(csv.DictReader(io.StringIO((rep.out_dir / "per_seed.csv").read_text("utf-8"))))
    got = {
        (r["config"], int(r["seed"])): float(r["value"])
        for r in rows
        if r["metric"] == "lambda_max/thr late median" and r["value"]
    }
    rises = sorted(float(r["value"]) for r in rows if r["metric"] == "loss_rises")
    assert rises == [2.0] * 3 + [3.0] * 3 + [4.0] * 3  # Adam's runs too
    assert got == pytest.approx(
        {(c, s): 1.0 + 0.01 * s for c in ("gd", "momentum") for s in range(3)}
    )
    md = rep.markdown.read_text("utf-8")
    assert "lambda\\_max/thr late median" in md and "density\\_bulk\\_share" in md
    seeds = md.split("## Seeds behind the means")[1]
    assert any(
        line.startswith("| gd | 0 / 1 / 2 |") and "| 1 / 1.01 / 1.02 |" in line
        for line in seeds.splitlines()
    )
    assert "in 9 of the 9 included runs that have loss\\_rises" in md
    assert DESCRIPTIONS["grok_step_ratio"].replace("_", "\\_") in md  # each value explained
