"""The report's barriers over pairs of seeds, path kinds, class-mean overlap and outlier counts.

Tiny files written through the store API, every number known by construction: a path's
loss is flat at the ends with a planted peak, so its barrier is the peak; the intervals are
checked against the Student-t closed form.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.stats

from landscape import report
from landscape.engine.cost import Cost
from landscape.report.paths_summary import matching_share, path_barriers
from landscape.store.file import Store
from probes.curvature.class_means import ClassMeanOverlap
from probes.curvature.hessian import Eigenvalues
from probes.paths.results import Curve
from probes.paths.results import Path as PathResult

pytestmark = pytest.mark.usefixtures("one_thread")

SEEDS = (0, 1, 2)
# (config, kind) -> barrier (train loss) of the pair (seed a, seed b)
PEAKS = {
    ("lr=0.1", "linear"): {(0, 1): 1.0, (0, 2): 2.0, (1, 2): 3.0},
    ("lr=0.1", "aligned"): {(0, 1): 0.5, (0, 2): 0.25, (1, 2): 0.75},
    ("lr=0.1", "bezier"): {(0, 1): 0.0, (0, 2): 0.02, (1, 2): 0.01},
    ("lr=0.5", "linear"): {(0, 1): 4.0},
}
TEST_SCALE = 1.5  # test-loss barrier = 1.5 x the train-loss barrier
# seed -> (class-mean overlap, top eigenvalues with a known gap)
PROBES = {
    0: (0.80, [10.0, 9.0, 8.0, 1.0, 0.9]),  # 3 outliers
    1: (0.90, [10.0, 9.5, 2.0, 1.9, 1.8]),  # 2
    2: (0.85, [12.0, 11.0, 10.0, 9.0, 1.0]),  # 4
}
CHANCE = 0.01


def _path(kind: str, peak: float, info: dict) -> PathResult:
    bump = np.array([0.0, 0.5, 1.0, 0.5, 0.0])
    curve = {}
    if kind == "bezier":  # a trained curve: its bend and training
        curve = {
            "bend": np.zeros(3),
            "train_loss": np.ones(2),
            "train_t": np.full(2, 0.5),
            "steps": 2,
            "lr": 0.01,
            "batch_size": 4,
            "seed": 0,
            "optimizer": "adam",
        }
    return (Curve if curve else PathResult)(
        **curve,
        kind=kind,
        alphas=np.linspace(0, 1, 5),
        loss=0.1 + peak * bump,
        accuracy=np.ones(5),
        test_loss=0.3 + TEST_SCALE * peak * bump,
        test_accuracy=np.ones(5),
        buffers="none",
        mode="eval",
        params=("w",),
        cost=Cost(passes=5.0, loss_evals=5),
        info=info,
    )


def _eigenvalues(top: list[float]) -> Eigenvalues:
    v = np.sort(np.array(top))  # stored ascending
    return Eigenvalues(
        values=v,
        vectors=None,
        residuals=np.zeros(len(v)),
        errors=np.zeros(len(v)),
        converged=np.ones(len(v), bool),
        which="largest",
        k=len(v),
        tol=1e-6,
        curvature="hessian",
        cost=Cost(passes=1.0, hvp=4),
        params=("w",),
    )


def _overlap(overlap: float) -> ClassMeanOverlap:
    return ClassMeanOverlap(
        overlap=overlap,
        angles=np.zeros(2),
        shares=np.full(2, overlap),
        values=np.array([2.0, 1.0]),
        converged=np.ones(2, bool),
        classes=np.arange(2),
        counts=np.array([5, 5]),
        mean_norms=np.ones(2),
        rank=2,
        chance=CHANCE,
        k=2,
        tol=1e-5,
        curvature="ggn",
        params=("w",),
        mode="eval",
        cost=Cost(passes=1.0, ggn_vp=4),
    )


def _ends(a: str, b: str) -> dict:
    return {"from": {"run": a, "which": "final"}, "to": {"run": b, "which": "final"}}


def write(path: Path) -> Path:
    """Two configurations (3 seeds at lr 0.1, 2 at lr 0.5) and paths of three kinds."""
    with Store(path, "w") as s:
        for lr, seeds in (("0.1", SEEDS), ("0.5", (0, 1))):
            for seed in seeds:
                run = f"lr{lr}-seed{seed}"
                s.create_run(run, names=["w"], shapes=[(3,)], init=np.zeros(3))
                fm = {"train_acc": 1.0, "test_acc": 0.9, "train_loss": 0.1, "test_loss": 0.3}
                sweep = {"name": "s", "axes": {"lr": float(lr), "train.seed": seed}}
                s.set_final(
                    run, np.ones(3), status="complete", attrs={"final_metrics": fm, "sweep": sweep}
                )
                if lr == "0.1":
                    overlap, top = PROBES[seed]
                    arrays, attrs = _overlap(overlap).to_record()
                    s.write_record(run, "probes", "class_mean_overlap", arrays=arrays, attrs=attrs)
                    arrays, attrs = _eigenvalues(top).to_record()
                    s.write_record(run, "probes", "hessian_eigenvalues", arrays=arrays, attrs=attrs)
        for (config, kind), pairs in PEAKS.items():
            lr = config.split("=")[1]
            for (i, j), peak in pairs.items():
                a, b = f"lr{lr}-seed{i}", f"lr{lr}-seed{j}"
                # a weight-matched line is stored as a linear record, as path_between does
                stored = "linear" if kind == "aligned" else kind
                info = (
                    {"aligned": {"layers": ["0"], "converged": True}} if kind == "aligned" else {}
                )
                arrays, attrs = _path(stored, peak, info).to_record()
                s.write_record(
                    None,
                    "paths",
                    f"{kind}_{a}_{b}",
                    arrays=arrays,
                    attrs={**attrs, "ends": _ends(a, b)},
                )
        # left out of the summary: across configurations, and a run to itself
        for name, (a, b) in {
            "x": ("lr0.1-seed0", "lr0.5-seed0"),
            "self": ("lr0.1-seed1",) * 2,
        }.items():
            arrays, attrs = _path("linear", 9.0, {}).to_record()
            s.write_record(None, "paths", name, arrays=arrays, attrs={**attrs, "ends": _ends(a, b)})
    return path


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    path = write(tmp_path_factory.mktemp("paths") / "pairs.h5")
    return report.report(path, path.parent / "out", figures=False, interactive=False)


def _t_interval(x: list[float]) -> tuple[float, float, float]:
    x = np.asarray(x, float)
    half = scipy.stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_aligned_paths_are_their_own_kind_not_linear(built):
    kinds = {r[2] for r in built.barriers.rows}
    assert kinds == {"linear", "aligned", "bezier"}
    by_name = {r[-1].split("/")[-1]: r[2] for r in built.barriers.rows}
    assert by_name["aligned_lr0.1-seed0_lr0.1-seed1"] == "aligned"
    assert by_name["linear_lr0.1-seed0_lr0.1-seed1"] == "linear"


def test_barriers_over_pairs_per_configuration_and_kind(built):
    rows = json.loads(built.json.read_text())["path_barriers"]
    got = {(r["config"], r["kind"]): r for r in rows}
    assert set(got) == {(f"lr={c.split('=')[1]}", k) for c, k in PEAKS}
    for (config, kind), pairs in PEAKS.items():
        r = got[(config, kind)]
        peaks = list(pairs.values())
        assert r["n_pairs"] == len(peaks) and r["ends"] == "final"
        for key, scale in (("barrier", 1.0), ("test barrier", TEST_SCALE)):
            values = [scale * p for p in peaks]
            assert r[key]["n"] == len(peaks)
            assert r[key]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
            if len(values) > 1:
                _, lo, hi = _t_interval(values)
                assert r[key]["ci"] == pytest.approx([lo, hi], abs=1e-12)
            else:
                assert r[key]["ci"] is None
        assert r["accuracy barrier"]["mean"] == pytest.approx(0.0)
    md = built.markdown.read_text()
    assert "## Barriers over pairs of seeds" in md
    mean, lo, hi = _t_interval([1.0, 2.0, 3.0])
    assert f"| lr=0.1 | linear | final | 3 | {mean:.4g} \\[{lo:.3g}, {hi:.3g}\\]" in md


def test_pairs_across_configurations_or_to_itself_and_repeats_are_left_out():
    runs = [{"run": "a", "config": "c"}, {"run": "b", "config": "c"}, {"run": "z", "config": "d"}]

    def p(a: str, b: str, barrier: float) -> dict:
        return {
            "a": a,
            "b": b,
            "a_which": "final",
            "b_which": "final",
            "kind": "linear",
            "barrier": barrier,
            "accuracy barrier": None,
            "test barrier": None,
        }

    paths = [p("a", "b", 1.0), p("b", "a", 5.0), p("a", "a", 7.0), p("a", "z", 9.0)]
    (row,) = path_barriers(runs, paths)
    assert row["n_pairs"] == 1 and row["barrier"]["mean"] == 1.0 and row["pairs"] == ["a-b"]
    assert row["test barrier"]["mean"] is None and row["test barrier"]["n"] == 0


def test_class_mean_overlap_and_outlier_counts_per_configuration(built):
    doc = json.loads(built.json.read_text())
    by_run = {r["run"]: r for r in doc["runs"]}
    counts = {0: 3, 1: 2, 2: 4}
    for seed, (overlap, _) in PROBES.items():
        m = by_run[f"lr0.1-seed{seed}"]["measures"]
        assert m["class_mean_overlap"] == pytest.approx(overlap)
        assert m["class_mean_chance"] == pytest.approx(CHANCE)
        assert m["hessian_outliers"] == counts[seed]
    (cfg,) = [c for c in doc["configs"] if c["config"].startswith("lr=0.1")]
    for name, values in (
        ("class_mean_overlap", [PROBES[s][0] for s in SEEDS]),
        ("hessian_outliers", [counts[s] for s in SEEDS]),
    ):
        mean, lo, hi = _t_interval(values)
        assert cfg["measures"][name]["mean"] == pytest.approx(mean, abs=1e-12)
        assert cfg["measures"][name]["ci"] == pytest.approx([lo, hi], abs=1e-12)
    assert cfg["measures"]["class_mean_chance"]["mean"] == pytest.approx(CHANCE)


def test_share_of_the_linear_barrier_removed_by_weight_matching(built):
    doc = json.loads(built.json.read_text())
    (row,) = doc["matching_share"]  # lr=0.5 has no aligned path
    assert row["config"] == "lr=0.1" and row["ends"] == "final" and row["n_pairs"] == 3
    linear, aligned = PEAKS[("lr=0.1", "linear")], PEAKS[("lr=0.1", "aligned")]
    want = {pair: 1 - aligned[pair] / linear[pair] for pair in linear}  # 0.5, 0.875, 0.75
    got = dict(zip(row["pairs"], row["shares"], strict=True))
    assert got == pytest.approx({f"lr0.1-seed{i}-lr0.1-seed{j}": v for (i, j), v in want.items()})
    mean, lo, hi = _t_interval(list(want.values()))
    assert row["share"]["mean"] == pytest.approx(mean, abs=1e-12)
    assert row["share"]["ci"] == pytest.approx([lo, hi], abs=1e-12)
    md = built.markdown.read_text()
    assert "## Barrier removed by weight matching" in md
    assert f"| {mean:.4g} \\[{lo:.3g}, {hi:.3g}\\] | 0.5 / 0.875 / 0.75 |" in md


def test_share_needs_a_positive_linear_barrier():
    runs = [{"run": "a", "config": "c"}, {"run": "b", "config": "c"}]
    paths = [
        {"a": "a", "b": "b", "a_which": "final", "b_which": "final", "kind": k, "barrier": v}
        for k, v in (("linear", 0.0), ("aligned", 0.1))
    ]
    (row,) = matching_share(runs, paths)
    assert row["shares"] == [None] and row["share"]["mean"] is None
    assert row["share"]["n_dropped"] == 1
