"""Hostile but realistic use of the ``landscape`` command: one clear line, nothing lost.

Each case runs the CLI in-process (:func:`landscape.cli.main.main`) against a copy of a small
landscape file and asserts exit status 2, exactly one line on stderr that starts with
``landscape: error:`` and names what was wrong, no traceback, and the file's bytes unchanged
(tests/cli_runner.py).
"""

from __future__ import annotations

import subprocess
import sys

import h5py
import pytest
import torch

from landscape.cli.main import main

from .cli_runner import TINY_RUN, copy_of, error_line, refused
from .conftest import WAIT

TINY = [*TINY_RUN, "--steps", "3", "--quiet"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A file with one complete run, ``sgd`` (trained once for the module)."""
    path = tmp_path_factory.mktemp("hostile") / "base.h5"
    assert main(["train", str(path), *TINY, "--run", "sgd"]) == 0
    return path


@pytest.fixture()
def file(made, tmp_path, capsys):
    return copy_of(made, tmp_path, capsys)


@pytest.mark.parametrize(
    "value, shown",
    [
        ([1, 1], "has format_version [1, 1] at its root, expected the integer 1"),
        (0, "has format_version 0 at its root, expected the integer 1: the file is damaged"),
        (-1, "has format_version -1 at its root, expected the integer 1: the file is damaged"),
        (None, "has no format_version attribute at its root (expected 1): the file is damaged"),
    ],
)
def test_a_damaged_format_version_is_named_not_upgrade_advice(file, capsys, value, shown):
    with h5py.File(file, "r+") as f:
        if value is None:
            del f.attrs["format_version"]
        else:
            f.attrs["format_version"] = value
    line = refused(["info", file], capsys, str(file), shown, path=file)
    assert "upgrade" not in line and "ambiguous" not in line


def test_a_damaged_json_attribute_is_named(file, capsys):
    with h5py.File(file, "r+") as f:
        text = f["runs/sgd"].attrs["spec"]
        f["runs/sgd"].attrs["spec"] = text[:10] + "#" + text[11:]  # a flipped byte
    refused(
        ["info", file],
        capsys,
        str(file),
        "attribute 'spec' of /runs/sgd is not the JSON that was written",
        "the file is damaged",
        path=file,
    )


def test_an_empty_run_name_is_refused(file, capsys):
    line = refused(["train", file, *TINY, "--run", ""], capsys, "run name", "--run", path=file)
    assert "'sgd'" not in line


def test_a_seed_beyond_int64_is_refused(file, capsys):
    refused(
        ["train", file, *TINY, "--run", "big", "--seed", "99999999999999999999"],
        capsys,
        "seed",
        "99999999999999999999",
        path=file,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["probe", "{f}", "--run", "sgd", "trace", "--seed", "99999999999999999999"],
        ["surface", "{f}", "--run", "sgd", "--x=-1:1:2", "--y=-1:1:2", "--seed", "-1", "--quiet"],
        ["path", "{f}", "--from", "sgd:init", "--to", "sgd", "--seed", "99999999999999999999"],
    ],
)
def test_a_seed_out_of_range_is_refused_by_every_command(file, capsys, argv):
    refused(
        [a.format(f=file) for a in argv],
        capsys,
        "--seed must be an integer from 0 to 2**63 - 1",
        path=file,
    )


@pytest.mark.parametrize("dtype", ["int32", "float8_e4m3fn", "half_precision"])
def test_a_dtype_outside_the_listed_ones_is_refused(file, capsys, dtype):
    refused(
        ["train", file, *TINY, "--run", "d", "--dtype", dtype],
        capsys,
        "dtype must be one of float32, float64, float16, bfloat16",
        repr(dtype),
        path=file,
    )


def test_the_listed_dtypes_are_the_accepted_ones(capsys):
    from landscape.train.schema import DTYPES

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "float32 (default), float64, float16 or bfloat16" in capsys.readouterr().out
    assert DTYPES == ("float32", "float64", "float16", "bfloat16")


def test_a_spec_that_is_not_utf8_is_named(file, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_bytes(b"[train]\nmax_steps = 3\n# caf\xe9\n")
    refused(
        ["train", file, "--config", spec, "--run", "u"],
        capsys,
        f"config file {spec} is not valid TOML",
        "not UTF-8",
        path=file,
    )


def test_importing_a_text_file_says_it_is_not_a_checkpoint(file, tmp_path, capsys):
    text = tmp_path / "notes.txt"
    text.write_text("these are not weights\n")
    line = refused(
        [
            "import",
            file,
            "--model",
            "torch.nn:Linear",
            "--model-kwargs",
            '{"in_features": 2, "out_features": 1}',
            "--final",
            text,
            "--run",
            "imp",
        ],
        capsys,
        f"checkpoint {text} is not a torch.save file that loads with weights_only=True",
        path=file,
    )
    assert "weights_only=False" not in line


def test_importing_a_pickle_with_code_does_not_advise_weights_only_false(file, tmp_path, capsys):
    import pickle

    foreign = tmp_path / "foreign.pt"
    foreign.write_bytes(pickle.dumps({"weight": torch.zeros(1), "f": print}, protocol=2))
    line = refused(
        [
            "import",
            file,
            "--model",
            "torch.nn:Linear",
            "--model-kwargs",
            '{"in_features": 2, "out_features": 1}',
            "--final",
            foreign,
            "--run",
            "imp",
        ],
        capsys,
        "weights_only=True",
        path=file,
    )
    assert "weights_only=False" not in line


def test_a_probe_with_other_settings_is_refused(file, capsys):
    base = ["probe", file, "--run", "sgd", "hessian", "--k", "1", "--tol", "1e-3"]
    assert main([str(a) for a in base]) == 0
    capsys.readouterr()
    refused(
        [*base, "--which", "smallest"],
        capsys,
        "runs/sgd/probes/hessian_eigenvalues exists with other settings",
        "which is 'largest' there, 'smallest' now",
        "--replace",
        path=file,
    )


def test_output_into_a_closed_pipe_ends_quietly(file, capsys, monkeypatch):
    class Closed:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", Closed())
    assert main(["info", str(file)]) == 141
    assert capsys.readouterr().err == ""


def test_landscape_info_into_head_prints_nothing_on_stderr(file):
    p = subprocess.Popen(
        [sys.executable, "-m", "landscape.cli", "info", str(file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert p.stdout is not None and p.stderr is not None
    p.stdout.close()  # the reader is gone before anything is written
    err = p.stderr.read()
    assert p.wait(timeout=WAIT) == 141
    assert err == b""


def test_history_every_0_means_the_first_and_last_steps_as_the_help_says(file, capsys):
    from landscape.store.file import Store

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--history-every STEPS steps between history rows (0: the first and last steps" in shown
    args = [str(file), *TINY_RUN, "--steps", "5", "--quiet", "--run", "h0", "--history-every"]
    assert main(["train", *args, "0"]) == 0
    with Store(file) as s:
        assert s.series("h0", "history")["step"].tolist() == [0, 5]


def test_duplicate_run_names_in_a_sweep_show_both_entries(tmp_path, capsys):
    spec = tmp_path / "dup.toml"
    spec.write_text(
        'name = "dup"\n'
        "[base]\n"
        'model = {name = "mlp", width = 4}\n'
        'data = {name = "digits", n_train = 100}\n'
        'optimizer = {name = "sgd", lr = 0.05}\n'
        "[base.train]\n"
        "max_steps = 3\n"
        "[[runs]]\n"
        'name = "a"\n'
        "[[runs]]\n"
        'name = "a"\n'
        'optimizer = {name = "adam", lr = 0.01}\n'
    )
    out = tmp_path / "dup.h5"
    assert main(["sweep", str(spec), "--out", str(out), "--dry-run"]) == 2
    line = error_line(capsys.readouterr().err)
    assert "two runs are both named 'a' ([[runs]] #1 {} and [[runs]] #2 " in line
    assert '"adam"' in line and not out.exists()
