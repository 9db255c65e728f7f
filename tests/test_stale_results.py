"""A sweep whose spec changed a measurement's settings computes it again (landscape.sweep.stale).

One tiny sweep is run once for the module; each case edits one table of its spec
(``[probes]``, ``[surfaces]``, ``[paths]``, ``[along]``) and checks that ``--dry-run`` lists
the result as changed, naming the setting that changed, that the sweep recomputes it (never
"nothing was missing" over the old result) and that the stored result then has the new
settings, while the unchanged results are kept as they were.
"""

from __future__ import annotations

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store.file import Store
from landscape.sweep.jobs import plan
from landscape.sweep.spec import loads

from .cli_runner import copy_of

pytestmark = pytest.mark.usefixtures("one_thread")

SPEC = """
name = "stale"
[base]
model = {{name = "mlp", width = 4}}
data = {{name = "gaussians", n_train = 32, n_test = 16}}
optimizer = {{name = "sgd", lr = 0.1}}
train = {{max_steps = 4, batch_size = 16, seed = 0}}
[probes]
hessian = {{k = {k}}}
[along]
param_norm = {{every = {every}}}
[surfaces.r]
x = [-1.0, 1.0, {nx}]
[paths]
init_to_final = true
points = {points}
"""
FIRST = {"k": 1, "every": 2, "nx": 3, "points": 3}


def write(tmp_path, **changes):
    spec = tmp_path / "stale.toml"
    spec.write_text(SPEC.format(**{**FIRST, **changes}))
    return spec


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stale")
    out = tmp / "stale.h5"
    assert main(["sweep", str(write(tmp)), "--out", str(out), "--quiet", "--no-report"]) == 0
    return out


@pytest.fixture()
def file(made, tmp_path, capsys):
    return copy_of(made, tmp_path, capsys)


def sweep_again(spec, file, capsys, *extra):
    assert main(["sweep", str(spec), "--out", str(file), "--quiet", "--no-report", *extra]) == 0
    return capsys.readouterr().out


def test_the_same_spec_again_finds_nothing_missing(file, tmp_path, capsys):
    spec = write(tmp_path)
    assert all(j.empty for j in plan(loads(spec.read_text()), file))
    assert "nothing was missing" in sweep_again(spec, file, capsys)


@pytest.mark.parametrize(
    "changes, shown, check",
    [
        (
            {"k": 2},
            "probes/hessian_eigenvalues (changed: k is 1 there, 2 now)",
            lambda s: len(s.record("run", "probes", "hessian_eigenvalues").arrays["values"]) == 2,
        ),
        (
            {"nx": 5},
            "surfaces/r (changed: x is [-1.0, 1.0, 3] there, [-1.0, 1.0, 5] now)",
            lambda s: (
                s.record("run", "surfaces", "r").arrays["x"].tolist()
                == np.linspace(-1, 1, 5).tolist()
            ),
        ),
        (
            {"points": 4},
            "paths/linear_init_final (changed: n is 3 there, 4 now)",
            lambda s: len(s.record("run", "paths", "linear_init_final").arrays["alphas"]) == 4,
        ),
    ],
    ids=["probes", "surfaces", "paths"],
)
def test_a_changed_measurement_is_listed_and_computed_again(
    file, tmp_path, capsys, changes, shown, check
):
    spec = write(tmp_path, **changes)
    with Store(file) as s:
        kept = {
            what: s.record("run", *what.split("/")).arrays
            for what in ("probes/hessian_eigenvalues", "surfaces/r", "paths/linear_init_final")
            if what not in shown
        }
        final = s.params("run", "final")
    assert main(["sweep", str(spec), "--out", str(file), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert shown in listed, listed
    out = sweep_again(spec, file, capsys)
    assert "nothing was missing" not in out
    with Store(file) as s:
        assert check(s)
        assert np.array_equal(s.params("run", "final"), final)  # the run was not trained again
        for what, arrays in kept.items():  # the unchanged results are those held before
            held = s.record("run", *what.split("/")).arrays
            assert all(np.array_equal(held[k], v, equal_nan=True) for k, v in arrays.items())
    assert "nothing was missing" in sweep_again(spec, file, capsys)


def test_a_changed_along_series_trains_the_run_again(file, tmp_path, capsys):
    spec = write(tmp_path, every=1)
    with Store(file) as s:
        assert s.series("run", "probes/param_norm")["step"].tolist() == [0, 2, 4]
    assert main(["sweep", str(spec), "--out", str(file), "--dry-run"]) == 0
    listed = capsys.readouterr().out
    assert "train (changed: probes/param_norm (along training): every is 2 there, 1 now)" in listed
    assert "nothing was missing" not in sweep_again(spec, file, capsys)
    with Store(file) as s:
        assert s.series("run", "probes/param_norm")["step"].tolist() == [0, 1, 2, 3, 4]
        assert s.info("run").attrs["along"] == {"param_norm": {"every": 1}}
        assert s.info("run").status == "complete"


def _forget_settings(file, where):
    import h5py

    from landscape.store.file import _read_attrs, _write_attrs

    with h5py.File(file, "r+") as f:
        g = f[where]
        attrs = _read_attrs(g)
        del attrs["settings"]
        for key in list(g.attrs):
            del g.attrs[key]
        _write_attrs(g, attrs)


def test_a_result_without_recorded_settings_is_computed_again(file, tmp_path):
    _forget_settings(file, "runs/run/probes/hessian_eigenvalues")
    (job,) = plan(loads(write(tmp_path).read_text()), file)
    assert job.probes == ("hessian_eigenvalues",) and not job.surfaces
    assert "(changed: its settings were not recorded)" in job.describe()


def test_a_surface_without_recorded_settings_is_checked_by_what_it_holds(file, tmp_path):
    _forget_settings(file, "runs/run/surfaces/r")
    (job,) = plan(loads(write(tmp_path).read_text()), file)
    assert job.empty  # its coordinates and directions are the spec's: kept
    (job,) = plan(loads(write(tmp_path, nx=5).read_text()), file)
    assert job.describe() == "surfaces/r (changed: its x coordinates differ)"
    spec = write(tmp_path).read_text().replace("[surfaces.r]", "[surfaces.r]\nseed = 3")
    (job,) = plan(loads(spec), file)
    assert job.describe() == "surfaces/r (changed: directions seed is 0 there, 3 now)"
