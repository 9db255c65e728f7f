"""Differences between configurations (Welch), seeds behind the means, constant measures.

The study file of :mod:`tests.test_report_study` with a constant measure and a history that
reaches its milestones at planted steps; the Welch intervals against SciPy's and their
coverage on simulated normal data with a fixed seed.
"""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
import scipy.stats

from landscape.report import report
from landscape.report.analysis import constant_measures
from landscape.report.contrasts import ALL_PAIRS_UP_TO, contrast_blocks, contrasts
from landscape.report.read import milestones
from landscape.store.file import Store
from tests.test_report_study import study_runs, write

pytestmark = pytest.mark.usefixtures("one_thread")

CHANCE = 0.125  # a measure with one value on every run


def _fit_step(k: int) -> int:
    return 100 + 50 * (k % 3)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    runs = study_runs()
    for r in runs:
        r["measures"]["class_mean_chance"] = CHANCE
    path = write(tmp_path_factory.mktemp("contrasts") / "study.h5", runs)
    with Store(path, "a") as s:
        for k, r in enumerate(runs):
            steps = np.arange(0, 501, 50)
            train = np.where(steps >= _fit_step(k), 1.0, 0.5)
            s.append_series(
                r["run"],
                "history",
                {"step": steps, "train_acc": train, "test_acc": np.full(len(steps), 0.5)},
            )
    rep = report(path, path.parent / "out", figures=False, interactive=False)
    return runs, rep, json.loads(rep.json.read_text("utf-8"))


def _doc(groups: dict[str, tuple[dict, list[float]]]) -> dict:
    """A study document of configurations -> (axes, test accuracy a seed)."""
    runs, configs = [], []
    for name, (axes, values) in groups.items():
        configs.append({"config": name, "axes": axes, "n": len(values)})
        for seed, v in enumerate(values):
            runs.append(
                {
                    "run": f"{name}-{seed}",
                    "config": name,
                    "seed": seed,
                    "included": True,
                    "metrics": {"test_acc": v, "gap": 1 - v, "train_loss": 0.0, "steps": 1},
                    "measures": {},
                }
            )
    return {"runs": runs, "configs": configs}


# ------------------------------------------------------------------------------ Welch
def test_welch_difference_matches_scipy():
    a, b = [0.61, 0.64, 0.58], [0.70, 0.66, 0.75, 0.73]
    rows = contrasts(_doc({"A": ({"bs": 32}, a), "B": ({"bs": 400}, b)}))
    row = next(r for r in rows if r["metric"] == "test_acc")
    ref = scipy.stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
    assert row["difference"] == pytest.approx(np.mean(b) - np.mean(a), abs=1e-12)
    assert row["ci"] == pytest.approx([ref.low, ref.high], abs=1e-12)
    assert row["differs_in"] == ["bs"] and row["one_axis"] and (row["n_a"], row["n_b"]) == (3, 4)


def test_welch_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    reps, hits = 2000, 0
    for _ in range(reps):
        a = rng.normal(0.5, 0.02, 3)
        b = rng.normal(0.6, 0.06, 4)  # unequal variances and sizes
        rows = contrasts(_doc({"A": ({"x": 0}, list(a)), "B": ({"x": 1}, list(b))}))
        lo, hi = next(r["ci"] for r in rows if r["metric"] == "test_acc")
        hits += lo <= 0.1 <= hi
    # binomial standard error 0.0049: +-3 of them around 0.95
    assert 0.935 <= hits / reps <= 0.965


def test_one_seed_has_no_interval_and_pairs_name_their_axes():
    doc = _doc(
        {
            "A": ({"opt": "sgd", "init": "r"}, [0.5, 0.6]),
            "B": ({"opt": "adam", "init": "r"}, [0.7]),
            "C": ({"opt": "sgd", "init": "b"}, [0.4, 0.45]),
            "D": ({"opt": "adam", "init": "b"}, [0.3, 0.35]),
            "E": ({"opt": "gd", "init": "r"}, [0.2, 0.25]),
        }
    )
    rows = [r for r in contrasts(doc) if r["metric"] == "test_acc"]
    assert len(rows) == 10  # every pair in the data (and the CSV)
    ab = next(r for r in rows if (r["a"], r["b"]) == ("A", "B"))
    assert ab["ci"] is None and ab["difference"] == pytest.approx(0.15) and ab["reason"]
    ad = next(r for r in rows if (r["a"], r["b"]) == ("A", "D"))
    assert ad["differs_in"] == ["init", "opt"] and not ad["one_axis"]
    # more than ALL_PAIRS_UP_TO configurations: the table shows the one-axis pairs only
    assert len(doc["configs"]) > ALL_PAIRS_UP_TO
    table = contrast_blocks(contrasts(doc), len(doc["configs"]))[-1][2]
    shown = {(r[0], r[1]) for r in table}
    assert shown == {(r["a"], r["b"]) for r in rows if r["one_axis"]}
    assert ("A", "D") not in shown and ("A", "C") in shown and ("B", "E") in shown
    small = contrast_blocks(contrasts(doc), ALL_PAIRS_UP_TO)[-1][2]
    assert len(small) == 10


# ------------------------------------------------------------------------------ in the report
def test_report_contrasts_match_the_runs(built):
    runs, rep, doc = built
    included = [r for r in doc["runs"] if r["included"]]
    by_config: dict[str, list[float]] = {}
    for r in included:
        by_config.setdefault(r["config"], []).append(r["metrics"]["test_acc"])
    rows = list(csv.DictReader(io.StringIO((rep.out_dir / "contrasts.csv").read_text())))
    n = len(by_config)
    assert len({(r["config_a"], r["config_b"]) for r in rows}) == n * (n - 1) // 2
    for r in (r for r in rows if r["metric"] == "test_acc"):
        a, b = by_config[r["config_a"]], by_config[r["config_b"]]
        assert float(r["difference_b_minus_a"]) == pytest.approx(np.mean(b) - np.mean(a))
        if len(a) > 1 and len(b) > 1:
            ref = scipy.stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
            assert [float(r["ci_low"]), float(r["ci_high"])] == pytest.approx([ref.low, ref.high])
        else:
            assert r["ci_low"] == "" and r["ci_high"] == ""
    md = rep.markdown.read_text()
    assert "## Differences between configurations (Welch)" in md


def test_report_lists_the_seeds_behind_each_mean(built):
    runs, rep, doc = built
    rows = list(csv.DictReader(io.StringIO((rep.out_dir / "per_seed.csv").read_text())))
    included = {r["run"]: r for r in doc["runs"] if r["included"]}
    assert {r["run"] for r in rows} == set(included)
    for r in rows:
        run = included[r["run"]]
        if r["metric"] == "test_acc":
            assert float(r["value"]) == run["metrics"]["test_acc"]
        if r["metric"] == "dist_init":
            assert float(r["value"]) == pytest.approx(run["measures"]["dist_init"])
        if r["metric"] == "margin_q10" and "margin_q10" not in run["measures"]:
            assert r["value"] == ""
    # the milestone planted in the history, a seed each, and its mean by configuration
    index = {r["run"]: k for k, r in enumerate(runs)}
    steps = {r["run"]: float(r["value"]) for r in rows if r["metric"] == "step_train_acc_1"}
    assert steps == {name: float(_fit_step(index[name])) for name in included}
    for c in doc["configs"]:
        if c["n"]:
            mine = [_fit_step(index[name]) for name in c["runs"]]
            assert c["milestones"]["step_train_acc_1"]["mean"] == pytest.approx(np.mean(mine))
    md = rep.markdown.read_text()
    assert "## Seeds behind the means" in md
    line = next(x for x in md.splitlines() if x.startswith("| sgd-random |") and " / " in x)
    seeds = [r["seed"] for r in doc["runs"] if r["config"] == "sgd-random" and r["included"]]
    assert line.split(" | ")[1] == " / ".join(str(s) for s in seeds)


def test_milestones_from_a_history():
    h = {
        "step": np.array([0, 10, 20, 30]),
        "train_acc": np.array([0.2, 0.9, 1.0, 1.0]),
        "test_acc": np.array([0.1, np.nan, 0.94, 0.951]),
    }
    assert milestones(h) == {
        "step_train_acc_1": 20.0,
        "step_test_acc_0.95": 30.0,
        "test_acc_at_train_acc_1": 0.94,
    }
    assert milestones({"step": np.array([0]), "train_acc": np.array([0.5])}) == {
        "step_train_acc_1": None,
        "step_test_acc_0.95": None,
        "test_acc_at_train_acc_1": None,
    }


# ------------------------------------------------------------------------------ constants
def test_constant_measure_is_not_ranked_and_is_named(built):
    _, rep, doc = built
    assert doc["constant_measures"] == ["class_mean_chance"]
    assert "class_mean_chance" not in {r["measure"] for r in doc["rankings"]}
    assert "class_mean_chance" not in {m.measure for m in rep.ranking}
    assert {"dist_init", "param_norm"} <= {r["measure"] for r in doc["rankings"]}
    md = rep.markdown.read_text()
    assert "Not ranked (the same value on every included run, it orders no pair): " in md
    assert "class\\_mean\\_chance." in md


def test_constant_measures_rule():
    runs = [
        {"converged": True, "measures": {"c": 1.0, "v": 1.0, "one": 2.0}},
        {"converged": True, "measures": {"c": 1.0, "v": 2.0}},
        {"converged": False, "measures": {"c": 5.0, "v": 2.0, "one": 3.0}},
    ]
    # "one": a single converged value is not "constant over runs"; unconverged runs ignored
    assert constant_measures(runs) == ["c"]
