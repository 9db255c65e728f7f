"""A `landscape train` process killed with SIGKILL mid-run: the file keeps its complete runs,
reports the killed one as incomplete, and the same command run again redoes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from landscape.store.file import Store

ARGS = ["--data", "digits", "--model", "mlp", "--optimizer", "sgd", "--lr", "0.05",
        "--quiet"]


def _train(path, run, *extra):
    return [sys.executable, "-m", "landscape.cli", "train", str(path), "--run", run, *ARGS,
            *extra]


def test_killed_training_is_reported_incomplete_and_redone(tmp_path):
    path = tmp_path / "runs.h5"
    done = subprocess.run(_train(path, "first", "--steps", "30"), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    with Store(path) as s:
        before = s.params("first", "final")
    # A long run: killed once its start has been committed to the file.
    proc = subprocess.Popen(_train(path, "killed", "--steps", "1000000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            try:
                with Store(path, timeout=0) as s:
                    if "killed" in s:
                        break
            except Exception:  # noqa: BLE001 - the writer holds the lock for a moment
                pass
            time.sleep(0.2)
        else:
            raise AssertionError("the run never appeared in the file")
        time.sleep(0.5)  # let it train a little
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Store(path) as s:
        assert s.info("first").status == "complete"
        assert np.array_equal(s.params("first", "final"), before)
        assert s.info("killed").status == "incomplete"
    info = subprocess.run([sys.executable, "-m", "landscape.cli", "info", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0 and "incomplete" in info.stdout
    again = subprocess.run(_train(path, "killed", "--steps", "20"), capture_output=True,
                           text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    with Store(path) as s:
        assert s.info("killed").status == "complete"
        assert s.info("killed").attrs["steps"] == 20
        assert s.runs() == ["first", "killed"]
