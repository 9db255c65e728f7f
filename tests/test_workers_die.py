"""The worker processes of a sweep end with it, even when it is killed with SIGKILL.

``landscape sweep --workers 2`` runs under tests/killpoints.py, which stops it between two
write sessions; once both worker processes exist, the sweep's process is killed with SIGKILL
(no clean-up of its own) and the workers must then end by themselves
(:func:`landscape.sweep.executors.die_with_parent`). The test waits for their exit (an event:
a pidfd of each becomes readable when it ends); ``WAIT`` only caps a wait that a worker left
alive would make endless.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import WAIT

KILLPOINTS = Path(__file__).resolve().parent / "killpoints.py"
SPEC = """
name = "orphans"
[base]
model = {name = "mlp", width = 4}
data = {name = "gaussians", n_train = 32, n_test = 16}
train = {max_steps = 3, batch_size = 16, seed = 0}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}, {name = "momentum", lr = 0.1}]
[probes]
hessian = {k = 1}
"""

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process table from /proc"
)


def _stat(pid: int) -> tuple[int, str] | None:
    """``(parent pid, state)`` of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0]


def _workers(parent: int) -> list[int]:
    """The multiprocessing workers that ``parent`` started (alive, not zombies)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _stat(int(entry))
        if stat is None or stat[0] != parent or stat[1] == "Z":
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            out.append(int(entry))
    return out


def _alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[1] not in ("Z", "X")


def _wait_for_exit(pid: int, timeout: float) -> None:
    """Return once process ``pid`` (not a child of ours) has ended, or after ``timeout`` s."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:  # already gone
        return
    try:
        select.select([fd], [], [], timeout)  # readable when the process ends
    finally:
        os.close(fd)


def test_killed_sweep_takes_its_workers_with_it(tmp_path):
    spec = tmp_path / "orphans.toml"
    spec.write_text(SPEC)
    argv = [sys.executable, str(KILLPOINTS), "--pause-between", "--", "sweep", str(spec)]
    argv += ["--out", str(tmp_path / "o.h5"), "--workers", "2", "--quiet", "--no-report"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdin is not None and p.stdout is not None
    workers: list[int] = []
    try:
        for line in p.stdout:  # one pause after each write session of the sweep's process
            if not line.startswith("killpoints: between"):
                continue
            workers = _workers(p.pid)
            if len(workers) == 2:
                break
            p.stdin.write("\n")
            p.stdin.flush()
        assert len(workers) == 2, "the sweep ended before both workers were seen"
        assert all(_alive(w) for w in workers)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=WAIT)
        for w in workers:
            _wait_for_exit(w, WAIT)
        assert not [w for w in workers if _alive(w)], "workers outlived the killed sweep"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        for w in workers:  # never leave one behind, even when the test fails
            if _alive(w):
                os.kill(w, signal.SIGKILL)
