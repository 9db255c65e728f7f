"""A `landscape train` process killed with SIGKILL mid-run.

The file keeps its complete runs, reports the killed one as incomplete, and the same command
run again redoes it.

The kill comes at a point of the run's own progress (the end of its third commit: the run
created, then its records flushed twice; tests/killpoints.py), never after some time, so the
test does the same on a fast machine and a loaded one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from landscape.store.file import Store

ARGS = ["--data", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "0.05", "--quiet"]
KILLPOINTS = Path(__file__).resolve().with_name("killpoints.py")
WAIT = 600  # seconds: only a stuck process takes this long; never a measure of progress


def _train(path, run, *extra):
    return ["train", str(path), "--run", run, *ARGS, *extra]


def test_killed_training_is_reported_incomplete_and_redone(tmp_path):
    path, log = tmp_path / "runs.h5", tmp_path / "windows.log"
    done = subprocess.run(
        [sys.executable, "-m", "landscape.cli", *_train(path, "first", "--steps", "30")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    with Store(path) as s:
        before = s.params("first", "final")
    # 200 steps: if the kill never came, the run would end (and the test fail), not hang
    killed = subprocess.run(
        [
            sys.executable,
            str(KILLPOINTS),
            "--log",
            str(log),
            "--kill",
            "committed:3",
            "--",
            *_train(path, "killed", "--steps", "200"),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert log.read_text().split().count("committed") == 3
    with Store(path) as s:
        assert s.info("first").status == "complete"
        assert np.array_equal(s.params("first", "final"), before)
        assert s.info("killed").status == "incomplete"
        assert s.runs() == ["first", "killed"]
        # what it committed before the kill is kept: its first records
        assert s.history("killed")["step"][0] == 0 and len(s.trajectory_steps("killed"))
    info = subprocess.run(
        [sys.executable, "-m", "landscape.cli", "info", str(path)],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert info.returncode == 0 and "incomplete" in info.stdout
    again = subprocess.run(
        [sys.executable, "-m", "landscape.cli", *_train(path, "killed", "--steps", "20")],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert again.returncode == 0, again.stderr
    with Store(path) as s:
        assert s.info("killed").status == "complete"
        assert s.info("killed").attrs["steps"] == 20
        assert s.runs() == ["first", "killed"]
