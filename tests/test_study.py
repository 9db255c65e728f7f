"""The statistics of a measures-vs-gap study against hand-computed cases and a known truth."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats

from landscape.report import study_stats as st
from landscape.report.expectations import EXPECTED_SIGNS, expected_sign
from landscape.report.study import configurations, good_vs_bad, mean_ci
from landscape.report.study_rank import rank, rank_all


def make_run(config, seed, axes, gap, measures=None, converged=True, **extra):
    return {
        "run": f"{config}-s{seed}",
        "config": config,
        "seed": seed,
        "axes": dict(axes),
        "converged": converged,
        "gap": gap,
        "test_acc": extra.pop("test_acc", 0.9),
        "train_loss": extra.pop("train_loss", 0.01),
        "steps": extra.pop("steps", 100),
        "measures": dict(measures or {}),
        **extra,
    }


def test_module_does_not_import_torch():
    code = (
        "import landscape.report.study, landscape.report.study_rank, sys; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------ (e) mean_ci
def test_mean_ci_is_student_t_by_hand():
    r = mean_ci([1.0, 2.0, 4.0, None, float("nan")])
    mean = 7 / 3
    sd = math.sqrt(((1 - mean) ** 2 + (2 - mean) ** 2 + (4 - mean) ** 2) / 2)
    half = stats.t.ppf(0.975, 2) * sd / math.sqrt(3)  # t_{0.975, 2} = 4.3027
    assert r["mean"] == pytest.approx(mean)
    assert r["ci"] == pytest.approx([mean - half, mean + half])
    assert (r["n"], r["n_dropped"]) == (3, 2) and r["sd"] == pytest.approx(sd)
    r90 = mean_ci(np.array([1.0, 2.0, 4.0]), confidence=0.9)
    assert r90["ci"][1] - r90["mean"] == pytest.approx(stats.t.ppf(0.95, 2) * sd / math.sqrt(3))


def test_mean_ci_one_value_and_none():
    one = mean_ci([0.5, None])
    assert one["mean"] == 0.5 and one["ci"] is None and "single seed" in one["reason"]
    assert one["n_dropped"] == 1
    none = mean_ci([None, float("nan")])
    assert none["mean"] is None and none["ci"] is None and none["n"] == 0
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], confidence=1.5)


# ------------------------------------------------------------------------------ (f) inputs
def test_configurations_leave_out_unconverged_unless_asked():
    runs = [
        make_run("a", 0, {"lr": 1}, 0.1, {"m": 1.0}, test_acc=0.80),
        make_run("a", 1, {"lr": 1}, 0.3, {"m": 3.0}, test_acc=0.90),
        make_run("a", 2, {"lr": 1}, 0.9, {"m": 9.0}, converged=False, test_acc=0.10),
        make_run("b", 0, {"lr": 2}, 0.2, {}, converged=False),
    ]
    by = {c["config"]: c for c in configurations(runs)}
    a = by["a"]
    assert (a["n"], a["n_converged"], a["n_unconverged"]) == (2, 2, 1)
    assert a["gap"]["mean"] == pytest.approx(0.2)
    assert a["test_acc"]["mean"] == pytest.approx(0.85)
    assert a["measures"]["m"]["mean"] == pytest.approx(2.0) and a["axes"] == {"lr": 1}
    assert by["b"]["n"] == 0 and by["b"]["gap"]["mean"] is None
    everything = {c["config"]: c for c in configurations(runs, include_unconverged=True)}
    assert everything["a"]["n"] == 3
    assert everything["a"]["gap"]["mean"] == pytest.approx(1.3 / 3)
    assert everything["b"]["gap"]["mean"] == pytest.approx(0.2)
    assert everything["b"]["gap"]["ci"] is None


def test_configurations_reject_one_config_with_two_axes():
    runs = [make_run("a", 0, {"lr": 1}, 0.1), make_run("a", 1, {"lr": 2}, 0.1)]
    with pytest.raises(ValueError, match="differ"):
        configurations(runs)
    with pytest.raises(ValueError, match="converged"):
        configurations([{"run": "x", "config": "x"}])


def test_rank_needs_four_runs_and_reports_n_with_missing_and_unconverged():
    three = [make_run(f"c{i}", 0, {"lr": i}, 0.1 * i, {"m": float(i)}) for i in range(3)]
    r = rank(three, "m")
    assert r["tau"] is None and "need at least 4" in r["reason"] and r["n"] == 3
    runs = [make_run(f"c{i}", 0, {"lr": i}, 0.1 * i, {"m": float(i)}) for i in range(6)]
    runs[1]["measures"] = {}  # no measure
    runs[2]["measures"]["m"] = float("nan")  # NaN: missing too
    runs.append(make_run("c9", 0, {"lr": 9}, 5.0, {"m": -5.0}, converged=False))
    r = rank(runs, "m", n_boot=200, n_perm=99)
    assert (r["n"], r["n_missing"], r["n_unconverged"], r["n_configs"]) == (4, 2, 1, 4)
    assert r["tau"] == pytest.approx(1.0)  # the unconverged, discordant run is left out
    assert rank(runs[:3] + runs[6:], "m")["tau"] is None


def test_rank_baseline_from_top_level_field():
    runs = [make_run(f"c{i}", 0, {"lr": i}, 0.1 * i, steps=100 - i) for i in range(5)]
    r = rank(runs, "steps", n_boot=100, n_perm=0)
    assert r["tau"] == pytest.approx(-1.0) and r["p"] is None


# ------------------------------------------------------------------------------ tau-b machinery
def test_weighted_tau_b_is_scipy_on_the_repeated_runs():
    rng = np.random.default_rng(3)
    mu, g = rng.normal(size=9), rng.normal(size=9)
    mu[2] = mu[5]  # a tie
    w = rng.integers(0, 3, size=(6, 9))
    got = st.tau_b_weighted(mu, g, w)
    for row, t in zip(w, got, strict=True):
        want = stats.kendalltau(np.repeat(mu, row), np.repeat(g, row)).statistic
        assert t == pytest.approx(want)
    assert st.tau_b_weighted(mu, g, np.ones(9)) == pytest.approx(stats.kendalltau(mu, g).statistic)


def test_hierarchical_weights_draw_configurations_then_their_seeds():
    groups = [[0, 1, 2], [3], [4, 5]]
    w = st.hierarchical_weights(groups, 6, 500, np.random.default_rng(0))
    assert w.shape == (500, 6)
    per_cfg = np.stack([w[:, cfg].sum(axis=1) / len(cfg) for cfg in groups], axis=1)
    # each row: 3 configurations drawn, each bringing as many seed draws as it has seeds
    assert np.allclose(per_cfg, np.round(per_cfg)) and (per_cfg.sum(axis=1) == 3).all()
    # a run of a config with 3 seeds is drawn 1/3 x 3 seeds x (3 draws x 1/3) = 1 time on average
    assert w.mean(axis=0) == pytest.approx(np.ones(6), abs=0.15)
    fixed = st.hierarchical_weights(groups, 6, 50, np.random.default_rng(0), resample_seeds=False)
    for cfg in groups:  # without the second level a drawn configuration brings all its seeds
        assert (fixed[:, cfg] == fixed[:, cfg[:1]]).all()


def test_permutation_pvalue_is_exact_enumeration_for_small_n():
    x, y = np.array([1.0, 3, 2, 5, 4]), np.array([0.1, 0.2, 0.3, 0.5, 0.4])
    p, exact = st.permutation_pvalue(x, y, n_perm=9999, rng=np.random.default_rng(0))
    obs = stats.kendalltau(x, y).statistic
    null = np.array(
        [stats.kendalltau(x[list(q)], y).statistic for q in itertools.permutations(range(5))]
    )
    want = min(1.0, 2 * min(np.mean(null >= obs - 1e-12), np.mean(null <= obs + 1e-12)))
    assert exact and p == pytest.approx(want)  # 10/120 on each side: 1/12
    assert st.permutation_pvalue(x, np.ones(5), n_perm=99, rng=np.random.default_rng(0)) == (
        None,
        False,
    )


# ------------------------------------------------------------------------------ (a) coverage
def test_hierarchical_ci_covers_the_population_tau():
    """The two-level interval covers tau = 2/pi arcsin(r) in 90-99% of 200 draws.

    Runs (mu, g) = config effect + seed noise, both bivariate normal with correlation r:
    every pair of runs, of one configuration or two, has a difference that is bivariate normal
    with correlation r, so it is concordant with probability (1 + tau)/2. 10 configurations
    x 3 seeds (seed noise 0.7 of the config spread), n_boot = 300 (small for speed; the
    percentile ends then move by about 0.01). Seeded: 96% here (95.5-98.5% over other seeds).
    """
    r, n_cfg, n_seed = 0.5, 10, 3
    truth = 2 / math.pi * math.asin(r)
    cov = [[1.0, r], [r, 1.0]]
    rng = np.random.default_rng(2020)
    hits, draws = 0, 200
    for d in range(draws):
        a = rng.multivariate_normal([0, 0], cov, size=n_cfg)
        e = 0.7 * rng.multivariate_normal([0, 0], cov, size=(n_cfg, n_seed))
        runs = [
            make_run(
                f"c{c}", s, {}, float(a[c, 1] + e[c, s, 1]), {"m": float(a[c, 0] + e[c, s, 0])}
            )
            for c in range(n_cfg)
            for s in range(n_seed)
        ]
        res = rank(runs, "m", n_boot=300, n_perm=0, seed=d)
        lo, hi = res["ci"]
        assert lo <= res["tau"] <= hi
        hits += lo <= truth <= hi
    assert 0.90 <= hits / draws <= 0.99


# ------------------------------------------------------------------------------ (b) p-values
def test_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.20]
    # Holm: sorted 0.01, 0.03, 0.04, 0.20 times 4, 3, 2, 1 = 0.04, 0.09, 0.08, 0.20; running max
    assert st.holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.20])
    # BH: sorted times 4/1, 4/2, 4/3, 4/4 = 0.04, 0.06, 0.0533, 0.20; running min from the top
    assert st.benjamini_hochberg(p) == pytest.approx([0.04, 0.16 / 3, 0.16 / 3, 0.20])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert st.adjust_pvalues([], "holm").size == 0
    with pytest.raises(ValueError):
        st.adjust_pvalues(p, "bonferroni")


def _grid_runs(rng, n_seeds=2):
    runs = []
    for lr, bs in itertools.product([1, 2, 3], [16, 64]):
        for s in range(n_seeds):
            gap = 0.1 * lr + 0.02 * (bs == 64) + 0.01 * rng.normal()
            runs.append(
                make_run(
                    f"lr{lr}-bs{bs}",
                    s,
                    {"lr": lr, "bs": bs},
                    gap,
                    {
                        "dist_init": 10 * gap + 0.05 * rng.normal(),
                        "margin_q10": -gap + 0.5 * rng.normal(),
                        "noise_trace": rng.normal(),
                        "sharpness_worst": 1.0,
                    },
                    train_loss=0.01 + 0.001 * rng.normal(),
                    steps=int(100 + 10 * rng.normal()),
                )
            )
    return runs


@pytest.mark.parametrize("method", ["bh", "holm"])
def test_rank_all_adjusts_across_measures_and_baselines(method):
    runs = _grid_runs(np.random.default_rng(0))
    out = rank_all(runs, method=method, n_boot=300, n_perm=999)
    rows = {r["measure"]: r for r in out["rows"]}
    assert out["correction"] == method and all(r["correction"] == method for r in out["rows"])
    assert list(rows) == [
        "dist_init",
        "margin_q10",
        "noise_trace",
        "sharpness_worst",
        "train_loss",
        "steps",
    ]
    tested = [r for r in out["rows"] if r["p"] is not None]
    assert out["n_tests"] == len(tested) == 5  # the constant measure has no p-value
    want = st.adjust_pvalues([r["p"] for r in tested], method)
    assert [r["p_adjusted"] for r in tested] == pytest.approx(list(want))
    assert rows["sharpness_worst"]["p_adjusted"] is None
    d = rows["dist_init"]
    assert d["expected_sign"] == 1 and d["sign_agrees"] is True and d["tau"] > 0.7
    assert rows["margin_q10"]["expected_sign"] == -1
    assert rows["noise_trace"]["expected_sign"] is None
    assert rows["noise_trace"]["sign_agrees"] is None
    assert rows["train_loss"]["baseline"] and rows["train_loss"]["beats_baselines"] is None
    # beats_baselines: the lower end of the |tau| interval above every baseline's |tau|
    base = max(abs(rows[b]["tau"]) for b in ("train_loss", "steps"))
    lo, hi = d["ci"]
    floor = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
    assert d["beats_baselines"] is (floor > base)
    assert d["beats_baselines"] is True  # the gap's own copy beats noise baselines
    assert rows["sharpness_worst"]["beats_baselines"] is None  # constant: no interval
    assert set(d) >= {
        "measure",
        "tau",
        "ci",
        "p",
        "p_adjusted",
        "n",
        "baseline",
        "expected_sign",
        "sign_agrees",
        "beats_baselines",
        "psi",
        "psi_by_axis",
        "cmi",
    }


# ------------------------------------------------------------------------------ (c) CMI
def test_cmi_of_a_two_by_two_table_by_hand():
    # stratum 0: (V_mu, V_g) = (+,+) twice, (-,-) once, (+,-) once; stratum 1: independent
    x = ["+", "+", "-", "+", "+", "-", "+", "-"]
    y = ["+", "+", "-", "-", "+", "+", "-", "-"]
    z = [0, 0, 0, 0, 1, 1, 1, 1]
    i0 = (
        0.5 * math.log2(0.5 / (0.75 * 0.5))
        + 0.25 * math.log2(0.25 / (0.25 * 0.5))
        + 0.25 * math.log2(0.25 / (0.75 * 0.5))
    )  # 0.3113 bits
    r = st.conditional_mutual_information(x, y, z)
    assert r["cmi"] == pytest.approx(0.5 * i0 + 0.5 * 0.0)
    assert r["h_y_given_z"] == pytest.approx(1.0)
    assert r["normalised"] == pytest.approx(0.5 * i0)
    assert st.conditional_mutual_information(x[:4], y[:4])["cmi"] == pytest.approx(i0)
    fixed = st.conditional_mutual_information(["+", "-"], ["+", "-"], ["a", "b"])
    assert fixed["h_y_given_z"] == 0 and fixed["normalised"] is None


def test_cmi_of_a_two_by_two_grid_by_hand():
    # configs (a, b) in {0,1}^2, one seed each; gap follows a, the measure follows b
    runs = [
        make_run(f"a{a}b{b}", 0, {"a": a, "b": b}, 0.1 + 0.1 * a, {"m": 1.0 + b})
        for a, b in itertools.product([0, 1], [0, 1])
    ]
    r = rank(runs, "m", n_boot=100, n_perm=0)
    # axis a, S = {b}: within each stratum (b_i, b_j) V_mu is constant -> I = 0
    # axis b, S = {a}: (a_i, a_j) fixes V_g -> H(V_g | U) = 0, no value
    assert r["cmi_by_axis"] == {"a": pytest.approx(0.0), "b": None}
    assert r["cmi"] == pytest.approx(0.0)
    # S = {}: 12 ordered pairs, (sign da, sign db) = corners once each, edges twice each:
    # I = 4/12 log2((1/12)/(1/9)) + 8/12 log2((2/12)/(1/9)); H(V_g) = log2 3
    mi = (1 / 3) * math.log2(0.75) + (2 / 3) * math.log2(1.5)
    assert r["cmi_jiang_by_set"]["-"] == pytest.approx(mi / math.log2(3))
    assert r["cmi_jiang_by_set"]["a"] is None and r["cmi_jiang_by_set"]["a+b"] is None
    assert r["cmi_jiang"] == pytest.approx(0.0) and r["cmi_jiang_set"] == ["b"]
    # a measure equal to the gap: the sign of one is the sign of the other
    same = [dict(x, measures={"m": x["gap"]}) for x in runs]
    s = rank(same, "m", n_boot=100, n_perm=0)
    assert s["cmi"] == pytest.approx(1.0) and s["cmi_jiang"] == pytest.approx(1.0)


# ------------------------------------------------------------------------------ (d) granulated
def test_granulated_tau_of_a_small_grid_by_hand_with_seeds_averaged():
    gap = {
        (1, "a"): 0.10,
        (2, "a"): 0.20,
        (3, "a"): 0.30,
        (1, "b"): 0.15,
        (2, "b"): 0.25,
        (3, "b"): 0.35,
    }
    mu = {(1, "a"): 1.0, (2, "a"): 2.0, (3, "a"): 3.0, (1, "b"): 3.0, (2, "b"): 1.0, (3, "b"): 2.0}
    runs = []
    for (lr, bs), g in gap.items():
        for s, sign in enumerate((+1, -1)):  # seeds anti-correlated around the config mean
            runs.append(
                make_run(
                    f"lr{lr}{bs}",
                    s,
                    {"lr": lr, "bs": bs},
                    g + sign * 0.04,
                    {"m": mu[lr, bs] - sign * 0.9},
                )
            )
    r = rank(runs, "m", n_boot=100, n_perm=0)
    # psi_lr: bs=a orders 1,2,3 -> +1; bs=b: pairs (1,2) D, (1,3) D, (2,3) C -> -1/3
    # psi_bs: lr=1 C (+1), lr=2 D (-1), lr=3 D (-1) -> -1/3
    assert r["psi_by_axis"]["lr"] == pytest.approx((1 - 1 / 3) / 2)
    assert r["psi_by_axis"]["bs"] == pytest.approx(-1 / 3)
    assert r["psi"] == pytest.approx(0.0)
    assert r["n"] == 12 and r["n_configs"] == 6


# ------------------------------------------------------------------------------ (g) bad init
def test_good_vs_bad_welch_interval_by_hand():
    good = [0.90, 0.92, 0.88]
    bad = [0.70, 0.75, 0.60, 0.65]
    runs = [
        make_run(f"sgd-{i}", s, {"lr": 0.1, "init": i}, 0.0, test_acc=v)
        for i, vals in (("random", good), ("random_labels", bad))
        for s, v in enumerate(vals)
    ]
    runs.append(
        make_run(
            "sgd-bad", 9, {"lr": 0.1, "init": "random_labels"}, 0.0, test_acc=0.01, converged=False
        )
    )
    runs.append(make_run("adam-random", 0, {"lr": 0.2, "init": "random"}, 0.0))
    out = good_vs_bad(runs)
    assert len(out) == 2
    row = out[0]
    assert row["setting"] == {"lr": 0.1}
    va, vb = np.var(good, ddof=1) / 3, np.var(bad, ddof=1) / 4  # 0.0004/3, 0.00416667/4
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    diff = np.mean(good) - np.mean(bad)  # 0.9 - 0.675 = 0.225
    half = stats.t.ppf(0.975, df) * se
    d = row["difference"]
    assert d["estimate"] == pytest.approx(0.225)
    assert d["ci"] == pytest.approx([diff - half, diff + half])
    assert (d["se"], d["df"]) == (pytest.approx(se), pytest.approx(df))
    want = stats.ttest_ind(good, bad, equal_var=False).confidence_interval(0.95)
    assert d["ci"] == pytest.approx([want.low, want.high])
    assert row["good"]["mean"] == pytest.approx(0.9) and row["bad"]["n"] == 4
    assert out[1]["difference"]["ci"] is None and "need 2" in out[1]["difference"]["reason"]
    with_all = good_vs_bad(runs, include_unconverged=True)[0]
    assert with_all["bad"]["n"] == 5


# ------------------------------------------------------------------------------ signs
SUITE_NAMES = {  # probes.implicit_bias.suite.measures() and report names of the probes
    "param_norm": 1,
    "log_prod_frobenius": 1,
    "log_prod_spectral": 1,
    "sum_frobenius_sq": 1,
    "sum_spectral_sq": 1,
    "dist_init": 1,
    "dist_init_frobenius_sum": 1,
    "dist_init_spectral_sum": 1,
    "path_norm": 1,
    "fisher_rao": 1,
    "margin_min": -1,
    "margin_q10": -1,
    "margin_normalised_q10": -1,
    "inverse_margin_q10_sq": 1,
    "effective_rank_mean": None,
    "stable_rank_mean": 1,
    "alpha_mean": 1,
    "noise_trace": None,
    "noise_scale": None,
    "sharpness_worst": 1,
    "sharpness_worst_adaptive": 1,
    "sharpness_average": 1,
    "sharpness_average_adaptive": 1,
    "pac_bayes_flatness": 1,
    "pac_bayes_flatness_magnitude": 1,
    "lambda_max": 1,
    "hessian_trace": 1,
    "sharpness_worst_case": 1,
    "sharpness_worst_case_adaptive": 1,
    "sharpness_average_case_adaptive": 1,
    "sharpness_epsilon": 1,
    "sharpness_pac_bayes": 1,
    "lambda_max [hessian_top10]": 1,
    "pac_bayes_sigma": -1,
    "train_loss": None,
    "steps": None,
    "loss": None,
    "accuracy": None,
    "something_new": None,
}


@pytest.mark.parametrize(("name", "sign"), sorted(SUITE_NAMES.items()))
def test_expected_signs_cover_the_project_names(name, sign):
    assert expected_sign(name) == sign


def test_expected_sign_custom_table():
    assert expected_sign("foo_bar", {"foo_*": -1}) == -1
    assert all(s in (1, -1, None) for s in EXPECTED_SIGNS.values())
