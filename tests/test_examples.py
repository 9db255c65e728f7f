"""Every script of examples/ runs to the end at a tiny scale and writes its figure.

``make docs`` runs each example as a user would (``python examples/NAME.py OUT_DIR``, a fresh
process each) at full scale; here they run with ``LANDSCAPE_EXAMPLE_SCALE=tiny``, all in one
fresh process (each as ``__main__`` with its own ``sys.argv``, working folder and output
folder, its figures closed after it), so that a broken example fails ``pytest`` alone without
paying a new interpreter's imports (torch, matplotlib) for each.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import WAIT

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PNG = b"\x89PNG\r\n\x1a\n"
# runs each SCRIPT OUT pair of its arguments; a failure is written to OUT/error.txt
RUNNER = """
import contextlib, os, runpy, sys, traceback
import matplotlib.pyplot as plt
pairs = list(zip(sys.argv[1::2], sys.argv[2::2]))
for script, out in pairs:
    os.chdir(out)
    sys.argv = [script, out]
    with open(os.path.join(out, "stdout.txt"), "w") as log, contextlib.redirect_stdout(log):
        try:
            runpy.run_path(script, run_name="__main__")
        except SystemExit as stop:
            if stop.code not in (0, None):
                open(os.path.join(out, "error.txt"), "w").write(f"exit status {stop.code}")
        except BaseException:
            with open(os.path.join(out, "error.txt"), "w") as f:
                traceback.print_exc(file=f)
    plt.close("all")
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[str, Path]:
    """Every example run once (one process for all); its output folder by name."""
    outs = {p.stem: tmp_path_factory.mktemp(p.stem) for p in EXAMPLES}
    env = {
        **os.environ,
        "LANDSCAPE_EXAMPLE_SCALE": "tiny",
        "OMP_NUM_THREADS": "1",  # small models: one thread is fastest, and the tests run beside
        "MPLBACKEND": "Agg",
    }
    args = [str(a) for p in EXAMPLES for a in (p, outs[p.stem])]
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return outs


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {
        "own_model",
        "surface_trajectory",
        "good_vs_bad_minima",
        "read_with_h5py",
    }


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_draws(script, ran):
    out = ran[script.stem]
    error = out / "error.txt"
    assert not error.exists(), error.read_text()[-3000:]
    figure = out / f"{script.stem}.png"
    assert figure.is_file(), f"{script.name} wrote no {figure.name}: {sorted(out.iterdir())}"
    assert figure.read_bytes()[:8] == PNG
    assert figure.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    assert script.read_text().lstrip().startswith('"""'), "every example opens with a docstring"
