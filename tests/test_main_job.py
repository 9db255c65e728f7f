"""The main job (``experiments/optimizers.toml``) at tiny scale, end to end.

Its spec as shipped with the sizes turned down (a 64-example MNIST-1D subset, a width-32 MLP,
a looser training-loss target that every tiny run reaches within a small step cap, a short
pretraining on random labels, probes, surface and paths on few points): every optimizer
setting of the main job (its ``[[runs]]``), both inits, two seeds instead of three. The sweep
runs, the report is written, and ``report.json`` is checked: every run with its converged
flag, configurations with their intervals, the rankings with the baselines and every measure
family, and good vs bad minima per optimizer setting.
"""

from __future__ import annotations

import copy
import json
import math
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from landscape.report import report
from landscape.store.file import Store
from landscape.sweep.jobs import compare_name
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import Sweep, expand, load

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

pytestmark = pytest.mark.usefixtures("one_thread")

MAIN = Path(__file__).resolve().parents[1] / "experiments" / "optimizers.toml"
SHIPPED = tomllib.loads(MAIN.read_text("utf-8"))
SETTINGS = len(SHIPPED["runs"])  # the optimizer settings: one [[runs]] entry each
N = 64  # training examples of the tiny job, and of every probe
SEEDS = [0, 1]
STOP = {"train_loss": 0.5, "max_steps": 1000}  # the main job's kind of target, looser
# probe options that say how much work a probe does -> their tiny values
SMALL = {"k": 2, "n_products": 10, "n_vectors": 1, "steps": 3, "n_samples": 2}
# and the budgets of the searches that the main job leaves at their defaults
SEARCH = {"pac_bayes": {"depth": 8}, "epsilon": {"max_iter": 3}}


def _shrunk(opts: dict[str, Any]) -> dict[str, Any]:
    """Probe options with their amounts of work made small (the rest kept: rho, m, norm, ...)."""
    out = {k: min(v, SMALL[k]) if k in SMALL else v for k, v in opts.items()}
    if "n" in out:
        out["n"] = N
    if "tol" in out:
        out["tol"] = max(out["tol"], 1e-3)
    return out


def tiny(raw: dict[str, Any]) -> dict[str, Any]:
    """The main job's spec at tiny scale: the sizes changed, its runs and measures kept."""
    raw = copy.deepcopy(raw)
    base = raw["base"]
    base["model"]["width"] = 32
    base["data"].update(n_train=N, n_test=200)
    base["train"].update(snapshot_every=50, history_every=50)
    raw["stop"] = dict(STOP)
    raw["grid"]["train.seed"] = list(SEEDS)
    # a few epochs at a larger rate still memorise the 64 random labels: a bad minimum
    raw["init"]["random_labels"].update(epochs=30, optimizer={"name": "adam", "lr": 0.01})
    probes = raw["probes"]
    for key, value in probes.items():
        if isinstance(value, dict):
            probes[key] = _shrunk(value)
    probes["n"] = N
    probes["measures"]["pac_bayes_samples"] = 2
    probes["sharpness"] = [{**_shrunk(e), **SEARCH.get(e["kind"], {})} for e in probes["sharpness"]]
    raw["along"] = {k: {**_shrunk(v), "every": 100} for k, v in raw["along"].items()}
    for surface in raw["surfaces"].values():
        surface.update(x=[*surface["x"][:2], 3], y=[*surface["y"][:2], 3], n=N)
    raw["paths"].update(points=5, n=N)
    return raw


@pytest.fixture(scope="module")
def main_job(one_thread, tmp_path_factory) -> tuple[Sweep, Path, dict[str, Any]]:
    sweep = expand(tiny(SHIPPED))
    out = tmp_path_factory.mktemp("main_job") / "optimizers.h5"
    run_sweep(sweep, out)
    r = report(out, out.parent / "report", figures=False)
    assert r.json is not None and r.json.name == "report.json"
    return sweep, out, json.loads(r.json.read_text("utf-8"))


def _stat(s: dict[str, Any], n: int) -> None:
    """A mean over ``n`` seeds: with an interval around it from 2 seeds, none (and why) from 1."""
    assert s["n"] == n and math.isfinite(s["mean"]), s
    if n >= 2:
        lo, hi = s["ci"]
        assert lo <= s["mean"] <= hi and s["reason"] is None, s
    else:
        assert s["ci"] is None and "one value" in s["reason"], s


def test_the_tiny_job_keeps_the_main_jobs_structure():
    shipped = load(MAIN)
    sweep = expand(tiny(SHIPPED))
    settings = {r.spec["optimizer"]["name"] for r in shipped.runs}
    assert SETTINGS >= 7  # GD, SGD at two batch sizes, momentum, weight decay, Adam, SAM
    assert len(sweep.runs) == SETTINGS * 2 * len(SEEDS) and len(shipped.runs) == SETTINGS * 2 * 3
    assert {r.spec["optimizer"]["name"] for r in sweep.runs} == settings
    assert {r.init["name"] for r in sweep.runs} == {"random", "random_labels"}
    assert len({r.config for r in sweep.runs}) == len({r.config for r in shipped.runs})
    assert len({r.config for r in sweep.runs}) == SETTINGS * 2
    assert sweep.probes.keys() == shipped.probes.keys()  # every probe, under the same names
    for name, (module, fn, opts) in sweep.probes.items():
        assert (module, fn) == shipped.probes[name][:2]
        for key in ("rho", "m", "norm", "logit_normalize", "adaptive", "eps"):
            assert opts.get(key) == shipped.probes[name][2].get(key), (name, key)
    assert sweep.along.keys() == shipped.along.keys()
    assert sweep.surfaces.keys() == shipped.surfaces.keys()
    assert sweep.init_to_final == shipped.init_to_final
    assert len(sweep.between) == SETTINGS * len(SEEDS) and len(shipped.between) == SETTINGS * 3
    assert sweep.stop.keys() == shipped.stop.keys()  # a training-loss target and a step cap


def test_main_job_end_to_end(main_job):
    sweep, out, doc = main_job
    names = [r.name for r in sweep.runs]
    with Store(out) as s:
        assert s.runs() == names
        assert sorted(s.compares()) == sorted(compare_name(a, b, k) for a, b, k in sweep.between)
        for r in sweep.runs:
            info = s.info(r.name)
            assert info.status == "complete" and info.attrs["sweep"] == sweep.attrs(r)
            assert set(info.probes) == {*sweep.probes, *sweep.along}
            assert info.surfaces == tuple(sweep.surfaces)
            if r.init["name"] == "random_labels":  # pretrained into a bad minimum
                assert info.attrs["pretraining"]["train_acc"] == 1.0

    # every run listed, each with its converged flag; the tiny target is reached by all
    assert [r["run"] for r in doc["runs"]] == names
    for row in doc["runs"]:
        assert row["converged"] is True and row["stop_reason"] == "target_loss", row
        assert row["included"] and row["seed"] == sweep.run(row["run"]).seed
        assert row["metrics"]["train_loss"] <= STOP["train_loss"]
        assert 0 < row["metrics"]["steps"] < STOP["max_steps"]
        assert math.isfinite(row["metrics"]["test_acc"]) and math.isfinite(row["metrics"]["gap"])
        assert row["measures"], row["run"]
    assert doc["design"]["matched_stopping"] and doc["design"]["stop"] == STOP
    assert doc["counts"] == {
        "runs": len(names),
        "complete": len(names),
        "included": len(names),
        "unconverged": 0,
        "configs": SETTINGS * 2,
    }

    # configurations (the sweep's: runs that differ only in their seed), each the mean and a
    # 95% interval over its two seeds, of every measure too
    groups: dict[str, set[str]] = {}
    for row in doc["runs"]:
        groups.setdefault(row["config"], set()).add(row["run"])
    by_sweep: dict[str, set[str]] = {}
    for r in sweep.runs:
        by_sweep.setdefault(r.config, set()).add(r.name)
    assert sorted(map(sorted, groups.values())) == sorted(map(sorted, by_sweep.values()))
    assert Counter(c["n"] for c in doc["configs"]) == {len(SEEDS): SETTINGS * 2}
    assert {c["config"] for c in doc["configs"]} == groups.keys()
    for c in doc["configs"]:
        assert set(c["runs"]) == groups[c["config"]]
    for c in doc["configs"]:
        _stat(c["test_acc"], len(SEEDS))
        _stat(c["gap"], len(SEEDS))
        held = {m for r in doc["runs"] for m, v in r["measures"].items() if v is not None}
        assert held <= c["measures"].keys() <= {m for r in doc["runs"] for m in r["measures"]}
        for m, s in c["measures"].items():
            if s["n"]:  # a measure may be undefined on some runs (NaN): counted, not averaged
                assert s["mean"] is not None and (s["ci"] is None) == (s["n"] < 2), (m, s)

    # rankings: the baselines, and every measure family, over all included runs
    rows = {r["measure"]: r for r in doc["rankings"]}
    assert len(rows) == len(doc["rankings"])
    assert [m for m, r in rows.items() if r["baseline"]] == ["train_loss", "steps"]
    assert {"train_loss", "steps"} <= rows.keys()
    measures = set(rows) - {"train_loss", "steps"}
    assert any(m.startswith("lambda_max") for m in measures)  # the hessian probe
    assert "hessian_trace" in measures
    assert {n for n in sweep.probes if n.startswith("sharpness_")} <= measures  # every one
    assert {"path_norm", "param_norm", "log_prod_frobenius", "dist_init"} <= measures  # norms
    assert {"margin_q10", "margin_normalised_q10"} <= measures  # margins
    for m, r in rows.items():
        assert 0 < r["n"] <= len(names), m
        assert {"tau", "ci", "p", "p_adjusted", "expected_sign", "psi", "cmi"} <= r.keys(), m
        if r["p"] is not None:
            assert 0 <= r["p"] <= r["p_adjusted"] <= 1, m
        if r["tau"] is not None:
            assert -1 <= r["tau"] <= 1, m
    tested = [r for r in rows.values() if r["p"] is not None]
    assert len(tested) >= 10 and doc["design"]["n_tests"] == len(tested)
    assert rows["train_loss"]["tau"] is not None and rows["steps"]["tau"] is not None
    assert rows["path_norm"]["expected_sign"] == 1 and rows["margin_q10"]["expected_sign"] == -1
    assert rows["sharpness_worst_linf_m128_logitnorm"]["expected_sign"] == 1
    assert rows["train_loss"]["expected_sign"] is None

    # good vs bad minima: one row per optimizer setting, both inits and their difference
    settings = {
        json.dumps({**r.axes, "init": 0, "train.seed": 0}, sort_keys=True) for r in sweep.runs
    }
    assert len(settings) == SETTINGS and len(doc["good_vs_bad"]) == SETTINGS
    assert len({g["optimizer"] for g in doc["good_vs_bad"]}) == SETTINGS
    assert doc["good_vs_bad_one_init"] == []
    for g in doc["good_vs_bad"]:
        _stat(g["random_init"], len(SEEDS))
        _stat(g["bad_init"], len(SEEDS))
        d = g["difference"]
        lo, hi = d["ci"]
        assert d["mean"] == pytest.approx(g["random_init"]["mean"] - g["bad_init"]["mean"])
        assert lo <= d["mean"] <= hi
        assert len(g["barrier"]["paths"]) == len(SEEDS)  # the good-bad line of each seed


def test_a_configuration_left_with_one_seed_gets_no_interval(main_job, tmp_path):
    """A run marked unconverged is listed and left out: its configuration has one seed."""
    sweep, out, _ = main_job
    file = tmp_path / "one.h5"
    file.write_bytes(out.read_bytes())
    run = sweep.runs[0]
    other = next(r.name for r in sweep.runs if r.config == run.config and r is not run)
    with Store(file, "a") as s:
        s.set_attrs(run.name, {"converged": False, "stop_reason": "max_steps"})
    written = report(file, tmp_path / "r", figures=False, n_boot=200, n_perm=199).json
    assert written is not None
    doc = json.loads(written.read_text("utf-8"))
    row = next(r for r in doc["runs"] if r["run"] == run.name)
    assert row["converged"] is False and not row["included"] and row["stop_reason"] == "max_steps"
    assert doc["counts"]["unconverged"] == 1
    config = next(c for c in doc["configs"] if c["config"] == row["config"])
    assert config["n"] == 1 and config["runs"] == [other] and config["n_unconverged"] == 1
    _stat(config["test_acc"], 1)
    _stat(config["gap"], 1)
    assert all(c["n"] == 2 for c in doc["configs"] if c is not config)
    assert all(r["n"] <= len(sweep.runs) - 1 for r in doc["rankings"])
    g = next(g for g in doc["good_vs_bad"] if g["random_init"]["n"] == 1)
    assert g["difference"]["ci"] is None and "need 2" in g["difference"]["reason"]
