"""Results round-trip through the store by one mechanism (RecordMixin), with their cost.

Records written before results had a ``cost`` (flat counters) or before the record protocol (older
layouts) still load.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from landscape.engine.cost import Cost
from landscape.engine.records import LEGACY_COST, legacy_cost
from landscape.store.file import Store
from probes.curvature.results import BlockEigenvalues, Eigenvalues, Trace
from probes.implicit_bias.results import (
    MaxMargin,
    Measures,
    Norms,
    PowerLawFit,
    WeightSpectra,
)
from probes.paths.results import Curve, Instability, Path, WeightMatching
from probes.sharpness.results import Epsilon, WorstCase


def same(a, b) -> bool:
    """Two results hold the same values (arrays equal with their dtype; NaN equals NaN)."""
    if type(a) is not type(b):
        return False
    if dataclasses.is_dataclass(a) and not isinstance(a, Cost):
        return all(same(getattr(a, f.name), getattr(b, f.name)) for f in dataclasses.fields(a))
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b


def through_store(result, tmp_path, kind="probes"):
    path = tmp_path / "r.h5"
    with Store(path, "a") as s:
        if "r" not in s:
            s.create_run("r", names=["w"], shapes=[(1,)], init=np.zeros(1))
        arrays, attrs = result.to_record()
        s.write_record("r", kind, "x", arrays=arrays, attrs=attrs)
    with Store(path) as s:
        return s.record("r", kind, "x")


def eigenvalues(curvature="hessian", **cost) -> Eigenvalues:
    return Eigenvalues(
        values=np.array([1.0, 2.0]),
        vectors=None,
        residuals=np.zeros(2),
        errors=np.zeros(2),
        converged=np.ones(2, bool),
        which="largest",
        k=2,
        tol=1e-6,
        curvature=curvature,
        params=("a.weight", "a.bias"),
        cost=Cost(**cost),
        restarts=1,
    )


def path(kind="linear") -> Path:
    return Path(
        kind=kind,
        alphas=np.linspace(0, 1, 3),
        loss=np.array([0.1, 0.4, 0.2]),
        accuracy=np.array([1.0, 0.5, 1.0]),
        test_loss=None,
        test_accuracy=None,
        buffers="none",
        mode="eval",
        params=("w",),
        cost=Cost(passes=3.0, loss_evals=3, seconds=0.5),
        info={"run": "sgd"},
    )


# ------------------------------------------------------------------------- the protocol
def test_nested_ragged_mapped_and_sequence_fields_round_trip(tmp_path):
    blocks = BlockEigenvalues(
        {"layers.0": eigenvalues(hvp=3), "": eigenvalues("ggn", ggn_vp=4)},
        Cost(hvp=3, ggn_vp=4, passes=2.0, seconds=1.5),
    )
    fits = (PowerLawFit(alpha=2.5, xmin=0.1, ks_distance=0.05, n_tail=12, stderr=0.4), None)
    spectra = WeightSpectra(
        layers=("a", "b"),
        shapes=((3, 2), (2, 2)),
        singular_values=(np.array([3.0, 1.0]), np.array([2.0, 0.5])),
        effective_rank=np.array([1.5, 1.8]),
        stable_rank=np.ones(2),
        alpha=(2.5, None),
        alpha_reason=(None, "too few"),
        fits=fits,
        min_eigenvalues=50,
        min_tail=10,
        cost=Cost(seconds=0.1),
    )
    measures = Measures(
        values={"loss": 0.5, "margin_min": None},
        skipped={"margin_min": "no"},
        layers=("a",),
        per_layer={"frobenius": np.ones(1), "alpha": np.full(1, np.nan)},
        options={"include": ["norms"], "rho": 0.05},
        cost=Cost(passes=4.0),
    )
    matching = WeightMatching(
        model=object(),
        perms={"layers.0": np.array([1, 0], np.int64)},
        iterations=2,
        converged=True,
        objective_before=1.0,
        objective_after=2.0,
        objective=np.array([1.0, 2.0]),
        matched=("layers.0.weight",),
        max_iter=100,
        seed=0,
        cost=Cost(seconds=0.2),
    )
    forks = Instability.of(
        (path(), path()),
        ks=np.array([0, 4]),
        seeds=(1, 2),
        seed=0,
        end=8,
        config={"optimizer": {"name": "sgd"}},
        n=3,
        recalibrate=False,
        steps=20,
        cost=Cost(passes=6.0, seconds=3.0),
    )
    for result in (blocks, spectra, measures, matching, forks, path()):
        record = through_store(result, tmp_path)
        back = type(result).from_record(record)
        if isinstance(result, WeightMatching):
            assert back.model is None
            back = dataclasses.replace(back, model=result.model)
        assert same(back, result), type(result).__name__
        assert "cost" in record.attrs and not {"n_hvp", "passes", "seconds"} & set(record.attrs)
    record = through_store(forks, tmp_path)
    assert record.attrs["barriers"] == forks.barriers.tolist()
    assert same(Instability.from_record(record).paths[1], forks.paths[1])


def test_a_curve_record_reads_as_a_curve_and_the_probe_names_its_kind(tmp_path):
    curve = Curve(
        **{f.name: getattr(path("bezier"), f.name) for f in dataclasses.fields(Path)},
        bend=np.ones(2),
        train_loss=np.ones(3),
        train_t=np.zeros(3),
        steps=3,
        lr=0.1,
        batch_size=4,
        seed=0,
        optimizer="adam",
    )
    record = through_store(curve, tmp_path, "paths")
    assert record.attrs["probe"] == "interpolation.bezier"
    assert same(Path.from_record(record), curve) and same(Curve.from_record(record), curve)
    assert (
        through_store(path("init_to_final"), tmp_path, "paths").attrs["probe"]
        == "interpolation.init_to_final"
    )
    with pytest.raises(ValueError, match="not 'interpolation.bezier'"):
        Curve.from_record(path().to_record())


# ------------------------------------------------------------------------- older records
def test_flat_counters_of_older_records_become_the_cost(tmp_path):
    new = eigenvalues(hvp=7, passes=3.0, seconds=0.25)
    arrays, attrs = new.to_record()
    old = {
        **{k: v for k, v in attrs.items() if k != "cost"},
        "n_hvp": 7,
        "passes": 3.0,
        "seconds": 0.25,
    }
    assert same(Eigenvalues.from_record((arrays, old)), new)
    ggn = Eigenvalues.from_record((arrays, {**old, "curvature": "ggn"}))
    assert ggn.cost == Cost(ggn_vp=7, passes=3.0, seconds=0.25)
    # through a file, and without the fields added later (mode, restarts: their defaults)
    path_ = tmp_path / "old.h5"
    with Store(path_, "w") as s:
        s.write_record(
            None,
            "probes",
            "old",
            arrays=arrays,
            attrs={k: v for k, v in old.items() if k not in ("mode", "restarts")},
        )
    with Store(path_) as s:
        back = Eigenvalues.from_record(s.record(None, "probes", "old"))
    assert back.cost == new.cost and back.mode == "eval" and back.restarts == 0

    trace = {
        "probe": "hessian.trace",
        "value": 3.0,
        "stderr": 0.1,
        "method": "hutch++",
        "n_probes": 4,
        "sketch": 2,
        "n_hvp": 8,
        "passes": 8.0,
        "seconds": 0.1,
        "curvature": "hessian",
        "seed": 0,
        "n_params": 5,
        "target_stderr": None,
        "converged": True,
    }
    assert Trace.from_record(({"samples": np.ones(4)}, trace)).cost == Cost(
        hvp=8, passes=8.0, seconds=0.1
    )
    worst = WorstCase(
        value=0.1,
        clean_loss=0.2,
        worst_loss=0.3,
        clean_accuracy=None,
        worst_accuracy=None,
        delta_norm=0.05,
        rho=0.05,
        norm="l2",
        adaptive=False,
        steps=2,
        restarts=0,
        m=None,
        seed=0,
        mode="eval",
        n_params=3,
        n_batches=1,
        cost=Cost(passes=5.0, loss_evals=1, grad_evals=2, seconds=0.2),
    )
    arrays, attrs = worst.to_record()
    attrs = {
        **{k: v for k, v in attrs.items() if k != "cost"},
        "grad_evals": 2,
        "loss_evals": 1,
        "passes": 5.0,
        "seconds": 0.2,
    }
    assert same(WorstCase.from_record((arrays, attrs)), worst)
    eps = {
        "probe": "sharpness.epsilon",
        "value": 1.0,
        "clean_loss": 0.1,
        "max_loss": 0.2,
        "eps": 1e-3,
        "subspace": None,
        "max_iter": 5,
        "seed": 0,
        "mode": "eval",
        "n_iter": 3,
        "n_evals": 6,
        "message": "ok",
        "n_params": 2,
        "passes": 7.0,
        "seconds": 0.3,
    }
    back = Epsilon.from_record(({"delta": np.zeros(2), "y": np.zeros(2), "bound": np.ones(2)}, eps))
    assert back.n_iter == 3 and back.cost == Cost(grad_evals=6, passes=7.0, seconds=0.3)
    old_path = {**path().to_record()[1], "n_evals": 3, "passes": 3.0, "seconds": 0.5}
    del old_path["cost"]
    assert same(Path.from_record((path().to_record()[0], old_path)), path())
    norms = {
        "probe": "norms",
        "layers": ["a"],
        "shapes": [[2, 2]],
        "log_prod_frobenius": 0.0,
        "log_prod_spectral": 0.0,
        "sum_frobenius_sq": 1.0,
        "sum_spectral_sq": 1.0,
        "param_norm": 1.0,
        "dist_param_norm": None,
        "path_norm": None,
        "strict": True,
        "n_params": 4,
        "seconds": 0.5,
        "input_shape": None,
    }
    back = Norms.from_record(({"frobenius": np.ones(1), "spectral": np.ones(1)}, norms))
    assert back.cost == Cost(seconds=0.5) and back.shapes == ((2, 2),)
    mm = {
        "probe": "ground_truth.max_margin",
        "intercept": 0.0,
        "margin": 1.0,
        "norm": "l2",
        "bias": False,
        "solver": "nnls-ldp",
        "seconds": 0.01,
    }
    arrays = {"direction": np.ones(2), "weights": np.ones(2), "support": np.arange(2)}
    assert MaxMargin.from_record((arrays, mm)).cost == Cost(seconds=0.01)
    assert legacy_cost({"n_hvp": 2, "passes": [1]}) == Cost(hvp=2)  # lists are no counters
    assert set(LEGACY_COST.values()) <= {f.name for f in dataclasses.fields(Cost)}


def test_older_layouts_still_load():
    old_eig = {
        "probe": "hessian.eigenvalues",
        "which": "largest",
        "k": 1,
        "tol": 1e-6,
        "curvature": "hessian",
        "mode": "eval",
        "n_hvp": 3,
        "passes": 1.0,
        "seconds": 0.1,
        "params": ["a.weight"],
        "restarts": 0,
    }
    arrays = {
        f"{i}_{k}": np.array([float(i)])
        for i in range(2)
        for k in ("values", "residuals", "errors")
    }
    arrays.update({f"{i}_converged": np.ones(1, bool) for i in range(2)})
    blocks = BlockEigenvalues.from_record(
        (
            arrays,
            {
                "probe": "hessian.eigenvalues.blocks",
                "n_hvp": 6,
                "seconds": 0.3,
                "blocks": [{"block": "a", **old_eig}, {"block": "b", **old_eig}],
            },
        )
    )
    assert list(blocks.blocks) == ["a", "b"] and blocks.blocks["b"].values.tolist() == [1.0]
    assert blocks.cost == Cost(hvp=6, seconds=0.3) and blocks.blocks["a"].cost.hvp == 3

    measures = Measures.from_record(
        (
            {"layer_frobenius": np.ones(2), "layer_alpha": np.zeros(2)},
            {
                "probe": "measures",
                "values": {"loss": 0.1},
                "skipped": {},
                "layers": ["a", "b"],
                "options": {},
                "passes": 9.0,
                "seconds": 1.0,
            },
        )
    )
    assert sorted(measures.per_layer) == ["alpha", "frobenius"]
    assert measures.cost == Cost(passes=9.0, seconds=1.0)

    nan = np.nan
    spectra = WeightSpectra.from_record(
        (
            {
                "singular_values": np.array([3.0, 1.0, 2.0]),
                "counts": np.array([2, 1]),
                "effective_rank": np.ones(2),
                "stable_rank": np.ones(2),
                "alpha": np.array([2.5, nan]),
                "xmin": np.array([0.1, nan]),
                "ks_distance": np.array([0.05, nan]),
                "alpha_stderr": np.array([0.4, nan]),
                "n_tail": np.array([12, 0]),
            },
            {
                "probe": "weight_spectra",
                "layers": ["a", "b"],
                "shapes": [[2, 2], [1, 2]],
                "alpha_reason": [None, "too few"],
                "min_eigenvalues": 50,
                "min_tail": 10,
                "seconds": 0.1,
            },
        )
    )
    assert spectra.alpha == (2.5, None) and spectra.fits[1] is None
    assert spectra.fits[0] == PowerLawFit(
        alpha=2.5, xmin=0.1, ks_distance=0.05, n_tail=12, stderr=0.4
    )
    assert [s.tolist() for s in spectra.singular_values] == [[3.0, 1.0], [2.0]]

    forks = Instability.from_record(
        (
            {"ks": np.array([0, 4]), "alphas": np.linspace(0, 1, 3), "loss": np.ones((2, 3))},
            {
                "probe": "instability",
                "seeds": [1, 2],
                "seed": 0,
                "end": 8,
                "config": {},
                "n": 3,
                "recalibrate": False,
                "steps": 20,
                "seconds": 2.0,
                "buffers": "none",
                "mode": "eval",
                "params": ["w"],
                "path_n_evals": [3, 3],
                "path_passes": [4.0, 5.0],
                "path_seconds": [0.1, 0.2],
                "barriers": [0.0, 0.0],
            },
        )
    )
    assert forks.paths[1].cost == Cost(loss_evals=3, passes=5.0, seconds=0.2)
    assert forks.cost == Cost(seconds=2.0) and forks.accuracy is None

    matching = WeightMatching.from_record(
        (
            {"perm_0": np.array([1, 0]), "perm_1": np.array([0, 2, 1]), "objective": np.ones(2)},
            {
                "probe": "interpolation.align",
                "layers": ["l.0", "l.2"],
                "iterations": 1,
                "converged": True,
                "objective_before": 1.0,
                "objective_after": 1.0,
                "matched": [],
                "max_iter": 10,
                "seed": 0,
                "seconds": 0.4,
            },
        )
    )
    assert list(matching.perms) == ["l.0", "l.2"] and matching.perms["l.2"].tolist() == [0, 2, 1]
    assert matching.cost == Cost(seconds=0.4) and matching.model is None
