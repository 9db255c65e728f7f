"""The `landscape` command: the demo runs and prints what the engine sees.

Bad arguments get one line, not a traceback.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from landscape.cli.main import main

from .conftest import WAIT


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path))
    return tmp_path


def test_demo_trains_and_reports(cache, capsys):
    assert main(["demo", "--seconds", "0.5", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "MNIST-1D: 4000 training and 1000 test sequences" in out
    for line in ("train  loss", "test   loss", "gradient norm", "Hessian-vector product"):
        assert line in out
    assert list(cache.iterdir()), "MNIST-1D is cached on disk after the first generation"


def test_bad_arguments_one_line():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--seconds", "-1"])
    assert exc.value.code == 2
    proc = subprocess.run(
        [sys.executable, "-m", "landscape.cli", "demo", "--device", "nonsense"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("landscape: error: ")
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_help_lists_demo():
    proc = subprocess.run(
        [sys.executable, "-m", "landscape.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
