"""A `landscape train` process killed with SIGKILL mid-run.

The file keeps its complete runs, reports the killed one as incomplete, and the same command
run again redoes it.

The kill comes at a point of the run's own progress (the end of its third commit: the run
created, then its records flushed twice; tests/killpoints.py), never after some time, so the
test does the same on a fast machine and a loaded one. The killed command runs in a process of
its own (forked by the ``killpoints`` fixture); the others run in this one.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store.file import Store

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = ["--data", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "0.05", "--quiet"]


def _train(path, run, *extra):
    return ["train", str(path), "--run", run, *ARGS, *extra]


def test_killed_training_is_reported_incomplete_and_redone(killpoints, tmp_path, capsys):
    path, log, err = tmp_path / "runs.h5", tmp_path / "windows.log", tmp_path / "stderr.txt"
    assert main(_train(path, "first", "--steps", "30")) == 0
    with Store(path) as s:
        before = s.params("first", "final")
    # 200 steps: if the kill never came, the run would end (and the test fail), not hang
    argv = _train(path, "killed", "--steps", "200")
    code = killpoints.run("--log", str(log), "--kill", "committed:3", "--", *argv, stderr=err)
    assert code == -signal.SIGKILL, err.read_text()
    assert log.read_text().split().count("committed") == 3
    with Store(path) as s:
        assert s.info("first").status == "complete"
        assert np.array_equal(s.params("first", "final"), before)
        assert s.info("killed").status == "incomplete"
        assert s.runs() == ["first", "killed"]
        # what it committed before the kill is kept: its first records
        assert s.history("killed")["step"][0] == 0 and len(s.trajectory_steps("killed"))
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    assert "incomplete" in capsys.readouterr().out
    assert main(_train(path, "killed", "--steps", "20")) == 0
    with Store(path) as s:
        assert s.info("killed").status == "complete"
        assert s.info("killed").attrs["steps"] == 20
        assert s.runs() == ["first", "killed"]
