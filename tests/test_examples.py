"""Every script of examples/ runs to the end at a tiny scale and writes its figure.

Each runs in its own process, as a user would run it (``python examples/NAME.py OUT_DIR``),
with ``LANDSCAPE_EXAMPLE_SCALE=tiny``; the documentation build runs them at full scale.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
PNG = b"\x89PNG\r\n\x1a\n"


def test_there_are_examples():
    assert {p.stem for p in EXAMPLES} >= {
        "own_model",
        "surface_trajectory",
        "good_vs_bad_minima",
        "read_with_h5py",
    }


@pytest.mark.parametrize("script", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs_and_draws(script, tmp_path):
    env = {
        **os.environ,
        "LANDSCAPE_EXAMPLE_SCALE": "tiny",
        "OMP_NUM_THREADS": "1",  # small models: one thread is fastest, and the tests run beside
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figure = tmp_path / f"{script.stem}.png"
    assert figure.is_file(), f"{script.name} wrote no {figure.name}: {sorted(tmp_path.iterdir())}"
    assert figure.read_bytes()[:8] == PNG
    assert figure.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    assert script.read_text().lstrip().startswith('"""'), "every example opens with a docstring"
