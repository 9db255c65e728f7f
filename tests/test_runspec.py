"""rebuild(): the model of a stored run, its data and loss, back from the file alone."""

from __future__ import annotations

import pytest
import torch

from landscape.cli.main import main
from landscape.engine.objective import Objective
from landscape.train.spec import rebuild
from landscape.store.file import Store


def test_rebuild_gives_the_stored_model_and_data(tmp_path, capsys):
    path = tmp_path / "r.h5"
    assert main(["train", str(path), "--data", "digits", "--model", "cnn1d", "--model-arg",
                 "batchnorm=true", "--steps", "12", "--quiet", "--run", "a"]) == 0
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
    import numpy as np

    path = tmp_path / "r.h5"
    with Store(path, "a") as s:
        s.create_run("bare", names=["w"], shapes=[(2,)], init=np.zeros(2))
        s.set_final("bare", np.ones(2), status="complete")
        s.create_run("mlp", names=["linear.weight"], shapes=[(1, 2)], init=np.zeros(2),
                     attrs={"model": {"name": "linear", "kwargs": {"in_features": 2,
                                                                   "num_classes": 1,
                                                                   "bias": False}}})
        s.set_final("mlp", np.ones(2), status="complete")
    with pytest.raises(ValueError, match="does not record a model"):
        rebuild(path, "bare")
    with pytest.raises(ValueError, match="does not record its data"):
        rebuild(path, "mlp")
    model, split, _ = rebuild(path, "mlp", data={"name": "gaussians", "dim": 2})
    assert torch.equal(model.linear.weight.detach(), torch.ones(1, 2))
