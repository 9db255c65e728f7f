"""The experiments with a known ground truth, at tiny scale.

Each test runs the runs of one spec in ``experiments/`` (see ``experiments/README.md``) on a
reduced budget and asserts what held in our full runs, with margins for the fixed seeds:

- ``max_margin.toml`` (Soudry et al. 2018; Gunasekar et al. 2018): GD's direction error to
  the l2 max-margin direction falls with the steps and ||w|| grows; sign descent's error to
  the linf max-margin direction falls, and sign descent ends much closer to it than GD does.
  (Not the l1 direction of an earlier statement of the claim: sign descent ends *farther*
  from it than GD does.)
- ``diagonal_nets.toml`` (Woodworth et al. 2020): a small init ends near the minimum-l1
  interpolator and far from the minimum-l2 one, a large init the other way round.
"""

from __future__ import annotations

import numpy as np
import pytest

from landscape.sweep.measure import along_callback
from landscape.sweep.spec import load
from landscape.train.fit import fit
from landscape.train.spec import build, merge
from probes.implicit_bias.recovery import interpolator_distances

pytestmark = pytest.mark.usefixtures("one_thread")


def _train(run, steps, along=None):
    spec = merge(run.spec, {"train": {"max_steps": steps, "history_every": 0, "snapshot_every": 0}})
    model, split, loss, config, _, _ = build(spec)
    callbacks = [along_callback(name, split.train, opts) for name, opts in (along or {}).items()]
    return model, split, fit(model, loss, split, config, callbacks=callbacks)


def test_max_margin_gd_goes_to_l2_and_sign_descent_to_linf():
    sweep = load("experiments/max_margin.toml")
    runs = {r.name: r for r in sweep.runs}
    along = {"max_margin": {"every": 300}}
    series = {
        name: _train(runs[name], 3000, along)[2].series["max_margin"]
        for name in ("gd", "sign_descent")
    }
    gd, sign = series["gd"], series["sign_descent"]
    # GD: l2 direction error falls from step 300 on, the norm grows, l2 is the closest
    assert (np.diff(gd["direction_error_l2"][1:]) < 0).all()
    assert (np.diff(gd["weight_norm"]) > 0).all()
    assert gd["direction_error_l2"][-1] < 0.2 < gd["direction_error_l1"][-1]
    # sign descent: linf direction error falls, ends below 0.3; GD stays above 0.5
    assert (np.diff(sign["direction_error_linf"][3:]) < 0).all()
    assert sign["direction_error_linf"][-1] < 0.3 < 0.5 < gd["direction_error_linf"][-1]
    assert sign["direction_error_l1"][-1] > gd["direction_error_l1"][-1]  # not l1


def test_diagonal_nets_small_init_is_l1_large_init_is_l2():
    sweep = load("experiments/diagonal_nets.toml")
    runs = {r.name: r for r in sweep.runs}
    out = {}
    for name, steps in (("alpha0.01", 6000), ("alpha1", 3000)):
        model, split, _ = _train(runs[name], steps)
        out[name] = interpolator_distances(model, None, split.train)
    small, large = out["alpha0.01"], out["alpha1"]
    assert small.distance_l1 < 0.3 < 0.6 < small.distance_l2
    assert large.distance_l2 < 0.05 < 0.6 < large.distance_l1
    assert small.l1_norm < large.l1_norm and large.l2_norm < small.l2_norm
