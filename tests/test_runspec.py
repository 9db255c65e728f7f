"""Run specs (landscape.train.spec, landscape.train.schema): checks, schema and rebuild().

rebuild() gives a stored run's model, data and loss from the file alone; a spec's structure and
a complete run are checked with one-line errors that name the key.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from landscape.cli.main import main
from landscape.engine.objective import Objective
from landscape.store.file import Store
from landscape.train.config import TrainConfig
from landscape.train.schema import DATA_OPTIONS, check, schema
from landscape.train.spec import SECTIONS, build, merge, rebuild


def test_rebuild_gives_the_stored_model_and_data(tmp_path, capsys):
    path = tmp_path / "r.h5"
    assert (
        main(
            [
                "train",
                str(path),
                "--data",
                "digits",
                "--model",
                "cnn1d",
                "--model-arg",
                "batchnorm=true",
                "--steps",
                "12",
                "--quiet",
                "--run",
                "a",
            ]
        )
        == 0
    )
    model, split, loss = rebuild(path, "a")
    with Store(path) as s:
        final = s.info("a").attrs["final_metrics"]
        theta = torch.from_numpy(s.params("a"))
    m = Objective(model, loss, split.train, check=False).evaluate()
    assert m.loss == pytest.approx(final["train_loss"], rel=1e-6)
    assert m.accuracy == final["train_acc"]
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    assert torch.equal(flat, theta)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d))
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # stored stats


def test_rebuild_refuses_what_the_run_does_not_record(tmp_path):
    path = tmp_path / "r.h5"
    with Store(path, "a") as s:
        s.create_run("bare", names=["w"], shapes=[(2,)], init=np.zeros(2))
        s.set_final("bare", np.ones(2), status="complete")
        s.create_run(
            "mlp",
            names=["linear.weight"],
            shapes=[(1, 2)],
            init=np.zeros(2),
            attrs={
                "model": {
                    "name": "linear",
                    "kwargs": {"in_features": 2, "num_classes": 1, "bias": False},
                }
            },
        )
        s.set_final("mlp", np.ones(2), status="complete")
    with pytest.raises(ValueError, match="does not record a model"):
        rebuild(path, "bare")
    with pytest.raises(ValueError, match="does not record its data"):
        rebuild(path, "mlp")
    model, split, _ = rebuild(path, "mlp", data={"name": "gaussians", "dim": 2})
    assert torch.equal(model.linear.weight.detach(), torch.ones(1, 2))


# ----------------------------------------------------------------------------- checking specs
COMPLETE = {
    "model": {"name": "mlp", "width": 4},
    "data": {"name": "gaussians"},
    "train": {"epochs": 1},
}


@pytest.mark.parametrize(
    ("overrides", "exc", "message"),
    [
        (
            {"modle": {}},
            ValueError,
            "run spec: modle: unknown key; allowed: run, model, data, optimizer, train",
        ),
        ({"optimizer": 3}, TypeError, "run spec: optimizer: must be a table, got 3"),
        (
            {"train": {"epoch": 5}},
            ValueError,
            "run spec: train.epoch: unknown key; allowed: epochs, max_steps, batch_size",
        ),
        (
            {"train": {"batch_size": 0}},
            ValueError,
            "run spec: train.batch_size: must be an integer >= 1, got 0",
        ),
        (
            {"train": {"seed": True}},
            TypeError,
            "run spec: train.seed: must be an integer in [0, 9223372036854775807], got True",
        ),
        (
            {"train": {"epochs": "5"}},
            TypeError,
            "run spec: train.epochs: must be a number > 0, got '5'",
        ),
        (
            {"data": {"label_noise": 1.5}},
            ValueError,
            "run spec: data.label_noise: must be a number in [0, 1], got 1.5",
        ),
        (
            {"data": {"standardize": "yes"}},
            TypeError,
            "run spec: data.standardize: must be true or false, got 'yes'",
        ),
        ({"run": 3}, TypeError, "run spec: run: must be a string, got 3"),
    ],
)
def test_merge_checks_the_structure_in_one_line(overrides, exc, message):
    with pytest.raises((ValueError, TypeError)) as err:
        merge(COMPLETE, overrides)
    assert type(err.value) is exc and str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_merge_returns_the_tables_as_given():
    spec = merge(
        {"model": {"name": "vgg"}, "train": {"epochs": 1}},
        {"model": {"width": 3}, "data": {"noize": 1}, "run": "a"},
    )
    # structure only: names and open tables' keys are a complete run's rules
    assert spec == {
        "model": {"name": "vgg", "width": 3},
        "train": {"epochs": 1},
        "data": {"noize": 1},
        "run": "a",
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"name": "vgg"}}, "model.name: unknown model 'vgg'; allowed: mlp, linear"),
        ({"model": {"widht": 3}}, "model.widht: unknown key; allowed: name, in_features"),
        ({"data": {"name": "cifar"}}, "data.name: unknown dataset 'cifar'; allowed: mnist1d"),
        ({"data": {"noize": 0.1}}, "data.noize: unknown key; allowed: dim, label_noise"),
        (
            {"optimizer": {"name": "sgd", "lrr": 0.1}},
            "optimizer: optimizer 'sgd': unexpected hyperparameter 'lrr'",
        ),
        ({"optimizer": {"name": "sdg"}}, "optimizer: optimizer_spec: unknown optimizer 'sdg'"),
        ({"train": {"loss": "hinge"}}, "train.loss: unknown loss 'hinge'; allowed: cross_entropy"),
        (
            {"optimizer": {"name": "gd"}, "train": {"batch_size": 8}},
            "train: TrainConfig: gd is full-batch",
        ),
    ],
)
def test_a_complete_run_is_checked_against_registries_and_signatures(change, message):
    spec = merge(COMPLETE, change)
    with pytest.raises((ValueError, TypeError)) as err:
        check(spec, complete=True)
    assert str(err.value).startswith(f"run spec: {message}"), str(err.value)
    with pytest.raises(type(err.value), match=re.escape(message)):
        build(spec)
    check(COMPLETE, complete=True)
    with pytest.raises(ValueError, match="run spec: train: needs a budget: epochs or max_steps"):
        check({k: v for k, v in COMPLETE.items() if k != "train"}, complete=True)
    with pytest.raises(ValueError, match=r"model.name: required \(e.g. name = 'mlp'\)"):
        check({**COMPLETE, "model": {}}, complete=True)


def test_config_file_keys_are_checked_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("[train]\nepoch = 5\n")
    assert main(["train", str(tmp_path / "r.h5"), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error: run spec: train.epoch: unknown key; allowed:")
    assert "\n" not in err


def test_schema_has_every_table_and_every_train_setting():
    s = schema()
    assert set(s["properties"]) == {"run", *SECTIONS}
    train = set(s["$defs"]["TrainTable"]["properties"])
    assert train == set(TrainConfig.__dataclass_fields__) - {"optimizer"} | {
        "loss",
        "device",
        "dtype",
    }
    assert s["$defs"]["TrainTable"]["additionalProperties"] is False
    assert s["$defs"]["ModelTable"]["additionalProperties"] is True  # the model's arguments
    assert set(s["$defs"]["DataTable"]["properties"]) == set(DATA_OPTIONS)
    assert "null" not in json.dumps(s)  # TOML has no null: optional keys are left out
