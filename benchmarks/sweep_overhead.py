"""What does running a sweep cost beyond its parts (target: orchestration + storage <= 5%)?

Runs ``experiments/quick.toml`` (with random surface directions) with ``landscape sweep``'s
executor in this process into a fresh file, then computes the same parts alone, in memory,
with no file: each run's training (with its along-training probe), its end-of-run probes, its
surface and its init-to-final path, and the paths between runs. Prints both wall times and
the overhead ratio ``sweep / sum(parts) - 1``, and the fixed cost per run in seconds.

quick.toml itself computes for well under a second a run, so its ratio measures the fixed cost
of a job (rebuilding the run from the file, opening and committing the file once a record,
about 0.2 s a run here) rather than orchestration on a sweep worth running; ``--epochs`` and
``--n-train`` (defaults 40 and 2000) give each run a few seconds of training, as in a real
sweep. ``--epochs 0`` keeps quick.toml as it is. One run (the CPU may be shared).

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/sweep_overhead.py [--epochs 40 --n-train 2000]
"""

from __future__ import annotations

import argparse
import copy
import importlib
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from landscape.engine import losses
from landscape.surfaces import directions
from landscape.surfaces.grid import surface
from landscape.sweep.run import run_sweep
from landscape.sweep.spec import load
from landscape.train.fit import fit
from landscape.train.spec import build
from probes.along import top_eigenvalues
from probes.paths import interpolation

SPEC = Path(__file__).resolve().parents[1] / "experiments" / "quick.toml"


def parts(sweep) -> dict[str, float]:
    """Seconds of each part of the sweep computed alone, in memory."""
    out = {"training": 0.0, "probes": 0.0, "surfaces": 0.0, "paths": 0.0}
    finals = {}
    for run in sweep.runs:
        t0 = time.perf_counter()
        model, split, loss, config, _, _ = build(run.spec)
        x, y = split.train
        cbs = [
            top_eigenvalues(
                (x[: o.get("n", len(y))], y[: o.get("n", len(y))]),
                o["every"],
                name=name,
                **{k: v for k, v in o.items() if k in ("k", "tol", "curvature")},
            )
            for name, o in sweep.along.items()
        ]
        start = copy.deepcopy(model)
        init = torch.nn.utils.parameters_to_vector(model.parameters()).detach().clone()
        fit(model, loss, split, config, callbacks=cbs)
        out["training"] += time.perf_counter() - t0
        loss_fn = losses.get(loss)
        t0 = time.perf_counter()
        for module, fn_name, opts in sweep.probes.values():
            opts = dict(opts)
            n = opts.pop("n", len(y))
            if fn_name == "measures":
                opts["init"] = init
            getattr(importlib.import_module(f"probes.{module}"), fn_name)(
                model, loss_fn, (x[:n], y[:n]), **opts
            )
        out["probes"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        for o in sweep.surfaces.values():
            d = directions.random(model, k=2 if "y" in o else 1, seed=o.get("seed", 0))
            n = o.get("n", len(y))
            surface(
                model,
                loss_fn,
                (x[:n], y[:n]),
                d,
                x=np.linspace(*o["x"]),
                y=np.linspace(*o["y"]) if "y" in o else None,
                test=split.test,
            )
        out["surfaces"] += time.perf_counter() - t0
        t0 = time.perf_counter()
        if sweep.init_to_final:
            interpolation.linear(
                start,
                model,
                loss_fn,
                split.train,
                test=split.test,
                n=sweep.path_options.get("points", 25),
            )
        out["paths"] += time.perf_counter() - t0
        finals[run.name] = (model, loss_fn, split)
    t0 = time.perf_counter()
    for a, b, _ in sweep.between:
        ma, loss_fn, split = finals[a]
        interpolation.linear(
            ma,
            finals[b][0],
            loss_fn,
            split.train,
            test=split.test,
            n=sweep.path_options.get("points", 25),
        )
    out["paths"] += time.perf_counter() - t0
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--n-train", type=int, default=2000)
    args = parser.parse_args()
    sweep = load(SPEC)
    for o in sweep.surfaces.values():
        o["directions"] = "random"
    if args.epochs:
        for run in sweep.runs:
            run.spec["train"]["epochs"] = args.epochs
            run.spec["data"]["n_train"] = args.n_train
    parts(sweep)  # warm-up: imports, data cache, first-call costs
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_sweep(sweep, Path(tmp) / "s.h5")
        wall = time.perf_counter() - t0
    alone = parts(sweep)
    total = sum(alone.values())
    print(f"sweep {sweep.name!r}: {len(sweep.runs)} runs, threads {torch.get_num_threads()}")
    print(
        "parts alone: "
        + ", ".join(f"{k} {v:.2f} s" for k, v in alone.items())
        + f"; sum {total:.2f} s"
    )
    print(
        f"sweep wall time {wall:.2f} s; orchestration + storage overhead "
        f"{wall / total - 1:+.1%} (target <= 5%), {(wall - total) / len(sweep.runs):.2f} s "
        "a run"
    )


if __name__ == "__main__":
    main()
