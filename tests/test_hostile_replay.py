"""Hostile use replayed: limits checked up front, bad option values refused before any work.

Each case runs the ``landscape`` command in-process (:func:`landscape.cli.main.main`) against a
copy of a small landscape file and asserts exit status 2, exactly one line on stderr that starts
with ``landscape: error:`` and names what was wrong and how to change it, no traceback, and the
file's bytes unchanged (or, for a sweep, no file made): tests/cli_runner.py. The cases of
tests/test_hostile.py are checked to be still there.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from landscape.cli.main import main

from .cli_runner import TINY_RUN, copy_of, refused

HERE = Path(__file__).resolve().parent
TINY = [*TINY_RUN, "--quiet"]
BASE = """
name = "hostile"
[base]
model = {name = "mlp", width = 4}
data = {name = "digits", n_train = 100}
optimizer = {name = "sgd", lr = 0.05}
train = {max_steps = 3}
"""


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A file with one complete run, ``sgd``."""
    path = tmp_path_factory.mktemp("replay") / "base.h5"
    assert main(["train", str(path), *TINY, "--steps", "3", "--run", "sgd"]) == 0
    return path


@pytest.fixture()
def file(made, tmp_path, capsys):
    return copy_of(made, tmp_path, capsys)


def sweep_refused(tmp_path, capsys, text, *fragments, dry_run=True):
    spec, out = tmp_path / "s.toml", tmp_path / "s.h5"
    spec.write_text(BASE + text)
    argv = ["sweep", spec, "--out", out, "--quiet", "--no-report"]
    line = refused(argv + (["--dry-run"] if dry_run else []), capsys, *fragments, path=out)
    assert not out.exists()
    return line


# ----------------------------------------------------------------------------- limits
def test_a_grid_of_too_many_runs_is_counted_not_expanded(tmp_path, capsys):
    values = ", ".join(str(v) for v in range(1, 11))
    keys = ("train.seed", "model.width", "model.depth", "train.max_steps", "data.n_train")
    grid = "[grid]\n" + "".join(f'"{key}" = [{values}]\n' for key in keys)
    sweep_refused(
        tmp_path,
        capsys,
        grid,
        "sweep spec: grid: 10 values of train.seed x 10 values of model.width x ",
        "make 100000 runs, more than the limit of 10000",
        "set LANDSCAPE_MAX_RUNS=100000 to allow them",
    )


def test_the_runs_limit_is_raised_by_its_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MAX_RUNS", "2")
    grid = '[grid]\n"train.seed" = [0, 1, 2]\n'
    sweep_refused(tmp_path, capsys, grid, "make 3 runs, more than the limit of 2")
    monkeypatch.setenv("LANDSCAPE_MAX_RUNS", "3")
    spec = tmp_path / "s.toml"
    assert main(["sweep", str(spec), "--out", str(tmp_path / "s.h5"), "--dry-run"]) == 0
    assert "3 run(s)" in capsys.readouterr().out


def test_too_many_paths_between_runs_are_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MAX_PATHS", "10")
    sweep_refused(
        tmp_path,
        capsys,
        '[grid]\n"train.seed" = [0, 1, 2, 3, 4, 5]\n[paths]\nbetween = "all"\n',
        "sweep spec: paths.between: 'all' over 6 runs and 1 kind(s) make 15 paths",
        "set LANDSCAPE_MAX_PATHS=15",
    )


def test_a_surface_of_too_many_points_is_refused_before_anything_runs(file, capsys):
    refused(
        ["surface", file, "--run", "sgd", "--x=-1:1:100000", "--y=-1:1:100000", "--quiet"],
        capsys,
        "surface: a 100000 x 100000 grid has 10000000000 points, more than the limit",
        "set LANDSCAPE_MAX_POINTS=10000000000",
        path=file,
    )


def test_a_surface_whose_grids_do_not_fit_in_memory_is_refused(file, capsys, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MAX_POINTS", "1e12")
    monkeypatch.setenv("LANDSCAPE_MAX_SURFACE_BYTES", "1000000")
    refused(
        ["surface", file, "--run", "sgd", "--x=-1:1:1000", "--y=-1:1:1000", "--quiet"],
        capsys,
        "the grids of a 1000 x 1000 surface need 31.5 MiB of memory, more than the limit of "
        "1.0 MiB",
        "set LANDSCAPE_MAX_SURFACE_BYTES=33000000",
        path=file,
    )


def test_a_bad_limit_variable_is_named(file, capsys, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MAX_POINTS", "lots")
    refused(
        ["surface", file, "--run", "sgd", "--x=-1:1:3", "--y=-1:1:3", "--quiet"],
        capsys,
        "LANDSCAPE_MAX_POINTS must be a number, got 'lots'",
        path=file,
    )


def test_a_sweep_surface_of_too_many_points_fails_at_dry_run(tmp_path, capsys):
    sweep_refused(
        tmp_path,
        capsys,
        "[surfaces.big]\nx = [-1.0, 1.0, 100000]\ny = [-1.0, 1.0, 100000]\n",
        "sweep spec: surfaces.big: the surface: a 100000 x 100000 grid has 10000000000 points",
        "LANDSCAPE_MAX_POINTS",
    )


# ----------------------------------------------------------------------------- option values
@pytest.mark.parametrize(
    "table, shown",
    [
        ("hessian = {k = -1}", "probes.hessian.k: must be an integer >= 1, got -1"),
        ("trace = {n_products = 0}", "probes.trace.n_products: must be an integer >= 1, got 0"),
        (
            'sharpness = {kind = "worst", rho = -0.5}',
            "probes.sharpness[0].rho: must be a finite number > 0, got -0.5",
        ),
        (
            'sharpness = {kind = "worst", adaptive = "yes"}',
            "probes.sharpness[0].adaptive: must be true or false, got 'yes'",
        ),
        ("density = {seed = -3}", "probes.density.seed: must be an integer from 0 to 2**63 - 1"),
    ],
)
def test_a_bad_probe_value_fails_at_dry_run_not_after_training(tmp_path, capsys, table, shown):
    sweep_refused(tmp_path, capsys, f"[probes]\n{table}\n", f"sweep spec: {shown}")
    sweep_refused(tmp_path, capsys, f"[probes]\n{table}\n", shown, dry_run=False)


def test_a_sharpness_that_overflows_is_refused_not_stored_as_0(file, capsys):
    refused(
        ["probe", file, "--run", "sgd", "sharpness", "--rho", "1e30", "--steps", "2"],
        capsys,
        "worst_case: the loss overflowed (it is not finite) at a perturbation within rho=1e+30",
        "use a smaller rho",
        path=file,
    )


def test_a_negative_history_interval_is_refused(file, capsys):
    refused(
        ["train", file, *TINY, "--steps", "3", "--run", "h", "--history-every", "-1"],
        capsys,
        "train.history_every: must be an integer >= 0, got -1",
        path=file,
    )


def test_a_batch_larger_than_the_data_is_said_not_capped_silently(file, capsys):
    from landscape.store.file import Store

    argv = ["train", file, *TINY, "--steps", "3", "--run", "b", "--batch-size", "100000"]
    assert main([str(a) for a in argv]) == 0
    out = capsys.readouterr().out
    assert (
        "note: batch size 100000 is more than the 100 training examples: every step took the "
        "full batch (recorded as batch_size 100)"
    ) in out
    with Store(file) as s:
        assert s.info("b").attrs["batch_size"] == 100


# ----------------------------------------------------------------------------- the earlier cases
EARLIER = (
    "test_a_damaged_format_version_is_named_not_upgrade_advice",
    "test_a_damaged_json_attribute_is_named",
    "test_an_empty_run_name_is_refused",
    "test_a_seed_beyond_int64_is_refused",
    "test_a_seed_out_of_range_is_refused_by_every_command",
    "test_a_dtype_outside_the_listed_ones_is_refused",
    "test_a_spec_that_is_not_utf8_is_named",
    "test_importing_a_text_file_says_it_is_not_a_checkpoint",
    "test_a_probe_with_other_settings_is_refused",
    "test_output_into_a_closed_pipe_ends_quietly",
    "test_duplicate_run_names_in_a_sweep_show_both_entries",
)


def test_the_earlier_hostile_cases_are_still_there():
    tree = ast.parse((HERE / "test_hostile.py").read_text())
    names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert not [name for name in EARLIER if name not in names]
