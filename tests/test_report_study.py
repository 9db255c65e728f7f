"""The report as a study: converged runs, configurations over seeds, rankings, bad minima.

Small synthetic landscape files written with the store; report.json's schema, the converged
filter and its option, one-seed configurations, a file where no run converged, a measure
missing on some runs, and the numbers of the report against :mod:`landscape.report.study` and
:mod:`landscape.report.study_rank` on the same data.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from landscape import cli
from landscape.engine.cost import Cost
from landscape.report import report
from landscape.report.study import good_vs_bad, mean_ci
from landscape.report.study_rank import rank_all
from landscape.store.file import Store
from probes.implicit_bias.results import Measures
from probes.paths.results import Path as PathResult

STOP = {"train_loss": 0.01, "max_steps": 500}
OPTS = ("sgd", "adam")
INITS = ("random", "random_labels")
SEEDS = (0, 1, 2)
MISSED = {"adam-random-seed2": "max_steps", "sgd-random_labels-seed1": "epochs"}
NO_MARGIN = {"sgd-random-seed0", "adam-random_labels-seed0", "gd-random-seed0"}


def _barrier(a: str, b: str) -> float:
    return 0.3 + 0.01 * (len(a) + 3 * int(a[-1]) + len(b) % 3)


def study_runs() -> list[dict]:
    """The runs of the study file, as plain data: 4 configurations x 3 seeds, one of 1 seed."""
    out = []
    for opt in OPTS:
        for init in INITS:
            for seed in SEEDS:
                k = OPTS.index(opt) * 6 + INITS.index(init) * 3 + seed
                name = f"{opt}-{init}-seed{seed}"
                test_acc = 0.9 - 0.2 * (init == "random_labels") - 0.05 * (opt == "adam")
                test_acc += 0.013 * ((k * 7) % 5 - 2)
                out.append(_run(name, opt, init, seed, test_acc, k))
    out.append(_run("gd-random-seed0", "gd", "random", 0, 0.88, 12))
    return out


def _run(name: str, opt: str, init: str, seed: int, test_acc: float, k: int) -> dict:
    gap = 1.0 - test_acc
    return {
        "run": name,
        "config": f"{opt}-{init}",
        "seed": seed,
        "axes": {"optimizer": opt, "init": init},
        "converged": name not in MISSED,
        "stop_reason": MISSED.get(name, "target_loss"),
        "steps": 100 + 37 * ((k * 5) % 7),
        "train_loss": 0.01 if name not in MISSED else 0.2,
        "train_acc": 1.0,
        "test_acc": test_acc,
        "gap": gap,
        "measures": {
            "dist_init": gap * 10 + 0.1 * ((k * 3) % 4),
            "param_norm": 5 - gap * 3 + 0.2 * ((k * 5) % 3),
            "margin_q10": None if name in NO_MARGIN else 2 - gap + 0.05 * (k % 4),
            "sharpness_worst_adaptive": 0.1 + 0.01 * ((k * 11) % 13),
        },
    }


def write(path: Path, runs: list[dict], *, flags: bool = True, config: bool | str = True) -> Path:
    """A landscape file of ``runs`` and the linear paths between good and bad minima.

    ``flags``: the sweep had a stopping target (``converged``, ``sweep.stop``); ``config``:
    the sweep wrote its configuration id and seed (older sweeps did not); ``"json"``: the id
    is the JSON text of the axes without the seed.
    """
    with Store(path, "w") as s:
        for r in runs:
            s.create_run(r["run"], names=["w"], shapes=[(3,)], init=np.zeros(3))
            sweep = {"name": "study", "axes": {**r["axes"], "train.seed": r["seed"]}}
            attrs = {
                "final_metrics": {
                    "train_acc": r["train_acc"],
                    "test_acc": r["test_acc"],
                    "train_loss": r["train_loss"],
                    "test_loss": 0.5,
                },
                "steps": r["steps"],
                "stop_reason": r["stop_reason"],
                "sweep": sweep,
            }
            if flags:
                attrs["converged"] = r["converged"]
                sweep["stop"] = STOP
            if config:
                cid = json.dumps(r["axes"], sort_keys=True) if config == "json" else r["config"]
                sweep.update(config=cid, seed=r["seed"])
            s.set_final(r["run"], np.ones(3), status="complete", attrs=attrs)
            values = {k: v for k, v in r["measures"].items() if v is not None}
            arrays, rec = Measures(values=values, skipped={}, layers=("w",)).to_record()
            s.write_record(r["run"], "probes", "measures", arrays=arrays, attrs=rec)
        for a, b in good_bad_pairs(runs):
            peak = _barrier(a, b)
            loss = np.array([0.01, 0.01 + peak, 0.01])
            arrays, rec = PathResult(
                kind="linear",
                alphas=np.linspace(0, 1, 3),
                loss=loss,
                accuracy=None,
                test_loss=None,
                test_accuracy=None,
                buffers="none",
                mode="eval",
                params=("w",),
                cost=Cost(loss_evals=3),
                info={},
            ).to_record()
            ends = {"from": {"run": a, "which": "final"}, "to": {"run": b, "which": "final"}}
            s.write_record(
                None,
                "paths",
                f"linear_{a}_final_{b}_final",
                arrays=arrays,
                attrs={**rec, "ends": ends},
            )
    return path


def good_bad_pairs(runs: list[dict]) -> list[tuple[str, str]]:
    names = {r["run"] for r in runs}
    return [
        (f"{o}-random-seed{s}", f"{o}-random_labels-seed{s}")
        for o in OPTS
        for s in SEEDS
        if {f"{o}-random-seed{s}", f"{o}-random_labels-seed{s}"} <= names
    ]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("study") / "study.h5", study_runs())
    r = report(path, path.parent / "out", figures=False)
    return path, r, json.loads(r.json.read_text("utf-8"), parse_constant=_no_constant)


def _no_constant(name: str):
    raise AssertionError(f"report.json holds {name}: must be null")


def _stat(x, where: str) -> None:
    assert set(x) >= {"mean", "ci"}, where
    assert x["mean"] is None or isinstance(x["mean"], float), where
    assert x["ci"] is None or (
        isinstance(x["ci"], list)
        and len(x["ci"]) == 2
        and all(isinstance(v, float) for v in x["ci"])
    ), where


def _opt_num(x) -> bool:
    return x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))


# ------------------------------------------------------------------------------ report.json
def test_report_json_schema(study):
    _, r, doc = study
    assert r.json == r.out_dir / "report.json"
    assert not [p for p in r.out_dir.iterdir() if p.name.endswith(".tmp")]
    assert set(doc) >= {"design", "runs", "configs", "rankings", "good_vs_bad", "summary"}
    d = doc["design"]
    assert d["matched_stopping"] is True and d["include_unconverged"] is False
    assert d["stop"] == STOP and d["confidence"] == 0.95 and d["correction"] == "bh"
    assert isinstance(d["n_boot"], int) and d["n_boot"] >= 1000 and isinstance(d["n_perm"], int)
    for key in ("config_interval", "tau_interval", "p_value", "difference_interval"):
        assert isinstance(d[key], str) and d[key]
    assert len(doc["runs"]) == 13
    for run in doc["runs"]:
        assert isinstance(run["run"], str) and isinstance(run["config"], str)
        assert isinstance(run["seed"], int) and isinstance(run["converged"], bool)
        assert isinstance(run["stop_reason"], str) and isinstance(run["included"], bool)
        assert all(_opt_num(v) for v in run["metrics"].values())
        assert {"train_loss", "train_acc", "test_acc", "gap", "steps"} <= set(run["metrics"])
        assert all(_opt_num(v) for v in run["measures"].values())
    for c in doc["configs"]:
        assert isinstance(c["config"], str) and isinstance(c["n"], int)
        for key in ("test_acc", "gap"):
            _stat(c[key], f"{c['config']} {key}")
        assert set(c["measures"]) == {
            "dist_init",
            "param_norm",
            "margin_q10",
            "sharpness_worst_adaptive",
        }
        for name, s in c["measures"].items():
            _stat(s, f"{c['config']} {name}")
    for row in doc["rankings"]:
        assert isinstance(row["measure"], str) and isinstance(row["baseline"], bool)
        assert isinstance(row["n"], int)
        for key in ("tau", "p", "p_adjusted", "psi", "cmi"):
            assert _opt_num(row[key]), (row["measure"], key)
        assert row["ci"] is None or (len(row["ci"]) == 2 and row["ci"][0] <= row["ci"][1])
        assert row["expected_sign"] in (None, -1, 1)
    assert [x["measure"] for x in doc["rankings"] if x["baseline"]] == ["train_loss", "steps"]
    assert len(doc["good_vs_bad"]) == 2
    for g in doc["good_vs_bad"]:
        assert isinstance(g["optimizer"], str)
        for key in ("random_init", "bad_init", "difference", "barrier"):
            _stat(g[key], f"{g['optimizer']} {key}")
    assert all(isinstance(s, str) for part in doc["summary"].values() for s in part)
    assert doc == json.loads(json.dumps(r.study, default=str))  # the file is the study


def test_run_table_shows_config_seed_converged_and_reason(study):
    _, r, _ = study
    rows = {x[0]: dict(zip(r.runs.columns, x, strict=True)) for x in r.runs.rows}
    row = rows["adam-random-seed2"]
    assert (row["config"], row["seed"], row["converged"]) == ("adam-random", 2, False)
    assert row["stop reason"] == "max_steps" and rows["sgd-random-seed0"]["converged"] is True


# ------------------------------------------------------------------------------ converged
def test_unconverged_runs_are_listed_and_left_out(study):
    _, r, doc = study
    by = {x["run"]: x for x in doc["runs"]}
    assert {k for k, x in by.items() if not x["included"]} == set(MISSED)
    assert r.n_ranked == 11 and doc["counts"]["included"] == 11
    configs = {c["config"]: c for c in doc["configs"]}
    assert configs["adam-random"]["n"] == 2 and configs["adam-random"]["n_unconverged"] == 1
    assert "adam-random-seed2" not in configs["adam-random"]["runs"]
    # the aggregate is the mean over the converged seeds only
    acc = [x["test_acc"] for x in study_runs() if x["config"] == "adam-random"][:2]
    assert configs["adam-random"]["test_acc"]["mean"] == pytest.approx(np.mean(acc))
    ranks = {x["measure"]: x for x in doc["rankings"]}
    assert ranks["dist_init"]["n"] == 11 and ranks["train_loss"]["n"] == 11
    md = r.markdown.read_text("utf-8")
    assert (
        "adam-random-seed2: did not reach the target (train\\_loss 0.01, at most 500 steps)" in md
    )
    assert "stopped by max\\_steps" in md and "stopped by epochs" in md
    assert "2 of 13 complete runs did not reach the stopping target" in md
    assert any("did not reach the stopping target" in n for n in r.notes)


def test_include_unconverged_option_and_cli_flag(study, tmp_path, capsys):
    path, _, _ = study
    r = report(path, tmp_path / "all", figures=False, include_unconverged=True)
    doc = r.study
    assert doc["design"]["include_unconverged"] is True and r.n_ranked == 13
    assert all(x["included"] for x in doc["runs"])
    assert {x["measure"]: x["n"] for x in doc["rankings"]}["dist_init"] == 13
    assert {c["config"]: c["n"] for c in doc["configs"]}["adam-random"] == 3
    assert "included on request" in r.markdown.read_text("utf-8")
    out = tmp_path / "cli"
    assert (
        cli.main(["report", str(path), "--out", str(out), "--no-figures", "--include-unconverged"])
        == 0
    )
    assert "(13 ranked)" in capsys.readouterr().out
    assert json.loads((out / "report.json").read_text())["design"]["include_unconverged"] is True


def test_one_seed_configuration_has_no_interval_and_says_why(study):
    _, r, doc = study
    gd = next(c for c in doc["configs"] if c["config"] == "gd-random")
    assert gd["n"] == 1 and gd["test_acc"]["mean"] == pytest.approx(0.88)
    assert gd["test_acc"]["ci"] is None and "one value" in gd["test_acc"]["reason"]
    assert all(s["ci"] is None for s in gd["measures"].values())
    sgd = next(c for c in doc["configs"] if c["config"] == "sgd-random")
    want = mean_ci([x["test_acc"] for x in study_runs() if x["config"] == "sgd-random"])
    assert sgd["test_acc"]["ci"] == pytest.approx(want["ci"])  # Student t over the seeds
    md = r.markdown.read_text("utf-8")
    assert "0.88 (1 seed)" in md and "1 configuration(s) have one seed: no interval" in md
    assert "Student-t" in md and "two-level percentile bootstrap" in md


def test_no_run_converged(tmp_path, capsys):
    runs = [{**x, "converged": False, "stop_reason": "max_steps"} for x in study_runs()]
    path = write(tmp_path / "none.h5", runs)
    r = report(path, figures=False)
    doc = r.study
    assert r.n_ranked == 0 and doc["counts"]["included"] == 0
    assert all(c["n"] == 0 and c["test_acc"]["mean"] is None for c in doc["configs"])
    assert all(x["tau"] is None for x in doc["rankings"]) and doc["good_vs_bad"] == []
    md = r.markdown.read_text("utf-8")
    assert "No run reached the stopping target: nothing is aggregated or ranked." in md
    assert "No configuration has an included run" in md and "no tau is computed" in md
    assert json.loads(r.json.read_text())["counts"]["included"] == 0
    assert cli.main(["report", str(path), "--no-figures"]) == 0
    assert "(0 ranked)" in capsys.readouterr().out


def test_a_measure_missing_on_some_runs_is_ranked_over_those_that_have_it(study):
    _, r, doc = study
    margin = next(x for x in doc["rankings"] if x["measure"] == "margin_q10")
    # 11 converged runs, 3 of them without the margin
    assert margin["n"] == 8 and margin["n_missing"] == 3 and margin["tau"] is not None
    md = r.markdown.read_text("utf-8")
    assert "margin\\_q10 (n = 8 of 11)" in md
    assert any(line.startswith("| margin\\_q10 | 8 |") for line in md.splitlines())


def test_without_a_stopping_target_the_report_says_so(tmp_path):
    path = write(tmp_path / "old.h5", study_runs(), flags=False, config=False)
    r = report(path, figures=False)
    doc = r.study
    assert doc["design"]["matched_stopping"] is False and r.n_ranked == 13
    assert all(x["converged"] is None and x["included"] for x in doc["runs"])
    # configurations derived from the axes without the seed: the seeds still group
    configs = {c["config"]: c["n"] for c in doc["configs"]}
    assert configs["init=random, optimizer=adam"] == 3 and len(configs) == 5
    assert "no matched stopping target" in r.markdown.read_text("utf-8")


def test_a_configuration_id_of_json_axes_is_shown_as_axes(tmp_path):
    r = report(write(tmp_path / "ids.h5", study_runs(), config="json"), figures=False)
    configs = {c["config"]: c["n"] for c in r.study["configs"]}
    assert configs == {
        "init=random, optimizer=sgd": 3,
        "init=random_labels, optimizer=sgd": 2,
        "init=random, optimizer=adam": 2,
        "init=random_labels, optimizer=adam": 3,
        "init=random, optimizer=gd": 1,
    }
    assert "| axes |" not in r.markdown.read_text("utf-8")  # the config says it all


def test_fewer_than_four_runs_no_tau_stated(tmp_path):
    path = write(tmp_path / "few.h5", study_runs()[:3])
    r = report(path, figures=False)
    assert all(x["tau"] is None for x in r.study["rankings"])
    assert "Fewer than 4 runs are included (3): no tau is computed." in r.markdown.read_text()


# ------------------------------------------------------------------------------ the numbers
def _as_study(runs: list[dict]) -> list[dict]:
    return [
        {
            "run": x["run"],
            "config": x["config"],
            "seed": x["seed"],
            "axes": x["axes"],
            "converged": x["converged"],
            "gap": x["gap"],
            "test_acc": x["test_acc"],
            "train_loss": x["train_loss"],
            "steps": x["steps"],
            "measures": {k: v for k, v in x["measures"].items() if v is not None},
        }
        for x in runs
    ]


def test_rankings_equal_rank_all_on_the_same_data(study):
    _, _, doc = study
    d = doc["design"]
    want = rank_all(_as_study(study_runs()), n_boot=d["n_boot"], n_perm=d["n_perm"], seed=d["seed"])
    got = {x["measure"]: x for x in doc["rankings"]}
    assert set(got) == {x["measure"] for x in want["rows"]} and d["n_tests"] == want["n_tests"]
    for w in want["rows"]:
        g = got[w["measure"]]
        for key in ("n", "baseline", "expected_sign", "sign_agrees", "beats_baselines"):
            assert g[key] == w[key], (w["measure"], key)
        for key in ("tau", "p", "p_adjusted", "psi", "cmi"):
            assert g[key] == pytest.approx(w[key], abs=1e-12), (w["measure"], key)
        assert (g["ci"] is None) == (w["ci"] is None)
        if w["ci"] is not None:
            assert g["ci"] == pytest.approx(w["ci"], abs=1e-12)
        assert g["psi_by_axis"] == pytest.approx(w["psi_by_axis"])


def test_good_vs_bad_equals_study_on_the_same_data(study):
    _, r, doc = study
    runs = study_runs()
    want = {
        f"optimizer={w['setting']['optimizer']}": w
        for w in good_vs_bad(_as_study(runs))
        if w["good"]["n"] and w["bad"]["n"]  # gd has a random init only
    }
    assert (
        set(want)
        == {g["optimizer"] for g in doc["good_vs_bad"]}
        == {
            "optimizer=sgd",
            "optimizer=adam",
        }
    )
    converged = {x["run"] for x in runs if x["converged"]}
    for g in doc["good_vs_bad"]:
        w = want[g["optimizer"]]
        for mine, theirs in (("random_init", "good"), ("bad_init", "bad")):
            assert g[mine]["mean"] == pytest.approx(w[theirs]["mean"])
            assert g[mine]["ci"] == pytest.approx(w[theirs]["ci"])
            assert g[mine]["n"] == w[theirs]["n"]
        assert g["difference"]["mean"] == pytest.approx(w["difference"]["estimate"])
        assert g["difference"]["ci"] == pytest.approx(w["difference"]["ci"])
        # barriers of the linear paths between a good and a bad minimum, converged ends only
        opt = g["optimizer"].split("=")[1]
        pairs = [
            (a, b)
            for a, b in good_bad_pairs(runs)
            if a.startswith(f"{opt}-") and {a, b} <= converged
        ]
        values = [_barrier(a, b) for a, b in pairs]
        assert g["barrier"]["n"] == len(values) == (2 if opt in ("sgd", "adam") else 0)
        assert g["barrier"]["mean"] == pytest.approx(np.mean(values), abs=1e-9)
        assert g["barrier"]["ci"] == pytest.approx(mean_ci(values)["ci"], abs=1e-9)
    assert doc["good_vs_bad_one_init"] == ["optimizer=gd"]
    md = r.markdown.read_text("utf-8")
    assert "Good vs bad minima, per optimizer setting" in md and "Welch" in md
    assert "one init only, not compared: optimizer=gd" in md


def test_without_both_inits_the_good_vs_bad_section_says_why(tmp_path):
    runs = [x for x in study_runs() if x["axes"]["init"] == "random"]
    r = report(write(tmp_path / "good.h5", runs), figures=False)
    assert r.study["good_vs_bad"] == []
    md = r.markdown.read_text("utf-8")
    assert "no good-vs-bad comparison" in md and "| random init |" not in md


def test_infinite_and_missing_values_are_json_null(tmp_path):
    runs = study_runs()[:5]
    runs[0]["measures"]["dist_init"] = math.inf
    r = report(write(tmp_path / "inf.h5", runs), figures=False)
    doc = json.loads(r.json.read_text(), parse_constant=_no_constant)
    assert doc["runs"][0]["measures"]["dist_init"] is None
    # 5 runs, one of them unconverged, one with an infinite value
    assert next(x for x in doc["rankings"] if x["measure"] == "dist_init")["n"] == 3


def test_measure_vs_gap_draws_unconverged_runs_hollow(study):
    from landscape.plot import measure_vs_gap

    path, _, _ = study
    fig = measure_vs_gap(path, "dist_init")
    ax = fig.axes[0]
    hollow = [
        c for c in ax.collections if c.get_facecolor().size == 0 or c.get_facecolor()[0][3] == 0
    ]
    assert len(hollow) == len(MISSED) and "2 not converged" in ax.get_title()
