"""Kill anywhere, resume identically: a sweep (training, along-training and end-of-run probes,
a surface, init-to-final and between-run paths) is killed with SIGKILL at 20 seeded random
moments across repeated attempts, resumed each time, and its final file holds exactly the
numbers of an uninterrupted sweep: after every kill the file is readable, holds no run twice
and no run the spec lacks. The same on Ray with workers killed under it. Readers (``landscape
info``, ``report``, ``plot``) beside a running sweep read its last commit or say the file is
busy; a second writer is refused; the sweep's numbers are unchanged by them."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from landscape.store.file import Store, StoreError
from landscape.sweep.spec import loads
from landscape.sweep.run import plan

from .filecompare import differences

SPEC = """
name = "killed"
[base]
model = {name = "mlp", width = 16}
data = {name = "gaussians", n_train = 200, n_test = 100}
train = {epochs = 30, batch_size = 16, seed = 0, snapshot_every = 20}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
[probes]
hessian = {k = 2}
sharpness = [{kind = "worst", adaptive = true, rho = 0.5, steps = 3}]
[along]
lambda_max = {every = 40}
[surfaces.r]
x = [-1.0, 1.0, 6]
y = [-1.0, 1.0, 6]
[paths]
init_to_final = true
between = "all"
points = 7
[resources]
surface_block = 16
"""

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
KILLS = 20


def _command(spec, out):
    return [sys.executable, "-m", "landscape.cli", "sweep", str(spec), "--out", str(out),
            "--quiet", "--no-report"]


def _state(out, names) -> tuple:
    """What a killed sweep left: checked readable and sound; a summary of its progress."""
    if not out.exists():
        return ("no file",)
    try:
        with Store(out) as s:
            runs = s.runs()
            assert len(runs) == len(set(runs)) and set(runs) <= set(names), runs
            progress = []
            for run in runs:
                info = s.info(run)
                progress.append((run, info.status, len(info.probes), len(info.surfaces),
                                 len(info.paths)))
                for name in info.surfaces:
                    done = s.record(run, "surfaces", name).arrays["done"]
                    assert done.size == 36
            return (tuple(progress), len(s.compares()))
    except StoreError as err:  # killed before its first commit: nothing was written
        assert "is empty" in str(err), err
        return ("empty",)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    d = tmp_path_factory.mktemp("reference")
    spec, out = d / "killed.toml", d / "ref.h5"
    spec.write_text(SPEC)
    start = time.monotonic()
    done = subprocess.run(_command(spec, out), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    return spec, out, time.monotonic() - start


def test_killed_twenty_times_the_sweep_ends_with_the_numbers_of_an_uninterrupted_one(
        reference, tmp_path):
    spec, ref, seconds = reference
    names = [r.name for r in loads(SPEC).runs]
    rng = np.random.default_rng(20261127)
    out = tmp_path / "killed.h5"
    kills, rounds, states = 0, 0, set()
    while kills < KILLS:
        proc = subprocess.Popen(_command(spec, out), env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        moment = float(rng.uniform(0.2, seconds))
        try:
            _, err = proc.communicate(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            kills += 1
            states.add(_state(out, names))
            continue
        # the sweep finished before this attempt's moment: that round must be exact
        assert proc.returncode == 0, err
        assert differences(ref, out) == []
        out.unlink()
        rounds += 1
    done = subprocess.run(_command(spec, out), env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert all(j.empty for j in plan(loads(SPEC), out))
    with Store(out) as s:
        assert s.runs() == names
        assert all(s.info(r).status == "complete" for r in names)
        assert s.claimed() is None
        for run in names:  # every point once: counted as many times as the grid has points
            rec = s.record(run, "surfaces", "r")
            assert rec.attrs["n_points"] == rec.arrays["done"].sum() == 36
    assert differences(ref, out) == []
    # the kills landed at many different points of the work, not all at start-up
    assert len(states) >= 4, states


# ----------------------------------------------------------------------------- readers
def test_readers_beside_a_running_sweep_and_a_second_writer_refused(tmp_path, capsys,
                                                                     one_thread):
    from landscape.cli.main import main
    from landscape.sweep.run import run_sweep

    longer = SPEC.replace("epochs = 30", "epochs = 120")  # time for several rounds of reads
    spec, ref, out = tmp_path / "longer.toml", tmp_path / "ref.h5", tmp_path / "read.h5"
    spec.write_text(longer)
    run_sweep(loads(longer), ref)  # uninterrupted, in this process, one thread
    proc = subprocess.Popen(_command(spec, out), env=ENV, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    reads, busy, refused, plotted, late = 0, 0, 0, 0, []
    refusal = ("being written by landscape sweep 'killed'", "open in another process")
    try:
        while proc.poll() is None:
            if not out.exists():
                time.sleep(0.05)
                continue
            for args in (["info", str(out)],
                         ["report", str(out), "--out", str(tmp_path / "rep"), "--no-figures"]):
                rc = main(args)
                err = capsys.readouterr().err.strip()
                if rc == 0:
                    reads += 1
                else:  # one line that says why
                    assert len(err.splitlines()) == 1 and ("busy" in err or "being written"
                                                           in err or "empty" in err), err
                    busy += 1
            with Store(out) as s:
                first_done = "sgd" in s.runs() and s.info("sgd").status == "complete"
            if first_done and not plotted:
                rc = main(["plot", str(out), "history", "--run", "sgd",
                           "--out", str(tmp_path / "h.png")])
                assert rc == 0, capsys.readouterr().err
                plotted += 1
            for args in (["sweep", str(spec), "--out", str(out), "--quiet", "--no-report"],
                         ["train", str(out), "--run", "intruder", "--data", "gaussians",
                          "--model", "mlp", "--steps", "2", "--quiet"]):
                with Store(out) as s:
                    if s.writer() is None:  # the sweep is letting go: nothing to refuse
                        break
                rc = main(args)
                said = capsys.readouterr()
                err = said.err.strip()
                if rc == 0:  # only if the sweep let go between our look and our try
                    assert proc.wait(timeout=10) == 0
                    late.append(args[0])
                    break
                assert rc == 2 and len(err.splitlines()) == 1, (rc, err)
                assert any(r in err for r in refusal), err
                refused += 1
            time.sleep(0.2)
        assert proc.wait() == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert reads >= 3 and refused >= 2 and plotted == 1, (reads, busy, refused, plotted)
    with Store(out) as s:
        assert ("intruder" in s.runs()) == ("train" in late) and s.claimed() is None
    assert [d for d in differences(ref, out) if "/intruder/" not in d] == []
    # once the sweep is over, the file is anyone's again
    assert main(["train", str(out), "--run", "after", "--data", "gaussians", "--model", "mlp",
                 "--steps", "2", "--quiet"]) == 0


# ----------------------------------------------------------------------------- Ray
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="Ray is not installed (pip install '.[ray]')")


@pytest.fixture(scope="module")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             object_store_memory=200 * 2**20)
    yield
    ray.shutdown()


def _tasks_running(title: str = "ray::work") -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if f.read().split(b"\0")[0].decode(errors="replace").startswith(title):
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


@needs_ray
def test_ray_gives_the_numbers_of_in_process_and_survives_lost_workers(
        reference, local_ray, tmp_path, one_thread):
    import threading

    from landscape.sweep.run import run_sweep

    _, ref, _ = reference
    out = tmp_path / "ray.h5"
    killed: list[int] = []
    stop = threading.Event()

    def killer():  # SIGKILL a worker in the middle of a task, twice
        while not stop.is_set() and len(killed) < 2:
            for pid in _tasks_running():
                time.sleep(0.3)
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)
                except ProcessLookupError:
                    pass
                break
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        done = run_sweep(loads(SPEC), out, executor="ray")
    finally:
        stop.set()
        thread.join()
    assert len(killed) == 2
    assert sum(1 for j in done if j.block) == 6  # 36 points in blocks of 16, two runs
    assert differences(ref, out) == []
    with Store(out) as s:
        assert s.runs() == [r.name for r in loads(SPEC).runs]
        for run in s.runs():
            rec = s.record(run, "surfaces", "r")
            assert rec.attrs["n_points"] == 36 and rec.arrays["done"].all()


@needs_ray
def test_ray_task_errors_come_back_as_themselves(local_ray, tmp_path, one_thread):
    from landscape.sweep.run import run_sweep

    bad = loads(SPEC.replace("hessian = {k = 2}", "hessian = {k = 0}"))
    with pytest.raises(ValueError, match="probe 'hessian"):
        run_sweep(bad, tmp_path / "bad.h5", executor="ray")
    with Store(tmp_path / "bad.h5") as s:
        assert s.claimed() is None


@needs_ray
def test_ray_refuses_what_the_cluster_cannot_give(local_ray, tmp_path, one_thread):
    from landscape.sweep.spec import on_device
    from landscape.sweep.run import run_sweep

    with pytest.raises(ValueError, match=r"asks for 1 GPU\(s\) but the Ray cluster has 0"):
        run_sweep(on_device(loads(SPEC), "cuda"), tmp_path / "gpu.h5", executor="ray")
    with pytest.raises(ValueError, match=r"asks for 3 CPU\(s\) but the Ray cluster has 2"):
        run_sweep(loads(SPEC + "cpus = 3\n"), tmp_path / "cpu.h5", executor="ray")
