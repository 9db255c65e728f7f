"""`landscape surface` and `landscape path` on stored runs.

Computed from the file alone, stored with the runs, equal to the library calls, and bad input
refused in one line.
"""

from __future__ import annotations

import numpy as np
import pytest

from landscape import Objective
from landscape.cli.main import main
from landscape.store.file import Store
from landscape.surfaces.grid import Surface
from landscape.train.spec import rebuild
from probes.paths.results import Path

TINY = [
    "--data",
    "digits",
    "--data-arg",
    "n_train=200",
    "--data-arg",
    "n_test=50",
    "--model",
    "mlp",
    "--model-arg",
    "width=8",
    "--model-arg",
    "depth=1",
    "--steps",
    "20",
    "--snapshot-every",
    "5",
    "--quiet",
]


@pytest.fixture()
def runs(tmp_path, capsys):
    path = tmp_path / "r.h5"
    assert main(["train", str(path), *TINY, "--run", "a", "--seed", "0"]) == 0
    assert main(["train", str(path), *TINY, "--run", "b", "--seed", "1"]) == 0
    capsys.readouterr()
    return path


def test_surface_random_and_pca_are_stored_with_the_run(runs, capsys):
    assert main(["surface", str(runs), "--run", "a", "--x=-1:1:3", "--y=-1:1:3", "--quiet"]) == 0
    assert (
        main(
            [
                "surface",
                str(runs),
                "--run",
                "a",
                "--directions",
                "pca",
                "--dims",
                "1",
                "--x=-0.5:1.5:5",
                "--quiet",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "stored as runs/a/surfaces/random_2d" in out and "9/9 points" in out
    with Store(runs) as s:
        assert s.info("a").surfaces == ("pca_1d", "random_2d")
        plane = Surface.from_record(s.record("a", "surfaces", "random_2d"))
        line = s.record("a", "surfaces", "pca_1d")
        final = s.params("a", "final")
    assert plane.done.all() and plane.train_loss.shape == (3, 3)
    assert "test_loss" in plane.grids and plane.info["kind"] == "random"
    # the centre of the grid is the run's final model, evaluated directly
    model, split, loss = rebuild(runs, "a")
    direct = Objective(model, loss, split.train).evaluate()
    assert plane.train_loss[1, 1] == pytest.approx(direct.loss, rel=1e-6)
    # PCA: the trajectory projected onto the line ends at the centre (the final point)
    coords = line.arrays["trajectory_coords"]
    assert coords.shape == (len(line.arrays["trajectory_steps"]), 1)
    assert abs(coords[-1, 0]) < 1e-6 * max(1.0, float(np.abs(final).max()))
    # run again: nothing to compute, the same values
    assert main(["surface", str(runs), "--run", "a", "--x=-1:1:3", "--y=-1:1:3", "--quiet"]) == 0
    assert "this call 0" in capsys.readouterr().out


def test_paths_within_a_run_and_between_runs(runs, capsys):
    assert main(["path", str(runs), "--from", "a:init", "--to", "a", "--n", "5"]) == 0
    assert main(["path", str(runs), "--from", "a", "--to", "b", "--n", "5"]) == 0
    assert (
        main(
            [
                "path",
                str(runs),
                "--from",
                "a",
                "--to",
                "b",
                "--kind",
                "bezier",
                "--n",
                "5",
                "--steps",
                "20",
                "--name",
                "ab_curve",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "stored as runs/a/paths/linear_init_final" in out
    assert "stored as compare/linear_a_final_b_final" in out
    with Store(runs) as s:
        inner = Path.from_record(s.record("a", "paths", "linear_init_final"))
        between = Path.from_record(s.record(None, "paths", "linear_a_final_b_final"))
        curve = Path.from_record(s.record(None, "paths", "ab_curve"))
        ends = s.record(None, "paths", "ab_curve").attrs["ends"]
    model_a, split, loss = rebuild(runs, "a")
    model_b, _, _ = rebuild(runs, "b")
    obj = Objective(model_a, loss, split.train)
    assert between.loss[0] == pytest.approx(obj.evaluate().loss, rel=1e-6)
    assert between.loss[-1] == pytest.approx(
        Objective(model_b, loss, split.train).evaluate().loss, rel=1e-6
    )
    init, _, _ = rebuild(runs, "a", which="init")
    assert inner.loss[0] == pytest.approx(
        Objective(init, loss, split.train).evaluate().loss, rel=1e-6
    )
    assert len(between.alphas) == 5 and between.barrier >= 0 and curve.kind == "bezier"
    assert ends == {"from": {"run": "a", "which": "final"}, "to": {"run": "b", "which": "final"}}


def test_aligned_path_ends_at_b_permuted(runs, capsys):
    """--kind aligned: b's hidden units permuted to match a, then the straight line.

    The permutation is weight matching; b's function is unchanged, so the path ends at b's loss.
    """
    assert (
        main(["path", str(runs), "--from", "a", "--to", "b", "--kind", "aligned", "--n", "5"]) == 0
    )
    assert "stored as compare/aligned_a_final_b_final" in capsys.readouterr().out
    with Store(runs) as s:
        rec = s.record(None, "paths", "aligned_a_final_b_final")
    path = Path.from_record(rec)
    model_a, split, loss = rebuild(runs, "a")
    model_b, _, _ = rebuild(runs, "b")
    assert path.kind == "linear" and len(path.alphas) == 5
    assert path.loss[0] == pytest.approx(
        Objective(model_a, loss, split.train).evaluate().loss, rel=1e-6
    )
    assert path.loss[-1] == pytest.approx(
        Objective(model_b, loss, split.train).evaluate().loss, rel=1e-5
    )
    how = path.info["aligned"]
    assert how["objective_after"] >= how["objective_before"]
    perm = np.asarray(how["perms"][how["layers"][0]])
    assert sorted(perm.tolist()) == list(range(8)) and not np.array_equal(perm, np.arange(8))


def test_bad_input_is_one_line(runs, capsys):
    for argv, fragment in [
        (["surface", str(runs), "--run", "a", "--x=1:-1:3"], "--x must be START:STOP:NUM"),
        (["surface", str(runs), "--run", "a", "--x=a:b"], "--x must be START:STOP:NUM"),
        (["surface", str(runs), "--run", "zz"], "no run 'zz'"),
        (
            ["surface", str(runs), "--run", "a", "--directions", "eigen"],
            "directions must be one of",
        ),
        (["surface", str(runs), "--run", "a", "--bn", "x", "--quiet"], "bn must be one of"),
        (["path", str(runs), "--from", "a", "--to", "zz"], "no run 'zz'"),
        (["path", str(runs), "--from", "a", "--to", "b", "--kind", "cubic"], "kind must be one of"),
        (["path", str(runs), "--from", "a", "--to", "b", "--n", "1"], "n must be"),
    ]:
        rc = main(argv)
        _, err = capsys.readouterr()
        assert rc == 2 and err.startswith("landscape: error: ") and fragment in err, (argv, err)
        assert len(err.strip().splitlines()) == 1


def test_a_path_under_a_held_name_with_other_settings_is_refused(runs, capsys):
    from landscape.surfaces.stored import path_between

    base = ["path", str(runs), "--from", "a", "--to", "b", "--n", "3", "--examples", "50"]
    assert main(base) == 0
    with Store(runs) as s:
        before = s.record(None, "paths", "linear_a_final_b_final")
    capsys.readouterr()
    assert main([*base[:-4], "--n", "5", "--examples", "50"]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("landscape: error: ") and "Traceback" not in err
    assert str(runs) in lines[0] and "compare/linear_a_final_b_final" in lines[0]
    assert "n is 3 there, 5 now" in lines[0] and "--replace" in lines[0]
    with Store(runs) as s:
        assert s.record(None, "paths", "linear_a_final_b_final").attrs == before.attrs
    # the API: the same rule, replace=True overwrites; the same settings give the held path
    with pytest.raises(ValueError, match="n is 3 there, 5 now"):
        path_between(runs, "a", "b", n=5, n_examples=50)
    held, where = path_between(runs, "a", "b", n=3, n_examples=50)
    assert where == "compare/linear_a_final_b_final"
    np.testing.assert_array_equal(held.loss, before.arrays["loss"])
    with Store(runs) as s:
        assert s.record(None, "paths", "linear_a_final_b_final").attrs == before.attrs
    assert main([*base[:-4], "--n", "5", "--examples", "50", "--replace"]) == 0
    with Store(runs) as s:
        assert len(s.record(None, "paths", "linear_a_final_b_final").arrays["loss"]) == 5
