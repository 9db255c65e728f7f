"""`landscape probe`: Hessian probes on a stored run.

Computed from the file alone and stored with the run.
"""

from __future__ import annotations

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store.file import Store
from landscape.train.spec import rebuild
from probes.curvature import hessian
from probes.curvature.hessian import Density, Eigenvalues, Trace

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
    "10",
    "--quiet",
]


@pytest.fixture()
def run_file(tmp_path, capsys):
    path = tmp_path / "r.h5"
    assert main(["train", str(path), *TINY, "--run", "a"]) == 0
    capsys.readouterr()
    return path


def test_probe_computes_and_stores_each_kind(run_file, capsys):
    assert main(["probe", str(run_file), "--run", "a", "hessian", "--k", "3"]) == 0
    assert main(["probe", str(run_file), "--run", "a", "trace", "--products", "30"]) == 0
    assert (
        main(["probe", str(run_file), "--run", "a", "density", "--vectors", "2", "--steps", "20"])
        == 0
    )
    assert (
        main(
            [
                "probe",
                str(run_file),
                "--run",
                "a",
                "hessian",
                "--curvature",
                "ggn",
                "--name",
                "ggn_top",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "stored as probes/hessian_eigenvalues" in out and "stored as probes/ggn_top" in out
    with Store(run_file) as s:
        assert s.info("a").probes == (
            "ggn_top",
            "hessian_density",
            "hessian_eigenvalues",
            "hessian_trace",
        )
        top = Eigenvalues.from_record(s.record("a", "probes", "hessian_eigenvalues"))
        tr = Trace.from_record(s.record("a", "probes", "hessian_trace"))
        dens = Density.from_record(s.record("a", "probes", "hessian_density"))
        attrs = s.record("a", "probes", "hessian_eigenvalues").attrs
    assert attrs["data"]["split"] == "train" and attrs["checkpoint"] == "final"
    assert top.params == tuple(n for n, _ in rebuild(run_file, "a")[0].named_parameters())
    model, split, loss = rebuild(run_file, "a")
    direct = hessian.eigenvalues(model, loss, split.train, k=3)
    np.testing.assert_allclose(top.values, direct.values, rtol=1e-4)
    assert top.all_converged and tr.cost.hvp == 30 and dens.n_vectors == 2


def test_probe_errors_are_one_line(run_file, capsys):
    for argv, fragment in [
        (["probe", str(run_file), "--run", "zz", "hessian"], "no run 'zz'"),
        (
            ["probe", str(run_file), "--run", "a", "hessian", "--which", "bogus"],
            "which must be one of",
        ),
        (
            ["probe", str(run_file), "--run", "a", "hessian", "--curvature", "ggnn"],
            "curvature must be one of",
        ),
        (
            ["probe", str(run_file), "--run", "a", "hessian", "--params", "999"],
            "no snapshot at step 999",
        ),
    ]:
        rc = main(argv)
        _, err = capsys.readouterr()
        assert rc == 2 and err.startswith("landscape: error: ") and fragment in err, err
        assert len(err.strip().splitlines()) == 1


def test_sharpness_and_measures_are_computed_and_stored(run_file, capsys):
    from probes.implicit_bias.suite import Measures, measures
    from probes.sharpness import PacBayes, WorstCase, worst_case

    base = ["probe", str(run_file), "--run", "a"]
    assert main([*base, "sharpness", "--adaptive", "--rho", "0.5", "--steps", "5"]) == 0
    assert main([*base, "sharpness", "--kind", "pac-bayes", "--samples", "2"]) == 0
    assert main([*base, "measures", "--include", "norms,margins,noise", "--n", "100"]) == 0
    out = capsys.readouterr().out
    assert "stored as probes/sharpness_worst_case_adaptive" in out
    assert "stored as probes/sharpness_pac_bayes" in out and "stored as probes/measures" in out
    with Store(run_file) as s:
        w = WorstCase.from_record(s.record("a", "probes", "sharpness_worst_case_adaptive"))
        pb = PacBayes.from_record(s.record("a", "probes", "sharpness_pac_bayes"))
        m = Measures.from_record(s.record("a", "probes", "measures"))
        init = s.params("a", "init")
    model, split, loss = rebuild(run_file, "a")
    direct = worst_case(model, loss, split.train, rho=0.5, adaptive=True, steps=5)
    assert w.value == pytest.approx(direct.value, rel=1e-5) and w.adaptive
    assert pb.magnitude_aware and pb.n_samples == 2
    x, y = split.train
    import torch

    again = measures(
        model,
        loss,
        (x[:100], y[:100]),
        include=["norms", "margins", "noise"],
        init=torch.as_tensor(init, dtype=torch.float32),
    )
    assert m.values["dist_init"] == pytest.approx(again.values["dist_init"], rel=1e-5)
    assert m.values["margin_q10"] == pytest.approx(again.values["margin_q10"], rel=1e-5)
    assert "sharpness_worst" not in m.values and m.options["init"]
    assert main([*base, "measures", "--include", "norms,curvature", "--name", "m2"]) == 2
    assert "unknown family 'curvature'" in capsys.readouterr().err


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("landscape: error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_a_probe_under_a_held_name_with_other_settings_is_refused(run_file, capsys):
    base = ["probe", str(run_file), "--run", "a", "hessian", "--k", "2"]
    assert main(base) == 0
    with Store(run_file) as s:
        before = s.record("a", "probes", "hessian_eigenvalues")
    capsys.readouterr()
    # other settings: refused in one line naming the file, the result and the setting
    assert main([*base, "--which", "smallest"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(run_file) in line and "runs/a/probes/hessian_eigenvalues" in line
    assert "which is 'largest' there, 'smallest' now" in line and "--replace" in line
    with Store(run_file) as s:
        kept = s.record("a", "probes", "hessian_eigenvalues")
    np.testing.assert_array_equal(kept.arrays["values"], before.arrays["values"])
    assert kept.attrs == before.attrs
    # the same settings again: kept as it is, nothing computed
    assert main(base) == 0
    assert "already stored with these settings; nothing computed" in capsys.readouterr().out
    with Store(run_file) as s:
        assert s.record("a", "probes", "hessian_eigenvalues").attrs == before.attrs
    # --replace overwrites
    assert main([*base, "--which", "smallest", "--replace"]) == 0
    with Store(run_file) as s:
        attrs = s.record("a", "probes", "hessian_eigenvalues").attrs
    assert attrs["which"] == "smallest" and attrs["settings"]["which"] == "smallest"
    # a default given explicitly is the same setting
    assert main(["probe", str(run_file), "--run", "a", "sharpness", "--steps", "2"]) == 0
    assert (
        main(
            ["probe", str(run_file), "--run", "a", "sharpness", "--steps", "2"] + ["--rho", "0.05"]
        )
        == 0
    )
    assert "nothing computed" in capsys.readouterr().out


def test_a_probe_result_without_recorded_settings_is_not_overwritten(run_file, capsys):
    with Store(run_file, "a") as s:
        s.write_record("a", "probes", "hessian_trace", arrays={"x": [1.0]}, attrs={"k": 1})
    assert main(["probe", str(run_file), "--run", "a", "trace", "--products", "6"]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "runs/a/probes/hessian_trace" in line and "not recorded" in line
    with Store(run_file) as s:
        assert s.record("a", "probes", "hessian_trace").attrs == {"k": 1}
