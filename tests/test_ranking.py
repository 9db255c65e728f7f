"""Kendall's tau and Jiang et al.'s granulated tau against hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from landscape.report.ranking import granulated_tau, kendall_tau

GRID = [{"lr": 1, "bs": 1}, {"lr": 2, "bs": 1}, {"lr": 1, "bs": 2}, {"lr": 2, "bs": 2}]


def jiang_tau(mu, g):
    """The literal formula: mean over pairs i < j of sign(mu_i - mu_j) sign(g_i - g_j)."""
    pairs = list(itertools.combinations(range(len(mu)), 2))
    return sum(np.sign(mu[i] - mu[j]) * np.sign(g[i] - g[j]) for i, j in pairs) / len(pairs)


@pytest.mark.parametrize("variant", ["a", "b", "c"])
def test_measure_equal_to_gap_gives_one_and_its_negative_minus_one(variant):
    gap = [0.05, 0.30, 0.12, 0.21, 0.02]
    up = kendall_tau(gap, gap, variant=variant)
    down = kendall_tau([-g for g in gap], gap, variant=variant)
    assert up.tau == pytest.approx(1.0) and down.tau == pytest.approx(-1.0)
    assert (up.n, up.n_pairs, up.n_dropped) == (5, 10, 0)
    # any increasing transform ranks the same
    assert kendall_tau(np.exp(gap), gap, variant=variant).tau == pytest.approx(1.0)


def test_small_case_with_a_tie_by_hand():
    # pairs (i<j): (0,1) C, (0,2) C, (0,3) C, (1,2) tied in the measure, (1,3) C, (2,3) C:
    # C = 5, D = 0, n0 = 6, one pair tied in the measure, none in the gap
    mu, g = [1, 2, 2, 3], [1, 3, 2, 4]
    b = kendall_tau(mu, g)
    assert b.tau == pytest.approx(5 / math.sqrt((6 - 1) * (6 - 0)))  # tau-b = 0.9129
    assert b.variant == "b" and b.n_pairs == 6 and 0 < b.pvalue < 1
    a = kendall_tau(mu, g, variant="a")
    assert a.tau == pytest.approx(5 / 6) == pytest.approx(jiang_tau(mu, g))
    assert a.pvalue is None


def test_one_discordant_pair_by_hand():
    # pairs: (0,1) C, (0,2) C, (0,3) C, (1,2) C, (1,3) C, (2,3) D: (5 - 1) / 6
    assert kendall_tau([1, 2, 4, 3], [1, 2, 3, 4]).tau == pytest.approx(4 / 6)


def test_without_ties_tau_b_is_jiangs_formula():
    rng = np.random.default_rng(0)
    mu, g = rng.normal(size=9), rng.normal(size=9)
    assert kendall_tau(mu, g).tau == pytest.approx(jiang_tau(mu, g))


def test_missing_values_are_dropped_and_counted():
    t = kendall_tau([1.0, None, 3.0, float("nan"), 5.0, 6.0], [0.1, 0.2, 0.3, 0.4, None, 0.0])
    # kept: runs 0, 2, 5 -> measure 1, 3, 6 and gap 0.1, 0.3, 0.0: (0,2) C, (0,5) D, (2,5) D
    assert (t.n, t.n_pairs, t.n_dropped) == (3, 3, 3)
    assert t.tau == pytest.approx(-1 / 3)


def test_undefined_and_degenerate_cases():
    few = kendall_tau([1.0, None], [0.1, 0.2])
    assert few.tau is None and few.n == 1 and "need 2" in few.note
    assert kendall_tau([], []).tau is None
    flat_gap = kendall_tau([1, 2, 3], [0.2, 0.2, 0.2])
    assert flat_gap.tau is None and "gap" in flat_gap.note
    flat_measure = kendall_tau([7, 7, 7], [0.1, 0.2, 0.3])
    assert flat_measure.tau == 0.0 and flat_measure.pvalue is None and flat_measure.note


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="one value a run, got 3 and 2"):
        kendall_tau([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="variant"):
        kendall_tau([1, 2], [1, 2], variant="d")
    with pytest.raises(TypeError, match="numbers or None"):
        kendall_tau([1, "x"], [1, 2])
    with pytest.raises(TypeError, match="sequence"):
        kendall_tau("12", [1, 2])
    with pytest.raises(ValueError, match="axes"):
        granulated_tau([1, 2], [1, 2], [{"lr": 1}])
    with pytest.raises(TypeError, match="mappings"):
        granulated_tau([1, 2], [1, 2], [{"lr": 1}, 3])


def test_granulated_tau_on_a_2x2_grid_by_hand():
    # runs: (lr, bs) = (1,1) mu 1 g 1; (2,1) mu 2 g 2; (1,2) mu 4 g 3; (2,2) mu 3 g 4
    mu, g = [1, 2, 4, 3], [1, 2, 3, 4]
    r = granulated_tau(mu, g, GRID)
    # psi_lr: groups of equal bs: bs=1 {mu 1,2; g 1,2} -> +1; bs=2 {mu 4,3; g 3,4} -> -1
    lr = r.axes["lr"]
    assert sorted(lr.taus) == [-1.0, 1.0] and lr.psi == pytest.approx(0.0)
    assert (lr.n_groups, lr.n_runs, lr.n_pairs, lr.n_skipped) == (2, 4, 2, 0)
    # psi_bs: groups of equal lr: lr=1 {mu 1,4; g 1,3} -> +1; lr=2 {mu 2,3; g 2,4} -> +1
    assert r.axes["bs"].psi == pytest.approx(1.0)
    assert r.psi == pytest.approx(0.5)  # (0 + 1) / 2
    assert list(r.axes) == ["bs", "lr"] and (r.n, r.n_dropped) == (4, 0)
    # a measure equal to the gap is perfect on every axis, its negative the opposite
    assert granulated_tau(g, g, GRID).psi == pytest.approx(1.0)
    assert granulated_tau([-x for x in g], g, GRID).psi == pytest.approx(-1.0)


def test_groups_of_one_run_are_ignored():
    # the (lr=2, bs=2) run is missing: one group of each axis has a single run
    r = granulated_tau([1, 2, 4], [1, 2, 3], GRID[:3])
    assert r.axes["lr"].n_groups == 1 and r.axes["lr"].n_skipped == 1
    assert r.axes["lr"].psi == pytest.approx(1.0)  # bs=1: {mu 1,2; g 1,2}
    assert r.axes["bs"].n_groups == 1 and r.axes["bs"].n_skipped == 1
    assert r.axes["bs"].psi == pytest.approx(1.0)  # lr=1: {mu 1,4; g 1,3}
    # an axis with a single level has no group of two runs: no psi, left out of Psi
    r = granulated_tau([1, 2], [1, 2], [{"lr": 1, "seed": 0}, {"lr": 2, "seed": 0}])
    assert r.axes["seed"].psi is None and r.axes["seed"].n_groups == 0
    assert r.psi == pytest.approx(r.axes["lr"].psi) == pytest.approx(1.0)


def test_granulated_tau_drops_missing_values_and_runs_without_axes():
    mu = [1, 2, None, 3, 5]
    g = [1, 2, 3, 4, 0.5]
    axes = [*GRID, None]
    r = granulated_tau(mu, g, axes)
    assert (r.n, r.n_dropped) == (3, 2)  # run 2 (no measure) and run 4 (no axes)
    # what is left: (1,1) mu 1 g 1; (2,1) mu 2 g 2; (2,2) mu 3 g 4
    assert r.axes["lr"].psi == pytest.approx(1.0) and r.axes["lr"].n_skipped == 1
    assert r.axes["bs"].psi == pytest.approx(1.0) and r.axes["bs"].n_skipped == 1
    assert granulated_tau([None] * 4, [1, 2, 3, 4], GRID).psi is None


def test_strata_keep_sweeps_apart_and_levels_are_normalised():
    axes = [{"lr": 1.0}, {"lr": 2}, {"lr": 1}, {"lr": 2.0}]
    r = granulated_tau([1, 2, 2, 1], [1, 2, 1, 2], axes, strata=["a", "a", "b", "b"])
    # only one axis (lr): groups are the strata: a {mu 1,2; g 1,2} +1, b {mu 2,1; g 1,2} -1
    assert sorted(r.axes["lr"].taus) == [-1.0, 1.0] and r.psi == pytest.approx(0.0)
    # a run that lacks an axis takes the level None; labels and lists are levels too
    r = granulated_tau(
        [1, 2, 3],
        [1, 2, 3],
        [{"opt": "sgd", "sched": [1, 2]}, {"opt": "adam", "sched": [1, 2]}, {"opt": "sgd"}],
    )
    assert r.axes["opt"].psi == pytest.approx(1.0) and r.axes["opt"].n_groups == 1
    assert r.axes["sched"].psi == pytest.approx(1.0)  # opt=sgd: {[1,2], None}
