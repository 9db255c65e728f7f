"""Kill anywhere, resume identically; readers beside a running sweep; a second writer refused.

A sweep (training, along-training and end-of-run probes, a surface, init-to-final and
between-run paths) is killed with SIGKILL 20 times at seeded points of its own progress,
resumed each time, and its final file holds exactly the numbers of an uninterrupted sweep:
after every kill the file is readable, holds no run twice and no run the spec lacks. The same
on Ray with workers killed under it. Readers (``landscape info``, ``report``, ``plot``) beside
a running sweep read its last commit, or are told the file is busy while a commit is under
way; a second writer is refused; the sweep's numbers are unchanged by them.

Nothing here depends on the speed of the machine: a process is killed or paused when it
reaches a chosen point of its work (the N-th time it reaches a window of a commit, or the end
of its K-th write session; tests/killpoints.py), never after some time; every wait is for an
event, with a timeout (``WAIT``) that only a stuck process reaches. The stopped sweeps are
forked from one ``killpoints.py --serve`` (the ``killpoints`` fixture): each in a process of
its own, killed as a fresh process is, without a fresh interpreter's seconds of imports. The
sweep is small (few steps, a small data set) but passes through every kind of job and many
commits.
"""

from __future__ import annotations

import collections
import importlib.util
import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store import journal
from landscape.store.file import FileBusyError, Store, StoreError
from landscape.sweep.jobs import plan
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import loads, on_device

from .conftest import WAIT
from .filecompare import differences
from .killpoints import POINTS
from .ray_kills import ENV_VAR

SPEC = """
name = "killed"
[base]
model = {name = "mlp", width = 16}
data = {name = "gaussians", n_train = 64, n_test = 32}
train = {epochs = 8, batch_size = 16, seed = 0, snapshot_every = 4}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
[probes]
hessian = {k = 2}
sharpness = [{kind = "worst", adaptive = true, rho = 0.5, steps = 3}]
[along]
lambda_max = {every = 8}
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
ENV.pop("LANDSCAPE_CRASH_AT", None)
KILLS = 20
KILLPOINTS = Path(__file__).resolve().with_name("killpoints.py")
REPO = KILLPOINTS.parent.parent


def _command(spec, out):
    """The plain ``landscape sweep`` command, as a user runs it."""
    return [
        sys.executable,
        "-m",
        "landscape.cli",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--quiet",
        "--no-report",
    ]


def _stopped(spec, out, *options):
    """The arguments of tests/killpoints.py: the sweep with ``options`` (--kill, --pause, ...)."""
    return [*options, "--", "sweep", str(spec), "--out", str(out), "--quiet", "--no-report"]


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
                surfaces = []
                for name in info.surfaces:
                    done = s.record(run, "surfaces", name).arrays["done"]
                    assert done.size == 36
                    surfaces.append(int(done.sum()))
                progress.append(
                    (
                        run,
                        info.status,
                        info.n_history,
                        len(info.probes),
                        tuple(surfaces),
                        len(info.paths),
                    )
                )
            return (tuple(progress), len(s.compares()))
    except StoreError as err:  # killed before its first commit: nothing was written
        assert "is empty" in str(err), err
        return ("empty",)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, killpoints):
    """The sweep uninterrupted, and the windows of a commit it passes.

    The plain command's file (a fresh process); how many times the same sweep run by
    tests/killpoints.py reaches each window of a commit, and the file that run wrote.
    """
    d = tmp_path_factory.mktemp("reference")
    spec, out = d / "killed.toml", d / "ref.h5"
    spec.write_text(SPEC)
    done = subprocess.run(
        _command(spec, out), env=ENV, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode == 0, done.stderr
    log, counted, err = d / "windows.log", d / "counted.h5", d / "stderr.txt"
    assert killpoints.run(*_stopped(spec, counted, "--log", str(log)), stderr=err) == 0, (
        err.read_text()
    )
    counts = collections.Counter(log.read_text().split())
    assert set(counts) == set(POINTS), counts
    return spec, out, counts, counted


def test_the_stopped_sweep_uninterrupted_gives_the_numbers_of_the_plain_command(reference):
    """The numbers of a sweep run by tests/killpoints.py are those of the plain command.

    Its clock (every clock-paced flush fires) changes when the sweep writes, never what.
    """
    _, ref, counts, counted = reference
    assert differences(ref, counted) == []
    assert counts["committed"] > 20  # the flushes: many states for the kills to land in


def test_killed_twenty_times_the_sweep_ends_with_the_numbers_of_an_uninterrupted_one(
    reference, killpoints, tmp_path
):
    """Twenty kills at seeded points of the sweep's progress; then the uninterrupted numbers.

    Kill k goes to the window ``POINTS[k % 5]`` (so each window of a commit gets 4 kills),
    at its N-th passage: N = 1 for the first five (the sweep's first commits, from a new file),
    then drawn uniformly from the passages of a whole sweep. Where each kill lands, and so the
    states visited, follow from the seed and the sweep's own work alone (the same list on
    every machine and load). An attempt that finishes before its N-th passage (it resumed with
    less than that left to do) must hold the numbers of the uninterrupted sweep; then the file
    starts over.
    """
    spec, ref, counts, _ = reference
    names = [r.name for r in loads(SPEC).runs]
    rng = np.random.default_rng(20261127)
    out, log, err = tmp_path / "killed.h5", tmp_path / "windows.log", tmp_path / "stderr.txt"
    kills, rounds = [], 0
    while len(kills) < KILLS:
        point = POINTS[len(kills) % len(POINTS)]
        n = 1 if len(kills) < len(POINTS) else int(rng.integers(1, counts[point] + 1))
        log.unlink(missing_ok=True)
        code = killpoints.run(
            *_stopped(spec, out, "--log", str(log), "--kill", f"{point}:{n}"), stderr=err
        )
        seen = log.read_text().split() if log.exists() else []
        if code == -signal.SIGKILL:  # where it was told, and nowhere before
            assert seen and seen[-1] == point and seen.count(point) == n, (point, n, seen)
            kills.append((point, n, _state(out, names)))
            continue
        # it had fewer than n passages of the window left to go: it finished, exactly
        assert code == 0, err.read_text()
        assert seen.count(point) < n
        assert differences(ref, out) == []
        out.unlink()
        rounds += 1
    done = subprocess.run(
        _command(spec, out), env=ENV, capture_output=True, text=True, timeout=WAIT
    )
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
    # the kills landed in every window of a commit and at many points of the work: before
    # the first commit, while a run trained, with every run trained but its probes, surface
    # or paths missing, ...
    assert collections.Counter(p for p, _, _ in kills) == {p: KILLS // len(POINTS) for p in POINTS}
    print(f"{rounds} round(s) to the end; the kills (window, passage, state):", *kills, sep="\n")
    states = {state for _, _, state in kills}
    assert kills[0][2] == ("empty",), kills[0]  # in the first commit of a new file
    runs = [
        dict((r[0], r[1:]) for r in state[0]) for state in states if isinstance(state[0], tuple)
    ]
    assert any(any(v[0] != "complete" for v in r.values()) for r in runs), states
    assert any(
        len(r) == len(names) and all(v[0] == "complete" for v in r.values()) for r in runs
    ), states
    assert len(states) >= 8, (rounds, kills)


# ----------------------------------------------------------------------------- readers
def test_readers_beside_a_running_sweep_and_a_second_writer_refused(
    reference, killpoints, tmp_path, capsys, monkeypatch, one_thread
):
    """Readers and would-be writers at each stop of a sweep; every count exact.

    The sweep stops after each of its write sessions (the file unlocked) and once in the
    middle of a commit (the file locked, its journal on disk); at each stop the readers and
    would-be writers run, and then it goes on. What each of them sees follows from where the
    sweep stopped, so every count below is exact.
    """
    spec, ref, counts, _ = reference
    out, errors = tmp_path / "read.h5", tmp_path / "stderr.txt"
    inside_at = counts["journal-written"] // 2
    killpoints.start(
        *_stopped(spec, out, "--pause-between", "--pause", f"journal-written:{inside_at}"),
        stderr=errors,
    )
    stops, reads, refused, plotted, released, inside = 0, 0, 0, 0, None, 0
    refusal = "being written by landscape sweep 'killed'"
    # where the sweep waits: ["between", K] after its K-th write session, or ["inside",
    # POINT, N]; its exit code once it has ended
    try:
        while not isinstance(stop := killpoints.next(), int):
            assert released is None, f"the sweep wrote on after releasing the file: {stop}"
            if stop[0] == "inside":  # the file locked mid-commit: readers are told it is busy
                assert stop[1:] == ["journal-written", str(inside_at)]
                with pytest.raises(FileBusyError, match="is being written by another process"):
                    Store(out, timeout=0)
                with pytest.raises(FileBusyError, match="is open in another process"):
                    Store(out, "a")
                ticks = itertools.count()  # a clock that jumps: the reader's wait ends at once
                with monkeypatch.context() as m:
                    m.setattr(journal.time, "monotonic", lambda t=ticks: 3600.0 * next(t))
                    assert main(["info", str(out)]) == 2
                err = capsys.readouterr().err.strip()
                assert len(err.splitlines()) == 1 and "is being written by another" in err, err
                inside += 1
            else:  # between two write sessions: readers read the last commit
                stops += 1
                assert stop == ["between", str(stops)]
                with Store(out) as s:
                    runs, writer = s.runs(), s.writer()
                    sgd_done = "sgd" in runs and s.info("sgd").status == "complete"
                assert main(["info", str(out)]) == 0
                said = capsys.readouterr().out
                assert all(run in said for run in runs), (runs, said)
                assert (
                    main(["report", str(out), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
                ), capsys.readouterr().err
                capsys.readouterr()
                reads += 2
                if sgd_done and not plotted:
                    assert (
                        main(
                            [
                                "plot",
                                str(out),
                                "history",
                                "--run",
                                "sgd",
                                "--out",
                                str(tmp_path / "h.png"),
                            ]
                        )
                        == 0
                    ), capsys.readouterr().err
                    capsys.readouterr()
                    plotted += 1
                if writer is None:  # its last session released the claim: it is done
                    released = stops
                else:
                    for args in (
                        ["sweep", str(spec), "--out", str(out), "--quiet", "--no-report"],
                        [
                            "train",
                            str(out),
                            "--run",
                            "intruder",
                            "--data",
                            "gaussians",
                            "--model",
                            "mlp",
                            "--steps",
                            "2",
                            "--quiet",
                        ],
                    ):
                        assert main(args) == 2, args
                        err = capsys.readouterr().err.strip()
                        assert len(err.splitlines()) == 1 and refusal in err, err
                        refused += 1
            killpoints.send("go")
    finally:  # a failed check leaves no sweep waiting in the server
        killpoints.stop()
    assert stop == 0, errors.read_text()
    print(f"{stops} stops between write sessions, {inside} inside a commit")
    assert inside == 1 and plotted == 1 and released == stops
    assert reads == 2 * stops and refused == 2 * (stops - 1) and stops > 20, (stops, refused)
    with Store(out) as s:
        assert "intruder" not in s.runs() and s.claimed() is None
    assert differences(ref, out) == []
    # once the sweep is over, the file is anyone's again
    assert (
        main(
            [
                "train",
                str(out),
                "--run",
                "after",
                "--data",
                "gaussians",
                "--model",
                "mlp",
                "--steps",
                "2",
                "--quiet",
            ]
        )
        == 0
    )


# ----------------------------------------------------------------------------- Ray
needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None, reason="Ray is not installed (pip install '.[ray]')"
)


@pytest.fixture(scope="module")
def ray_kills(tmp_path_factory):
    """The folder of kill tokens that Ray workers take (tests/ray_kills.py)."""
    return tmp_path_factory.mktemp("ray_kills")


@pytest.fixture(scope="module")
def local_ray(ray_kills):
    import ray  # noqa: PLC0415 - an optional dependency (the tests skip without it)

    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        object_store_memory=200 * 2**20,
        runtime_env={
            "worker_process_setup_hook": "tests.ray_kills.install",
            "env_vars": {"PYTHONPATH": path, ENV_VAR: str(ray_kills)},
        },
    )
    yield
    ray.shutdown()


@needs_ray
def test_ray_gives_the_numbers_of_in_process_and_survives_lost_workers(
    reference, local_ray, ray_kills, tmp_path, one_thread
):
    """Ray's numbers are those of the sweep in-process, with two workers lost mid-task.

    Two workers die with SIGKILL in the middle of a task (the first two to reach the window of
    a commit their token names, in their task's file); Ray runs those tasks again.
    """
    _, ref, _, _ = reference
    out = tmp_path / "ray.h5"
    tokens = ["committed.1", "half-applied.2"]
    for token in tokens:
        (ray_kills / token).touch()
    try:
        done = run_sweep(loads(SPEC), out, executor="ray")
    finally:
        left = sorted(p.name for p in ray_kills.iterdir())
        for p in ray_kills.iterdir():
            p.unlink()
    killed = [name for name in left if name.startswith("killed.")]
    assert len(killed) == 2 and not set(tokens) & set(left), left
    assert sum(1 for j in done if j.block) == 6  # 36 points in blocks of 16, two runs
    assert differences(ref, out) == []
    with Store(out) as s:
        assert s.runs() == [r.name for r in loads(SPEC).runs]
        for run in s.runs():
            rec = s.record(run, "surfaces", "r")
            assert rec.attrs["n_points"] == 36 and rec.arrays["done"].all()


@needs_ray
def test_ray_task_errors_come_back_as_themselves(local_ray, tmp_path, one_thread):
    bad = loads(SPEC.replace("hessian = {k = 2}", 'hessian = {k = 2, which = "middle"}'))
    with pytest.raises(ValueError, match="probe 'hessian"):
        run_sweep(bad, tmp_path / "bad.h5", executor="ray")
    with Store(tmp_path / "bad.h5") as s:
        assert s.claimed() is None


@needs_ray
def test_ray_refuses_what_the_cluster_cannot_give(local_ray, tmp_path, one_thread):
    with pytest.raises(ValueError, match=r"asks for 1 GPU\(s\) but the Ray cluster has 0"):
        run_sweep(on_device(loads(SPEC), "cuda"), tmp_path / "gpu.h5", executor="ray")
    with pytest.raises(ValueError, match=r"asks for 3 CPU\(s\) but the Ray cluster has 2"):
        run_sweep(loads(SPEC + "cpus = 3\n"), tmp_path / "cpu.h5", executor="ray")
