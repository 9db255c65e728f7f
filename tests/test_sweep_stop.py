"""Matched stopping in sweeps (``[stop]``), configurations and seeds, good-vs-bad paths.

The ``[stop]`` table and mixed targets refused, ``converged`` flags, ``attrs["sweep"]``'s
configuration and seed, paths between good and bad minima (``[paths] between = "init"``), and
a sweep whose runs never reach their target.
"""

from __future__ import annotations

import json

import pytest

from landscape.cli.main import main
from landscape.store.file import Store
from landscape.sweep.jobs import compare_name
from landscape.sweep.run import run_sweep
from landscape.sweep.runs import config_id
from landscape.sweep.spec import loads

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = """
name = "stop"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 32, n_test = 32}
train = {batch_size = 16, seed = 0, history_every = 2, snapshot_every = 0}
"""
STOP = """
[stop]
train_loss = 0.05
max_steps = 60
"""


# ----------------------------------------------------------------------------- the table
def test_stop_sets_every_runs_target_and_caps():
    s = loads(
        BASE
        + """
[stop]
train_accuracy = 1.0
max_steps = 500
max_epochs = 40
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
"""
    )
    assert s.stop == {"train_accuracy": 1.0, "max_steps": 500, "max_epochs": 40}
    assert s.stop_rule() == "train_accuracy >= 1, at most 500 steps or 40 epochs"
    for r in s.runs:
        assert r.spec["train"] == {
            "batch_size": 16,
            "seed": 0,
            "history_every": 2,
            "snapshot_every": 0,
            "target_accuracy": 1.0,
            "max_steps": 500,
            "epochs": 40,
        }
    # no [stop]: no rule, the runs as they are
    plain = loads(BASE.replace("seed = 0,", "seed = 0, epochs = 1,"))
    assert plain.stop == {} and plain.stop_rule() == ""
    assert "target_loss" not in plain.runs[0].spec["train"]


BAD_STOP = [
    ("max_steps = 5", "stop: give exactly one target", ValueError),
    ("train_loss = 0.01\ntrain_accuracy = 1.0\nmax_steps = 5", "got train_loss and", ValueError),
    ("train_loss = 0.01", "stop.max_steps: required", ValueError),
    ("train_loss = 0.0\nmax_steps = 5", "stop.train_loss: must be a number > 0", ValueError),
    ("train_loss = -1.0\nmax_steps = 5", "stop.train_loss: must be a number > 0", ValueError),
    ("train_loss = nan\nmax_steps = 5", "stop.train_loss: must be a finite number", ValueError),
    ("train_loss = 'low'\nmax_steps = 5", "stop.train_loss: must be a number", TypeError),
    (
        "train_accuracy = 1.5\nmax_steps = 5",
        "stop.train_accuracy: must be a number in (0, 1]",
        ValueError,
    ),
    ("train_accuracy = 1.0\nmax_steps = 0", "stop.max_steps: must be an integer >= 1", ValueError),
    ("train_accuracy = 1.0\nmax_steps = 5.0", "stop.max_steps: must be an integer", TypeError),
    ("train_accuracy = 1.0\nmax_steps = 5\nmax_epochs = 0", "stop.max_epochs: must be", ValueError),
    (
        "train_accuracy = 1.0\nmax_steps = 5\nepochs = 3",
        "stop.epochs: unknown key; allowed",
        ValueError,
    ),
]


@pytest.mark.parametrize(("table", "message", "exc"), BAD_STOP, ids=[m for _, m, _ in BAD_STOP])
def test_bad_stop_tables_are_refused_in_one_line(table, message, exc):
    with pytest.raises((ValueError, TypeError)) as err:
        loads(BASE + "[grid]\noptimizer = ['sgd']\n[stop]\n" + table)
    text = str(err.value)
    assert type(err.value) is exc, text
    assert text.startswith("sweep spec: stop") and message in text and "\n" not in text, text


MIXING = [
    ("[base.train]\ntarget_loss = 0.1", "base.train.target_loss"),
    ("[base.train]\ntarget_accuracy = 1.0", "base.train.target_accuracy"),
    (
        "[[runs]]\nname = 'a'\n[[runs]]\nname = 'b'\ntrain = {target_loss = 0.2}",
        "runs[1].train.target_loss",
    ),
    ("[grid]\n'train.target_loss' = [0.05, 0.1]", "grid.'train.target_loss'"),
    ("[grid]\ntrain = [{target_accuracy = 1.0}]", "grid.train[0].target_accuracy"),
]


@pytest.mark.parametrize(("extra", "key"), MIXING, ids=[k for _, k in MIXING])
def test_mixing_stopping_targets_is_refused_naming_the_key(extra, key):
    base = BASE.split("train = {")[0]  # [base] without its train table: the cases give one
    with pytest.raises(ValueError) as err:
        loads(base + STOP + extra)
    message = str(err.value)
    assert message.startswith(
        f"sweep spec: {key}: mixing stopping targets across configurations is refused: "
    ), message
    assert "\n" not in message and "[stop] sets train_loss = 0.05" in message


def test_the_same_target_as_stop_is_accepted_and_caps_are_stops():
    # the [stop] target again, in [base]: the same rule, accepted
    s = loads(BASE.replace("seed = 0,", "seed = 0, target_loss = 0.05,") + STOP)
    assert s.runs[0].spec["train"]["target_loss"] == 0.05
    # another cap than [stop]'s: refused, naming the key
    with pytest.raises(
        ValueError, match=r"^sweep spec: base.train.epochs: \[stop\] sets the step cap"
    ):
        loads(BASE.replace("seed = 0,", "seed = 0, epochs = 3,") + STOP)
    with pytest.raises(ValueError, match=r"^sweep spec: grid.'train.max_steps': \[stop\] sets"):
        loads(BASE + STOP + "[grid]\n'train.max_steps' = [10, 60]")


def test_without_stop_runs_with_different_targets_are_refused():
    with pytest.raises(ValueError) as err:
        loads(
            BASE.replace("seed = 0,", "seed = 0, epochs = 2,")
            + "[grid]\n'train.target_accuracy' = [0.9, 1.0]"
        )
    message = str(err.value)
    assert message.startswith(
        "sweep spec: grid.'train.target_accuracy': mixing stopping targets across "
        "configurations is refused: run "
    ), message
    assert "[stop]" in message and "\n" not in message
    # one target for all (in [base]) is no mixing
    s = loads(BASE.replace("seed = 0,", "seed = 0, epochs = 2, target_accuracy = 1.0,"))
    assert s.runs[0].spec["train"]["target_accuracy"] == 1.0


def test_pretraining_keeps_its_own_target():
    s = loads(
        BASE
        + STOP
        + """
[grid]
init = ["random", "random_labels"]
[init.random_labels]
epochs = 5
target_accuracy = 0.9
"""
    )
    bad = s.run("random_labels")
    assert bad.init["target_accuracy"] == 0.9 and "target_loss" not in bad.init
    assert bad.spec["train"]["target_loss"] == 0.05


# ----------------------------------------------------------------------------- configurations
def test_config_is_the_axes_without_the_seed():
    s = loads(
        BASE
        + STOP
        + """
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
"train.batch_size" = [8, 16]
"train.seed" = [0, 1, 2]
"""
    )
    assert [r.name for r in s.runs][:3] == ["sgd-bs8-seed0", "sgd-bs8-seed1", "sgd-bs8-seed2"]
    configs: dict[str, set[int]] = {}
    for r in s.runs:
        configs.setdefault(r.config, set()).add(r.seed)
        assert r.seed == r.axes["train.seed"] == r.spec["train"]["seed"]
        assert r.config == config_id(r.axes) and "seed" not in json.loads(r.config)
        attrs = s.attrs(r)
        assert attrs == {
            "name": "stop",
            "axes": r.axes,
            "config": r.config,
            "seed": r.seed,
            "stop": {"train_loss": 0.05, "max_steps": 60},
        }
    assert len(configs) == 4 and all(seeds == {0, 1, 2} for seeds in configs.values())
    assert s.run("sgd-bs8-seed0").config == s.run("sgd-bs8-seed2").config
    assert s.run("sgd-bs8-seed0").config != s.run("sgd-bs16-seed0").config
    assert s.run("sgd-bs8-seed0").config != s.run("adam-bs8-seed0").config
    assert json.loads(s.run("adam-bs16-seed1").config) == {
        "optimizer": "adam(lr=0.01)",
        "train.batch_size": 16,
    }


# ----------------------------------------------------------------------------- between = "init"
def test_between_init_pairs_runs_that_differ_only_in_their_init():
    s = loads(
        BASE
        + """
[base.optimizer]
name = "sgd"
lr = 0.1
[stop]
train_loss = 0.05
max_steps = 60
[grid]
"optimizer.momentum" = [0.0, 0.9]
init = ["random", "random_labels"]
"train.seed" = [0, 1]
[[runs]]
name = "a"
[[runs]]
name = "b"
train = {history_every = 4}
[paths]
between = "init"
kind = ["linear", "aligned"]
"""
    )
    pairs = {(a, b) for a, b, _ in s.between}
    # same optimizer and seed; the recording setting of "b" does not make another run
    assert (
        "a-mom0-random-seed0",
        "a-mom0-random_labels-seed0",
    ) in pairs and ("a-mom0-random-seed0", "b-mom0-random_labels-seed0") in pairs
    assert len(pairs) == 16  # 2 momenta x 2 seeds, each random run with a's and b's bad run
    for a, b in pairs:
        ra, rb = s.run(a), s.run(b)
        assert ra.init["name"] == "random" and rb.init["name"] == "random_labels"
        assert ra.seed == rb.seed and ra.axes["optimizer.momentum"] == rb.axes["optimizer.momentum"]
    assert {k for _, _, k in s.between} == {"linear", "aligned"}
    assert len(s.between) == 32
    with pytest.raises(ValueError, match=r"^sweep spec: paths.between: 'init' pairs runs"):
        loads(BASE + STOP + "[grid]\n'train.seed' = [0, 1]\n[paths]\nbetween = 'init'")
    with pytest.raises(ValueError, match=r"allowed: 'all', 'init', false"):
        loads(BASE + STOP + "[paths]\nbetween = 'inits'")


# ----------------------------------------------------------------------------- trained
def test_converged_flags_and_sweep_attrs(tmp_path):
    sweep = loads(
        BASE
        + STOP
        + """
[grid]
optimizer = [{name = "adam", lr = 0.05}, {name = "sgd", lr = 1e-6}]
"train.seed" = [0, 1]
"""
    )
    out = tmp_path / "stop.h5"
    run_sweep(sweep, out)
    with Store(out) as s:
        for r in sweep.runs:
            a = s.info(r.name).attrs
            assert s.info(r.name).status == "complete"
            assert a["sweep"] == sweep.attrs(r)
            if r.name.startswith("adam"):  # reaches the target well within the cap
                assert a["converged"] and type(a["converged"]).__name__ in ("bool", "bool_")
                assert a["stop_reason"] == "target_loss" and a["steps"] < 60
                assert a["final_metrics"]["train_loss"] <= 0.05
            else:  # a tiny lr: stopped by the cap
                assert not a["converged"] and a["stop_reason"] == "max_steps"
                assert a["steps"] == 60 and a["final_metrics"]["train_loss"] > 0.05
        assert (
            s.info("adam-seed0").attrs["sweep"]["config"]
            == (s.info("adam-seed1").attrs["sweep"]["config"])
        )
        assert (
            s.info("adam-seed0").attrs["sweep"]["config"]
            != (s.info("sgd-seed0").attrs["sweep"]["config"])
        )

    # a sweep without [stop] writes no converged flag (no matched target)
    plain = loads(BASE.replace("seed = 0,", "seed = 0, epochs = 1,"))
    run_sweep(plain, tmp_path / "plain.h5")
    with Store(tmp_path / "plain.h5") as s:
        a = s.info(plain.runs[0].name).attrs
        assert "converged" not in a and "stop" not in a["sweep"]
        assert a["sweep"]["config"] == "{}" and a["sweep"]["seed"] == 0


def test_a_sweep_where_no_run_reaches_its_target_completes(tmp_path, capsys):
    text = (
        BASE
        + """
[base.optimizer]
name = "sgd"
lr = 1e-6
[stop]
train_loss = 0.001
max_steps = 6
[grid]
init = ["random", "random_labels"]
"train.seed" = [0, 1]
[init.random_labels]
optimizer = {name = "adam", lr = 0.05}
epochs = 20
[probes]
hessian = {k = 1}
sharpness = [{kind = "worst", adaptive = true, rho = 0.5, steps = 2}]
[paths]
init_to_final = true
between = "init"
points = 3
"""
    )
    path = tmp_path / "never.toml"
    path.write_text(text, "utf-8")
    out = tmp_path / "never.h5"
    assert main(["sweep", str(path), "--out", str(out), "--dry-run"]) == 0
    assert "  stop: train_loss <= 0.001, at most 6 steps" in capsys.readouterr().out
    sweep = loads(text)
    run_sweep(sweep, out, workers=2)
    with Store(out) as s:
        for r in sweep.runs:
            info = s.info(r.name)
            assert info.status == "complete" and not info.attrs["converged"]
            assert info.attrs["stop_reason"] == "max_steps" and info.attrs["steps"] == 6
            assert set(info.probes) == set(sweep.probes) and len(sweep.probes) == 2
            assert info.paths == ("linear_init_final",)
        # the pretraining stops at its own target (or budget), not at [stop]'s
        pre = s.info("random_labels-seed0").attrs["pretraining"]
        assert pre["stop_reason"] in ("target_accuracy", "epochs")
        expected = [
            compare_name(f"random-seed{k}", f"random_labels-seed{k}", "linear") for k in (0, 1)
        ]
        assert sorted(s.compares()) == expected
        for k in (0, 1):
            rec = s.record(None, "paths", expected[k])
            assert rec.attrs["ends"]["from"]["run"] == f"random-seed{k}"
            assert rec.attrs["ends"]["to"]["run"] == f"random_labels-seed{k}"
            assert len(rec.arrays["loss"]) == 3
