"""Importing runs trained elsewhere.

``state_dict`` files (plain or wrapped) into a complete run, model factories named by import path,
and clear refusals of what does not fit.
"""

from __future__ import annotations

import pickle
import sys
import textwrap
import uuid

import numpy as np
import pytest
import torch
from torch import nn

from landscape.store.file import Store, StoreError
from landscape.train.checkpoints import (
    build_model,
    import_run,
    load_params,
    load_state_dict,
    resolve_factory,
)


class NotAStateDict:
    """Pickled by torch.save as a custom object: weights_only=True must refuse it."""

    def __init__(self) -> None:
        self.weight = torch.zeros(3)


def net(seed: int = 0, width: int = 4) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(3, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, 2)
        )


def trained_state(seed: int) -> dict[str, torch.Tensor]:
    """A state_dict with other parameters and BatchNorm statistics than net(0)."""
    m = net(seed)
    m.train()
    with torch.no_grad():
        m(torch.randn(16, 3, generator=torch.Generator().manual_seed(seed)))
    return {k: v.clone() for k, v in m.state_dict().items()}


def flat(model: nn.Module, sd: dict[str, torch.Tensor]) -> np.ndarray:
    """The state_dict's parameters flattened in named_parameters order."""
    return torch.cat([sd[n].reshape(-1) for n, _ in model.named_parameters()]).numpy()


@pytest.fixture()
def factory_module(tmp_path, monkeypatch):
    """A module with model factories in tmp_path, importable under a fresh name."""
    name = f"user_nets_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        textwrap.dedent("""
        import torch
        from torch import nn

        def tiny(width=4, seed=0):
            torch.manual_seed(seed)
            return nn.Sequential(nn.Linear(3, width), nn.ReLU(), nn.Linear(width, 2))

        class Holder:
            @staticmethod
            def make():
                return nn.Linear(2, 2)

        def not_a_model():
            return 3

        constant = 3
    """)
    )
    monkeypatch.setattr(sys, "path", list(sys.path))  # resolve_factory may add the cwd
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def test_import_run_from_plain_and_wrapped_state_dicts(tmp_path):
    model = net(0)
    untouched = {k: v.clone() for k, v in model.state_dict().items()}
    states = {
        name: trained_state(seed)
        for name, seed in (("init", 1), ("c10", 2), ("c20", 3), ("final", 4))
    }
    paths = {}
    for i, (name, sd) in enumerate(states.items()):
        paths[name] = tmp_path / f"{name}.pt"
        # alternate plain and wrapped files, as training scripts save them
        torch.save(
            sd if i % 2 == 0 else {"model_state_dict": sd, "epoch": 7, "lr": 0.1}, paths[name]
        )
    store = str(tmp_path / "imp.h5")
    import_run(
        store,
        "ext",
        model,
        final=paths["final"],
        init=str(paths["init"]),
        checkpoints={20: paths["c20"], 10: paths["c10"]},
        attrs={"optimizer": {"name": "sgd"}},
    )
    for k, v in model.state_dict().items():
        assert torch.equal(v, untouched[k]), f"import_run modified the model ({k})"
    with Store(store) as s:
        info = s.info("ext")
        steps, traj = s.trajectory("ext")
        names, shapes = s.layout("ext")
        init, final = s.params("ext", "init"), s.params("ext", "final")
        buffers = s.buffers("ext", "final")
    assert info.status == "complete" and info.has_final
    assert info.attrs["source"] == "imported" and info.attrs["optimizer"] == {"name": "sgd"}
    assert names == [n for n, _ in model.named_parameters()]
    assert shapes == [tuple(p.shape) for p in model.parameters()]
    np.testing.assert_array_equal(init, flat(model, states["init"]))
    np.testing.assert_array_equal(final, flat(model, states["final"]))
    assert steps.tolist() == [10, 20]  # sorted by step
    np.testing.assert_array_equal(traj[0], flat(model, states["c10"]))
    np.testing.assert_array_equal(traj[1], flat(model, states["c20"]))
    np.testing.assert_array_equal(buffers["1.running_mean"], states["final"]["1.running_mean"])

    fresh = net(9)
    load_params(fresh, store, "ext", "final")
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, states["final"][k]), k
    load_params(fresh, store, "ext", 20)
    got = dict(fresh.named_parameters())
    for n in got:
        assert torch.equal(got[n], states["c20"][n]), n

    # an existing complete run: refused, unless replace=True
    with pytest.raises(StoreError, match="complete"):
        import_run(store, "ext", model, final=paths["final"])
    import_run(store, "ext", model, final=states["c10"], replace=True)  # a mapping works too
    with Store(store) as s:
        np.testing.assert_array_equal(s.params("ext", "final"), flat(model, states["c10"]))
        # without init, the model as given is the initial point
        np.testing.assert_array_equal(s.params("ext", "init"), flat(model, untouched))
        assert s.trajectory_steps("ext").tolist() == []


def test_load_state_dict_unwraps_and_refuses(tmp_path):
    sd = trained_state(1)
    for key in ("state_dict", "model_state_dict", "model", "net", "weights"):
        got = load_state_dict({key: sd, "optimizer": {"lr": 0.1}})
        assert got.keys() == sd.keys()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint at all")
    with pytest.raises(ValueError, match="is not a torch.save file that loads with weights_only"):
        load_state_dict(garbage)
    foreign = tmp_path / "foreign.pt"  # a pickle with code in it: torch refuses, we explain
    foreign.write_bytes(pickle.dumps({"f": print}, protocol=4))
    with pytest.raises(ValueError, match="weights_only=True") as refused:
        load_state_dict(foreign)
    assert "weights_only=False" not in str(refused.value) and "\n" not in str(refused.value)
    listed = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], listed)
    with pytest.raises(TypeError, match="holds a list"):
        load_state_dict(listed)
    empty = tmp_path / "meta.pt"
    torch.save({"epoch": 3, "note": "no weights"}, empty)
    with pytest.raises(ValueError, match="no tensors .*epoch"):
        load_state_dict(empty)


def test_pickle_only_checkpoint_is_refused(tmp_path):
    path = tmp_path / "pickled.pt"
    torch.save(NotAStateDict(), path)
    with pytest.raises(ValueError, match="weights_only=True") as err:
        load_state_dict(path)
    assert "\n" not in str(err.value), "one line"
    with pytest.raises(ValueError, match="weights_only=True"):
        import_run(str(tmp_path / "x.h5"), "r", net(0), final=path)
    # a whole pickled model (torch.save(model)) is code too
    whole = tmp_path / "model.pt"
    torch.save(net(0), whole)
    with pytest.raises(ValueError, match="weights_only=True"):
        load_state_dict(whole)


def test_checkpoint_that_does_not_fit_the_model(tmp_path):
    wide = tmp_path / "wide.pt"
    torch.save(net(0, width=6).state_dict(), wide)
    store = str(tmp_path / "x.h5")
    with pytest.raises(ValueError, match="final checkpoint does not fit the model.*size"):
        import_run(store, "r", net(0), final=wide)
    partial = {k: v for k, v in net(0).state_dict().items() if not k.startswith("3.")}
    with pytest.raises(ValueError, match="step 5 checkpoint does not fit.*3.weight"):
        import_run(store, "r", net(0), final=net(0).state_dict(), checkpoints={5: partial})
    with pytest.raises(ValueError, match="init checkpoint does not fit"):
        import_run(store, "r", net(0), final=net(0).state_dict(), init=wide)
    with pytest.raises(ValueError, match="steps must be ints >= 0"):
        import_run(
            store, "r", net(0), final=net(0).state_dict(), checkpoints={-1: net(0).state_dict()}
        )
    with pytest.raises(TypeError, match="nn.Module"):
        import_run(store, "r", "not a model", final=wide)
    if (tmp_path / "x.h5").exists():  # nothing half-imported
        with Store(store) as s:
            assert s.runs() == []


def test_build_model_from_a_factory_module(factory_module):
    m = build_model(f"{factory_module}:tiny", {"width": 5})
    assert isinstance(m, nn.Sequential) and m[0].out_features == 5
    again = build_model(f"{factory_module}:tiny", {"width": 5})
    for a, b in zip(m.parameters(), again.parameters(), strict=True):
        assert torch.equal(a, b)
    assert isinstance(build_model(f"{factory_module}:Holder.make"), nn.Linear)
    assert callable(resolve_factory(f"{factory_module}:tiny"))
    with pytest.raises(TypeError, match="returned a int"):
        build_model(f"{factory_module}:not_a_model")
    with pytest.raises(TypeError, match="not callable"):
        build_model(f"{factory_module}:constant")
    with pytest.raises(ValueError, match="has no 'nothing'"):
        build_model(f"{factory_module}:nothing")
    with pytest.raises(TypeError, match="unexpected keyword"):
        build_model(f"{factory_module}:tiny", {"depth": 3})


@pytest.mark.parametrize("bad", ["no_colon", "a:b:c", ":tiny", "module:", "", 3, None])
def test_bad_factory_strings(bad):
    with pytest.raises(ValueError, match="package.module:factory"):
        resolve_factory(bad)


def test_missing_factory_module(monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(ValueError, match="cannot import 'no_such_module_zz9'"):
        build_model("no_such_module_zz9:make")
    with pytest.raises(ValueError, match="cannot import"):
        build_model("no_such_package_zz9.sub:make")
