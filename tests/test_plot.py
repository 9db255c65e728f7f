"""Plots from a file read back from disk draw the arrays the file holds.

Every plot function draws the stored arrays (each line's, contour's, surface's and scatter's
data compared with those read back), with its axes, labels and lines, saves as PNG, PDF and
SVG, ``all_figures`` writes the expected set, and ``landscape plot`` works and refuses bad
input in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from landscape import plot
from landscape.cli.main import main
from landscape.store.file import Store

pytestmark = pytest.mark.usefixtures("one_thread")

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
    "--history-every",
    "5",
    "--quiet",
]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two tiny runs (SGD with momentum, Adam) written by the commands a user runs.

    With surfaces, probes, paths and a lambda_max series; then only the file is used.
    """
    path = tmp_path_factory.mktemp("plot") / "runs.h5"
    f = str(path)
    commands = [
        [
            "train",
            f,
            *TINY,
            "--run",
            "sgd",
            "--seed",
            "0",
            "--optimizer",
            "sgd",
            "--lr",
            "0.1",
            "--opt",
            "momentum=0.9",
        ],
        ["train", f, *TINY, "--run", "adam", "--seed", "1", "--optimizer", "adam", "--lr", "0.01"],
        ["surface", f, "--run", "sgd", "--dims", "1", "--x=-1:1:7", "--quiet"],
        ["path", f, "--from", "sgd:init", "--to", "sgd", "--n", "5"],
        ["path", f, "--from", "sgd", "--to", "adam", "--n", "5"],
        [
            "path",
            f,
            "--from",
            "sgd",
            "--to",
            "adam",
            "--n",
            "5",
            "--kind",
            "bezier",
            "--steps",
            "10",
        ],
    ]
    for run in ("sgd", "adam"):
        commands += [
            [
                "surface",
                f,
                "--run",
                run,
                "--directions",
                "pca",
                "--x=-1:1:5",
                "--y=-1:1:4",
                "--quiet",
            ],
            ["probe", f, "--run", run, "density", "--vectors", "1", "--steps", "8"],
            ["probe", f, "--run", run, "hessian", "--k", "2"],
            ["probe", f, "--run", run, "trace", "--products", "6"],
            ["probe", f, "--run", run, "measures", "--n", "60", "--include", "norms,sharpness"],
        ]
    for argv in commands:
        assert main(argv) == 0, argv
    with Store(path, "a") as s:  # as probes.along.top_eigenvalues records it along training
        s.append_series(
            "sgd",
            "probes/lambda_max",
            {"step": np.array([0, 10, 20]), "value": np.array([1.0, 2.5, 3.0])},
        )
    return path


def _labels(ax) -> list[str]:
    return [line.get_label() for line in ax.get_lines()]


def _stored(path, run, kind, name) -> dict[str, np.ndarray]:
    """The arrays of ``runs/<run>/<kind>/<name>`` (run None: ``/compare``), read back."""
    with Store(path) as s:
        return s.record(run, kind, name).arrays


def _line(ax, label: str):
    """The one line of ``ax`` whose label starts with ``label``."""
    found = [line for line in ax.get_lines() if line.get_label().startswith(label)]
    assert len(found) == 1, (label, _labels(ax))
    return found[0]


def _same(line, x, y) -> None:
    """The line's data are the stored arrays, point for point.

    No tolerance: plotting draws the numbers it was given, it computes none.
    """
    np.testing.assert_array_equal(np.asarray(line.get_xdata(), dtype=float), x)
    np.testing.assert_array_equal(np.asarray(line.get_ydata(), dtype=float), y)


def _check_contours(filled, x, y, z) -> None:
    """The filled contours are those of the stored grid ``z``.

    ``z`` is ``(len(x), len(y))`` over ``x``, ``y``; drawn again here from the arrays read
    back at the plot's levels, every band's outline has the same vertices (a grid transposed,
    shifted, of another metric or run moves the level crossings on the grid's edges, so the
    vertices).
    """
    again = Figure().add_subplot().contourf(x, y, np.ma.masked_invalid(z.T), levels=filled.levels)
    assert len(filled.get_paths()) == len(again.get_paths()) == len(filled.levels) - 1
    for k, (drawn, expected) in enumerate(zip(filled.get_paths(), again.get_paths(), strict=True)):
        np.testing.assert_array_equal(drawn.vertices, expected.vertices, err_msg=f"band {k}")
        np.testing.assert_array_equal(drawn.codes, expected.codes, err_msg=f"band {k}")


def _check_saves(fig: Figure, tmp_path, formats=plot.FORMATS) -> None:
    for fmt in formats:
        target = plot.save(fig, tmp_path / "sub" / f"fig.{fmt}")
        assert target.stat().st_size > 1000, fmt


def test_surface_contour_has_the_trajectory_and_a_labelled_colour_bar(runs, tmp_path):
    fig = plot.surface(runs, "sgd", "pca_2d", metric="test_loss")
    ax, bar = fig.axes  # the plot and its colour bar
    assert "PC 1" in ax.get_xlabel() and "PC 2" in ax.get_ylabel()
    assert "sgd" in ax.get_title() and "test loss" in ax.get_title()
    assert "test loss" in bar.get_ylabel() and "cross-entropy" in bar.get_ylabel()
    trajectory = [line for line in ax.get_lines() if "trajectory" in line.get_label()]
    assert len(trajectory) == 1 and len(trajectory[0].get_xdata()) == 5  # steps 0..20 by 5
    stored = _stored(runs, "sgd", "surfaces", "pca_2d")
    coords = stored["trajectory_coords"]
    _same(trajectory[0], coords[:, 0], coords[:, 1])
    _same(_line(ax, "step 0"), coords[:1, 0], coords[:1, 1])
    _same(_line(ax, "step 20"), coords[-1:, 0], coords[-1:, 1])
    z = stored["test_loss"]
    assert stored["done"].all() and z.shape == (len(stored["x"]), len(stored["y"])) == (5, 4)
    filled = ax.collections[0]  # the filled contours, over the range of the stored grid
    np.testing.assert_allclose(
        filled.levels, np.linspace(z.min(), z.max(), len(filled.levels)), rtol=1e-12
    )
    _check_contours(filled, stored["x"], stored["y"], z)
    _check_saves(fig, tmp_path)
    bare = plot.surface(runs, "sgd", "pca_2d", trajectory=False)
    assert not [line for line in bare.axes[0].get_lines() if "trajectory" in line.get_label()]


def test_surface_3d_and_log_scale(runs, tmp_path):
    fig = plot.surface(runs, "adam", "pca_2d", kind="3d", log=True)
    ax = fig.axes[0]
    assert ax.name == "3d" and "log10" in ax.get_zlabel() and "adam" in ax.get_title()
    # each quad of the surface is coloured by the mean height of its four corners: log10 of
    # the stored training loss at the grid nodes ((len(x), len(y)), quads row by row)
    z = np.log10(_stored(runs, "adam", "surfaces", "pca_2d")["train_loss"])
    corners = (z[:-1, :-1] + z[1:, :-1] + z[:-1, 1:] + z[1:, 1:]) / 4
    np.testing.assert_allclose(ax.collections[0].get_array(), corners.ravel(), rtol=1e-12)
    _check_saves(fig, tmp_path, ("pdf",))
    with pytest.raises(ValueError, match="kind must be 'contour' or '3d'"):
        plot.surface(runs, "sgd", "pca_2d", kind="wire")
    with pytest.raises(ValueError, match="log scale is for losses"):
        plot.surface(runs, "sgd", "pca_2d", metric="train_accuracy", log=True)


def test_curve_of_a_1d_surface_and_the_wrong_dimension_refused(runs, tmp_path):
    fig = plot.curve(runs, "sgd", "random_1d", metrics=("train_loss", "test_loss", "test_accuracy"))
    ax = fig.axes[0]
    assert {"training loss", "test loss", "centre"} <= set(_labels(ax))
    assert _labels(fig.axes[1]) == ["test accuracy"]  # accuracies on the right axis
    assert "random direction 1" in ax.get_xlabel() and "sgd" in ax.get_title()
    assert len(ax.get_lines()[0].get_xdata()) == 7
    stored = _stored(runs, "sgd", "surfaces", "random_1d")
    _same(_line(ax, "training loss"), stored["x"], stored["train_loss"])
    _same(_line(ax, "test loss"), stored["x"], stored["test_loss"])
    _same(_line(fig.axes[1], "test accuracy"), stored["x"], stored["test_accuracy"])
    _check_saves(fig, tmp_path, ("svg",))
    with pytest.raises(ValueError, match="is 1-D .* curve"):
        plot.surface(runs, "sgd", "random_1d")
    with pytest.raises(ValueError, match="is 2-D"):
        plot.curve(runs, "sgd", "pca_2d")


def test_density_on_a_log_scale_with_lambda_max(runs, tmp_path):
    fig = plot.density(runs, "sgd")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and "eigenvalue of the Hessian" in ax.get_xlabel()
    assert "spectral density" in ax.get_ylabel() and "sgd" in ax.get_title()
    assert any("largest eigenvalue" in label for label in _labels(ax))
    stored = _stored(runs, "sgd", "probes", "hessian_density")
    # on the log scale, values more than six decades below the peak are left out (NaN)
    d = stored["density"]
    shown = np.where(d > np.nanmax(d) * 1e-6, d, np.nan)
    _same(_line(ax, "sgd ("), stored["grid"], shown)
    ticks = [line for line in ax.get_lines() if line.get_marker() == "|"]
    assert len(ticks) == 1
    nodes = stored["nodes"][np.isfinite(stored["nodes"])]
    np.testing.assert_array_equal(ticks[0].get_xdata(), nodes)
    top = _stored(runs, "sgd", "probes", "hessian_eigenvalues")["values"].max()
    np.testing.assert_array_equal(_line(ax, "sgd: largest eigenvalue").get_xdata(), [top, top])
    _check_saves(fig, tmp_path, ("png",))
    both = plot.density(runs, ["sgd", "adam"], log=False)
    assert both.axes[0].get_yscale() == "linear"
    assert sum(label.startswith(("sgd (", "adam (")) for label in _labels(both.axes[0])) == 2
    for run in ("sgd", "adam"):
        stored = _stored(runs, run, "probes", "hessian_density")
        _same(_line(both.axes[0], f"{run} ("), stored["grid"], stored["density"])


def test_path_with_barrier_and_several_overlaid(runs, tmp_path):
    fig = plot.path(runs, "compare/linear_sgd_final_adam_final")
    loss_ax, acc_ax = fig.axes
    assert "sgd:final, 1 = adam:final" in acc_ax.get_xlabel()
    assert "loss" in loss_ax.get_ylabel() and "accuracy" in acc_ax.get_ylabel()
    assert any("barrier" in label for label in _labels(loss_ax))
    with Store(runs) as s:
        record = s.record(None, "paths", "linear_sgd_final_adam_final")
    a, stored = record.arrays["alphas"], record.arrays
    _same(_line(loss_ax, "sgd:final -> adam:final"), a, stored["loss"])
    _same(_line(loss_ax, "test loss"), a, stored["test_loss"])
    _same(_line(acc_ax, "sgd:final -> adam:final"), a, stored["accuracy"])
    _same(_line(acc_ax, "test accuracy"), a, stored["test_accuracy"])
    assert f"barrier {record.attrs['barrier']:.3g}" in _line(loss_ax, "sgd:final").get_label()
    _check_saves(fig, tmp_path, ("pdf",))
    many = plot.path(
        runs, ["runs/sgd/paths/linear_init_final", "compare/bezier_sgd_final_adam_final"]
    )
    labels = _labels(many.axes[0])
    assert any("sgd:init -> sgd:final" in label for label in labels)
    assert any("Bezier curve" in label for label in labels)
    for label, run, name in (
        ("sgd:init -> sgd:final", "sgd", "linear_init_final"),
        ("sgd:final -> adam:final (Bezier", None, "bezier_sgd_final_adam_final"),
    ):
        stored = _stored(runs, run, "paths", name)
        _same(_line(many.axes[0], label), stored["alphas"], stored["loss"])
    with pytest.raises(ValueError, match="'runs/RUN/paths/NAME' or 'compare/NAME'"):
        plot.path(runs, "paths/sgd")
    with pytest.raises(ValueError, match="no result 'nope'"):
        plot.path(runs, "compare/nope")


def test_history_with_lambda_max_against_the_edge_of_stability(runs, tmp_path):
    fig = plot.history(runs)
    loss_ax, acc_ax, lam_ax = fig.axes
    assert loss_ax.get_title() == "training loss" and acc_ax.get_title() == "test accuracy"
    assert "training step" in lam_ax.get_xlabel()
    assert {line.get_label().split(" ")[0] for line in loss_ax.get_lines()} == {"sgd", "adam"}
    with Store(runs) as s:
        hist = {r: s.history(r) for r in ("sgd", "adam")}
        lam = s.series("sgd", "probes/lambda_max")
    for run, h in hist.items():
        _same(_line(loss_ax, f"{run} ("), h["step"], h["train_loss"])
        _same(_line(acc_ax, f"{run} ("), h["step"], h["test_acc"])
    _same(_line(lam_ax, "sgd: lambda_max"), lam["step"], lam["value"])
    dashed = [line for line in lam_ax.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1  # SGD only: Adam has no such bound
    assert np.allclose(dashed[0].get_ydata(), 2 * (1 + 0.9) / 0.1)
    assert "2(1+beta)/eta" in dashed[0].get_label()
    _check_saves(fig, tmp_path, ("svg",))
    one = plot.history(runs, ["adam"], metrics=("train_loss",), lambda_max=True)
    assert len(one.axes) == 1  # adam records no lambda_max
    with pytest.raises(ValueError, match="no run records 'margin'"):
        plot.history(runs, metrics=("margin",))


def test_stability_threshold():
    assert plot.stability_threshold({"optimizer": {"name": "gd", "lr": 0.5}}) == (4.0, "2/eta")
    value, formula = plot.stability_threshold(
        {"optimizer": {"name": "nesterov", "lr": 0.1, "momentum": 0.5}}
    )
    assert value == pytest.approx(3 / (2 * 0.1)) and "1+2beta" in formula
    assert plot.stability_threshold({"optimizer": {"name": "adam", "lr": 0.1}}) is None


def test_measure_vs_gap_labels_each_run(runs, tmp_path):
    with Store(runs) as s:
        gaps = {r: s.info(r).attrs["final_metrics"] for r in s.runs()}
    fig = plot.measure_vs_gap(runs, "lambda_max")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert sorted(t.split("\n")[0] for t in texts) == ["adam", "sgd"]
    ys = sorted(float(c.get_offsets()[0][1]) for c in ax.collections)
    assert ys == pytest.approx(sorted(g["train_acc"] - g["test_acc"] for g in gaps.values()))
    # each point: (the run's largest stored Hessian eigenvalue, its gap), labelled with it
    points = {t.get_text().split("\n")[0]: tuple(t.xy) for t in ax.texts}
    for run, g in gaps.items():
        top = _stored(runs, run, "probes", "hessian_eigenvalues")["values"].max()
        assert points[run] == (top, g["train_acc"] - g["test_acc"])
    offsets = sorted(tuple(map(float, c.get_offsets()[0])) for c in ax.collections)
    assert offsets == sorted(points.values())
    assert "generalisation gap" in ax.get_ylabel() and "Hessian eigenvalue" in ax.get_xlabel()
    _check_saves(fig, tmp_path, ("png",))
    assert plot.measure_vs_gap(runs, "param_norm", runs=["sgd"]).axes[0].texts
    with pytest.raises(ValueError, match="no run has measure 'nope'.*lambda_max"):
        plot.measure_vs_gap(runs, "nope")


def test_grid_puts_runs_on_one_colour_scale(runs, tmp_path):
    fig = plot.grid(runs, "pca_2d", metric="train_loss")
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(panels) == 2 and len(bars) == 1
    assert [ax.get_title().split("\n")[0] for ax in panels] == ["sgd", "adam"]
    sets = [ax.collections[0] for ax in panels]
    assert np.array_equal(sets[0].levels, sets[1].levels)
    assert (sets[0].norm.vmin, sets[0].norm.vmax) == (sets[1].norm.vmin, sets[1].norm.vmax)
    with Store(runs) as s:
        lows = [
            np.nanmin(s.record(r, "surfaces", "pca_2d").arrays["train_loss"])
            for r in ("sgd", "adam")
        ]
    assert sets[0].norm.vmin == pytest.approx(min(lows))
    grids = {r: _stored(runs, r, "surfaces", "pca_2d") for r in ("sgd", "adam")}
    both = np.concatenate([g["train_loss"].ravel() for g in grids.values()])
    np.testing.assert_allclose(
        sets[0].levels, np.linspace(both.min(), both.max(), len(sets[0].levels)), rtol=1e-12
    )
    for ax, stored in zip(panels, grids.values(), strict=True):
        _check_contours(ax.collections[0], stored["x"], stored["y"], stored["train_loss"])
        coords = stored["trajectory_coords"]
        _same(_line(ax, "training trajectory"), coords[:, 0], coords[:, 1])
    assert "training loss" in bars[0].get_ylabel()
    _check_saves(fig, tmp_path, ("pdf",))
    with pytest.raises(ValueError, match="no run .* has a surface 'nope'"):
        plot.grid(runs, "nope")


def test_plots_take_an_open_store(runs):
    with Store(runs) as s:
        assert isinstance(plot.surface(s, "sgd", "pca_2d"), Figure)
        assert isinstance(plot.history(s), Figure)
    with pytest.raises(TypeError, match="file must be a path or an open"):
        plot.history(42)


def test_all_figures_writes_the_expected_set(runs, tmp_path):
    written = plot.all_figures(runs, tmp_path / "figs", formats=("png",))
    assert {p.name for p in written} == {f"{s}.png" for s in STEMS}
    assert all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(ValueError, match="formats must be some of png, pdf, svg"):
        plot.all_figures(runs, tmp_path, formats=("jpg",))
    with pytest.raises(ValueError, match="must end in .png, .pdf or .svg"):
        plot.save(Figure(), tmp_path / "x.jpg")


STEMS = {
    "surface_sgd_pca_2d",
    "surface_adam_pca_2d",
    "curve_sgd_random_1d",
    "density_sgd_hessian_density",
    "density_adam_hessian_density",
    "path_sgd_linear_init_final",
    "path_compare_linear_sgd_final_adam_final",
    "path_compare_bezier_sgd_final_adam_final",
    "history",
    "grid_pca_2d",
    "measure_lambda_max",
    "measure_trace",
    "measure_sharpness_worst_adaptive",
    "measure_dist_init",
    "measure_path_norm",
}


def test_cli_plot(runs, tmp_path, capsys):
    out = tmp_path / "one.pdf"
    assert (
        main(
            [
                "plot",
                str(runs),
                "surface",
                "--run",
                "sgd",
                "--name",
                "pca_2d",
                "--metric",
                "test_loss",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == str(out) and out.stat().st_size > 1000
    folder = tmp_path / "some"
    for argv in (
        ["curve", "--run", "sgd"],
        ["density", "--format", "svg"],
        ["path", "--name", "linear_init_final"],
        ["history", "--metric", "train_loss"],
        ["measure", "--name", "trace"],
        ["grid", "--name", "pca_2d", "--log"],
        ["surface", "--run", "adam", "--3d"],
    ):
        assert main(["plot", str(runs), *argv, "--out", str(folder)]) == 0, argv
    printed = capsys.readouterr().out.split()
    assert [p.rsplit("/", 1)[1] for p in printed] == [
        "curve_sgd_random_1d.png",
        "density_sgd_adam_hessian_density.svg",
        "path_sgd_linear_init_final.png",
        "history.png",
        "measure_trace.png",
        "grid_pca_2d.png",
        "surface_adam_pca_2d_3d.png",
    ]
    assert main(["plot", str(runs), "--format", "pdf"]) == 0  # all, into <stem>_figures/
    printed = capsys.readouterr().out.split()
    assert {p.rsplit("/", 1)[1] for p in printed} == {f"{s}.pdf" for s in STEMS}
    assert all(p.startswith(str(runs.parent / "runs_figures")) for p in printed)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["surface", "--run", "nope", "--name", "pca_2d"], "no run 'nope'; runs: sgd, adam"),
        (["surface", "--run", "sgd", "--name", "nope"], "run 'sgd' has no surface 'nope'"),
        (
            ["surface", "--run", "sgd", "--name", "random_1d"],
            "is 1-D (7 points); plot it with curve",
        ),
        (["curve", "--run", "adam"], "--name is needed; run 'adam' has 1-D surfaces: none"),
        (["surface"], "--run is needed; the file has: sgd, adam"),
        (["path", "--name", "nope"], "no path named 'nope'; paths: runs/sgd/paths/"),
        (
            ["surface", "--run", "sgd", "--name", "pca_2d", "--out", "x.png", "--format", "pdf"],
            "--out x.png and --format pdf disagree",
        ),
    ],
)
def test_cli_plot_errors_are_one_line(runs, capsys, argv, message):
    assert main(["plot", str(runs), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("landscape: error: ") and message in err
