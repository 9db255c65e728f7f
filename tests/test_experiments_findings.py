"""The experiments on which minima SGD finds, at tiny scale.

Each test asserts the qualitative outcome of one spec in ``experiments/`` (see
``experiments/README.md``) on a reduced budget (a few hundred MNIST-1D examples, a 128-wide
MLP), with margins from the spread over seeds where the test runs several. Only what our
runs showed is asserted:

- ``random_labels.toml`` (Zhang et al. 2017; Neyshabur et al. 2017): clean and fully random
  labels are both fitted to the same training loss; with random labels the test accuracy
  falls to about chance and fitting takes a little longer; scale-normalised (adaptive)
  sharpness is larger for random labels, plain lambda_max is not. Three seeds, paired.
- ``bad_minima.toml`` (Liu et al. 2020): after random-label pretraining, plain SGD fits the
  true labels and tests below the same SGD from a random init.
- ``large_batch.toml`` (Keskar et al. 2017), at matched training loss with a step size per
  batch size: the large batch (10% of the data) is not sharper; the step size sets lambda_max.
"""

from __future__ import annotations

import pytest
from torch import nn

from landscape.report.study import mean_ci
from landscape.sweep.bad_init import pretrain_random_labels
from landscape.train.fit import fit
from landscape.train.spec import build
from probes import sharpness
from probes.curvature import hessian

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(
    *, n_train=200, label_noise=0.0, optimizer=None, batch_size=32, epochs=300, target_accuracy=1.0
):
    train = {
        "epochs": epochs,
        "batch_size": batch_size,
        "seed": 0,
        "history_every": 0,
        "snapshot_every": 0,
    }
    if target_accuracy is not None:
        train["target_accuracy"] = target_accuracy
    return {
        "model": {"name": "mlp", "width": 128, "depth": 2},
        "data": {"name": "mnist1d", "n_train": n_train, "n_test": 500, "label_noise": label_noise},
        "optimizer": optimizer or {"name": "sgd", "lr": 0.1},
        "train": train,
    }


def _train(spec, *, bad_init=False):
    model, split, loss, config, _, _ = build(spec)
    if bad_init:
        pre = pretrain_random_labels(
            model,
            loss,
            split,
            {
                "optimizer": {"name": "adam", "lr": 1e-3},
                "batch_size": 32,
                "epochs": 300,
                "target_accuracy": 1.0,
            },
        )
        assert pre["train_acc"] == 1.0, pre  # the random labels were fitted
    return model, split, fit(model, loss, split, config)


def _lambda_max(model, split):
    return float(
        hessian.eigenvalues(model, nn.CrossEntropyLoss(), split.train, k=1, tol=1e-3).values[0]
    )


def _paired_ci(a, b):
    """Mean of b - a over paired seeds and its 95% Student-t interval (the report's mean_ci)."""
    return mean_ci([y - x for x, y in zip(a, b, strict=True)])


@pytest.fixture(scope="module")
def random_labels():
    """Clean and fully random labels, seeds 0, 1, 2, each trained to train CE 0.01.

    The design of random_labels.toml at tiny scale: 200 examples, a 128-wide MLP, plain SGD
    (lr 0.1, batch 32), every run to the same training loss. Per run: steps, test accuracy,
    lambda_max and adaptive average-case sharpness (rho 0.05, 10 samples), the scale-normalised
    sharpness of Andriushchenko et al. 2023 that experiments/README.md reports.
    """
    out = {}
    for noise in (0.0, 1.0):
        rows = []
        for seed in (0, 1, 2):
            spec = _spec(label_noise=noise, target_accuracy=None)
            spec["train"].update(seed=seed, target_loss=0.01, max_steps=5000)
            spec["train"].pop("epochs")
            spec["data"]["n_test"] = 300
            model, split, r = _train(spec)
            assert r.stop_reason == "target_loss" and r.final["train_acc"] == 1.0, r.final
            ce = nn.CrossEntropyLoss()
            avg = sharpness.average_case(
                model, ce, split.train, rho=0.05, adaptive=True, n_samples=10, seed=0
            )
            rows.append(
                {
                    "steps": r.steps,
                    "test_acc": r.final["test_acc"],
                    "lambda_max": _lambda_max(model, split),
                    "average_adaptive": avg.value,
                }
            )
        out[noise] = {k: [row[k] for row in rows] for k in rows[0]}
    return out


def test_random_labels_are_fitted_and_test_accuracy_falls_to_chance(random_labels):
    """Zhang et al. 2017: fitted to train CE 0.01 (asserted in the fixture), test at chance.

    Seeds 0, 1, 2 (one thread): test accuracy 0.283 / 0.253 / 0.267 (clean) and 0.090 / 0.097
    / 0.080 (random labels; chance 0.1); steps to the target 1043 / 1036 / 1057 and 1092 /
    1064 / 1148: random labels take a little longer in every seed, a small factor.
    """
    clean, noisy = random_labels[0.0], random_labels[1.0]
    assert max(noisy["test_acc"]) < 0.15 < min(clean["test_acc"]) - 0.05
    steps = _paired_ci(clean["steps"], noisy["steps"])
    assert steps["mean"] > 0 and max(noisy["steps"]) < 3 * min(clean["steps"]), steps


def test_random_labels_are_sharper_only_once_sharpness_is_scale_normalised(random_labels):
    """Neyshabur et al. 2017: sharpness means something only normalised by scale.

    At the same training loss (0.01), adaptive average-case sharpness (|d_i| ~ rho |w_i|) is
    larger for random labels than for clean ones in every seed (1.30 / 1.06 / 1.03 e-3 against
    1.57 / 1.34 / 1.21 e-3: paired difference 2.4e-4, 95% interval [1.1e-4, 3.8e-4]), while
    the plain lambda_max is *smaller* (0.80 / 0.87 / 0.85 against 0.72 / 0.76 / 0.71). The
    margin: the paired 95% interval over the three seeds excludes 0, in each direction.
    """
    clean, noisy = random_labels[0.0], random_labels[1.0]
    normalised = _paired_ci(clean["average_adaptive"], noisy["average_adaptive"])
    assert normalised["ci"][0] > 0, normalised
    plain = _paired_ci(clean["lambda_max"], noisy["lambda_max"])
    assert plain["ci"][1] < 0, plain


def test_sgd_from_a_random_label_init_reaches_a_worse_global_minimum():
    opt = {"name": "sgd", "lr": 0.05}
    good = _train(_spec(n_train=500, optimizer=opt))[2]
    bad = _train(_spec(n_train=500, optimizer=opt), bad_init=True)[2]
    for r in (good, bad):
        assert r.stop_reason == "target_accuracy" and r.final["train_acc"] == 1.0
    # seed 0: test accuracy 0.370 from a random init, 0.312 from the random-label init
    assert bad.final["test_acc"] < good.final["test_acc"] - 0.03


@pytest.fixture(scope="module")
def batches():
    """large_batch.toml's design at tiny scale, seeds 0, 1, 2.

    400 examples, a 64-wide MLP, plain SGD, every run to train CE 0.02 (matched): batch 16
    at lr 0.1 and a batch of 10% of the training set (40) at lr 0.4 and at lr 0.1. Per run
    lambda_max at the end (the spec also measures Keskar's epsilon-sharpness; at this scale
    its seed spread, 0.37-0.65 at eps 1e-3, hides any difference, so it is not asserted).
    """
    out = {}
    for bs, lr in ((16, 0.1), (40, 0.4), (40, 0.1)):
        lams = []
        for seed in (0, 1, 2):
            spec = _spec(n_train=400, batch_size=bs, optimizer={"name": "sgd", "lr": lr})
            spec["model"]["width"] = 64
            spec["train"].update(seed=seed, target_loss=0.02, max_steps=5000)
            for key in ("epochs", "target_accuracy"):
                spec["train"].pop(key)
            model, split, r = _train(spec)
            assert r.stop_reason == "target_loss", (bs, lr, seed, r.final)
            lams.append(_lambda_max(model, split))
        out[bs, lr] = lams
    return out


def test_at_matched_loss_the_step_size_not_the_batch_sets_the_sharpness(batches):
    """Keskar et al. 2017's large batch is not sharper once each batch has its own step size.

    lambda_max, seeds 0, 1, 2 (one thread): batch 16 at lr 0.1: 1.58 / 1.66 / 1.38; batch 40
    (10%) at lr 0.4: 1.02 / 1.04 / 0.92; batch 40 at lr 0.1: 1.91 / 1.76 / 1.67. The large
    batch at its larger step is flatter than the small one in every seed, and the same large
    batch at the small batch's step is sharper: what sets the sharpness at a given training
    loss is the step size (experiments/README.md: the same at full scale, where at the
    better step of each batch size neither lambda_max nor epsilon-sharpness differ). Margins:
    paired 95% intervals over the seeds that exclude 0.
    """
    large_vs_small = _paired_ci(batches[16, 0.1], batches[40, 0.4])
    assert large_vs_small["ci"][1] < 0, large_vs_small  # the large batch is not sharper
    step = _paired_ci(batches[40, 0.4], batches[40, 0.1])
    assert step["ci"][0] > 0, step  # a smaller step: a sharper minimum, same batch
