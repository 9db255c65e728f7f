"""`landscape train / info / import`: end to end on tiny problems.

Every error comes as one line with exit status 2.
"""

from __future__ import annotations

import json
import sys
import textwrap
import uuid

import h5py
import numpy as np
import pytest
import torch

from landscape.cli.main import main
from landscape.store.file import Store

TINY = [
    "--data",
    "gaussians",
    "--model",
    "mlp",
    "--model-arg",
    "width=8",
    "--steps",
    "20",
    "--quiet",
]


def one_line_error(capsys, rc, *fragments):
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert err.startswith("landscape: error: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture()
def trained(tmp_path, capsys):
    path = tmp_path / "runs.h5"
    assert main(["train", str(path), *TINY]) == 0
    capsys.readouterr()
    return path


def test_train_with_flags(tmp_path, capsys):
    path = tmp_path / "runs.h5"
    rc = main(
        [
            "train",
            str(path),
            *TINY,
            "--optimizer",
            "momentum",
            "--lr",
            "0.05",
            "--opt",
            "momentum=0.8",
            "--batch-size",
            "32",
            "--seed",
            "3",
            "--history-every",
            "5",
            "--run",
            "mom",
        ]
    )
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "run 'mom' complete after 20 steps" in out and "stopped by max_steps" in out
    assert err == ""  # --quiet: no progress bar
    with Store(path) as s:
        info = s.info("mom")
        hist = s.history("mom")
    assert info.status == "complete"
    a = info.attrs
    assert a["optimizer"]["name"] == "momentum"
    assert a["optimizer"]["lr"] == 0.05 and a["optimizer"]["momentum"] == 0.8
    assert a["batch_size"] == 32 and a["seed"] == 3 and a["steps"] == 20
    assert a["model"]["name"] == "mlp" and a["model"]["kwargs"]["width"] == 8
    assert a["model"]["kwargs"]["in_features"] == 2 and a["model"]["kwargs"]["num_classes"] == 2
    assert a["data"]["name"] == "gaussians"
    assert hist["step"].tolist() == [0, 5, 10, 15, 20]


def test_train_is_reproducible_from_the_command_line(tmp_path, capsys):
    for name in ("a", "b"):
        assert main(["train", str(tmp_path / "r.h5"), *TINY, "--run", name]) == 0
    with Store(tmp_path / "r.h5") as s:
        np.testing.assert_array_equal(s.params("a", "final"), s.params("b", "final"))
        np.testing.assert_array_equal(s.params("a", "init"), s.params("b", "init"))


def test_train_with_a_toml_config_and_flags_that_override_it(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text(
        textwrap.dedent("""
        run = "from_toml"
        [model]
        name = "mlp"
        width = 6
        depth = 1
        [data]
        name = "gaussians"
        dim = 3
        n_train = 40
        [optimizer]
        name = "adam"
        lr = 0.01
        [train]
        max_steps = 9
        batch_size = 8
        history_every = 3
    """)
    )
    path = tmp_path / "runs.h5"
    assert main(["train", str(path), "--config", str(config), "--quiet"]) == 0
    assert "run 'from_toml' complete after 9 steps" in capsys.readouterr().out
    # flags win: fewer steps, another lr, another run name
    assert (
        main(
            [
                "train",
                str(path),
                "--config",
                str(config),
                "--steps",
                "4",
                "--lr",
                "0.05",
                "--run",
                "override",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    # another optimizer: the config's optimizer settings no longer apply
    assert (
        main(
            [
                "train",
                str(path),
                "--config",
                str(config),
                "--optimizer",
                "sgd",
                "--run",
                "sgd",
                "--quiet",
            ]
        )
        == 0
    )
    capsys.readouterr()
    with Store(path) as s:
        a, b, c = (s.info(r).attrs for r in ("from_toml", "override", "sgd"))
    assert a["steps"] == 9 and a["optimizer"]["name"] == "adam" and a["optimizer"]["lr"] == 0.01
    assert a["model"]["kwargs"]["width"] == 6 and a["model"]["kwargs"]["in_features"] == 3
    assert a["batch_size"] == 8 and a["data"]["n_train"] == 40
    assert b["steps"] == 4 and b["optimizer"]["name"] == "adam" and b["optimizer"]["lr"] == 0.05
    assert c["optimizer"]["name"] == "sgd" and c["optimizer"]["lr"] == 0.1  # sgd's default


def test_info_lists_runs_and_shows_settings(trained, capsys):
    assert main(["info", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "landscape file, format_version 1" in out and "1 run(s)" in out
    header, _, row = out.strip().splitlines()[-3:]
    for col in ("run", "status", "model", "optimizer", "steps", "train loss", "test acc"):
        assert col in header
    assert row.split()[:3] == ["sgd", "complete", "mlp"]
    with Store(trained) as s:
        final = s.info("sgd").attrs["final_metrics"]
    assert f"{final['train_loss']:.4g}" in row and f"{final['test_acc']:.4g}" in row
    assert "20" in row.split() and "max_steps" in row

    assert main(["info", str(trained), "--run", "sgd"]) == 0
    out = capsys.readouterr().out
    settings = json.loads(out[out.index("run 'sgd' (complete):") + len("run 'sgd' (complete):") :])
    assert settings["optimizer"]["name"] == "sgd" and settings["steps"] == 20
    assert settings["model"]["kwargs"]["width"] == 8 and settings["stop_reason"] == "max_steps"


def test_import_end_to_end(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve_factory adds the cwd
    monkeypatch.chdir(tmp_path)
    module = f"cli_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(
        textwrap.dedent("""
        from torch import nn

        def tiny(width=4):
            return nn.Sequential(nn.Linear(3, width), nn.Tanh(), nn.Linear(width, 2))
    """)
    )
    # as under the console script: the factory is found because import puts the cwd first
    sys.path[:] = [p for p in sys.path if p not in ("", str(tmp_path))]

    def state(seed):
        g = torch.Generator().manual_seed(seed)
        return {
            "0.weight": torch.randn(5, 3, generator=g),
            "0.bias": torch.randn(5, generator=g),
            "2.weight": torch.randn(2, 5, generator=g),
            "2.bias": torch.randn(2, generator=g),
        }

    states = {name: state(i) for i, name in enumerate(("init", "ck", "final"))}
    torch.save(states["init"], "init.pt")
    torch.save({"state_dict": states["ck"]}, "ck.pt")
    torch.save({"model_state_dict": states["final"], "epoch": 3}, "final.pt")
    argv = [
        "import",
        "f.h5",
        "--model",
        f"{module}:tiny",
        "--model-kwargs",
        '{"width": 5}',
        "--final",
        "final.pt",
        "--init",
        "init.pt",
        "--checkpoint",
        "7=ck.pt",
        "--run",
        "mine",
        "--attr",
        "optimizer=sgd",
        "--attr",
        "lr=0.1",
    ]
    assert main(argv) == 0
    assert "imported run 'mine' (1 checkpoints)" in capsys.readouterr().out
    order = ["0.weight", "0.bias", "2.weight", "2.bias"]
    flat = {k: torch.cat([sd[n].reshape(-1) for n in order]).numpy() for k, sd in states.items()}
    with Store(tmp_path / "f.h5") as s:
        info = s.info("mine")
        np.testing.assert_array_equal(s.params("mine", "init"), flat["init"])
        np.testing.assert_array_equal(s.params("mine", "final"), flat["final"])
        np.testing.assert_array_equal(s.params("mine", 7), flat["ck"])
    assert info.status == "complete"
    assert info.attrs["model"] == {"factory": f"{module}:tiny", "kwargs": {"width": 5}}
    assert info.attrs["optimizer"] == "sgd" and info.attrs["lr"] == 0.1
    # again: refused without --replace, accepted with it
    one_line_error(capsys, main(argv), "complete")
    assert main([*argv, "--replace"]) == 0
    capsys.readouterr()
    assert main(["info", "f.h5"]) == 0
    assert "mine" in capsys.readouterr().out


def test_train_in_float64_and_info_on_a_failed_run(tmp_path, capsys):
    from landscape import data, models
    from landscape.train.fit import TrainConfig, callback, fit

    path = tmp_path / "runs.h5"
    assert main(["train", str(path), *TINY, "--dtype", "float64", "--run", "f64"]) == 0
    with Store(path) as s:
        assert s.params("f64", "final").dtype == np.float64
        assert s.info("f64").attrs["dtype"] == "float64"

    def boom(state):
        raise RuntimeError("probe exploded")

    with pytest.raises(RuntimeError):
        fit(
            models.build("mlp", in_features=2, num_classes=2, width=4, seed=0),
            "cross_entropy",
            data.gaussians(n_train=20, n_test=10),
            TrainConfig("sgd", max_steps=3),
            store=str(path),
            run="bad",
            callbacks=[callback("boom", 1, boom)],
        )
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    rows = {
        line.split()[0]: line.split()
        for line in capsys.readouterr().out.splitlines()
        if line.split()[:1] in (["f64"], ["bad"])
    }
    assert rows["f64"][1] == "complete" and rows["bad"][1] == "failed"
    assert main(["info", str(path), "--run", "bad"]) == 0
    assert "probe exploded" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--optimizer", "nope"], "nope"),
        (["--model", "nope"], "unknown model 'nope'"),
        (["--opt", "momentum"], "--opt expects KEY=VALUE"),
        (["--opt", "=3"], "--opt expects KEY=VALUE"),
        (["--opt", "bogus=1"], "bogus"),
        (["--model-arg", "bogus=1"], "bogus"),
        (["--data", "nope"], "unknown dataset"),
        (["--opt", "schedule=nope"], "nope"),
        (["--dtype", "int32"], "dtype"),
        (["--device", "nonsense"], "device"),
        (["--loss", "nope"], "unknown loss"),
    ],
)
def test_train_errors_are_one_line(tmp_path, capsys, argv, fragment):
    rc = main(["train", str(tmp_path / "e.h5"), *TINY, *argv])
    one_line_error(capsys, rc, fragment)


def test_config_file_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\nname = 'mlp'\n")
    one_line_error(
        capsys, main(["train", str(tmp_path / "e.h5"), "--config", str(bad)]), "not valid TOML"
    )
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[modle]\nname = 'mlp'\n")
    one_line_error(
        capsys, main(["train", str(tmp_path / "e.h5"), "--config", str(unknown)]), "modle"
    )
    one_line_error(
        capsys,
        main(["train", str(tmp_path / "e.h5"), "--config", str(tmp_path / "missing.toml")]),
        "does not exist",
    )


def test_retraining_a_complete_run(trained, capsys):
    with Store(trained) as s:
        first = s.params("sgd", "final")
    one_line_error(capsys, main(["train", str(trained), *TINY]), "'sgd' is complete")
    with Store(trained) as s:
        assert s.info("sgd").status == "complete"
        np.testing.assert_array_equal(s.params("sgd", "final"), first)
    assert main(["train", str(trained), *TINY, "--seed", "1", "--replace"]) == 0
    with Store(trained) as s:
        assert not np.array_equal(s.params("sgd", "final"), first)


def test_info_errors_are_one_line(tmp_path, capsys):
    one_line_error(capsys, main(["info", str(tmp_path / "missing.h5")]), "does not exist")
    text = tmp_path / "notes.txt"
    text.write_text("not hdf5\n")
    one_line_error(capsys, main(["info", str(text)]), "not an HDF5 file")
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.arange(3)
    one_line_error(capsys, main(["info", str(other)]), "not a landscape file")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    one_line_error(capsys, main(["info", str(empty)]), "empty")


def test_info_on_a_missing_run(trained, capsys):
    one_line_error(capsys, main(["info", str(trained), "--run", "nope"]), "no run 'nope'")


def test_import_errors_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    torch.save({"w": torch.zeros(2)}, "w.pt")
    base = ["import", "f.h5", "--final", "w.pt", "--run", "r"]
    for model, fragment in (
        ("no_colon", "package.module:factory"),
        ("no_such_module_zz9:make", "cannot import"),
        ("torch.nn:NoSuchThing", "has no 'NoSuchThing'"),
        ("torch.nn:Linear", "does not fit the model"),
    ):
        extra = (
            ["--model-kwargs", '{"in_features": 3, "out_features": 2}']
            if model == "torch.nn:Linear"
            else []
        )
        one_line_error(capsys, main([*base, "--model", model, *extra]), fragment)
    one_line_error(
        capsys, main([*base, "--model", "torch.nn:Linear", "--model-kwargs", "[1]"]), "JSON object"
    )
    one_line_error(
        capsys, main([*base, "--model", "torch.nn:Linear", "--model-kwargs", "{"]), "JSON object"
    )
    one_line_error(
        capsys, main([*base, "--model", "torch.nn:Identity", "--checkpoint", "x=w.pt"]), "STEP=PATH"
    )
    one_line_error(
        capsys,
        main(
            [
                "import",
                "f.h5",
                "--model",
                "torch.nn:Linear",
                "--model-kwargs",
                '{"in_features": 2, "out_features": 1}',
                "--final",
                "missing.pt",
                "--run",
                "r",
            ]
        ),
        "does not exist",
    )


def test_infinite_epochs_is_a_one_line_error(tmp_path, capsys):
    rc = main(
        ["train", str(tmp_path / "r.h5"), "--data", "gaussians", "--epochs", "inf", "--quiet"]
    )
    one_line_error(capsys, rc, "epochs must be a finite number")


def test_optimizer_flag_keeps_config_settings_whatever_the_spelling(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('[optimizer]\nname = "SGD"\nlr = 0.05\nmomentum = 0.9\n')
    path = tmp_path / "r.h5"
    assert main(["train", str(path), "--config", str(cfg), "--optimizer", "sgd", *TINY]) == 0
    with Store(path) as s:
        opt = s.info("sgd").attrs["optimizer"]
    assert opt["lr"] == 0.05 and opt["momentum"] == 0.9
