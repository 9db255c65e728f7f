"""``landscape train --replace`` replaces a complete run atomically.

The new run is trained beside the old one (``<run>~replacing``) and takes its place in the
commit that completes it (:func:`landscape.store.file.swap_run`): a process killed at any
window of an earlier commit (tests/killpoints.py: mid-training, or mid-way through the last
commit, which the journal rolls back) leaves the old run exactly as it was; the next
``--replace`` finishes the job and leaves no ``~replacing`` run behind. The killed command
runs in a process of its own (forked by the ``killpoints`` fixture).
"""

from __future__ import annotations

import signal

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store.file import Store

from .cli_runner import TINY_RUN

TINY = [*TINY_RUN, "--quiet"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    path = tmp_path_factory.mktemp("replace") / "base.h5"
    assert main(["train", str(path), *TINY, "--steps", "3", "--run", "sgd"]) == 0
    return path


def _old(path):
    with Store(path) as s:
        return s.runs(), s.params("sgd", "final"), s.info("sgd").attrs["created"]


@pytest.mark.parametrize("point", ["half-applied:2", "applied:3"])
def test_a_killed_replace_leaves_the_old_run_as_it_was(made, killpoints, tmp_path, point):
    path, log, err = tmp_path / "f.h5", tmp_path / "windows.log", tmp_path / "stderr.txt"
    path.write_bytes(made.read_bytes())
    runs, final, created = _old(path)
    argv = ["train", str(path), *TINY, "--steps", "5", "--run", "sgd", "--replace", "--seed", "1"]
    code = killpoints.run("--log", str(log), "--kill", point, "--", *argv, stderr=err)
    assert code == -signal.SIGKILL, err.read_text()
    assert log.read_text().split().count("committed") == int(point.split(":")[1]) - 1
    with Store(path) as s:
        assert s.info("sgd").status == "complete"
        assert np.array_equal(s.params("sgd", "final"), final)
        assert s.info("sgd").attrs["created"] == created
        assert s.runs() in (runs, [*runs, "sgd~replacing"])
    assert main(argv) == 0  # the replace done again: the old run replaced, nothing beside it
    with Store(path) as s:
        assert s.runs() == runs
        assert s.info("sgd").attrs["seed"] == 1
        assert not np.array_equal(s.params("sgd", "final"), final)


def test_replace_of_a_complete_run_keeps_its_place_and_name(made, tmp_path, capsys):
    path = tmp_path / "f.h5"
    path.write_bytes(made.read_bytes())
    assert main(["train", str(path), *TINY, "--steps", "3", "--run", "other"]) == 0
    assert main(["train", str(path), *TINY, "--steps", "4", "--run", "sgd", "--replace"]) == 0
    assert "run 'sgd' complete after 4 steps" in capsys.readouterr().out
    with Store(path) as s:
        assert sorted(s.runs()) == ["other", "sgd"]
        assert s.info("sgd").attrs["steps"] == 4 and s.info("sgd").status == "complete"
