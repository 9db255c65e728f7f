"""The pieces of shared-out sweeps.

Surface blocks, merging a block (never a point twice), claims on a file, snapshots for readers,
``[resources]``, ``--device``, executor options.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from landscape.cli.main import main
from landscape.store import checksum
from landscape.store.file import FileBusyError, Store
from landscape.surfaces import directions
from landscape.surfaces.grid import surface
from landscape.sweep.dist import _merge_block, blocks, resources_of
from landscape.sweep.jobs import Job, plan
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import loads, on_device

from .test_sweep_run import TINY

pytestmark = pytest.mark.usefixtures("one_thread")


def _problem():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    d = directions.random(model, k=2, seed=1)
    return model, nn.functional.cross_entropy, (x, y), d


def test_blocks_of_a_surface_give_the_whole_surface_point_for_point(tmp_path):
    model, loss, data, d = _problem()
    xs, ys = np.linspace(-1, 1, 7), np.linspace(-1, 1, 5)
    whole = surface(model, loss, data, d, x=xs, y=ys, chunk=4)
    parts = [
        surface(model, loss, data, d, x=xs, y=ys, chunk=4, points=(a, min(a + 8, 35)))
        for a in range(0, 35, 8)
    ]
    for m, grid in whole.grids.items():
        got = np.full(grid.shape, np.nan)
        for p in parts:
            got[p.done] = p.grids[m][p.done]
        assert np.array_equal(got, grid), m
    assert [int(p.done.sum()) for p in parts] == [8, 8, 8, 8, 3]
    assert [p.n_points for p in parts] == [8, 8, 8, 8, 3]


@pytest.mark.parametrize("points", [(3, 8), (0, 36), (8, 8), (-4, 4), (0.0, 8), "0:8"])
def test_a_bad_block_is_refused(points):
    model, loss, data, d = _problem()
    with pytest.raises(ValueError, match="points must be"):
        surface(
            model,
            loss,
            data,
            d,
            x=np.linspace(-1, 1, 7),
            y=np.linspace(-1, 1, 5),
            chunk=4,
            points=points,
        )


def test_a_block_merged_twice_or_overlapping_writes_no_point_twice(tmp_path):
    model, loss, data, d = _problem()
    xs, ys = np.linspace(-1, 1, 4), np.linspace(-1, 1, 4)
    full = surface(model, loss, data, d, x=xs, y=ys, chunk=4)
    dst = tmp_path / "dst.h5"
    with Store(dst, "a") as s:
        s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))

    def merge(name, points, x=xs, times=1):
        """A block computed into its own file, then merged into dst ``times`` times."""
        src = tmp_path / f"{name}.h5"
        with Store(src, "a") as s:
            s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
        surface(
            model, loss, data, d, x=x, y=ys, chunk=4, points=points, store=src, run="r", name="s"
        )
        with Store(src) as a, Store(dst, "a") as b:
            for _ in range(times):
                _merge_block(a, b, "r", "s")
        with Store(dst) as s:
            return s.record("r", "surfaces", "s")

    rec = merge("first", (0, 8), times=2)  # twice: a lost task run again
    assert rec.attrs["n_points"] == 8 and rec.arrays["done"].sum() == 8
    rec = merge("overlapping", (4, 16))
    assert rec.attrs["n_points"] == 16 and rec.arrays["done"].all()
    for m, grid in full.grids.items():
        assert np.array_equal(rec.arrays[m], grid), m
    with pytest.raises(ValueError, match="other coordinates"):  # a block of another surface
        merge("other", (0, 4), x=xs * 2)


def test_blocks_cover_the_grid_in_whole_chunks():
    sweep = loads(TINY.replace("[-1.0, 1.0, 3]", "[-1.0, 1.0, 9]"))  # 81 points
    assert blocks(sweep, "r", 2) == [(0, 32), (32, 64), (64, 81)]  # ~2 a worker, chunks of 16
    assert blocks(sweep, "r", 100) == [(i, min(i + 16, 81)) for i in range(0, 81, 16)]
    assert blocks(sweep, "r", 2, runs=8) == [(0, 81)]  # the runs are tasks enough: no split
    assert blocks(sweep, "r", 4, runs=2) == [(0, 32), (32, 64), (64, 81)]
    fixed = loads(
        TINY.replace("[-1.0, 1.0, 3]", "[-1.0, 1.0, 9]") + "[resources]\nsurface_block = 40\n"
    )
    assert blocks(fixed, "r", 2) == [(0, 48), (48, 81)]


def test_resources_and_device():
    sweep = loads(TINY + "[resources]\ncpus = 2\n")
    assert resources_of(sweep, "sgd") == {"cpus": 2, "gpus": 0}
    assert resources_of(on_device(sweep, "cuda"), "sgd") == {"cpus": 2, "gpus": 1}
    assert resources_of(loads(TINY + "[resources]\ngpus = 0.5\n"), "sgd")["gpus"] == 0.5
    assert on_device(sweep, "cuda").run("adam").spec["train"]["device"] == "cuda"
    for bad, match in (
        ("cpus = 0", "resources.cpus: must be an integer >= 1"),
        ("gpus = -1", "resources.gpus: must be a number >= 0"),
        ("surface_block = 2.5", "resources.surface_block: must be an integer"),
        ("memory = 3", "memory"),
    ):
        with pytest.raises((ValueError, TypeError), match=match):
            loads(TINY + f"[resources]\n{bad}\n")


def test_the_device_is_not_part_of_what_makes_a_complete_run(tmp_path):
    spec = TINY.split("[probes]")[0]
    out = tmp_path / "d.h5"
    run_sweep(loads(spec), out)
    # the same sweep, asked for on another device: nothing left to do, no "another spec"
    assert all(j.empty for j in plan(on_device(loads(spec), "cuda:3"), out))


def test_executor_options_are_checked(tmp_path, monkeypatch, capsys):
    sweep = loads(TINY)
    with pytest.raises(ValueError, match="executor must be one of local, ray"):
        run_sweep(sweep, tmp_path / "a.h5", executor="dask")
    with pytest.raises(ValueError, match="an address is for executor='ray'"):
        run_sweep(sweep, tmp_path / "a.h5", address="auto")
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ValueError, match=r"needs Ray: pip install 'landscape\[ray\]'"):
        run_sweep(sweep, tmp_path / "b.h5", executor="ray")
    with Store(tmp_path / "b.h5") as s:
        assert s.claimed() is None and s.runs() == []  # the claim was released
    spec = tmp_path / "t.toml"
    spec.write_text(TINY)
    assert (
        main(
            [
                "sweep",
                str(spec),
                "--out",
                str(tmp_path / "c.h5"),
                "--executor",
                "ray",
                "--no-report",
                "--quiet",
            ]
        )
        == 2
    )
    assert (
        capsys.readouterr().err.strip()
        == "landscape: error: sweep: the Ray executor needs Ray: pip install 'landscape[ray]'"
    )


def test_a_claim_refuses_other_writers_and_lapses_with_its_process(tmp_path):
    path = tmp_path / "c.h5"
    with Store(path, "a") as s:
        token = s.claim("landscape sweep 'x'")
        assert s.writer()["what"] == "landscape sweep 'x'"
    with Store(path, "a") as s:  # this process may go on writing
        s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
        s.set_final("r", np.ones(1), status="complete")
    other = f"from landscape.store import Store\nStore({str(path)!r}, 'a')\n"
    done = subprocess.run([sys.executable, "-c", other], capture_output=True, text=True)
    assert (
        "FileBusyError" in done.stderr
        and "is being written by landscape sweep 'x' (process" in done.stderr
    )
    with Store(path, "a") as s:
        s.release("not-mine")  # someone else's token: the claim stays
        assert s.claimed() is not None
        s.release(token)
        assert s.claimed() is None
    assert subprocess.run([sys.executable, "-c", other]).returncode == 0
    # a claim left by a killed process is ignored
    claimer = (
        "import os, signal\nfrom landscape.store import Store\n"
        f"s = Store({str(path)!r}, 'a'); s.claim('landscape sweep y'); s.commit()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", claimer])
    with Store(path) as s:
        assert s.claimed()["what"] == "landscape sweep y" and s.writer() is None
    assert subprocess.run([sys.executable, "-c", other]).returncode == 0


def test_a_claim_from_another_host_needs_take_over(tmp_path):
    path = tmp_path / "h.h5"
    with Store(path, "a") as s:
        s.claim("landscape sweep z")
        s._h5.attrs["writer"] = s._h5.attrs["writer"].replace('"host": "', '"host": "elsewhere-')
    code = (
        "import sys\nfrom landscape.store import Store\n"
        f"Store({str(path)!r}, 'a', take_over=len(sys.argv) > 1).close()\n"
    )
    refused = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "on host elsewhere-" in refused.stderr and "--take-over" in refused.stderr
    assert subprocess.run([sys.executable, "-c", code, "take"]).returncode == 0


def test_a_snapshot_reader_does_not_hold_the_file(tmp_path):
    path = tmp_path / "s.h5"
    with Store(path, "a") as s:
        s.create_run("r", names=["w"], shapes=[(2,)], init=np.zeros(2))
    with Store(path, snapshot=True) as snap:
        with Store(path, "a") as w:  # a writer gets in at once while the snapshot is open
            w.create_run("q", names=["w"], shapes=[(2,)], init=np.ones(2))
        assert snap.runs() == ["r"]  # the snapshot is as it was
        assert np.array_equal(snap.params("r", "init"), np.zeros(2))
    with Store(path), pytest.raises(FileBusyError):
        Store(path, "a")  # a plain reader does hold it
    with Store(path) as s:
        assert s.runs() == ["r", "q"]


def test_job_descriptions():
    assert Job("sgd", surfaces=("r",), block=(16, 32)).describe() == "surfaces/r[16:32]"


def test_a_failing_task_on_local_workers_stops_the_sweep_with_its_own_error(tmp_path):
    bad = loads(TINY.replace("hessian = {k = 2}", 'hessian = {k = 2, which = "middle"}'))
    with pytest.raises(ValueError, match="probe 'hessian"):
        run_sweep(bad, tmp_path / "bad.h5", workers=2)
    with Store(tmp_path / "bad.h5") as s:
        assert s.claimed() is None and s.runs() == []


def test_a_claim_waits_for_a_live_writer_of_a_run_and_ignores_a_reused_pid(tmp_path):
    path = tmp_path / "t.h5"
    # a live process that is not a writer: it waits on its stdin until the test kills it
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE
    )
    try:
        with Store(path, "a") as s:
            s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
            s.set_attrs("r", {"writer_pid": sleeper.pid})  # as if `landscape train` wrote it
            with pytest.raises(
                FileBusyError, match=f"run 'r' is being written by process {sleeper.pid}"
            ):
                s.claim("landscape sweep x")
            s.set_attrs("r", {"status": "complete"})
            s.claim("landscape sweep x")
            # the claim's pid now belongs to another process (the sleeper): not its writer
            held = s.claimed()
            s._h5.attrs["writer"] = s._h5.attrs["writer"].replace(
                f'"pid": {held["pid"]}', f'"pid": {sleeper.pid}'
            )
            assert s.claimed()["pid"] == sleeper.pid
        code = f"from landscape.store import Store\nStore({str(path)!r}, 'a').close()\n"
        assert subprocess.run([sys.executable, "-c", code]).returncode == 0
        with Store(path) as s:
            assert s.writer() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        sleeper.stdin.close()


def test_a_resumed_surface_goes_on_along_the_directions_it_was_begun_with(tmp_path):
    from landscape.surfaces.stored import surface_of_run

    spec = loads(TINY.split("[probes]")[0])
    out = tmp_path / "s.h5"
    run_sweep(spec, out)
    xs = np.linspace(-1, 1, 5)
    first = surface_of_run(out, "sgd", x=xs, y=xs, name="r", test=False, points=(0, 16))
    bent = first.directions * np.array([[1.5], [0.5]], dtype=first.directions.dtype)
    with Store(out, "a") as s:  # as if made elsewhere, in other last bits
        ds = s._run("sgd")["surfaces/r/directions"]
        ds[...] = bent
        checksum.refresh(ds)  # a legitimate writer keeps the checksum
    rest = surface_of_run(out, "sgd", x=xs, y=xs, name="r", test=False, points=(16, 25))
    assert np.array_equal(rest.directions, bent) and rest.done.all()
    from landscape.train.spec import rebuild

    model, split, loss = rebuild(out, "sgd")
    direct = surface(model, loss, split.train, torch.from_numpy(bent), x=xs, y=xs)
    late = ~first.done
    assert np.array_equal(rest.train_loss[late], direct.train_loss[late])
    # a sweep whose grid no longer fits the stored surface is refused up front
    bigger = loads(TINY.replace("[-1.0, 1.0, 3]", "[-1.0, 1.0, 5]"))
    run_sweep(bigger, out)  # (a 5 x 5 grid named r: the one made above)
    smaller = loads(TINY)
    jobs = [j for j in plan(smaller, out) if not j.empty]
    from landscape.sweep.dist import distribute

    class Never:  # an executor never asked to run anything: the plan is refused first
        slots = 2

    with pytest.raises(ValueError, match="holds a surface 'r' of 25 points, the spec asks for 9"):
        distribute(smaller, str(out), jobs + [Job("sgd", surfaces=("r",))], Never())


def test_tasks_on_stored_runs_ask_for_the_device_they_were_trained_on():
    sweep = loads(TINY)
    assert resources_of(sweep, "sgd", "cuda:0") == {"cpus": 1, "gpus": 1}
    assert resources_of(on_device(sweep, "cuda"), "sgd", "cpu") == {"cpus": 1, "gpus": 0}
