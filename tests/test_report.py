"""The report of a landscape file read back from disk.

Tables, ranking, Markdown and HTML, figures (stand-in plotting module), the command line.
"""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape import cli, report
from landscape.engine.cost import Cost
from landscape.store.file import Store
from probes.curvature.hessian import Eigenvalues, Trace
from probes.implicit_bias.suite import Measures
from probes.paths.results import Path as PathResult
from probes.sharpness import PacBayes

pytestmark = pytest.mark.usefixtures("one_thread")

NAMES, SHAPES = ["w"], [(3,)]
# run -> (train acc, test acc, train loss, test loss, dist_init, lambda_max, sweep axes)
RUNS = {
    "sgd": (1.00, 0.90, 0.01, 0.40, 1.0, 3.0, {"lr": 0.1, "batch_size": 32}),
    "a<b&c": (1.00, 0.75, 0.02, 0.90, 2.0, None, {"lr": 0.5, "batch_size": 32}),
    "adam": (0.95, 0.80, 0.10, 0.60, 3.0, 5.0, {"lr": 0.1, "batch_size": 128}),
    "big": (0.75, 0.50, 0.20, 1.20, 4.0, 7.0, {"lr": 0.5, "batch_size": 128}),
}


def _eigenvalues(top: float) -> Eigenvalues:
    v = np.array([top / 2, top])
    return Eigenvalues(
        values=v,
        vectors=None,
        residuals=np.zeros(2),
        errors=np.zeros(2),
        converged=np.ones(2, bool),
        which="largest",
        k=2,
        tol=1e-6,
        curvature="hessian",
        cost=Cost(passes=1.0, hvp=4),
        params=("w",),
    )


def _trace(value: float) -> Trace:
    return Trace(
        value=value,
        stderr=0.1,
        method="hutch++",
        n_probes=2,
        sketch=2,
        cost=Cost(passes=1.0, hvp=6),
        curvature="hessian",
        seed=0,
        n_params=3,
        target_stderr=None,
        converged=True,
        samples=np.ones(2),
    )


def _pac_bayes(flatness: float) -> PacBayes:
    return PacBayes(
        sigma=flatness**-0.5,
        flatness=flatness,
        clean_accuracy=1.0,
        accuracy=0.9,
        converged=True,
        target=0.1,
        tolerance=0.01,
        magnitude_aware=True,
        eps=1e-3,
        n_samples=2,
        depth=3,
        sigma_max=2.0,
        seed=0,
        mode="eval",
        n_params=3,
        cost=Cost(passes=1.0),
        sigmas=np.ones(2),
        accuracies=np.ones(2),
    )


def _path(peak: float) -> PathResult:
    alphas = np.linspace(0, 1, 5)
    loss = np.array([0.1, 0.1 + peak / 2, 0.1 + peak, 0.1 + peak / 2, 0.1])
    return PathResult(
        kind="linear",
        alphas=alphas,
        loss=loss,
        accuracy=np.ones(5),
        test_loss=None,
        test_accuracy=None,
        buffers="none",
        mode="eval",
        params=("w",),
        cost=Cost(passes=5.0, loss_evals=5),
        info={},
    )


def write_file(path: Path, *, sweep: bool = True) -> Path:
    """Four complete runs, a failed run and a path between two runs under /compare.

    The probes are written through the results' ``to_record``.
    """
    with Store(path, "w") as s:
        for run, (tra, tea, trl, tel, dist, top, axes) in RUNS.items():
            s.create_run(
                run,
                names=NAMES,
                shapes=SHAPES,
                init=np.zeros(3),
                attrs={
                    "optimizer": {"name": "sgd", "lr": axes["lr"]},
                    "batch_size": axes["batch_size"],
                    "seed": 0,
                },
            )
            s.set_final(
                run,
                np.ones(3),
                status="complete",
                attrs={
                    "final_metrics": {
                        "train_acc": tra,
                        "test_acc": tea,
                        "train_loss": trl,
                        "test_loss": tel,
                    }
                },
            )
            if sweep:
                s.set_attrs(run, {"sweep": {"name": "grid", "axes": axes}})
            values = {
                "loss": trl,
                "accuracy": tra,
                "dist_init": dist,
                "param_norm": 10 - dist,
                "margin_q10": None if run == "sgd" else 1.0 / dist,
                "sharpness_worst_adaptive": 0.01 * dist,
            }
            arrays, attrs = Measures(values=values, skipped={}, layers=("w",)).to_record()
            s.write_record(
                run, "probes", "measures", arrays=arrays, attrs={**attrs, "checkpoint": "final"}
            )
            if top is not None:
                arrays, attrs = _eigenvalues(top).to_record()
                s.write_record(run, "probes", "hessian_eigenvalues", arrays=arrays, attrs=attrs)
                arrays, attrs = _trace(10 * top).to_record()
                s.write_record(run, "probes", "hessian_trace", arrays=arrays, attrs=attrs)
            arrays, attrs = _pac_bayes(dist**2).to_record()
            s.write_record(run, "probes", "sharpness_pac_bayes", arrays=arrays, attrs=attrs)
            # a probe at the initialisation is not a measure of the minimum
            arrays, attrs = _trace(-1.0).to_record()
            s.write_record(
                run, "probes", "trace_at_init", arrays=arrays, attrs={**attrs, "checkpoint": "init"}
            )
        s.create_run("crashed", names=NAMES, shapes=SHAPES, init=np.zeros(3))
        s.set_attrs("crashed", {"status": "failed"})
        arrays, attrs = _path(0.25).to_record()
        s.write_record(
            None,
            "paths",
            "linear_sgd_final_adam_final",
            arrays=arrays,
            attrs={
                **attrs,
                "ends": {
                    "from": {"run": "sgd", "which": "final"},
                    "to": {"run": "adam", "which": "final"},
                },
            },
        )
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = write_file(tmp_path_factory.mktemp("report") / "cmp.h5")
    return path, report.report(path, path.parent / "out", figures=False)


def row(r: report.Report, run: str) -> dict:
    cols = r.runs.columns
    return next(dict(zip(cols, x, strict=True)) for x in r.runs.rows if x[0] == run)


def test_run_table_holds_the_runs_and_their_values(built):
    _, r = built
    assert r.runs.column("run") == ("sgd", "a<b&c", "adam", "big", "crashed")
    sgd = row(r, "sgd")
    assert sgd["gap"] == pytest.approx(0.10)  # train acc - test acc
    assert sgd["loss gap"] == pytest.approx(0.39)  # test loss - train loss
    assert sgd["lambda_max"] == 3.0 and sgd["hessian trace"] == 30.0
    assert sgd["dist init"] == 1.0 and sgd["PAC-Bayes flatness"] == 1.0
    assert sgd["adaptive sharpness"] == pytest.approx(0.01)
    assert sgd["optimizer"] == "sgd lr=0.1" and sgd["batch size"] == 32
    assert sgd["axes"] == "batch_size=32, lr=0.1"
    assert sgd["barriers"] == "adam 0.25" and row(r, "adam")["barriers"] == "sgd 0.25"
    # missing is None in the data, never 0
    assert sgd["margin q10"] is None and row(r, "a<b&c")["lambda_max"] is None
    crashed = row(r, "crashed")
    assert crashed["status"] == "failed" and crashed["gap"] is None
    assert r.barriers.rows[0][:4] == ("sgd:final", "adam:final", "linear", pytest.approx(0.25))


def test_ranking_sorted_by_abs_tau_with_counts(built):
    _, r = built
    by = {m.measure: m for m in r.ranking}
    # gaps: sgd 0.10, a<b&c 0.25, adam 0.15, big 0.25 (a tie); the failed run is not ranked
    assert r.n_ranked == 4
    assert "trace_at_init" not in " ".join(by) and "loss" not in by and "accuracy" not in by
    assert by["dist_init"].tau.n == 4 and by["dist_init"].tau.n_pairs == 6
    # dist_init 1, 2, 3, 4: pairs C C C, (a<b&c, adam) D, (a<b&c, big) tied in the gap, C:
    # tau-b = (4 - 1) / sqrt((6 - 0) (6 - 1))
    assert by["dist_init"].tau.tau == pytest.approx(3 / np.sqrt(30))
    assert by["param_norm"].tau.tau == pytest.approx(-by["dist_init"].tau.tau)
    assert (by["lambda_max"].tau.n, by["lambda_max"].tau.n_dropped) == (3, 1)
    assert by["margin_q10"].tau.n_dropped == 1
    taus = [abs(m.tau.tau) for m in r.ranking if m.tau.tau is not None]
    assert taus == sorted(taus, reverse=True)
    assert any("not ranked" in n and "crashed" in n for n in r.notes)


def test_granulated_tau_from_the_sweep_axes(built):
    _, r = built
    assert r.axes == ("batch_size", "lr")
    g = {m.measure: m for m in r.ranking}["dist_init"].granulated
    # psi_lr: bs=32 {sgd d1 g.10, a<b&c d2 g.25} +1; bs=128 {adam d3 g.15, big d4 g.25} +1
    # psi_bs: lr=.1 {sgd d1 g.10, adam d3 g.15} +1; lr=.5 {a<b&c d2 g.25, big d4 g.25}: tie
    # in the gap, skipped
    assert g.axes["lr"].psi == pytest.approx(1.0) and g.axes["lr"].n_groups == 2
    assert g.axes["batch_size"].psi == pytest.approx(1.0)
    assert g.axes["batch_size"].n_skipped == 1 and g.psi == pytest.approx(1.0)


def test_markdown_and_html_are_written_and_escaped(built):
    _, r = built
    assert r.markdown.name == "report.md" and r.html.name == "report.html"
    md, htm = r.markdown.read_text("utf-8"), r.html.read_text("utf-8")
    # the page outside its inlined scripts (plotly.js holds "a<b" and "<img" as code)
    markup = re.sub(r"<script[^>]*>.*?</script>", "", htm, flags=re.S)
    for text in (md, markup):
        assert "Kendall" in text and "dist" in text and "Psi" in text
        assert report.MISSING in text  # the missing margin and lambda_max
        # built with figures=False: the Figures section says so and embeds nothing
        assert "No figures." in text and "<img" not in text and "![" not in text
    assert "a&lt;b&amp;c" in markup and "a<b" not in markup
    assert "a&lt;b&amp;c" in md and "<b" not in md
    assert htm.startswith("<!DOCTYPE html>") and "<style>" in htm
    md_row = next(line for line in md.splitlines() if line.startswith("| sgd |") and "0.25" in line)
    assert f"| {report.MISSING} |" in md_row  # sgd's margin q10
    assert not [p for p in r.out_dir.iterdir() if p.name.endswith(".tmp")]


def test_without_sweep_axes_plain_tau_only(tmp_path):
    r = report.report(write_file(tmp_path / "plain.h5", sweep=False), figures=False)
    assert r.out_dir == tmp_path / "plain_report" and r.markdown.exists()
    assert r.axes == () and all(m.granulated is None for m in r.ranking)
    assert any("plain Kendall tau only" in n for n in r.notes)
    assert "psi[" not in r.markdown.read_text("utf-8")


def stand_in(monkeypatch, module) -> None:
    """``landscape.plot`` replaced, whether or not the real one was imported before."""
    import landscape

    monkeypatch.setitem(sys.modules, "landscape.plot", module)
    monkeypatch.setattr(landscape, "plot", module, raising=False)


def test_figures_are_embedded_and_their_absence_is_reported(tmp_path, monkeypatch):
    path = write_file(tmp_path / "cmp.h5")
    calls = []

    def all_figures(file, out_dir, formats=("png",)):
        calls.append((file, formats))
        out_dir.mkdir(parents=True, exist_ok=True)
        png = out_dir / "loss surface.png"
        png.write_bytes(b"\x89PNG\r\n")
        return [png]

    fake = types.ModuleType("landscape.plot")
    fake.all_figures = all_figures
    stand_in(monkeypatch, fake)
    r = report.report(path, tmp_path / "out")
    # the figures are drawn from the snapshot of the file that the tables were read from
    assert [(type(f).__name__, f.path, fmt) for f, fmt in calls] == [("Store", str(path), ("png",))]
    assert r.figures == (tmp_path / "out" / "figures" / "loss surface.png",)
    assert "](figures/loss%20surface.png)" in r.markdown.read_text("utf-8")
    assert 'src="figures/loss%20surface.png"' in r.html.read_text("utf-8")

    stand_in(monkeypatch, types.ModuleType("landscape.plot"))
    r = report.report(path, tmp_path / "out")  # rewritten in place
    assert r.figures == () and any(n.startswith("figures unavailable") for n in r.notes)
    assert "figures unavailable" in r.html.read_text("utf-8")


def test_cli_report(tmp_path, capsys):
    path = write_file(tmp_path / "cmp.h5")
    assert cli.main(["report", str(path), "--out", str(tmp_path / "rep"), "--no-figures"]) == 0
    out = capsys.readouterr().out
    assert "report.md" in out and "report.html" in out and "5 run(s) (4 ranked)" in out
    assert "top measures by |Kendall tau|" in out
    assert (tmp_path / "rep" / "report.html").exists()


@pytest.mark.parametrize("kind", ["text", "hdf5", "missing"])
def test_cli_report_of_a_non_landscape_file_is_one_line(tmp_path, capsys, kind):
    path = tmp_path / "not.h5"
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "hdf5":
        with h5py.File(path, "w") as f:
            f["x"] = np.zeros(2)
    assert cli.main(["report", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("landscape: error:") and "\n" not in err
    assert ("not a landscape file" in err) if kind != "missing" else ("does not exist" in err)
    assert not (tmp_path / "not_report").exists()


def test_report_of_runs_trained_and_probed_for_real(tmp_path, capsys):
    from landscape.train import spec as runspec

    path = tmp_path / "real.h5"
    for run, lr in (("slow", 0.05), ("fast", 0.5)):
        spec = {
            "model": {"name": "mlp", "width": 8, "depth": 1},
            "data": {"name": "digits", "n_train": 256, "n_test": 128},
            "optimizer": {"name": "sgd", "lr": lr},
            "train": {"max_steps": 15, "batch_size": 64, "seed": 0},
        }
        runspec.execute(spec, path, run=run)
        assert (
            cli.main(
                [
                    "probe",
                    str(path),
                    "--run",
                    run,
                    "measures",
                    "--include",
                    "norms,margins",
                    "--n",
                    "128",
                ]
            )
            == 0
        )
    r = report.report(path, figures=False)
    capsys.readouterr()
    assert r.runs.column("run") == ("slow", "fast") and r.n_ranked == 2
    assert all(g is not None for g in r.runs.column("gap"))
    assert {m.measure for m in r.ranking} >= {"dist_init", "param_norm", "margin_q10"}
    assert all(m.tau.n == 2 for m in r.ranking if m.measure == "dist_init")
