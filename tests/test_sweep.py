"""Sweep specs: expansion, naming, axes and validation (landscape.sweep), and the CLI's errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from landscape.cli.main import main
from landscape.surfaces.stored import DIRECTIONS
from landscape.sweep import spec
from landscape.sweep.jobs import compare_name
from landscape.sweep.measure import PROBE_FUNCTIONS, SHARPNESS
from landscape.sweep.spec import expand, load, loads

BASE = """
name = "t"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 40, n_test = 40}
train = {epochs = 1, seed = 0}
"""


def test_grid_is_a_cartesian_product_with_readable_names():
    s = loads(
        BASE
        + """
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
"train.batch_size" = [8, 16]
"train.seed" = [0, 1]
"""
    )
    names = [r.name for r in s.runs]
    assert names[:3] == ["sgd-bs8-seed0", "sgd-bs8-seed1", "sgd-bs16-seed0"]
    assert len(names) == 8 == len(set(names))
    r = s.run("adam-bs16-seed1")
    assert r.spec["optimizer"] == {"name": "adam", "lr": 0.01}
    assert r.spec["train"] == {"epochs": 1, "seed": 1, "batch_size": 16}
    assert r.axes == {"optimizer": "adam(lr=0.01)", "train.batch_size": 16, "train.seed": 1}
    assert r.init == {"name": "random"}


def test_same_optimizer_told_apart_and_dotted_keys_after_tables():
    s = loads(
        BASE
        + """
[base.optimizer]
name = "sgd"
momentum = 0.9
[grid]
"optimizer.lr" = [0.1, 0.01]
optimizer = [{name = "sgd", lr = 0.5}, {name = "sgd", lr = 0.2, nesterov = true}]
"""
    )
    # tokens in the order of [grid]
    assert [r.name for r in s.runs] == [
        "lr0.1-sgd-lr0.5",
        "lr0.1-sgd-lr0.2-nesterovTrue",
        "lr0.01-sgd-lr0.5",
        "lr0.01-sgd-lr0.2-nesterovTrue",
    ]
    # same name: merged over base (momentum kept); the dotted key wins over the table
    assert s.runs[2].spec["optimizer"] == {"name": "sgd", "momentum": 0.9, "lr": 0.01}


def test_another_optimizer_replaces_base_settings():
    s = loads(
        BASE
        + """
[base.optimizer]
name = "sgd"
momentum = 0.9
[grid]
optimizer = ["adam"]
"""
    )
    assert s.runs[0].spec["optimizer"] == {"name": "adam"}
    assert s.runs[0].name == "adam"


def test_explicit_runs_crossed_with_grid_and_common_axes():
    s = loads(
        BASE
        + """
[grid]
"train.seed" = [0, 1]
[[runs]]
name = "plain"
[[runs]]
optimizer = {name = "adam", lr = 0.01}
data = {label_noise = 0.2}
[[runs]]
name = "bad"
init = "random_labels"
[init.random_labels]
epochs = 5
optimizer = {name = "sgd", lr = 0.1}
"""
    )
    assert [r.name for r in s.runs] == [
        "plain-seed0",
        "plain-seed1",
        "adam-noise0.2-seed0",
        "adam-noise0.2-seed1",
        "bad-seed0",
        "bad-seed1",
    ]
    keys = {tuple(r.axes) for r in s.runs}
    assert keys == {("optimizer", "data.label_noise", "init", "train.seed")}
    assert s.run("plain-seed0").axes == {
        "optimizer": None,
        "data.label_noise": None,
        "init": "random",
        "train.seed": 0,
    }
    bad = s.run("bad-seed1")
    assert bad.init == {
        "name": "random_labels",
        "optimizer": {"name": "sgd", "lr": 0.1},
        "fraction": 1.0,
        "seed": 0,
        "target_accuracy": 1.0,
        "epochs": 5,
    }
    assert bad.axes["init"] == "random_labels"


def test_measurements_and_paths():
    s = loads(
        BASE
        + """
[grid]
optimizer = ["sgd", "adam", "momentum"]
[probes]
n = 20
hessian = {k = 2}
sharpness = [{kind = "worst", adaptive = true, rho = 0.5}, {kind = "pac_bayes"},
             {kind = "worst", rho = 0.1, name = "sam_sharpness"}]
[along]
lambda_max = {every = 5}
[surfaces.r1]
x = [-1, 1, 5]
[paths]
init_to_final = true
between = "all"
kind = ["linear", "bezier"]
"""
    )
    assert list(s.probes) == [
        "hessian_eigenvalues",
        "sharpness_worst_case_adaptive",
        "sharpness_pac_bayes",
        "sam_sharpness",
    ]
    assert s.probes["hessian_eigenvalues"] == (
        "curvature.hessian",
        "eigenvalues",
        {"k": 2, "n": 20},
    )
    assert s.probes["sam_sharpness"][2] == {"rho": 0.1, "n": 20}
    assert s.surfaces["r1"]["directions"] == "random"
    assert s.init_to_final == ("linear", "bezier")
    assert len(s.between) == 6 and s.between[0] == ("sgd", "adam", "linear")


def test_aligned_paths_are_named_by_kind():
    s = loads(
        BASE
        + """
[grid]
"train.seed" = [0, 1]
[paths]
between = "all"
kind = ["linear", "aligned"]
"""
    )
    assert s.between == (("seed0", "seed1", "linear"), ("seed0", "seed1", "aligned"))
    assert compare_name(*s.between[1]) == "aligned_seed0_final_seed1_final"


def test_load_reads_the_shipped_specs():
    root = Path(__file__).resolve().parents[1] / "experiments"
    # the probe families of an MLP classifier (max_margin, interpolators and matrix_recovery
    # are for bias-free linear classifiers, diagonal nets and matrix sensing)
    families = {PROBE_FUNCTIONS[k][:2] for k in ("hessian", "trace", "density", "measures")}

    def functions(sweep: spec.Sweep) -> set[tuple[str, str]]:
        return {(module, fn) for module, fn, _ in sweep.probes.values()}

    # the main job: every optimizer setting from a random and a bad init, three seeds each
    opt = load(root / "optimizers.toml")
    settings = len(opt.source["runs"])  # one [[runs]] entry an optimizer setting
    assert settings >= 7
    assert len(opt.runs) == settings * 2 * 3 and len(opt.runs) >= 30
    optimizers = {r.spec["optimizer"]["name"] for r in opt.runs}
    assert optimizers >= {"gd", "sgd", "momentum", "adam", "sam"}
    assert {r.spec["train"].get("batch_size") for r in opt.runs} >= {None, 32, 400}
    assert any(r.spec["optimizer"].get("weight_decay") for r in opt.runs)
    assert {r.init["name"] for r in opt.runs} == {"random", "random_labels"}
    configs: dict[str, set[int]] = {}
    for r in opt.runs:
        configs.setdefault(r.config, set()).add(r.seed)
    assert len(configs) == settings * 2 and all(s == {0, 1, 2} for s in configs.values())
    # one stopping target, a training loss, for every run, under one step cap
    assert opt.stop.keys() == {"train_loss", "max_steps"}
    assert {(r.spec["train"]["target_loss"], r.spec["train"]["max_steps"]) for r in opt.runs} == {
        (opt.stop["train_loss"], opt.stop["max_steps"])
    }
    assert not any("target_accuracy" in r.spec["train"] for r in opt.runs)
    # between = "init": each good minimum and the bad one of its optimizer setting and seed
    assert opt.source["paths"]["between"] == "init"
    pairs = [(opt.run(a), opt.run(b)) for a, b, _ in opt.between]
    assert len(pairs) == settings * 3 and len(set(opt.between)) == len(pairs)
    for a, b in pairs:
        assert (a.init["name"], b.init["name"]) == ("random", "random_labels")
        assert a.seed == b.seed and {**a.axes, "init": 0} == {**b.axes, "init": 0}
    # every probe family: curvature, the measures, every kind of sharpness (logit-normalised
    # and m-sharpness in linf among them), along training, a surface and the paths
    assert functions(opt) >= families
    assert {fn for m, fn in functions(opt) if m == "sharpness"} == set(SHARPNESS.values())
    sharpness = [o for m, _, o in opt.probes.values() if m == "sharpness"]
    assert any(
        o.get("logit_normalize") and o.get("m") and o.get("norm") == "linf" for o in sharpness
    )
    assert any(o.get("logit_normalize") and not o.get("m") for o in sharpness)
    assert "lambda_max" in opt.along and opt.surfaces and opt.init_to_final == ("linear",)

    # quick.toml: the main job in miniature (two optimizers, both inits, two seeds)
    quick = load(root / "quick.toml")
    assert [r.name for r in quick.runs] == [
        f"{o}-{i}-seed{s}"
        for o in ("sgd", "adam")
        for i in ("random", "random_labels")
        for s in (0, 1)
    ]
    assert quick.stop.keys() == opt.stop.keys()
    assert quick.source["paths"]["between"] == "init" and len(quick.between) == 4
    assert functions(quick) >= families
    assert {"worst_case", "pac_bayes"} <= {fn for m, fn in functions(quick) if m == "sharpness"}
    assert quick.along.keys() == opt.along.keys() and quick.surfaces
    assert quick.init_to_final == ("linear",)


BAD = [
    ("bogus = 1", "bogus"),
    ('name = ""', "name"),
    ("@base run = 'x'", "base.run"),
    ("@base modle = {}", "base.modle"),
    ("@base optimizer = 3", "base.optimizer"),
    ("[grid]\n'train.batch_size' = 8", "grid.'train.batch_size'"),
    ("[grid]\n'trian.seed' = [0]", "grid.'trian.seed'"),
    ("[grid]\n'train.seed' = []", "grid.'train.seed'"),
    ("[grid]\n'train.seed' = [0, 0]", "values repeat"),
    ("[grid]\noptimizer = [1]", "grid.optimizer"),
    ("[grid]\n'init.epochs' = [1]", "grid.'init.epochs'"),
    ("[grid]\n'train.batch_size' = [0]", "batch_size"),
    ("[grid]\n'train.batchsize' = [8]", "batchsize"),
    ("[grid]\n'optimizer.lrr' = [0.1]", "lrr"),
    ("[grid]\noptimizer = ['sdg']", "sdg"),
    ("[grid]\ninit = ['pretrained']", "init"),
    ("[grid]\n'data.name' = ['cifar']", "data.name"),
    ("[grid]\n'data.noize' = [0.1]", "data.noize"),
    ("[grid]\n'model.name' = ['vgg']", "model.name"),
    ("[grid]\n'model.widht' = [3]", "model.widht"),
    ("[grid]\n'train.epochs' = [-1]", "epochs"),
    ("[[runs]]\nname = 'a'\n[[runs]]\nname = 'a'", "'a'"),
    ("[[runs]]\nname = 'a/b'", "runs[0].name"),
    ("runs = 3", "runs"),
    ("[init.pretrained]", "init.pretrained"),
    ("[init.random_labels]\nfraction = 2.0", "init.random_labels.fraction"),
    ("[init.random_labels]\nepoch = 2", "init.random_labels.epoch"),
    (
        "[init.random_labels]\noptimizer = {name = 'x'}\n[[runs]]\ninit = 'random_labels'",
        "init.random_labels",
    ),
    ("[probes]\nhesian = {}", "probes.hesian"),
    ("[probes]\nhessian = {kk = 1}", "probes.hessian.kk"),
    ("[probes]\nhessian = 3", "probes.hessian"),
    ("[probes]\nn = 0", "probes.n"),
    ("[probes]\nmeasures = {init = true}", "probes.measures.init"),
    ("[probes]\nsharpness = [{kind = 'best'}]", "probes.sharpness[0].kind"),
    ("[probes]\nsharpness = [{kind = 'worst', radius = 1}]", "probes.sharpness[0].radius"),
    ("[probes]\nsharpness = [{kind = 'worst'}, {kind = 'worst'}]", "probes.sharpness[1]"),
    ("[along]\nlambda_min = {every = 1}", "along.lambda_min"),
    ("[along]\nlambda_max = {k = 1}", "along.lambda_max.every"),
    ("[along]\nlambda_max = {every = 0}", "along.lambda_max.every"),
    ("[surfaces.s]\ny = [-1, 1, 3]", "surfaces.s.x"),
    ("[surfaces.s]\nx = [1, -1, 3]", "surfaces.s.x"),
    ("[surfaces.s]\nx = [-1, 1, 3]\ndirections = 'pcaa'", "surfaces.s.directions"),
    ("[surfaces.s]\nx = [-1, 1, 3]\nres = 3", "surfaces.s.res"),
    ("[paths]\nkind = ['curved']", "paths.kind"),
    ("[paths]\nbetween = [['t', 'zz']]", "paths.between"),
    ("[paths]\nbetween = 'some'", "paths.between"),
    ("[paths]\ninit_to_final = 'yes'", "paths.init_to_final"),
    ("[paths]\npoints = 1", "paths.points"),
    ("[paths]\nlr = -1", "paths.lr"),
]


@pytest.mark.parametrize(("extra", "key"), BAD, ids=[k for _, k in BAD])
def test_each_bad_key_or_value_is_one_clear_error(extra, key):
    text = BASE + "\n" + extra
    if extra.startswith("name"):
        text = text.replace('name = "t"\n', "", 1)
    elif extra.startswith("@base "):
        text = BASE.replace("[base]\n", "[base]\n" + extra[6:] + "\n")
    elif extra.split("\n")[0] in ("bogus = 1", "runs = 3"):
        text = extra + "\n" + BASE
    with pytest.raises((ValueError, TypeError)) as err:
        loads(text)
    message = str(err.value)
    assert message.startswith("sweep spec"), message
    assert key in message, message
    assert "\n" not in message


def test_missing_budget_and_name():
    with pytest.raises(ValueError, match="needs a budget"):
        loads(BASE.replace("epochs = 1, ", ""))
    with pytest.raises(ValueError, match="name"):
        expand({"base": {}})


def test_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "[grid]\n'train.batchsize' = [8]\n")
    assert main(["sweep", str(bad), "--out", str(tmp_path / "x.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error: sweep spec") and "\n" not in err
    assert main(["sweep", str(tmp_path / "none.toml"), "--out", "x.h5"]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad.write_text("name = [")
    assert main(["sweep", str(bad), "--out", "x.h5"]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    good = tmp_path / "good.toml"
    good.write_text(BASE)
    assert main(["sweep", str(good), "--out", str(tmp_path / "y.h5"), "--workers", "0"]) == 2
    assert "workers" in capsys.readouterr().err


BAD_TYPES = [  # (extra, key, exception): rules that came with the models, and the error types
    ("[grid]\n'optimizer.base.lr' = [0.1]", "grid.'optimizer.base.lr'", ValueError),
    ("[grid]\n'train.seed' = 0", "grid.'train.seed'", TypeError),
    ("[probes]\nhessian = {kind = 'x'}", "probes.hessian.kind", ValueError),
    ("[probes]\nsharpness = 3", "probes.sharpness", TypeError),
    ("[resources]\ncpus = true", "resources.cpus", TypeError),
    ("[resources]\ngpus = -1", "resources.gpus", ValueError),
    ("[along]\nlambda_max = {every = 1, tol = -1}", "along.lambda_max.tol", ValueError),
    ("[[runs]]\nname = 'x'\nrun = 'y'", "runs[0].run", ValueError),
    ("[[runs]]\ntrain = {epochs = 1, loss = 'hinge'}", "'ep1-losshinge': train.loss", ValueError),
    ("[surfaces.s]\nx = [-1, 1, 3]\ntest = 1", "surfaces.s.test", TypeError),
    ("[paths]\nkind = []", "paths.kind", ValueError),
    ("description = 3", "description", TypeError),
]


@pytest.mark.parametrize(("extra", "key", "exc"), BAD_TYPES, ids=[k for _, k, _ in BAD_TYPES])
def test_errors_name_the_key_and_say_what_came(extra, key, exc):
    text = extra + "\n" + BASE if extra.startswith("description") else BASE + "\n" + extra
    with pytest.raises((ValueError, TypeError)) as err:
        loads(text)
    message = str(err.value)
    assert type(err.value) is exc, message
    assert message.startswith("sweep spec: ") and key in message and "\n" not in message
    with pytest.raises(TypeError, match="sweep spec: must be a table, got 3"):
        expand(3)


def test_schema_covers_every_top_level_table():
    s = spec.schema()
    assert list(s["properties"]) == [
        "name",
        "description",
        "base",
        "grid",
        "runs",
        "stop",
        "init",
        "probes",
        "along",
        "surfaces",
        "paths",
        "resources",
    ]
    assert s["required"] == ["name"] and s["additionalProperties"] is False
    # every table the format (the module docstring) shows is in the schema
    shown = set(re.findall(r"^ {4}\[\[?(\w+)", spec.__doc__, re.M))
    assert shown == {
        "base",
        "grid",
        "runs",
        "stop",
        "init",
        "probes",
        "along",
        "surfaces",
        "paths",
        "resources",
    } and shown <= set(s["properties"])
    defs = s["$defs"]
    assert set(defs["ProbesTable"]["properties"]) == {"n", "sharpness", *PROBE_FUNCTIONS}
    assert defs["SharpnessEntry"]["properties"]["kind"]["enum"] == list(SHARPNESS)
    assert defs["SurfaceTable"]["properties"]["directions"]["enum"] == list(DIRECTIONS)
    assert set(defs["RunTables"]["properties"]) == {"model", "data", "optimizer", "train", "init"}
    assert defs["RunTables"]["properties"]["init"]["enum"] == ["random", "random_labels"]
    assert set(defs["InitTables"]["properties"]) == {"random_labels"}
    assert defs["SurfaceTable"]["required"] == ["x"]
    assert defs["AlongOptions"]["required"] == ["every"]
    assert set(defs["StopTable"]["properties"]) == {
        "train_loss",
        "train_accuracy",
        "max_steps",
        "max_epochs",
    }
    assert defs["StopTable"]["required"] == ["max_steps"]
    json.dumps(s)  # JSON all through
