"""Running sweeps (landscape.sweep.run, ``landscape sweep``).

quick.toml (the main job in miniature) end to end, resuming without redoing complete work,
worker processes, the random-label init.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store.file import Store
from landscape.sweep.jobs import compare_name, plan
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import load, loads

pytestmark = pytest.mark.usefixtures("one_thread")

QUICK = Path(__file__).resolve().parents[1] / "experiments" / "quick.toml"
# two optimizers x {random, bad} init x two seeds, in the spec's order
QUICK_RUNS = [
    f"{opt}-{init}-seed{seed}"
    for opt in ("sgd", "adam")
    for init in ("random", "random_labels")
    for seed in (0, 1)
]
# the paths between each good minimum and the bad one of the same optimizer and seed
QUICK_PAIRS = [
    (f"{opt}-random-seed{seed}", f"{opt}-random_labels-seed{seed}")
    for opt in ("sgd", "adam")
    for seed in (0, 1)
]

TINY = """
name = "tiny"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 64, n_test = 64}
train = {epochs = 3, batch_size = 16, seed = 0, snapshot_every = 4}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
[probes]
hessian = {k = 2}
sharpness = [{kind = "worst", adaptive = true, rho = 0.5, steps = 2}]
[along]
lambda_max = {every = 4}
[surfaces.r]
x = [-1.0, 1.0, 3]
y = [-1.0, 1.0, 3]
[paths]
init_to_final = true
between = "all"
points = 5
"""


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("quick") / "quick.h5"
    assert main(["sweep", str(QUICK), "--out", str(out), "--quiet"]) == 0
    return out


def test_quick_end_to_end(quick):
    sweep = load(QUICK)
    assert sweep.stop["train_loss"] == 0.01  # matched stopping, as the main job
    with Store(quick) as s:
        assert s.runs() == QUICK_RUNS
        for r in sweep.runs:
            info = s.info(r.name)
            assert info.status == "complete"
            assert info.attrs["sweep"] == sweep.attrs(r)
            assert info.attrs["sweep"]["axes"] == r.axes and info.attrs["sweep"]["seed"] == r.seed
            assert info.attrs["sweep"]["stop"] == sweep.stop
            # every run reaches the sweep's training-loss target within the step cap
            assert info.attrs["converged"] is True, r.name
            assert info.attrs["stop_reason"] == "target_loss"
            assert 0 < info.attrs["steps"] < sweep.stop["max_steps"]
            assert info.attrs["final_metrics"]["train_loss"] <= sweep.stop["train_loss"]
            assert info.attrs["init"] == r.init
            if r.init["name"] == "random_labels":  # pretrained into a bad minimum first
                pre = info.attrs["pretraining"]
                assert pre["train_acc"] == 1.0 and pre["stop_reason"] == "target_accuracy"
            else:
                assert r.init == {"name": "random"} and "pretraining" not in info.attrs
            assert info.attrs["spec"]["optimizer"] == r.spec["optimizer"]
            assert set(info.probes) == {*sweep.probes, "lambda_max"}
            assert info.surfaces == ("pca_2d",) and info.paths == ("linear_init_final",)
            assert np.all(s.record(r.name, "surfaces", "pca_2d").arrays["done"])
            assert len(s.series(r.name, "probes/lambda_max")["value"]) >= 2
            values = s.record(r.name, "probes", "hessian_eigenvalues").arrays["values"]
            assert values.shape == (2,) and np.all(np.isfinite(values))
        assert [(a, b) for a, b, _ in sweep.between] == QUICK_PAIRS
        compares = [compare_name(a, b, "linear") for a, b in QUICK_PAIRS]
        assert sorted(s.compares()) == sorted(compares)
        for name in compares:
            assert len(s.record(None, "paths", name).arrays["loss"]) == 9
    assert all(j.empty for j in plan(sweep, quick))
    # ... and ends with the report and its figures
    report = quick.parent / "quick_report"
    md = (report / "report.md").read_text("utf-8")
    assert "sgd" in md and "adam" in md and "Kendall" in md
    assert (report / "report.html").stat().st_size > 0
    doc = json.loads((report / "report.json").read_text("utf-8"))
    assert [r["run"] for r in doc["runs"]] == QUICK_RUNS
    assert all(r["converged"] and r["included"] for r in doc["runs"])
    assert [c["n"] for c in doc["configs"]] == [2, 2, 2, 2]  # 2 optimizers x 2 inits
    ranked = {r["measure"]: r for r in doc["rankings"]}
    assert ranked["train_loss"]["baseline"] and ranked["train_loss"]["tau"] is not None
    assert ranked["sharpness_worst_case_adaptive"]["n"] == len(QUICK_RUNS)
    # good vs bad minima per optimizer, with the barriers of the paths between them
    assert len(doc["good_vs_bad"]) == 2
    for g in doc["good_vs_bad"]:
        assert g["random_init"]["n"] == g["bad_init"]["n"] == 2
        assert g["difference"]["ci"] is not None and len(g["barrier"]["paths"]) == 2
    figures = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert "history.png" in figures and any(f.startswith("surface_") for f in figures)
    assert sum(f.startswith("path_compare_") for f in figures) == len(QUICK_PAIRS)


def test_rerun_does_nothing_and_dry_run_lists(quick, capsys):
    with Store(quick) as s:
        tokens = {r: s.info(r).attrs["writer_token"] for r in s.runs()}
    assert main(["sweep", str(QUICK), "--out", str(quick), "--quiet", "--no-report"]) == 0
    assert "nothing was missing" in capsys.readouterr().out
    with Store(quick) as s:
        assert {r: s.info(r).attrs["writer_token"] for r in s.runs()} == tokens
    assert main(["sweep", str(QUICK), "--out", str(quick), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert (
        "  sgd-random_labels-seed1  [optimizer=sgd(lr=0.5), train.batch_size=25, "
        "init=random_labels, train.seed=1]  missing: -"
    ) in out
    assert out.count("  missing: -") == len(QUICK_RUNS)
    assert "  compare: 0 of 4 path(s) missing" in out
    assert f"  stop: {load(QUICK).stop_rule()}" in out and load(QUICK).stop_rule()


def test_a_killed_sweep_finishes_without_redoing_complete_runs(killpoints, tmp_path):
    """SIGKILL the command once its first run is complete; run it again.

    The sweep runs under tests/killpoints.py with ``--pause-between`` (in a process of its
    own, forked by the ``killpoints`` fixture): after each of its write sessions it waits (the
    file closed) for a line on stdin. At each stop the test reads the file, and kills the sweep
    at the first stop where run 'sgd' is complete: mid-sweep by construction, on a fast machine
    or a loaded one.
    """
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY)
    out = tmp_path / "k.h5"
    args = ["sweep", str(spec), "--out", str(out), "--quiet", "--no-report"]
    killpoints.start("--pause-between", "--", *args, stderr=tmp_path / "stderr.txt")
    token, stops = None, 0
    try:
        # ends (an exit code) only if the sweep ends before sgd is complete
        while not isinstance(stop := killpoints.next(), int):
            assert stop[0] == "between", stop
            stops += 1
            with Store(out) as s:  # the sweep waits, the file closed: nothing moves now
                if "sgd" in s.runs() and s.info("sgd").status == "complete":
                    token = s.info("sgd").attrs["writer_token"]
                    break
            killpoints.send("go")
    finally:
        killpoints.stop()  # SIGKILL, while it waits between two sessions
    assert token is not None, "the first run never completed"
    assert any(not j.empty for j in plan(loads(spec.read_text()), out))  # killed mid-sweep
    assert main(args) == 0  # the same command again
    with Store(out) as s:
        assert s.info("sgd").attrs["writer_token"] == token  # not retrained
        assert all(s.info(r).status == "complete" for r in ("sgd", "adam"))
        assert s.compares()
    assert all(j.empty for j in plan(loads(spec.read_text()), out))


def test_interrupted_sweep_finishes_without_redoing(tmp_path):
    out = tmp_path / "t.h5"
    # the first invocation "was interrupted" after one run: a sweep of that run alone
    first = loads(
        TINY.replace('{name = "adam", lr = 0.01}', "")
        .replace(", ]", "]")
        .replace('between = "all"', "between = false")
        .replace("[probes]", "[probes_]")
        .replace("hessian = {k = 2}\n", "")
        .replace("sharpness = [", "#")
        .replace("[probes_]", "")
    )
    assert [r.name for r in first.runs] == ["sgd"]
    run_sweep(first, out)
    with Store(out) as s:
        token = s.info("sgd").attrs["writer_token"]
        final = s.params("sgd")
        assert s.info("sgd").probes == ("lambda_max",)
    full = loads(TINY)
    jobs = {j.run or j.describe(): j for j in plan(full, out)}
    assert not jobs["sgd"].train and jobs["sgd"].probes and jobs["adam"].train
    done = run_sweep(full, out)
    assert len(done) == 3
    with Store(out) as s:
        assert s.info("sgd").attrs["writer_token"] == token  # not trained again
        assert np.array_equal(s.params("sgd"), final)
        for run in ("sgd", "adam"):
            info = s.info(run)
            assert info.status == "complete"
            assert set(info.probes) == {
                "hessian_eigenvalues",
                "sharpness_worst_case_adaptive",
                "lambda_max",
            }
        assert s.compares() == ["linear_sgd_final_adam_final"]
        # a run left incomplete (failed) is redone; the complete one is not
        s_token = s.info("sgd").attrs["writer_token"]
    with Store(out, "a") as s:
        s.set_attrs("adam", {"status": "failed"})
    assert [j.run for j in plan(full, out) if not j.empty] == ["adam"]
    run_sweep(full, out)
    with Store(out) as s:
        assert s.info("sgd").attrs["writer_token"] == s_token
        assert s.info("adam").status == "complete"


def test_another_spec_for_a_complete_run_is_an_error(tmp_path):
    out = tmp_path / "t.h5"
    one = TINY.split("[probes]")[0].replace(', {name = "adam", lr = 0.01}', "")
    run_sweep(loads(one), out)
    with pytest.raises(ValueError, match="run 'sgd' is complete but was trained with another"):
        plan(
            loads(
                one.replace("lr = 0.1", "lr = 0.2")
                .replace("[grid]", "[grid_]")
                .replace("[grid_]", "[grid]")
            ),
            out,
        )


def test_workers_give_the_numbers_of_in_process(tmp_path):
    spec = loads(TINY)
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    run_sweep(spec, a)
    run_sweep(spec, b, workers=2)
    with Store(a) as sa, Store(b) as sb:
        assert sa.runs() == sb.runs() == ["sgd", "adam"]  # merged in the spec's order
        for run in sa.runs():
            ia, ib = sa.info(run), sb.info(run)
            assert ib.status == "complete" and ia.attrs["sweep"] == ib.attrs["sweep"]
            assert np.array_equal(sa.params(run), sb.params(run))
            assert np.array_equal(sa.trajectory(run)[1], sb.trajectory(run)[1])
            for kind, names in (
                ("probes", ia.probes),
                ("surfaces", ia.surfaces),
                ("paths", ia.paths),
            ):
                assert names == getattr(ib, kind)
                for name in names:
                    ra, rb = sa.record(run, kind, name), sb.record(run, kind, name)
                    for key, value in ra.arrays.items():
                        assert np.array_equal(value, rb.arrays[key], equal_nan=True), (
                            run,
                            name,
                            key,
                        )
        name = sa.compares()[0]
        assert sb.compares() == [name]
        assert np.array_equal(
            sa.record(None, "paths", name).arrays["loss"],
            sb.record(None, "paths", name).arrays["loss"],
        )


def test_random_label_init_is_recorded(tmp_path):
    spec = loads(
        TINY.split("[grid]")[0].replace("width = 8", "width = 64").replace("gaussians", "digits")
        + """
[[runs]]
name = "plain"
[[runs]]
name = "bad"
init = "random_labels"
[init.random_labels]
optimizer = {name = "adam", lr = 0.01}
batch_size = 64
epochs = 150
"""
    )
    out = tmp_path / "t.h5"
    run_sweep(spec, out)
    with Store(out) as s:
        plain, bad = s.info("plain"), s.info("bad")
        assert plain.attrs["init"] == {"name": "random"} and "pretraining" not in plain.attrs
        assert bad.attrs["init"]["name"] == "random_labels"
        pre = bad.attrs["pretraining"]
        assert pre["train_acc"] > 0.9 and pre["stop_reason"] == "target_accuracy"
        assert pre["steps"] > 0 and pre["n_random"] > 0
        # same model seed, so the stored init differs only by the pretraining
        assert not np.array_equal(s.params("plain", "init"), s.params("bad", "init"))
        assert bad.attrs["sweep"]["axes"] == {"init": "random_labels"}
