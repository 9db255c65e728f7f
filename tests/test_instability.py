"""Forking a run (fit's until/resume) and instability to SGD noise (Frankle et al. 2020)."""

from __future__ import annotations

import copy
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from landscape import data, models
from landscape.train.fit import Checkpoint, TrainConfig, fit, total_steps
from probes.paths.instability import Instability, instability


@pytest.fixture(scope="module")
def digits():
    return data.standardize(data.subset(data.digits(seed=0), 200, 80, seed=0))


def net(seed=0, width=16):
    return models.build("mlp", in_features=64, num_classes=10, width=width, depth=1, seed=seed)


def same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# momentum and a cosine schedule: the optimizer state and the schedule position both matter;
# 200 examples in batches of 64: a partial last batch, forks in the middle of an epoch
CFG = TrainConfig(
    "sgd", lr=0.1, momentum=0.9, schedule="cosine", batch_size=64, epochs=4, seed=0, history_every=0
)


# --------------------------------------------------------------------------- fit: resume
@pytest.mark.parametrize("k", [0, 3, 4, 9, 16])
def test_resume_equals_uninterrupted_fit(digits, k):
    whole = net()
    fit(whole, "cross_entropy", digits, CFG)
    trunk = fit(net(), "cross_entropy", digits, CFG, until=k)
    assert (trunk.steps, trunk.stop_reason) == (k, "until" if k < 16 else "epochs")
    assert isinstance(trunk.checkpoint, Checkpoint) and trunk.checkpoint.step == k
    rest = net(seed=5)  # any model of the architecture: the checkpoint sets its parameters
    result = fit(rest, "cross_entropy", digits, CFG, resume=trunk.checkpoint)
    assert result.steps == total_steps(CFG, 200) == 16
    assert same(whole, rest)


def test_resume_depends_on_the_optimizer_state(digits):
    """The check above is sensitive: without the momentum buffers the run differs."""
    whole = net()
    fit(whole, "cross_entropy", digits, CFG)
    ck = fit(net(), "cross_entropy", digits, CFG, until=6).checkpoint
    bare = replace(ck, optimizer={**ck.optimizer, "state": {}})
    other = net()
    fit(other, "cross_entropy", digits, CFG, resume=bare)
    assert not same(whole, other)


def test_forks(digits):
    ck = fit(net(), "cross_entropy", digits, CFG, until=5).checkpoint
    ends = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        ends[name] = net()
        fit(ends[name], "cross_entropy", digits, replace(CFG, seed=seed), resume=ck)
    assert same(ends["a"], ends["b"]) and not same(ends["a"], ends["c"])
    # a checkpoint is never consumed: resuming twice from it gives the same (done above), and
    # forking at step 0 with seed s is a fresh run with seed s
    fresh, forked = net(), net()
    fit(fresh, "cross_entropy", digits, replace(CFG, seed=3))
    ck0 = fit(net(), "cross_entropy", digits, CFG, until=0).checkpoint
    fit(forked, "cross_entropy", digits, replace(CFG, seed=3), resume=ck0)
    assert same(fresh, forked)


def test_resume_bad_input(digits):
    ck = fit(net(), "cross_entropy", digits, CFG, until=5).checkpoint
    with pytest.raises(TypeError, match="resume must be a Checkpoint"):
        fit(net(), "cross_entropy", digits, CFG, resume={"step": 5})
    with pytest.raises(ValueError, match="optimizer and batch size"):
        fit(net(), "cross_entropy", digits, replace(CFG, batch_size=32), resume=ck)
    with pytest.raises(ValueError, match="beyond the end"):
        fit(net(), "cross_entropy", digits, replace(CFG, epochs=None, max_steps=3), resume=ck)
    with pytest.raises(ValueError, match="do not fit the model"):
        fit(net(width=8), "cross_entropy", digits, CFG, resume=ck)
    with pytest.raises(ValueError, match="until must be an int >= 5"):
        fit(net(), "cross_entropy", digits, CFG, resume=ck, until=4)


# --------------------------------------------------------------------------- instability
def test_instability_basics_and_record(digits):
    model = net()
    before = copy.deepcopy(model)
    r = instability(model, "cross_entropy", digits, CFG, k=[16, 0, 8], n=5)
    assert same(model, before)
    assert r.ks.tolist() == [0, 8, 16] and r.end == 16 and r.seeds == (1, 2)
    assert r.barriers.shape == r.accuracy_barriers.shape == r.test_barriers.shape == (3,)
    assert (r.barriers >= 0).all() and r.barriers[-1] == 0 and r.test_barriers[-1] == 0
    end = r.paths[-1]  # no steps left: both forks are the trunk's end
    assert np.array_equal(end.loss, np.full_like(end.loss, end.loss[0]))
    # the forks differ where there are steps left
    assert not np.array_equal(r.paths[0].loss[0], r.paths[0].loss[-1])
    assert r.steps == 16 + 2 * (16 + 8 + 0)
    back = Instability.from_record(r.to_record())
    assert back.ks.tolist() == r.ks.tolist() and back.seeds == r.seeds
    for name in ("barriers", "accuracy_barriers", "test_barriers", "test_accuracy_barriers"):
        assert np.array_equal(getattr(back, name), getattr(r, name))
    assert back.config == CFG.to_dict() and back.paths[1].cost == r.paths[1].cost
    with pytest.raises(ValueError, match="holds probe"):
        Instability.from_record(({}, {"probe": "interpolation.linear"}))


def test_instability_equal_seeds_warn_and_give_zero(digits):
    with pytest.warns(UserWarning, match="barrier is 0 by construction"):
        r = instability(net(), "cross_entropy", digits, CFG, k=2, seeds=(4, 4), n=3)
    assert r.barriers.tolist() == [0.0] and r.accuracy_barriers.tolist() == [0.0]
    assert np.ptp(r.paths[0].loss) == 0


def test_instability_bad_input(digits):
    with pytest.raises(ValueError, match=r"k must be in \[0, 16\].*\[17\]"):
        instability(net(), "cross_entropy", digits, CFG, k=[0, 17])
    with pytest.raises(TypeError, match="k must be an int"):
        instability(net(), "cross_entropy", digits, CFG, k=[])
    with pytest.raises(ValueError, match="seeds must be two ints"):
        instability(net(), "cross_entropy", digits, CFG, k=0, seeds=(1,))
    with pytest.raises(ValueError, match="target"):
        instability(net(), "cross_entropy", digits, replace(CFG, target_loss=0.1), k=0)
    with pytest.raises(ValueError, match="not both"):
        instability(net(), "cross_entropy", digits, CFG, k=0, test=digits.test)
    with pytest.raises(TypeError, match="TrainConfig"):
        instability(net(), "cross_entropy", digits, {"lr": 0.1}, k=0)


# --------------------------------------------------------------------------- the finding
@pytest.mark.parametrize(
    "model_seed",
    [
        0,
        pytest.param(
            1,
            marks=pytest.mark.skipif(
                not os.environ.get("LANDSCAPE_SLOW"), reason="a second seed; set LANDSCAPE_SLOW=1"
            ),
        ),
    ],
)
def test_late_forks_are_more_stable_than_early_ones(model_seed):
    """Frankle et al. 2020 at tiny scale: late forks are linearly connected, early ones are not.

    Forks made half-way are linearly connected (barrier 0), forks made at initialisation are not.
    MNIST-1D, 1000 examples, a 4-layer MLP trained to a low loss (the barrier only appears once the
    forks fit the data: shorter runs give 0 at every k, and smaller data sets make it depend on the
    model seed).
    """
    split = data.subset(data.mnist1d(), 1000, 200, seed=0)
    model = models.build("mlp", in_features=40, num_classes=10, width=64, depth=4, seed=model_seed)
    cfg = TrainConfig("sgd", lr=0.02, momentum=0.9, batch_size=16, epochs=40, seed=0)
    r = instability(model, "cross_entropy", split, cfg, k=[0, 1260], n=9)
    assert r.barriers[0] > 0.01 and r.barriers[1] < r.barriers[0] / 2
