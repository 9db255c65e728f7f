"""The probes on a CUDA device against their CPU results, and their time on each.

Every check builds the same float32 problem on the CPU and on the GPU (scikit-learn's digits,
so that no package beyond torch, NumPy, SciPy, scikit-learn, h5py and tqdm is needed), runs
the probe on both, and prints the largest relative difference and the seconds on each device
(after one warm-up call). Stochastic probes (trace, density) draw their probes from generators
on their own device, so CPU and GPU see different probes: they are compared through their
standard errors. Run where a GPU is:

    PYTHONPATH=. python benchmarks/gpu_check.py [--json OUT.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import traceback

import numpy as np
import torch
from torch import nn

from landscape import data, models

RESULTS: dict[str, dict] = {}

SWEEP = """
name = "gpu"
[base]
model = {name = "mlp", width = 64}
data = {name = "digits"}
train = {epochs = 5, batch_size = 64, seed = 0}
[grid]
optimizer = [{name = "sgd", lr = 0.05}, {name = "adam", lr = 0.003}]
[probes]
hessian = {k = 2}
[surfaces.r]
x = [-1.0, 1.0, 7]
y = [-1.0, 1.0, 7]
"""


def timed(fn, sync: bool):
    fn()  # warm-up
    sync = sync and torch.cuda.is_available()
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if sync:
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def check(name: str):
    def wrap(fn):
        def run(*args):
            try:
                RESULTS[name] = fn(*args)
                print(f"{name}: {RESULTS[name]}", flush=True)
            except Exception as exc:  # a broken check must not hide the others
                RESULTS[name] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"{name}: FAILED\n{traceback.format_exc()}", flush=True)

        return run

    return wrap


def rel(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-30)))


def problem(device: str, width: int = 128):
    split = data.standardize(data.digits())
    x, y = split.train
    model = models.build("mlp", in_features=64, num_classes=10, width=width, depth=2, seed=0)
    return model.to(device).eval(), (x.to(device), y.to(device)), split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json")
    parser.add_argument("--device", default="cuda", help="cpu: a dry run of the script")
    args = parser.parse_args()
    dev = args.device
    if dev == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device")
    print(
        f"torch {torch.__version__}, "
        f"{torch.cuda.get_device_name() if dev == 'cuda' else 'cpu dry run'}",
        flush=True,
    )
    loss_fn = nn.CrossEntropyLoss()
    (cpu_model, cpu_data, split), (gpu_model, gpu_data, _) = problem("cpu"), problem(dev)

    @check("train (fit on cuda, 300 Adam steps)")
    def _train():
        from landscape.train.config import TrainConfig
        from landscape.train.fit import fit

        out = {}
        for where, model in (("cpu", cpu_model), (dev, gpu_model)):
            start = time.perf_counter()
            result = fit(
                model,
                "cross_entropy",
                tuple(t.to(where) for t in split.train),
                TrainConfig(
                    "adam", lr=1e-3, max_steps=300, seed=0, history_every=0, snapshot_every=0
                ),
            )
            out[f"{where} ({id(model) % 97})"] = {
                "seconds": time.perf_counter() - start,
                "stop": result.stop_reason,
            }
        cpu_theta = torch.cat([p.detach().reshape(-1) for p in cpu_model.parameters()])
        gpu_theta = torch.cat([p.detach().reshape(-1).cpu() for p in gpu_model.parameters()])
        out["max |theta_cpu - theta_gpu|"] = float((cpu_theta - gpu_theta).abs().max())
        return out

    _train()

    @check("HVP throughput (products/s, digits MLP width 128 and 1024, 1437 examples)")
    def _hvp():
        from landscape import Objective

        out = {}
        for width in (128, 1024):
            for where in ("cpu", dev):
                model = problem(where, width=width)[0]
                dat = cpu_data if where == "cpu" else gpu_data
                obj = Objective(model, loss_fn, dat)
                v = torch.randn_like(obj.theta)
                n = 20

                def run(obj=obj, v=v, n=n):
                    for _ in range(n):
                        obj.hvp(None, v)

                _, t = timed(run, where == "cuda")
                out[f"width {width}, {where}"] = n / t
        return out

    _hvp()

    @check("hessian.eigenvalues (k=5, tol=1e-6)")
    def _eig():
        from probes.curvature import hessian

        c, tc = timed(lambda: hessian.eigenvalues(cpu_model, loss_fn, cpu_data, k=5), False)
        g, tg = timed(lambda: hessian.eigenvalues(gpu_model, loss_fn, gpu_data, k=5), True)
        return {
            "values_cpu": c.values.tolist(),
            "rel_diff": rel(g.values, c.values),
            "converged": bool(g.all_converged),
            "hvp": [c.cost.hvp, g.cost.hvp],
            "seconds": [tc, tg],
        }

    _eig()

    @check("hessian.eigenvalues smallest + ggn + fisher")
    def _eig_more():
        from probes.curvature import hessian

        out = {}
        for what, kw in (
            ("smallest", {"which": "smallest", "k": 3}),
            ("ggn", {"curvature": "ggn", "k": 3}),
            ("fisher", {"curvature": "fisher", "k": 3}),
        ):
            c = hessian.eigenvalues(cpu_model, loss_fn, cpu_data, **kw)
            g = hessian.eigenvalues(gpu_model, loss_fn, gpu_data, **kw)
            out[what] = {"rel_diff": rel(g.values, c.values), "cpu": c.values.tolist()}
        return out

    _eig_more()

    @check("hessian.trace (hutch++, 99 products)")
    def _trace():
        from probes.curvature import hessian

        c, tc = timed(lambda: hessian.trace(cpu_model, loss_fn, cpu_data, n_products=99), False)
        g, tg = timed(lambda: hessian.trace(gpu_model, loss_fn, gpu_data, n_products=99), True)
        z = abs(c.value - g.value) / float(np.hypot(c.stderr, g.stderr))
        return {"cpu": [c.value, c.stderr], "gpu": [g.value, g.stderr], "z": z, "seconds": [tc, tg]}

    _trace()

    @check("hessian.density (5 x 80)")
    def _density():
        from probes.curvature import hessian

        c, tc = timed(lambda: hessian.density(cpu_model, loss_fn, cpu_data), False)
        g, tg = timed(lambda: hessian.density(gpu_model, loss_fn, gpu_data), True)
        return {
            "mean cpu/gpu": [c.moment(1), g.moment(1)],
            "integral gpu": float(np.trapezoid(g.density, g.grid)),
            "seconds": [tc, tg],
        }

    _density()

    @check("along.top_eigenvalues (fit callback, warm starts)")
    def _along():
        from landscape.train.config import TrainConfig
        from landscape.train.fit import fit
        from probes.along import top_eigenvalues

        model = copy.deepcopy(gpu_model)
        cb = top_eigenvalues(gpu_data, every=25, k=1)
        r = fit(
            model,
            "cross_entropy",
            gpu_data,
            TrainConfig("gd", lr=0.05, max_steps=100),
            callbacks=[cb],
        )
        s = r.series["lambda_max"]
        return {"lambda_max": s["value"].tolist(), "n_hvp": s["n_hvp"].tolist()}

    _along()

    @check("surface (2-D, 11 x 11, train + test)")
    def _surface():
        from landscape.surfaces import directions
        from landscape.surfaces.grid import surface

        out = {}
        d0 = directions.random(cpu_model, k=2, seed=0).vectors
        grid = np.linspace(-1, 1, 11)
        for where, model, dat in (("cpu", cpu_model, cpu_data), ("gpu", gpu_model, gpu_data)):
            place = next(model.parameters()).device
            test = tuple(t.to(place) for t in split.test)
            d = d0.to(place)
            s, t = timed(
                lambda m=model, dd=dat, d=d, test=test: surface(
                    m, loss_fn, dd, d, x=grid, y=grid, test=test
                ),
                place.type == "cuda",
            )
            out[where] = (s, t)
        c, g = out["cpu"][0], out["gpu"][0]
        return {
            "rel_diff_train_loss": rel(g.train_loss, c.train_loss),
            "points/s": [121 / out["cpu"][1], 121 / out["gpu"][1]],
        }

    _surface()

    @check("surface throughput on the device (21 x 21, points/s: vmap, loop, bound)")
    def _throughput():
        from landscape.surfaces import directions
        from landscape.surfaces.grid import surface

        d = directions.random(gpu_model, k=2, seed=0).vectors.to(dev)
        grid = np.linspace(-1, 1, 21)
        n = grid.size**2
        out = {}
        for vm in (True, False):
            s, t = timed(
                lambda vm=vm: surface(gpu_model, loss_fn, gpu_data, d, x=grid, y=grid, vmap=vm),
                dev == "cuda",
            )
            out[f"vmap={vm}"] = n / t

        def bound():
            with torch.no_grad():
                x, y = gpu_data
                for _ in range(n):
                    out_ = gpu_model(x)
                    loss_fn(out_, y)
                    (out_.argmax(1) == y).sum()

        _, t = timed(bound, dev == "cuda")
        out["bound (bare forward a point)"] = n / t
        out["vmap / bound"] = out["vmap=True"] / out["bound (bare forward a point)"]
        return out

    _throughput()

    @check("sharpness (worst-case adaptive l2 and linf, epsilon; average-case, PAC-Bayes)")
    def _sharpness():
        from probes import sharpness

        out = {}
        for what, fn in (
            (
                "worst adaptive l2",
                lambda m, d: sharpness.worst_case(m, loss_fn, d, rho=0.5, adaptive=True, steps=10),
            ),
            (
                "worst linf",
                lambda m, d: sharpness.worst_case(m, loss_fn, d, rho=0.01, norm="linf", steps=10),
            ),
            ("epsilon", lambda m, d: sharpness.epsilon(m, loss_fn, d, max_iter=5)),
        ):
            c, tc = timed(lambda fn=fn: fn(cpu_model, cpu_data), False)
            g, tg = timed(lambda fn=fn: fn(gpu_model, gpu_data), dev == "cuda")
            out[what] = {"cpu": c.value, "rel_diff": rel(g.value, c.value), "seconds": [tc, tg]}
        # random draws come from a generator on each device: compared through their errors
        c = sharpness.average_case(cpu_model, loss_fn, cpu_data, rho=0.5, adaptive=True)
        g = sharpness.average_case(gpu_model, loss_fn, gpu_data, rho=0.5, adaptive=True)
        out["average adaptive"] = {
            "cpu": [c.value, c.stderr],
            "gpu": [g.value, g.stderr],
            "z": abs(c.value - g.value) / float(np.hypot(c.stderr, g.stderr)),
        }
        c = sharpness.pac_bayes(cpu_model, loss_fn, cpu_data, depth=8)
        g = sharpness.pac_bayes(gpu_model, loss_fn, gpu_data, depth=8)
        out["pac_bayes sigma"] = {"cpu": c.sigma, "gpu": g.sigma}
        return out

    _sharpness()

    @check("measures (norms, margins, spectra, gradient noise)")
    def _measures():
        from probes.implicit_bias.suite import measures

        init_cpu = models.build("mlp", in_features=64, num_classes=10, width=128, depth=2, seed=5)
        kw = {"include": ["norms", "margins", "spectra", "noise"]}
        c, tc = timed(lambda: measures(cpu_model, loss_fn, cpu_data, init=init_cpu, **kw), False)
        g, tg = timed(
            lambda: measures(
                gpu_model, loss_fn, gpu_data, init=copy.deepcopy(init_cpu).to(dev), **kw
            ),
            dev == "cuda",
        )
        diffs = {
            k: rel(g.values[k], v)
            for k, v in c.values.items()
            if v is not None and g.values[k] is not None
        }
        worst = max(diffs, key=diffs.get)
        return {
            "n": len(diffs),
            "largest rel_diff": [worst, diffs[worst]],
            "skipped": sorted(c.skipped),
            "seconds": [tc, tg],
        }

    _measures()

    @check("directions (random on cuda, pca, hessian)")
    def _directions():
        from landscape.surfaces import directions

        r = directions.random(gpu_model, k=2, seed=3)
        h = directions.hessian(gpu_model, loss_fn, gpu_data, k=2)
        traj = torch.stack(
            [
                torch.cat([p.detach().reshape(-1) for p in gpu_model.parameters()])
                + 0.01 * i * r.vectors[0]
                for i in range(5)
            ]
        )
        from landscape.surfaces import trajectories

        pc = trajectories.pca(traj, traj[-1], k=1)
        rc = directions.random(cpu_model, k=2, seed=3)
        return {
            "random_device": str(r.vectors.device),
            "random rel_diff cpu/gpu": rel(r.vectors.cpu(), rc.vectors),
            "hessian_eigs": h.eigenvalues.tolist()
            if getattr(h, "eigenvalues", None) is not None
            else None,
            "pca_explained": np.asarray(pc.explained_variance).tolist(),
        }

    _directions()

    @check("alignment (align on cuda, function unchanged)")
    def _align():
        from probes.paths.alignment import align

        a = copy.deepcopy(gpu_model)
        b = (
            models.build("mlp", in_features=64, num_classes=10, width=128, depth=2, seed=1)
            .to(dev)
            .eval()
        )
        res = align(a, b)
        x = gpu_data[0]
        with torch.no_grad():
            diff = float((res.model(x) - b(x)).abs().max())
        return {"max |f(aligned) - f(b)|": diff, "iterations": res.iterations}

    _align()

    @check("interpolation (linear path and barrier)")
    def _interp():
        from probes.paths import interpolation

        b_cpu = models.build("mlp", in_features=64, num_classes=10, width=128, depth=2, seed=1)
        c = interpolation.linear(cpu_model, b_cpu.eval(), loss_fn, cpu_data, n=11)
        g = interpolation.linear(
            gpu_model, copy.deepcopy(b_cpu).to(dev).eval(), loss_fn, gpu_data, n=11
        )
        return {"rel_diff_loss": rel(g.loss, c.loss), "barrier": [c.barrier, g.barrier]}

    _interp()

    @check("sweep --device (CLI, in-process and 2 workers, against the CPU sweep)")
    def _sweep():
        import tempfile
        from pathlib import Path

        from landscape.cli.main import main as cli
        from landscape.store.file import Store

        spec = Path(tempfile.mkdtemp()) / "gpu.toml"
        spec.write_text(SWEEP)
        files = {k: spec.with_name(f"{k}.h5") for k in ("cpu", "gpu", "gpu2")}
        seconds = {}
        for key, extra in (
            ("cpu", []),
            ("gpu", ["--device", dev]),
            ("gpu2", ["--device", dev, "--workers", "2"]),
        ):
            start = time.perf_counter()
            assert (
                cli(
                    ["sweep", str(spec), "--out", str(files[key]), "--quiet", "--no-report", *extra]
                )
                == 0
            ), key
            seconds[key] = round(time.perf_counter() - start, 2)
        out = {"seconds": seconds}
        with Store(files["cpu"]) as c, Store(files["gpu"]) as g, Store(files["gpu2"]) as g2:
            for run in c.runs():
                out[f"{run} device"] = g.info(run).attrs.get("device")
                out[f"{run} final rel"] = rel(g.params(run), c.params(run))
                out[f"{run} workers == in-process"] = bool(
                    np.array_equal(g.params(run), g2.params(run))
                )
                for kind, names in (
                    ("probes", c.info(run).probes),
                    ("surfaces", c.info(run).surfaces),
                ):
                    for name in names:
                        a, b = c.record(run, kind, name).arrays, g.record(run, kind, name).arrays
                        keys = (
                            ["values"]
                            if kind == "probes"
                            else [k for k in a if k.endswith(("_loss", "_accuracy"))]
                        )
                        out[f"{run} {name} rel"] = {k: rel(b[k], a[k]) for k in keys}
        return out

    _sweep()

    if args.json:
        with open(args.json, "w") as f:
            json.dump(RESULTS, f, indent=1, default=str)


if __name__ == "__main__":
    main()
