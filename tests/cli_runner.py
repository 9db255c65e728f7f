"""The ``landscape`` command as the tests run it, and the checks of a refusal.

A refused command ends with exit status 2 and exactly one line on stderr,
``landscape: error: ...``, that names what was wrong: no traceback, no message of h5py or
HDF5 (``Exception ignored ...``, ``Unable to ...``). The command runs in this process
(:func:`refused`) or in its own (:func:`cli`, then :func:`error_line` on its stderr).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from landscape.cli.main import main

REPO = Path(__file__).resolve().parents[1]
# the data and model of a tiny `landscape train` (a second of work); add --steps, --quiet, ...
TINY_RUN = [
    "--data",
    "digits",
    "--data-arg",
    "n_train=100",
    "--data-arg",
    "n_test=20",
    "--model",
    "mlp",
    "--model-arg",
    "width=4",
    "--model-arg",
    "depth=1",
]
PREFIX = "landscape: error: "


def error_line(err: str, *fragments: str) -> str:
    """The one error line of a refused command's stderr ``err``; it holds every fragment."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(PREFIX), err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert "Unable to" not in err, err  # an HDF5 error stack, not our message
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def refused(
    argv: list, capsys: pytest.CaptureFixture[str], *fragments: str, path: Path | None = None
) -> str:
    """Run ``landscape ARGV`` in this process: refused in one line holding ``fragments``.

    ``path`` (a file, or where one would be) is left as it was: the same bytes, or still none.
    Returns the line.
    """
    before = path.read_bytes() if path is not None and path.exists() else None
    assert main([str(a) for a in argv]) == 2
    line = error_line(capsys.readouterr().err, *fragments)
    if path is not None:
        assert (path.read_bytes() if path.exists() else None) == before, path
    return line


def cli(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``landscape ARGS`` in a process of its own (one thread), its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "landscape", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def copy_of(made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A copy of the module's file ``made`` for one test (what was printed so far dropped)."""
    path = tmp_path / "f.h5"
    shutil.copyfile(made, path)
    capsys.readouterr()
    return path
