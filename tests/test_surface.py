"""Loss surfaces: closed forms, vmap against a loop, the file layout, resuming.

The centre and a quadratic model against closed forms, batched (vmap) against one point at a time,
the file layout, and a killed computation resumed bit for bit.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape import Objective
from landscape.store.file import Store
from landscape.surfaces.grid import Surface, surface

from .conftest import WAIT
from .surface_worker import problem
from .zoo import make

CE = nn.CrossEntropyLoss()
WORKER = Path(__file__).with_name("surface_worker.py")


def directions_for(model: nn.Module, k: int = 2, seed: int = 0) -> torch.Tensor:
    p = sum(q.numel() for q in model.parameters() if q.requires_grad)
    gen = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(k, p, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("name", ["mlp", "cnn_bn", "tied"])
def test_centre_and_every_point_equal_direct_evaluation(name):
    model, x, y = make(name)
    was = model.training
    state = copy.deepcopy(model.state_dict())
    d = directions_for(model)
    xs, ys = np.array([-1.0, 0.0, 0.5]), np.array([-0.5, 0.0, 1.0])
    s = surface(model, CE, (x, y), d, x=xs, y=ys, test=(x[:7], y[:7]), chunk=4, vmap=True)
    obj = Objective(model, CE, (x, y))
    tobj = Objective(model, CE, (x[:7], y[:7]))
    theta0 = obj.theta
    assert s.done.all() and s.n_points == 9 and s.shape == (3, 3)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            theta = theta0 + a * d[0] + b * d[1]
            m, t = obj.evaluate(theta), tobj.evaluate(theta)
            np.testing.assert_allclose(s.train_loss[i, j], m.loss, rtol=1e-12)
            np.testing.assert_allclose(s.test_loss[i, j], t.loss, rtol=1e-12)
            assert s.train_accuracy[i, j] == m.accuracy and s.test_accuracy[i, j] == t.accuracy
    assert s.train_loss[1, 1] == pytest.approx(obj.evaluate().loss, rel=1e-14)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key
    assert model.training == was


def test_quadratic_model_gives_the_analytic_surface():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    model = nn.Linear(4, 1, bias=False).double()
    d = torch.randn(2, 4, generator=gen, dtype=torch.float64)
    xs, ys = np.linspace(-2, 2, 5), np.linspace(-1, 3, 4)
    s = surface(model, nn.MSELoss(), (x, y), d, x=xs, y=ys)
    w0 = model.weight.detach().reshape(-1).numpy()
    xn, yn, dn = x.numpy(), y.numpy().reshape(-1), d.numpy()
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            w = w0 + a * dn[0] + b * dn[1]
            np.testing.assert_allclose(s.train_loss[i, j], np.mean((xn @ w - yn) ** 2), rtol=1e-12)
    assert "train_accuracy" not in s.grids  # regression: no accuracy


def test_accuracy_can_be_left_out():
    model, x, y = make("mlp")
    d = directions_for(model, k=1)
    s = surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 3), accuracy=False)
    full = surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 3))
    assert set(s.grids) == {"train_loss"} and "train_accuracy" in full.grids
    np.testing.assert_array_equal(s.train_loss, full.train_loss)


def test_batched_points_equal_points_one_at_a_time():
    model, x, y = make("residual")
    d = directions_for(model)
    grid = {"x": np.linspace(-1, 1, 4), "y": np.linspace(-1, 1, 3)}
    batched = surface(model, CE, (x, y), d, chunk=5, vmap=True, **grid)
    single = surface(model, CE, (x, y), d, chunk=1, **grid)
    assert batched.vmap and not single.vmap
    np.testing.assert_allclose(batched.train_loss, single.train_loss, rtol=1e-12)
    np.testing.assert_array_equal(batched.train_accuracy, single.train_accuracy)


def test_accuracy_does_not_count_ignored_targets():
    model, x, y = make("mlp")
    y = y.clone()
    y[::3] = -100  # ignore_index
    d = directions_for(model, k=1)
    s = surface(model, CE, (x, y), d, x=np.array([0.0, 0.5]), batch_size=7)
    obj = Objective(model, CE, (x, y))
    for a, acc in zip([0.0, 0.5], s.train_accuracy, strict=True):
        expected = obj.evaluate(obj.theta + a * d[0]).accuracy
        assert acc == pytest.approx(expected, abs=1e-12)


def test_a_random_data_source_or_model_is_refused_and_a_shuffled_full_pass_accepted():
    from torch.utils.data import DataLoader, TensorDataset

    from landscape import DeterminismError

    model, x, y = make("mlp", n=50)
    d = directions_for(model, k=1)
    torch.manual_seed(0)
    dropping = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True, drop_last=True)
    with pytest.raises(DeterminismError, match="drop_last"):
        surface(model, CE, dropping, d, x=np.array([0.0]))
    shuffled = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    s = surface(model, CE, shuffled, d, x=np.array([0.0]))
    assert s.train_loss[0] == pytest.approx(Objective(model, CE, (x, y)).evaluate().loss, rel=1e-12)
    noisy = nn.Sequential(model, Noise())
    with pytest.raises(DeterminismError, match="random in eval mode"):
        surface(noisy, CE, shuffled, d, x=np.array([0.0]))


class Noise(nn.Module):
    """Adds fresh noise to the outputs, in eval mode too."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.1 * torch.randn_like(x)


class Unbatchable(nn.Module):
    """A model vmap cannot batch (a data-dependent branch on a value)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        return out if float(out.sum()) > -1e9 else -out


def test_a_model_vmap_cannot_batch_falls_back_to_one_point_at_a_time():
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=gen, dtype=torch.float64), torch.randint(0, 2, (20,))
    model = Unbatchable()
    d = directions_for(model, k=1)
    s = surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 5), chunk=4, vmap=True)
    obj = Objective(model, CE, (x, y))
    expected = [obj.evaluate(obj.theta + a * d[0]).loss for a in np.linspace(-1, 1, 5)]
    np.testing.assert_allclose(s.train_loss, expected, rtol=1e-12)


def test_the_file_holds_coordinates_as_dimension_scales_and_round_trips(tmp_path):
    path = tmp_path / "s.h5"
    model, x, y = make("mlp")
    with Store(path, "w") as st:
        st.create_run("a", names=["w"], shapes=[(1,)], init=np.zeros(1))
    d = directions_for(model)
    s = surface(
        model,
        CE,
        (x, y),
        d,
        x=np.linspace(-1, 1, 3),
        y=np.linspace(0, 1, 2),
        store=path,
        run="a",
        name="plane",
        extras={"note": np.arange(3)},
    )
    with Store(path) as st:
        assert st.info("a").surfaces == ("plane",)
        back = Surface.from_record(st.record("a", "surfaces", "plane"))
        assert np.array_equal(st.record("a", "surfaces", "plane").arrays["note"], np.arange(3))
    for key in ("x", "y", "directions", "done"):
        np.testing.assert_array_equal(getattr(back, key), getattr(s, key))
    for key, grid in s.grids.items():
        np.testing.assert_array_equal(back.grids[key], grid)
    assert back.n_points == 6 and back.bn == "keep" and back.params == s.params
    with h5py.File(path, "r", locking=False) as f:
        grid = f["runs/a/surfaces/plane/train_loss"]
        assert grid.dims[0][0].name.endswith("/x") and grid.dims[1][0].name.endswith("/y")


def test_a_finished_surface_is_read_back_not_recomputed_and_a_different_one_refused(tmp_path):
    path = tmp_path / "s.h5"
    model, x, y = make("mlp")
    with Store(path, "w") as st:
        st.create_run("a", names=["w"], shapes=[(1,)], init=np.zeros(1))
    d = directions_for(model, k=1)
    first = surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 4), store=path, run="a")
    again = surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 4), store=path, run="a")
    assert again.n_points == 0
    np.testing.assert_array_equal(again.train_loss, first.train_loss)
    with pytest.raises(ValueError, match="already holds a surface 'surface' made with other"):
        surface(model, CE, (x, y), d, x=np.linspace(-1, 1, 5), store=path, run="a")
    redone = surface(
        model, CE, (x, y), d, x=np.linspace(-1, 1, 5), store=path, run="a", replace=True
    )
    assert redone.n_points == 5


def test_a_killed_surface_resumes_to_the_values_of_an_uninterrupted_one(tmp_path):
    killed, clean = tmp_path / "killed.h5", tmp_path / "clean.h5"
    proc = subprocess.run(
        [sys.executable, str(WORKER), str(killed), "10"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == -9, proc.stderr  # SIGKILL, mid-way
    with Store(killed) as st:
        partial = Surface.from_record(st.record("r", "surfaces", "plane"))
    assert 0 < partial.done.sum() < partial.done.size
    assert np.isnan(partial.train_loss[~partial.done]).all()
    resumed = surface(**problem(), store=killed, run="r", name="plane")
    assert resumed.n_points == partial.done.size - partial.done.sum()
    subprocess.run([sys.executable, str(WORKER), str(clean), "0"], check=True, timeout=WAIT)
    with Store(clean) as a, Store(killed) as b:
        ra, rb = a.record("r", "surfaces", "plane"), b.record("r", "surfaces", "plane")
    for key in ("train_loss", "train_accuracy", "done", "x", "y", "directions"):
        np.testing.assert_array_equal(ra.arrays[key], rb.arrays[key], err_msg=key)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"x": [[0.0]]}, "x must be a 1-D array of finite coordinates"),
        ({"x": [0.0, np.nan]}, "x must be a 1-D array of finite coordinates"),
        ({"x": [0.0], "y": [0.0], "k": 1}, r"2 direction\(s\) expected for a 2-D grid, got 1"),
        ({"x": [0.0], "k": 2}, r"1 direction\(s\) expected for a 1-D grid, got 2"),
        ({"x": [0.0], "bn": "fresh"}, "bn must be one of 'keep', 'recalibrate'"),
        ({"x": [0.0], "chunk": 0}, "chunk must be an int >= 1"),
        ({"x": [0.0], "run": "a"}, "give both store and run"),
        ({"x": [0.0], "directions": torch.zeros(1, 3)}, r"directions must be a float tensor"),
    ],
)
def test_bad_input_is_refused_with_one_clear_message(kwargs, match):
    model, x, y = make("mlp")
    k = kwargs.pop("k", 1 if "y" not in kwargs else 2)
    kwargs.setdefault("directions", directions_for(model, k=k))
    with pytest.raises(ValueError, match=match):
        surface(model, CE, (x, y), **kwargs)
