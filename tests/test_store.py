"""Tests of landscape.store: round trips, load_params, clear errors, crash safety, locking."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from landscape.engine.params import ParamLayout, select
from landscape.store import journal
from landscape.store.file import (
    FORMAT_VERSION,
    FileBusyError,
    Record,
    RunInfo,
    Store,
    StoreError,
)
from landscape.store.journal import journal_path
from landscape.train.checkpoints import load_params

from . import store_writer
from .conftest import WAIT
from .store_writer import N_COMMITS, ROWS, expected

REPO = Path(__file__).resolve().parents[1]
WRITER = Path(__file__).resolve().with_name("store_writer.py")
ENV = {**os.environ, "PYTHONPATH": str(REPO)}
ENV.pop("LANDSCAPE_CRASH_AT", None)


def _bytes(path) -> bytes:
    return Path(path).read_bytes()


def _small_store(path, runs=("a",)) -> None:
    with Store(path, "a") as s:
        for i, run in enumerate(runs):
            s.create_run(run, names=["w"], shapes=[(2, 3)], init=np.arange(6.0) + i)
            s.append_trajectory(run, [0, 10], np.arange(12.0).reshape(2, 6) + i)
            s.set_final(run, np.full(6, 1.0 + i), status="complete")


# ---------------------------------------------------------------------------- round trips
def test_round_trip_of_every_record_type(tmp_path):
    path = tmp_path / "cmp.h5"
    rng = np.random.default_rng(0)
    names, shapes = ["0.weight", "0.bias", "temp"], [(3, 4), (3,), ()]
    init32 = rng.standard_normal(16).astype(np.float32)
    init64 = rng.standard_normal(5)
    traj = rng.standard_normal((7, 16)).astype(np.float32)
    steps = np.array([0, 1, 2, 5, 10, 20, 40])
    hist = {"step": np.arange(9), "epoch": np.arange(9) // 3, "train_loss": rng.random(9)}
    probe = {"step": np.array([0, 100, 200]), "top_eig": np.array([1.5, 2.5, 3.25])}
    attrs = {
        "settings": {"lr": 0.1, "betas": [0.9, 0.999], "nested": {"a": None, "b": True}},
        "tags": ["x", 1, None, 2.5],
        "nothing": None,
        "flag": True,
        "off": False,
        "name": "adam",
        "lr": 0.5,
        "epochs": 3,
        "np_float": np.float32(0.25),
        "np_int": np.int64(7),
    }
    with Store(path, "a") as s:
        s.create_run("zeta", names=names, shapes=shapes, init=init32, attrs={"seed": 3})
        s.create_run("alpha", names=["w", "b"], shapes=[(4,), ()], init=init64)
        s.commit()
        for lo, hi in [(0, 2), (2, 3), (3, 7)]:
            s.append_trajectory("zeta", steps[lo:hi], traj[lo:hi])
            s.commit()
        for lo, hi in [(0, 4), (4, 5), (5, 9)]:
            s.append_series("zeta", "history", {k: v[lo:hi] for k, v in hist.items()})
        for lo, hi in [(0, 1), (1, 3)]:
            s.append_series("zeta", "probes/hessian", {k: v[lo:hi] for k, v in probe.items()})
        s.set_attrs("zeta", attrs)
        s.write_record(
            "zeta",
            "probes",
            "sharpness",
            arrays={"rho": np.array([0.01, 0.1]), "value": np.array([0.5, 0.75])},
            attrs={"options": {"n": 8}, "cost": 1.5},
        )
        s.write_record(
            "zeta",
            "surfaces",
            "pca",
            arrays={
                "x": np.linspace(-1, 1, 5),
                "y": np.linspace(-1, 1, 4),
                "loss": rng.random((5, 4)),
                "done": np.ones((5, 4), bool),
            },
            attrs={"kind": "pca"},
        )
        s.write_record(
            "zeta",
            "paths",
            "to-init",
            arrays={"alpha": np.linspace(0, 1, 6)},
            attrs={"barrier": 0.125},
        )
        s.write_record(
            None,
            "paths",
            "zeta-alpha",
            arrays={"loss": np.array([1.0, 2.0])},
            attrs={"runs": ["zeta", "alpha"]},
        )
        s.set_final("zeta", traj[-1], status="complete", attrs={"final_metrics": {"acc": 0.9}})

    with Store(path) as s:
        assert sorted(s.runs()) == ["alpha", "zeta"]  # order: see the test below
        assert s.attrs["format"] == "landscape" and s.attrs["format_version"] == FORMAT_VERSION
        assert s.layout("zeta") == (names, shapes)
        assert s.layout("alpha") == (["w", "b"], [(4,), ()])
        for which, want in [("init", init32), ("final", traj[-1]), (5, traj[3]), (40, traj[6])]:
            got = s.params("zeta", which)
            assert got.dtype == np.float32 and np.array_equal(got, want)
        assert s.params("alpha", "init").dtype == np.float64
        assert np.array_equal(s.params("alpha", "init"), init64)
        got_steps, got_traj = s.trajectory("zeta")
        assert np.array_equal(got_steps, steps) and got_steps.dtype == np.int64
        assert np.array_equal(got_traj, traj) and got_traj.dtype == np.float32
        assert np.array_equal(s.trajectory_steps("zeta"), steps)
        h = s.history("zeta")
        assert set(h) == set(hist)
        for k, v in hist.items():
            assert np.array_equal(h[k], v)
        assert h["step"].dtype == np.int64 and h["train_loss"].dtype == np.float64
        p = s.series("zeta", "probes/hessian")
        assert np.array_equal(p["step"], probe["step"]) and p["step"].dtype == np.int64
        assert np.array_equal(p["top_eig"], probe["top_eig"])
        assert np.array_equal(
            s.record("zeta", "probes", "hessian").arrays["top_eig"], probe["top_eig"]
        )

        info = s.info("zeta")
        assert isinstance(info, RunInfo)
        assert (info.name, info.status, info.n_params) == ("zeta", "complete", 16)
        assert (info.n_snapshots, info.n_history, info.has_final) == (7, 9, True)
        assert set(info.history) == set(hist)
        assert set(info.probes) == {"hessian", "sharpness"}
        assert info.surfaces == ("pca",) and info.paths == ("to-init",)
        a = info.attrs
        for key in ("settings", "tags", "nothing", "flag", "off", "name", "lr", "epochs"):
            assert a[key] == attrs[key], key
        for key, typ in [
            ("flag", bool),
            ("off", bool),
            ("name", str),
            ("lr", float),
            ("epochs", int),
            ("np_float", float),
            ("np_int", int),
            ("seed", int),
        ]:
            assert type(a[key]) is typ, key
        assert a["np_float"] == 0.25 and a["np_int"] == 7 and a["seed"] == 3
        assert a["final_metrics"] == {"acc": 0.9} and a["status"] == "complete"
        alpha = s.info("alpha")
        assert alpha.status == "running"  # our own process is alive
        assert (alpha.n_snapshots, alpha.n_history, alpha.has_final) == (0, 0, False)
        assert alpha.history == alpha.probes == alpha.surfaces == alpha.paths == ()
        assert s.trajectory("alpha")[1].shape == (0, 5) and s.history("alpha") == {}

        r = s.record("zeta", "probes", "sharpness")
        assert isinstance(r, Record) and r.name == "sharpness"
        assert np.array_equal(r.arrays["value"], [0.5, 0.75])
        assert r.attrs == {"options": {"n": 8}, "cost": 1.5}
        r = s.record("zeta", "surfaces", "pca")
        assert r.arrays["done"].dtype == bool and r.arrays["loss"].shape == (5, 4)
        assert s.record("zeta", "paths", "to-init").attrs == {"barrier": 0.125}
        r = s.record(None, "paths", "zeta-alpha")
        assert np.array_equal(r.arrays["loss"], [1.0, 2.0])
        assert r.attrs == {"runs": ["zeta", "alpha"]}
        assert s.compares() == ["zeta-alpha"]
        assert "zeta" in s and "nope" not in s


def test_runs_keep_creation_order_within_one_second(tmp_path):
    path = tmp_path / "order.h5"
    order = ["r2", "r10", "b", "a", "r1"]
    with Store(path, "a") as s:
        for run in order:
            s.create_run(run, names=["w"], shapes=[(1,)], init=np.zeros(1))
    with Store(path) as s:
        assert s.runs() == order


def test_attrs_can_switch_between_json_and_plain(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path)
    with Store(path, "a") as s:
        s.set_attrs("a", {"x": [1, 2], "y": 3})
        s.commit()
        s.set_attrs("a", {"x": "now plain", "y": {"now": "json"}})
    with Store(path) as s:
        attrs = s.info("a").attrs
        assert attrs["x"] == "now plain" and attrs["y"] == {"now": "json"}


def test_replacing_runs_and_records(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path, ["a"])
    with Store(path, "a") as s:
        with pytest.raises(StoreError, match="run 'a' is complete"):
            s.create_run("a", names=["w"], shapes=[(1,)], init=np.zeros(1))
        s.create_run("a", names=["w"], shapes=[(1,)], init=np.ones(1), replace=True)
        s.write_record("a", "paths", "p", arrays={"x": [1]})
        with pytest.raises(StoreError, match="exists"):
            s.write_record("a", "paths", "p", arrays={"x": [2]}, replace=False)
        s.write_record("a", "paths", "p", arrays={"x": [3]})
        s.set_final("a", np.zeros(1), status="failed")
        s.commit()
        s.create_run("a", names=["w"], shapes=[(2,)], init=np.ones(2))  # failed: redone
        s.delete_run("a")
    with Store(path) as s:
        assert s.runs() == []


def test_mode_w_replaces_a_landscape_file(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path, ["a", "b"])
    with Store(path, "w") as s:
        assert s.runs() == []
    with Store(path) as s:
        assert s.runs() == [] and s.attrs["format"] == "landscape"


def test_importing_the_store_does_not_import_torch():
    code = "import landscape.store, sys; assert 'torch' not in sys.modules, 'torch imported'"
    r = subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=WAIT
    )
    assert r.returncode == 0, r.stderr


# ---------------------------------------------------------------------------- load_params
def _stored_model(path, model: nn.Module, run: str = "m"):
    """Store ``model``'s trainable parameters as init, three snapshots and final."""
    params = select(model)
    layout = ParamLayout.of(params)
    init = layout.flatten(params).numpy()
    g = np.random.default_rng(1)
    traj = g.standard_normal((3, init.size)).astype(init.dtype)
    final = g.standard_normal(init.size).astype(init.dtype)
    with Store(path, "a") as s:
        s.create_run(run, names=list(layout.names), shapes=list(layout.shapes), init=init)
        s.append_trajectory(run, [0, 10, 20], traj)
        s.set_final(run, final, status="complete")
    return layout, {"init": init, "final": final, 10: traj[1]}


def _mlp(seed: int, dtype=torch.float32, hidden: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, hidden), nn.Tanh(), nn.Linear(hidden, 2)).to(dtype)


def _frozen(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    m[0].bias.requires_grad_(False)
    m[1].running_mean.normal_()
    return m


@pytest.mark.parametrize(
    "make, dtype",
    [
        (_mlp, torch.float32),
        (lambda s: _mlp(s, torch.float64), torch.float64),
        (_frozen, torch.float32),
    ],
)
def test_load_params_restores_exactly(tmp_path, make, dtype):
    path = tmp_path / "m.h5"
    layout, vectors = _stored_model(path, make(0))
    for which, theta in vectors.items():
        fresh = make(1)
        before = {k: v.clone() for k, v in fresh.state_dict().items()}
        load_params(fresh, path, "m", which)
        want = layout.unflatten(torch.from_numpy(theta))
        trainable = select(fresh)
        assert list(trainable) == list(layout.names)
        for name, p in trainable.items():
            assert p.dtype == dtype and torch.equal(p.detach(), want[name]), (which, name)
        for name, value in fresh.state_dict().items():  # frozen parameters and buffers
            if name not in want:
                assert torch.equal(value, before[name]), name


def test_load_params_restores_stored_buffers(tmp_path):
    path = tmp_path / "m.h5"
    source = _frozen(0)
    source[1].running_var.uniform_(1, 2)
    source[1].num_batches_tracked.fill_(7)
    _stored_model(path, source)
    stored = {k: v.numpy().copy() for k, v in source.named_buffers()}
    with Store(path, "a") as s:
        s.set_buffers("m", "final", stored)
        with pytest.raises(ValueError, match="which must be 'init' or 'final'"):
            s.set_buffers("m", 10, stored)
    with Store(path) as s:
        got = s.buffers("m", "final")
        assert list(got) == list(stored) and s.buffers("m", "init") == {}
        assert all(np.array_equal(got[k], v) for k, v in stored.items())
    fresh = _frozen(1)
    load_params(fresh, path, "m", "final")
    for name, value in fresh.named_buffers():
        assert torch.equal(value, torch.from_numpy(stored[name])), name
    fresh = _frozen(1)
    before = {k: v.clone() for k, v in fresh.named_buffers()}
    load_params(fresh, path, "m", 10)  # snapshots hold parameters only
    for name, value in fresh.named_buffers():
        assert torch.equal(value, before[name]), name


def test_load_params_names_the_differences(tmp_path):
    path = tmp_path / "m.h5"
    _stored_model(path, _mlp(0))
    with pytest.raises(ValueError, match=r"shapes \['0.weight \(5, 3\) != \(4, 3\)"):
        load_params(_mlp(0, hidden=5), path, "m")
    bigger = nn.Sequential(*_mlp(0), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"unexpected \['3.weight', '3.bias'\]"):
        load_params(bigger, path, "m")
    smaller = nn.Sequential(nn.Linear(3, 4))
    with pytest.raises(ValueError, match=r"missing \['2.weight', '2.bias'\]"):
        load_params(smaller, path, "m")
    with pytest.raises(StoreError, match="no run 'x'; runs: m"):
        load_params(_mlp(0), path, "x")


# ---------------------------------------------------------------------------- errors
def test_clear_errors_for_requests_the_file_cannot_answer(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path, ["a", "b"])
    with Store(path, "a") as s:
        s.create_run("c", names=["w"], shapes=[(2,)], init=np.zeros(2))
    with Store(path) as s:
        with pytest.raises(StoreError, match=r"no run 'nope'; runs: a, b, c"):
            s.info("nope")
        with pytest.raises(StoreError, match=r"no run 'nope'; runs: a, b, c"):
            s.params("nope")
        with pytest.raises(StoreError, match="run 'c' has no final parameters"):
            s.params("c", "final")
        with pytest.raises(
            StoreError,
            match=r"no snapshot at step 7; snapshots: 2 from step 0 "
            r"to 10",
        ):
            s.params("a", 7)
        with pytest.raises(StoreError, match="no snapshot at step 0; snapshots: none"):
            s.params("c", 0)
        with pytest.raises(ValueError, match="which must be 'init', 'final' or a step"):
            s.params("a", "best")
        with pytest.raises(StoreError, match="run 'a' has no probe 'x'; it has: none"):
            s.record("a", "probes", "x")
        with pytest.raises(StoreError, match="/compare has no result 'x'"):
            s.record(None, "paths", "x")
        with pytest.raises(ValueError, match="kind must be one of probes, surfaces, paths"):
            s.record("a", "history", "x")


def test_reading_files_that_are_not_landscape_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Store(tmp_path / "missing.h5")
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(StoreError, match="is empty"):
        Store(empty)
    with pytest.raises(ValueError, match="mode must be 'r', 'a' or 'w'"):
        Store(empty, "x")


def _plain_hdf5(path, libver="earliest"):
    with h5py.File(path, "w", libver=libver) as f:
        f["x"] = np.arange(10)
        f.attrs["format"] = "something else"


def _random_bytes(path):
    path.write_bytes(np.random.default_rng(0).bytes(10_000))


def _version_2(path):
    _small_store(path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = 2


def _version(value):
    def make(path):
        _small_store(path)
        with h5py.File(path, "r+") as f:
            if value is None:
                del f.attrs["format_version"]
            else:
                f.attrs["format_version"] = value

    return make


def _truncated(path):
    _small_store(path, ["a", "b"])
    data = _bytes(path)
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "make, match",
    [
        (_random_bytes, "is not an HDF5 file"),
        (_plain_hdf5, "is an HDF5 file but not a landscape file"),
        (lambda p: _plain_hdf5(p, "latest"), "is an HDF5 file but not a landscape file"),
        (_version_2, "has format_version 2; .* reads format_version 1 only: upgrade landscape"),
        (_truncated, "is truncated"),
        (_version([1, 1]), r"has format_version \[1, 1\] at its root, expected the integer 1: "),
        (_version(0), "has format_version 0 at its root, expected the integer 1: .*damaged$"),
        (_version(-1), "has format_version -1 at its root, expected the integer 1: .*damaged$"),
        (_version("1"), "has format_version '1' at its root, expected the integer 1"),
        (_version(None), "has no format_version attribute at its root .*damaged$"),
    ],
)
@pytest.mark.parametrize("mode", ["r", "a", "w"])
def test_foreign_or_damaged_files_are_refused_and_never_modified(tmp_path, make, match, mode):
    path = tmp_path / "f.h5"
    make(path)
    before = _bytes(path)
    with pytest.raises(StoreError, match=match):
        Store(path, mode)
    assert _bytes(path) == before
    assert not os.path.exists(journal_path(path))
    with pytest.raises(StoreError, match=match):  # and again: nothing was left half-done
        Store(path)


def test_writing_through_a_read_only_store(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path)
    before = _bytes(path)
    with Store(path) as s:
        calls = [
            lambda: s.create_run("n", names=["w"], shapes=[(1,)], init=np.zeros(1)),
            lambda: s.set_attrs("a", {"x": 1}),
            lambda: s.set_final("a", np.zeros(6)),
            lambda: s.append_trajectory("a", [1], np.zeros((1, 6))),
            lambda: s.append_series("a", "history", {"step": [1]}),
            lambda: s.write_record("a", "probes", "p", arrays={"x": [1]}),
            lambda: s.write_record(None, "paths", "p", arrays={"x": [1]}),
            lambda: s.delete_run("a"),
            s.commit,
        ]
        for call in calls:
            with pytest.raises(ValueError, match="opened read-only; open it with mode='a'"):
                call()
    assert _bytes(path) == before


def test_bad_names_attrs_and_shapes(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path)
    with Store(path, "a") as s:
        for bad in ["", "a/b", ".", None]:
            with pytest.raises(ValueError, match="run name must be a non-empty string without"):
                s.create_run(bad, names=["w"], shapes=[(1,)], init=np.zeros(1))
        with pytest.raises(ValueError, match="probes name must be a non-empty string"):
            s.write_record("a", "probes", "x/y", arrays={})
        with pytest.raises(ValueError, match="array name must be a non-empty string"):
            s.write_record("a", "probes", "ok", arrays={"a/b": [1]})
        with pytest.raises(TypeError, match="attribute 'bad' must be JSON-serialisable"):
            s.set_attrs("a", {"bad": {"x": object()}})
        with pytest.raises(TypeError, match="attribute 'bad' must be JSON-serialisable"):
            s.set_attrs("a", {"bad": [np.float32(1.0)]})
        with pytest.raises(
            TypeError,
            match="attribute 'bad' must be a number, string, bool, None, list or dict, got set",
        ):
            s.set_attrs("a", {"bad": {1, 2}})
        with pytest.raises(ValueError, match="status must be one of running, complete, failed"):
            s.set_attrs("a", {"status": "done"})
        for names, shapes, init in [
            (["w", "b"], [(2,)], np.zeros(2)),
            (["w"], [(2, 2)], np.zeros(3)),
            (["w"], [(2,)], np.zeros((1, 2))),
        ]:
            with pytest.raises(ValueError, match="create_run: .* do not agree"):
                s.create_run("n", names=names, shapes=shapes, init=init)
        assert "n" not in s
        with pytest.raises(
            ValueError,
            match=r"expected 2 rows of 6 parameters, got shape "
            r"\(2, 5\)",
        ):
            s.append_trajectory("a", [1, 2], np.zeros((2, 5)))
        with pytest.raises(
            ValueError,
            match=r"expected 1 rows of 6 parameters, got shape "
            r"\(2, 6\)",
        ):
            s.append_trajectory("a", [1], np.zeros((2, 6)))
        with pytest.raises(ValueError, match="expected 6 parameters, got shape"):
            s.set_final("a", np.zeros(5))
        s.append_series("a", "history", {"step": [0, 1], "loss": [1.0, 0.5]})
        with pytest.raises(
            ValueError,
            match=r"columns of history have different lengths "
            r"\[1, 2\]",
        ):
            s.append_series("a", "history", {"step": [2, 3], "loss": [0.1]})
        with pytest.raises(
            ValueError,
            match=r"history has columns \['loss', 'step'\], got "
            r"\['step'\]",
        ):
            s.append_series("a", "history", {"step": [2]})
        assert s.info("a").n_history == 2 and s.info("a").n_snapshots == 2


def test_create_run_refused_for_its_attrs_leaves_no_run(tmp_path):
    """A create_run refused for its attrs must not leave a half-made run behind.

    Such a run then blocks create_run of the same name as 'being written by another process'.
    """
    path = tmp_path / "a.h5"
    with Store(path, "a") as s:
        with pytest.raises(TypeError, match="JSON-serialisable"):
            s.create_run(
                "r", names=["w"], shapes=[(1,)], init=np.zeros(1), attrs={"model": {"x": object()}}
            )
        assert "r" not in s
        s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))


def test_append_series_refused_leaves_the_series_unchanged(tmp_path):
    path = tmp_path / "a.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
        with pytest.raises(ValueError, match="column name must be a non-empty string"):
            s.append_series("r", "history", {"step": [0], "a/b": [1.0]})
        assert s.history("r") == {}


# ---------------------------------------------------------------------------- rollback
def test_exception_in_a_session_leaves_the_file_as_before(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path, ["a"])
    before = _bytes(path)
    with pytest.raises(RuntimeError, match="boom"), Store(path, "a") as s:
        s.create_run("b", names=["w"], shapes=[(1000,)], init=np.zeros(1000))
        s.append_trajectory("a", [20], np.zeros((1, 6)))
        s.set_attrs("a", {"status": "failed"})
        s.delete_run("a")
        raise RuntimeError("boom")
    assert _bytes(path) == before
    assert not os.path.exists(journal_path(path))
    s = Store(path, "a")
    s.write_record(None, "paths", "p", arrays={"x": np.zeros(10_000)})
    s.close(commit=False)
    assert _bytes(path) == before
    with Store(path) as s:
        assert s.runs() == ["a"] and s.info("a").status == "complete"
        assert s.info("a").n_snapshots == 2


def test_commit_keeps_the_earlier_part_of_a_session(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path, ["a"])
    with pytest.raises(KeyError), Store(path, "a") as s:
        s.create_run("b", names=["w"], shapes=[(3,)], init=np.ones(3))
        s.append_trajectory("b", [0], np.ones((1, 3)))
        s.commit()
        s.append_trajectory("b", [1], np.full((1, 3), 2.0))
        s.create_run("c", names=["w"], shapes=[(3,)], init=np.ones(3))
        raise KeyError("later part")
    with Store(path) as s:
        assert s.runs() == ["a", "b"]
        steps, traj = s.trajectory("b")
        assert steps.tolist() == [0] and traj.tolist() == [[1.0, 1.0, 1.0]]


@pytest.mark.parametrize("point", ["journal-written", "half-applied", "applied"])
def test_an_exception_inside_commit_rolls_back(tmp_path, monkeypatch, point):
    """Ctrl-C (or a full disk) while Store.close commits: the file must stay as it was."""
    path = tmp_path / "a.h5"
    _small_store(path, ["a"])
    before = _bytes(path)

    def interrupt(name):
        if name == point:
            raise KeyboardInterrupt

    monkeypatch.setattr(journal, "_crash_point", interrupt)
    with pytest.raises(KeyboardInterrupt), Store(path, "a") as s:
        s.create_run("b", names=["w"], shapes=[(3000,)], init=np.ones(3000))
        s.set_attrs("a", {"note": "x" * 5000})
    monkeypatch.undo()
    assert _bytes(path) == before
    with Store(path) as s:
        assert s.runs() == ["a"]


# ---------------------------------------------------------------------------- locking
def _h5py_open_in_another_process(path) -> subprocess.CompletedProcess:
    code = f"import h5py; h5py.File({str(path)!r}, 'r').close()"
    return subprocess.run(
        [sys.executable, "-c", code], env=ENV, capture_output=True, text=True, timeout=WAIT
    )


class _LockClock:
    """The journal's ``time`` for a test: its clock moves only when a lock wait sleeps.

    A wait for a lock (``journal._flock``) then ends after a fixed number of retries, whatever
    the speed of the machine; ``sleeps`` counts them and ``on_sleep`` runs at each.
    """

    def __init__(self, on_sleep=None) -> None:
        self.now, self.sleeps, self.on_sleep = 0.0, 0, on_sleep

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += seconds
        if self.on_sleep is not None:
            self.on_sleep()


def test_a_writer_holds_the_file_exclusively(tmp_path, monkeypatch):
    path = tmp_path / "a.h5"
    _small_store(path)
    writer = Store(path, "a")
    try:
        clock = _LockClock()
        with monkeypatch.context() as m:
            m.setattr(journal, "time", clock)
            # without a timeout the refusal comes at once: not a single wait
            with pytest.raises(FileBusyError, match=r"keeps it open\); wait for it"):
                Store(path, "a")
            with pytest.raises(FileBusyError, match="is open in another process"):
                Store(path, "w")
            with pytest.raises(FileBusyError, match="is being written by another process; try"):
                Store(path, timeout=0)
            assert clock.sleeps == 0
            # with one it waits that long (on its clock) and says so
            with pytest.raises(FileBusyError, match=r"waited 0.2 s"):
                Store(path, "a", timeout=0.2)
            assert clock.sleeps >= 1 and clock.now >= 0.2
        r = _h5py_open_in_another_process(path)
        assert r.returncode != 0 and "unable to lock file" in r.stderr
    finally:
        writer.close()
    with Store(path, "a"):
        pass
    assert _h5py_open_in_another_process(path).returncode == 0


def test_readers_share_and_block_writers(tmp_path):
    path = tmp_path / "a.h5"
    _small_store(path)
    r1, r2 = Store(path), Store(path, timeout=0)
    with pytest.raises(FileBusyError, match="is open in another process"):
        Store(path, "a")
    assert r1.runs() == r2.runs() == ["a"]
    r1.close()
    with pytest.raises(FileBusyError):
        Store(path, "a")
    r2.close()
    with Store(path, "a") as s:
        s.set_attrs("a", {"x": 1})


def test_a_waiting_writer_gets_in_when_the_other_lets_go(tmp_path, monkeypatch):
    path = tmp_path / "a.h5"
    _small_store(path)
    first = Store(path, "a")
    # the other writer lets go while the second one waits (at its first retry): no timer
    clock = _LockClock(on_sleep=first.close)
    monkeypatch.setattr(journal, "time", clock)
    try:
        with Store(path, "a", timeout=10) as s:
            s.set_attrs("a", {"x": 1})
    finally:
        first.close()
    assert clock.sleeps == 1  # it found the file busy, waited once, and got in
    with Store(path) as s:
        assert s.info("a").attrs["x"] == 1


# ---------------------------------------------------------------------------- crash safety
def _check(path, m_before: int = 0, require_all: bool = False) -> int:
    """Verify the file after a crash; returns the number of complete runs r0 ... r<m-1>."""
    if m_before == 0 and not require_all:
        # killed before it created the file, or before its first commit on a new file:
        # then the reader rolls the file back to empty and says so
        if not os.path.exists(path):
            return 0
        try:
            Store(path, timeout=0).close()
        except StoreError as err:
            assert "is empty" in str(err)
            assert os.path.getsize(path) == 0 and not os.path.exists(journal_path(path))
            return 0
    with Store(path, timeout=0) as s:
        runs = s.runs()
        assert not os.path.exists(journal_path(path))
        status = {r: s.info(r).status for r in runs}
        complete = sorted(int(r[1:]) for r in runs if status[r] == "complete")
        m = len(complete)
        assert complete == list(range(m)), status
        others = [r for r in runs if status[r] != "complete"]
        assert m >= m_before and others in ([], [f"r{m}"]), status
        assert not (require_all and others), status
        for r in others:
            assert status[r] == "incomplete"
            e, info = expected(m), s.info(r)
            # each commit is all or nothing: whole blocks of rows, history in step
            assert info.n_snapshots % ROWS == 0 and info.n_snapshots <= N_COMMITS * ROWS
            assert info.n_history == info.n_snapshots and not info.has_final
            assert np.array_equal(s.params(r, "init"), e["init"])
            steps, traj = s.trajectory(r)
            assert np.array_equal(steps, e["steps"][: len(steps)])
            assert np.array_equal(traj, e["traj"][: len(traj)])
        for i in complete:
            _verify_complete(s, i)
    return m


def _verify_complete(s: Store, i: int) -> None:
    e, r = expected(i), f"r{i}"
    info = s.info(r)
    assert info.status == "complete" and info.has_final
    assert info.n_snapshots == info.n_history == N_COMMITS * ROWS
    for key, value in e["attrs"].items():
        assert info.attrs[key] == value
    assert s.layout(r) == (e["names"], e["shapes"])
    for which in ("init", "final"):
        got = s.params(r, which)
        assert got.dtype == e[which].dtype and np.array_equal(got, e[which])
    steps, traj = s.trajectory(r)
    assert np.array_equal(steps, e["steps"]) and np.array_equal(traj, e["traj"])
    h = s.history(r)
    assert np.array_equal(h["step"], e["steps"]) and np.array_equal(h["loss"], e["loss"])


POINTS = ["appended", "journal-written", "half-applied", "applied", "committed"]


def _start_writer(path, start: int, stop: int, *kill, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WRITER), str(path), str(start), str(stop), *kill],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**ENV, **env},
    )


def test_sigkill_at_seeded_moments_loses_only_the_run_in_progress(tmp_path):
    """One writer after another on one file, each killed at a point of its own progress.

    The writer kills itself the n-th time it reaches a window of a commit (a run is 6 commits:
    create_run, 3 appends, the session's close, set_final): where it dies is the same on any
    machine, and the windows are every state a kill can leave between two commits.
    """
    path = tmp_path / "crash.h5"
    rng = np.random.default_rng(1234)
    kills = [
        ("appended", 1),  # inside the first commit of a new file: the file reads as empty
        ("committed", 1),  # a run created, nothing appended yet
        ("journal-written", 4),
        ("half-applied", 9),  # inside the second run
        ("applied", 5),
        ("committed", 12),  # the second run complete, though it never said so
    ] + [(POINTS[rng.integers(len(POINTS))], int(rng.integers(1, 19))) for _ in range(4)]
    m = 0
    for point, n in kills:
        proc = _start_writer(path, m, m + 50, f"{point}:{n}")
        out, err = proc.communicate(timeout=WAIT)  # reaped: its pid is gone, its run "incomplete"
        assert proc.returncode == -signal.SIGKILL, err
        lines = out.splitlines()
        said = len(lines) - 1  # runs it said were complete
        assert lines == ["start"] + [f"complete r{i}" for i in range(m, m + said)], out
        new_m = _check(path, m)
        assert new_m in (m + said, m + said + 1), (point, n, m, said, new_m)
        if point == "committed" and n % 6 == 0:  # killed right after a run's last commit
            assert new_m == m + said + 1 == m + n // 6
        m = new_m
    assert m >= 3
    proc = _start_writer(path, m, m + 1)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert _check(path, m, require_all=True) == m + 1


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("base") / "base.h5"
    for i in range(2):
        store_writer.write_run(str(path), i)
    return path


@pytest.mark.parametrize("point", POINTS)
def test_sigkill_inside_each_window_of_a_commit(tmp_path, two_runs, point):
    path = tmp_path / "crash.h5"
    shutil.copy(two_runs, path)
    before = _bytes(path)
    proc = _start_writer(path, 2, 3, LANDSCAPE_CRASH_AT=point)
    out, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == -signal.SIGKILL, err
    assert out == "start\n"  # died in its first commit
    jpath = journal_path(path)
    assert os.path.exists(jpath) == (point != "committed")
    with Store(path) as s:
        assert not os.path.exists(jpath)
        if point == "committed":
            assert s.runs() == ["r0", "r1", "r2"]
            assert s.info("r2").status == "incomplete"
            assert np.array_equal(s.params("r2", "init"), expected(2)["init"])
        else:
            assert s.runs() == ["r0", "r1"]
        for i in range(2):
            _verify_complete(s, i)
    if point != "committed":
        assert _bytes(path) == before  # rolled back to the byte
    store_writer.write_run(str(path), 2)  # a new writer redoes the interrupted run
    assert _check(path, 2, require_all=True) == 3


def test_a_reader_dropped_without_close_does_not_lock_writers_out(tmp_path):
    import gc

    path = tmp_path / "a.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
    assert Store(path).runs() == ["r"]  # never closed
    gc.collect()
    with Store(path, "a") as s:
        assert s.runs() == ["r"]


def test_series_columns_keep_floats_that_follow_integers(tmp_path):
    path = tmp_path / "a.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        s.append_series("r", "probes/p", {"step": [0], "value": [0]})
        s.commit()
        s.append_series("r", "probes/p", {"step": [1, 2], "value": [2.75, -1.5]})
        with pytest.raises(ValueError, match="without losing them"):
            s.append_series("r", "probes/p", {"step": [3.5], "value": [1.0]})
    with Store(path) as s:
        cols = s.series("r", "probes/p")
    assert cols["step"].dtype == np.int64 and cols["step"].tolist() == [0, 1, 2]
    assert cols["value"].tolist() == [0.0, 2.75, -1.5]


def test_a_replaced_run_is_no_longer_its_first_writers(tmp_path):
    path = tmp_path / "a.h5"
    with Store(path, "a") as s:
        first = s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
        s.check_writer("r", first)
        second = s.create_run("r", names=["w"], shapes=[(2,)], init=np.ones(2), replace=True)
        s.check_writer("r", second)
        with pytest.raises(StoreError, match="replaced or deleted by another writer"):
            s.check_writer("r", first)
