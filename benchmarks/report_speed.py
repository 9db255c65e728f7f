"""How long does the report of a 60-run study take, figures excluded (target: <= 30 s)?

Builds a synthetic landscape file shaped like the main job's (issue 16): 20 configurations (5
optimizers x 2 learning rates x 2 inits, random and random_labels) x 3 seeds = 60 complete
runs, every one with a ``converged`` flag and the sweep's stop target (6 missed it), 30
measures (a ``measures`` probe with 27 values, ``lambda_max``, ``hessian_trace`` and a
PAC-Bayes probe), and a linear path between the good and the bad minimum of each optimizer
setting and seed (30 paths under ``/compare``). Then times :func:`landscape.report.report`
with ``figures=False`` at its default statistics (2000 bootstrap samples, 9999 permutations a
measure, 32 rows) and prints the seconds and the ratio to the 30 s target, with the share of
the statistics (:func:`landscape.report.analysis.analyse` alone on the same runs).

    .venv/bin/python benchmarks/report_speed.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from landscape.engine.cost import Cost
from landscape.report import report
from landscape.report.analysis import analyse
from landscape.report.read import collect
from landscape.store.file import Store
from probes.curvature.results import Eigenvalues, Trace
from probes.implicit_bias.results import Measures
from probes.paths.results import Path as PathResult
from probes.sharpness.results import PacBayes

TARGET_S = 30.0
OPTIMIZERS = ("gd", "sgd", "momentum", "adam", "sam")
LRS = (0.05, 0.1)
INITS = ("random", "random_labels")
SEEDS = (0, 1, 2)
MEASURE_NAMES = (
    "dist_init",
    "param_norm",
    "log_prod_frobenius",
    "log_prod_spectral",
    "sum_frobenius",
    "sum_spectral",
    "path_norm",
    "fisher_rao",
    "margin_min",
    "margin_q10",
    "margin_normalised_q10",
    "inverse_margin_q10_sq",
    "alpha_mean",
    "stable_rank_mean",
    "effective_rank_mean",
    "noise_trace",
    "noise_scale",
    "sharpness_worst",
    "sharpness_worst_adaptive",
    "sharpness_average",
    "sharpness_average_adaptive",
    "sharpness_worst_logit",
    "sharpness_worst_m128",
    "pac_bayes_flatness",
    "pac_bayes_flatness_magnitude",
    "dist_init_relative",
    "log_sum_frobenius",
)
P = 16


def _records(rng: np.random.Generator, gap: float) -> dict[str, tuple[dict, dict]]:
    values = {
        m: float(gap * (1 + i % 5) + rng.normal(0, 0.05)) for i, m in enumerate(MEASURE_NAMES)
    }
    values.update(loss=0.01, accuracy=1.0)
    top = 5 + 20 * gap + rng.normal(0, 0.5)
    eig = Eigenvalues(
        values=np.array([top / 2, top]),
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
    trace = Trace(
        value=10 * top,
        stderr=0.1,
        method="hutch++",
        n_probes=2,
        sketch=2,
        cost=Cost(passes=1.0, hvp=6),
        curvature="hessian",
        seed=0,
        n_params=P,
        target_stderr=None,
        converged=True,
        samples=np.ones(2),
    )
    flat = 1 + 10 * gap + abs(rng.normal(0, 0.3))
    pac = PacBayes(
        sigma=flat**-0.5,
        flatness=flat,
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
        n_params=P,
        cost=Cost(passes=1.0),
        sigmas=np.ones(2),
        accuracies=np.ones(2),
    )
    measures = Measures(values=values, skipped={}, layers=("w",))
    return {
        "measures": measures.to_record(),
        "hessian_eigenvalues": eig.to_record(),
        "hessian_trace": trace.to_record(),
        "sharpness_pac_bayes": pac.to_record(),
    }


def _path(barrier: float) -> tuple[dict, dict]:
    loss = np.array([0.01, 0.01 + barrier / 2, 0.01 + barrier, 0.01 + barrier / 2, 0.01])
    return PathResult(
        kind="linear",
        alphas=np.linspace(0, 1, 5),
        loss=loss,
        accuracy=np.ones(5),
        test_loss=None,
        test_accuracy=None,
        buffers="none",
        mode="eval",
        params=("w",),
        cost=Cost(passes=5.0, loss_evals=5),
        info={},
    ).to_record()


def build_file(path: Path, seed: int = 0) -> Path:
    """The synthetic 60-run study (module docstring)."""
    rng = np.random.default_rng(seed)
    stop = {"train_loss": 0.01, "max_steps": 5000}
    with Store(path, "w") as s:
        for i, (opt, lr, init, sd) in enumerate(
            (o, lr, init, sd) for o in OPTIMIZERS for lr in LRS for init in INITS for sd in SEEDS
        ):
            name = f"{opt}-lr{lr}-{init}-seed{sd}"
            config = f"{opt}-lr{lr}-{init}"
            base = 0.05 + 0.02 * OPTIMIZERS.index(opt) + (0.15 if init == "random_labels" else 0)
            test_acc = float(np.clip(0.95 - base + rng.normal(0, 0.01), 0, 1))
            converged = i % 10 != 7  # 6 of 60 miss the target
            s.create_run(
                name,
                names=["w"],
                shapes=[(P,)],
                init=rng.normal(size=P),
                attrs={"optimizer": {"name": opt, "lr": lr}, "batch_size": 32, "seed": sd},
            )
            s.set_final(
                name,
                rng.normal(size=P),
                status="complete",
                attrs={
                    "final_metrics": {
                        "train_acc": 1.0 if converged else 0.97,
                        "test_acc": test_acc,
                        "train_loss": 0.01 if converged else 0.08,
                        "test_loss": 0.5 + base,
                    },
                    "steps": int(1000 + 300 * OPTIMIZERS.index(opt) + rng.integers(0, 200)),
                    "stop_reason": "target_loss" if converged else "max_steps",
                    "converged": converged,
                    "sweep": {
                        "name": "optimizers",
                        "axes": {"optimizer": opt, "lr": lr, "init": init, "train.seed": sd},
                        "config": config,
                        "seed": sd,
                        "stop": stop,
                    },
                },
            )
            for rec, (arrays, attrs) in _records(rng, 1 - test_acc).items():
                s.write_record(name, "probes", rec, arrays=arrays, attrs=attrs)
        for opt in OPTIMIZERS:
            for lr in LRS:
                for sd in SEEDS:
                    a, b = f"{opt}-lr{lr}-random-seed{sd}", f"{opt}-lr{lr}-random_labels-seed{sd}"
                    arrays, attrs = _path(abs(rng.normal(0.5, 0.1)))
                    ends = {
                        "from": {"run": a, "which": "final"},
                        "to": {"run": b, "which": "final"},
                    }
                    s.write_record(
                        None,
                        "paths",
                        f"linear_{a}_final_{b}_final",
                        arrays=arrays,
                        attrs={**attrs, "ends": ends},
                    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed reports (the median counts)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = build_file(Path(tmp) / "study.h5")
        built = time.perf_counter() - t0
        times, stats = [], []
        for i in range(args.repeats):
            t0 = time.perf_counter()
            r = report(path, Path(tmp) / f"out{i}", figures=False)
            times.append(time.perf_counter() - t0)
            with Store(path) as s:
                runs, paths = collect(s, [])
            t0 = time.perf_counter()
            analyse(runs, paths)
            stats.append(time.perf_counter() - t0)
        med, med_stats = float(np.median(times)), float(np.median(stats))
        d, c = r.study["design"], r.study["counts"]
        print(f"file: {c['runs']} runs ({c['included']} included, {c['configs']} configurations),")
        print(
            f"      {len(r.study['rankings'])} ranking rows, {len(r.study['good_vs_bad'])} "
            f"optimizer settings good vs bad, {len(r.barriers.rows)} paths (built in {built:.1f} s)"
        )
        print(f"statistics: n_boot {d['n_boot']}, n_perm {d['n_perm']}, {d['correction_name']}")
        print(
            f"report(figures=False): median {med:.2f} s of {args.repeats} "
            f"({', '.join(f'{t:.2f}' for t in times)}); statistics alone {med_stats:.2f} s"
        )
        print(f"ratio to the {TARGET_S:.0f} s target: {med / TARGET_S:.3f}")


if __name__ == "__main__":
    main()
