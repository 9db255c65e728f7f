"""Probes over torch.distributed ranks: 2 gloo processes on unequal shards against one process.

Each launch runs several checks; the workers write their results to ``.npz`` files that the test
compares with one process on all the data (float64: 1e-8 relative where deterministic; the same
seed gives the same stochastic estimate), and with each other (every rank the same result).
"""

from __future__ import annotations

import copy
import inspect
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from torch import nn

from landscape.engine.objective import Objective
from landscape.surfaces.grid import surface
from probes.curvature.class_means import class_mean_gradients
from probes.curvature.density import density
from probes.curvature.hessian import eigenvalues
from probes.curvature.trace import trace
from probes.implicit_bias.gradient_noise import gradient_noise
from probes.implicit_bias.margins import margins
from probes.implicit_bias.norms import fisher_rao
from probes.paths.interpolation import bezier, linear
from probes.sharpness.average import average_case
from probes.sharpness.worst import worst_case

from .conftest import WAIT

ROOT = Path(__file__).resolve().parents[1]
N, SPLIT = 37, 22  # examples, and the first rank's share (unequal shards)


def build() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """The model and the data, the same in the workers (its source goes into their script)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(37, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (37,), generator=gen)
    return model, x, y


def build_bn() -> tuple[nn.Module, nn.Module]:
    """Two ends of a path with BatchNorm layers (float64), the same in the workers."""
    torch.manual_seed(4)
    net = nn.Sequential(
        nn.Linear(5, 6), nn.BatchNorm1d(6), nn.Tanh(), nn.Linear(6, 4), nn.BatchNorm1d(4),
        nn.Linear(4, 3),
    ).double()  # fmt: skip
    other = copy.deepcopy(net)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.3)
    return net, other


COMMON = "import copy\nimport torch\nfrom torch import nn\n" + inspect.getsource(build)
COMMON += inspect.getsource(build_bn)

WORKER = (
    """
import os, sys, json, datetime
import numpy as np
import torch
import torch.distributed as dist
torch.set_num_threads(1)
rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=600))  # a cap on a hung peer
"""
    + COMMON
    + """
from torch import nn
from landscape.engine.objective import Objective
model, x, y = build()
lo, hi = (0, SPLIT) if rank == 0 else (SPLIT, 37)
shard = (x[lo:hi], y[lo:hi])
out = sys.argv[1]
JOB
dist.barrier()
dist.destroy_process_group()
"""
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _launch(job: str, tmp_path: Path, timeout: float = WAIT) -> list[subprocess.CompletedProcess]:
    """Run ``job`` on 2 gloo ranks (1 thread each); their completed processes."""
    code = WORKER.replace("SPLIT", str(SPLIT)).replace("JOB", textwrap.dedent(job))
    script = tmp_path / "worker.py"
    script.write_text(code)
    port = _port()
    procs = []
    for rank in range(2):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script), str(tmp_path / f"rank{rank}")],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    done = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            raise
        done.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
    return done


def _results(tmp_path: Path, procs: list[subprocess.CompletedProcess]) -> list[dict]:
    for p in procs:
        assert p.returncode == 0, p.stderr[-3000:]
    return [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(2)]


def _close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-8) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    scale = max(float(np.abs(want).max()), 1e-300)
    assert np.abs(got - want).max() <= rtol * scale, (got, want)


PROBES = """
from probes.curvature.density import density
from probes.curvature.trace import trace
from probes.curvature.hessian import eigenvalues
from probes.implicit_bias.gradient_noise import gradient_noise
from probes.paths.interpolation import linear
from probes.sharpness.average import average_case
from probes.sharpness.worst import worst_case
from landscape.surfaces.grid import surface

loss_fn = nn.CrossEntropyLoss()
obj = Objective(model, loss_fn, shard, batch_size=8)
theta = obj.theta
v = torch.randn(2, theta.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
loss, g = obj.loss_and_grad(theta)
m = obj.evaluate(theta)
from landscape.engine.distributed import distributed
sub_loss = Objective(model, loss_fn, shard, group=dist.new_group([0, 1])).loss()  # another group
with distributed(False):  # this rank's data alone
    local = Objective(model, loss_fn, shard)
eig = eigenvalues(model, loss_fn, shard, k=3, tol=1e-10, batch_size=8)
ggn = eigenvalues(model, loss_fn, shard, k=2, tol=1e-10, curvature="ggn", batch_size=8)
tr = trace(model, loss_fn, shard, method="hutchinson", n_products=20, seed=5)
dens = density(model, loss_fn, shard, n_vectors=2, steps=10, seed=4)
worst = worst_case(model, loss_fn, shard, rho=0.05, adaptive=True, steps=5, seed=2)
avg = average_case(model, loss_fn, shard, rho=0.05, n_samples=8, seed=2)
noise = gradient_noise(model, loss_fn, shard, chunk_size=5)
from probes.curvature.class_means import class_mean_gradients
from probes.implicit_bias.margins import margins
from probes.implicit_bias.norms import fisher_rao
mg = margins(model, shard)
fr = fisher_rao(model, loss_fn, shard, chunk_size=4)
cm = class_mean_gradients(model, loss_fn, shard, chunk_size=4)[0]
model_b = build()[0]
with torch.no_grad():
    for p in model_b.parameters():
        p.add_(0.3)
path = linear(model, model_b, loss_fn, shard, n=5)
d = torch.randn(2, theta.numel(), generator=torch.Generator().manual_seed(9), dtype=torch.float64)
surf = surface(model, loss_fn, shard, d, x=[-1.0, 0.0, 0.5], y=[-0.5, 0.5], chunk=2)
worst_m = worst_case(model, loss_fn, shard, rho=0.05, steps=3, m=5, seed=2)  # 20:25 crosses
avg_m = average_case(model, loss_fn, shard, rho=0.05, n_samples=4, m=5, seed=2)
from probes.paths.interpolation import bezier
bn_a, bn_b = build_bn()
d_bn = torch.randn(2, sum(p.numel() for p in bn_a.parameters()), dtype=torch.float64,
                   generator=torch.Generator().manual_seed(9))
bn_surf = surface(bn_a, loss_fn, shard, d_bn, x=[-0.5, 0.5], y=[0.0, 0.5], bn="recalibrate",
                  batch_size=8, chunk=2)  # the batches of 8 of all the data cross the shards
bn_path = linear(bn_a, bn_b, loss_fn, shard, n=3, recalibrate=True, batch_size=8)
curve = bezier(bn_a, bn_b, loss_fn, shard, steps=4, batch_size=6, n=3, seed=1, eval_batch_size=8)
from torch.utils.data import DataLoader, TensorDataset
try:  # a loader's own batches: no union of the shards to draw from
    bezier(bn_a, bn_b, loss_fn, DataLoader(TensorDataset(*shard), batch_size=8), steps=1, n=2)
    refused = "not refused"
except ValueError as exc:
    refused = str(exc)
from landscape.store.file import Store

if rank == 0:
    with Store(out + ".h5", "w") as st:
        st.create_run("a", names=["w"], shapes=[(1,)], init=np.zeros(1))
points = surface(
    model, loss_fn, (x, y), d, x=[-1.0, 0.0, 0.5], y=[-0.5, 0.5], chunk=2, parallel="points",
    store=out + ".h5" if rank == 0 else None, run="a" if rank == 0 else None,
)
np.savez(
    out,
    loss=loss.numpy(), grad=g.numpy(), hvp=obj.hvp(theta, v).numpy(),
    ggn_vp=obj.ggn_vp(theta, v).numpy(), eval=np.array([m.loss, m.accuracy, m.n_examples]),
    eig=eig.values, ggn=ggn.values, trace=np.array([tr.value]), density=dens.density,
    worst=np.array([worst.value]), avg=np.array([avg.value]),
    noise=np.array([noise.trace, noise.grad_norm_sq, noise.n_examples]),
    path=path.loss, path_acc=path.accuracy, surf=surf.grids["train_loss"],
    surf_acc=surf.grids["train_accuracy"],
    points=points.grids["train_loss"],
    margins=mg.margins, margin_q=np.array([mg.quantile, mg.minimum]), fisher_rao=fr.inner,
    class_means=cm,
    sub_loss=sub_loss.numpy(), local=np.array([local.n_examples, local.loss().item()]),
    worst_m=np.array([worst_m.value, worst_m.clean_loss, worst_m.worst_loss]),
    avg_m=np.array([avg_m.value, avg_m.stderr, avg_m.mean_loss]),
    bn_surf=bn_surf.grids["train_loss"], bn_surf_acc=bn_surf.grids["train_accuracy"],
    bn_path=bn_path.loss, bn_path_acc=bn_path.accuracy,
    bezier=curve.loss, bezier_acc=curve.accuracy, bezier_train=curve.train_loss,
    bezier_bend=curve.bend, refused=np.array(refused),
)
"""


def _one_process() -> dict:
    model, x, y = build()
    data, loss_fn = (x, y), nn.CrossEntropyLoss()
    obj = Objective(model, loss_fn, data, batch_size=8)
    theta = obj.theta
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(2, theta.numel(), generator=gen, dtype=torch.float64)
    loss, g = obj.loss_and_grad(theta)
    m = obj.evaluate(theta)
    model_b = build()[0]
    with torch.no_grad():
        for p in model_b.parameters():
            p.add_(0.3)
    gen = torch.Generator().manual_seed(9)
    d = torch.randn(2, theta.numel(), generator=gen, dtype=torch.float64)
    surf = surface(model, loss_fn, data, d, x=[-1.0, 0.0, 0.5], y=[-0.5, 0.5], chunk=2)
    noise = gradient_noise(model, loss_fn, data, chunk_size=5)
    mg = margins(model, data)
    worst_m = worst_case(model, loss_fn, data, rho=0.05, steps=3, m=5, seed=2)
    avg_m = average_case(model, loss_fn, data, rho=0.05, n_samples=4, m=5, seed=2)
    bn_a, bn_b = build_bn()
    gen = torch.Generator().manual_seed(9)
    d_bn = torch.randn(2, sum(p.numel() for p in bn_a.parameters()), generator=gen, dtype=d.dtype)
    bn_surf = surface(
        bn_a, loss_fn, data, d_bn, x=[-0.5, 0.5], y=[0.0, 0.5], bn="recalibrate", batch_size=8
    )
    bn_path = linear(bn_a, bn_b, loss_fn, data, n=3, recalibrate=True, batch_size=8)
    curve = bezier(bn_a, bn_b, loss_fn, data, steps=4, batch_size=6, n=3, seed=1, eval_batch_size=8)
    return {
        "worst_m": np.array([worst_m.value, worst_m.clean_loss, worst_m.worst_loss]),
        "avg_m": np.array([avg_m.value, avg_m.stderr, avg_m.mean_loss]),
        "bn_surf": bn_surf.grids["train_loss"],
        "bn_surf_acc": bn_surf.grids["train_accuracy"],
        "bn_path": bn_path.loss,
        "bn_path_acc": bn_path.accuracy,
        "bezier": curve.loss,
        "bezier_acc": curve.accuracy,
        "bezier_train": curve.train_loss,
        "bezier_bend": curve.bend,
        "loss": loss.numpy(),
        "grad": g.numpy(),
        "hvp": obj.hvp(theta, v).numpy(),
        "ggn_vp": obj.ggn_vp(theta, v).numpy(),
        "eval": np.array([m.loss, m.accuracy, m.n_examples]),
        "eig": eigenvalues(model, loss_fn, data, k=3, tol=1e-10).values,
        "ggn": eigenvalues(model, loss_fn, data, k=2, tol=1e-10, curvature="ggn").values,
        "trace": np.array(
            [trace(model, loss_fn, data, method="hutchinson", n_products=20, seed=5).value]
        ),
        "density": density(model, loss_fn, data, n_vectors=2, steps=10, seed=4).density,
        "worst": np.array(
            [worst_case(model, loss_fn, data, rho=0.05, adaptive=True, steps=5, seed=2).value]
        ),
        "avg": np.array([average_case(model, loss_fn, data, rho=0.05, n_samples=8, seed=2).value]),
        "noise": np.array([noise.trace, noise.grad_norm_sq, noise.n_examples]),
        "path": linear(model, model_b, loss_fn, data, n=5).loss,
        "path_acc": linear(model, model_b, loss_fn, data, n=5).accuracy,
        "surf": surf.grids["train_loss"],
        "surf_acc": surf.grids["train_accuracy"],
        "points": surf.grids["train_loss"],
        "margins": mg.margins,
        "margin_q": np.array([mg.quantile, mg.minimum]),
        "fisher_rao": fisher_rao(model, loss_fn, data, chunk_size=4).inner,
        "class_means": class_mean_gradients(model, loss_fn, data, chunk_size=4)[0],
    }


def test_every_probe_family_equals_one_process_on_all_the_data(tmp_path: Path) -> None:
    from landscape.store.file import Store
    from landscape.surfaces.result import Surface

    ranks = _results(tmp_path, _launch(PROBES, tmp_path))
    want = _one_process()
    with Store(tmp_path / "rank0.h5") as s:  # the point-parallel surface, written by rank 0
        stored = Surface.from_record(s.record("a", "surfaces", "surface"))
    assert stored.done.all()
    _close(stored.grids["train_loss"], want["surf"])
    assert not (tmp_path / "rank1.h5").exists()
    for r, (lo, hi) in enumerate([(0, SPLIT), (SPLIT, N)]):
        _close(ranks[r]["sub_loss"], want["loss"])
        net, xs, ys = build()
        mine = Objective(net, nn.CrossEntropyLoss(), (xs[lo:hi], ys[lo:hi]))
        _close(ranks[r]["local"], [hi - lo, mine.loss().item()])
    for r in ranks:
        assert str(r["refused"]).startswith("bezier: fitting a curve over torch.distributed")
        assert "\n" not in str(r["refused"])
    for key, value in want.items():
        for r in ranks:
            _close(r[key], value)
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key])  # every rank the same


def test_ranks_with_other_parameters_are_refused_and_a_failing_rank_takes_the_others_down(
    tmp_path: Path,
) -> None:
    job = """
    if rank == 1:
        with torch.no_grad():
            model[0].bias[0] += 1e-12
    try:
        Objective(model, nn.CrossEntropyLoss(), shard)
    except ValueError as exc:
        print("REFUSED", exc)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import distribute_module
    from torch.nn.parallel import DistributedDataParallel

    mesh = init_device_mesh("cpu", (2,))
    wrapped = {
        "DTensor": distribute_module(build()[0], mesh),
        "FSDP": fully_shard(build()[0], mesh=mesh),
        "DistributedDataParallel": DistributedDataParallel(build()[0]),
    }
    for kind, net in wrapped.items():
        try:
            Objective(net, nn.CrossEntropyLoss(), shard)
        except ValueError as exc:
            print("SHARDED", kind, exc)
    if rank == 1:
        raise RuntimeError("rank 1 fails here")
    Objective(build()[0], nn.CrossEntropyLoss(), shard)  # waits for rank 1 in a collective
    """
    procs = _launch(job, tmp_path)
    for p in procs:
        lines = [line for line in p.stdout.splitlines() if line.startswith("REFUSED")]
        assert len(lines) == 1 and "the ranks hold different parameters" in lines[0]
        assert "\n" not in lines[0]
    for p in procs:
        sharded = [line for line in p.stdout.splitlines() if line.startswith("SHARDED")]
        assert [line.split()[1] for line in sharded] == [
            "DTensor",
            "FSDP",
            "DistributedDataParallel",
        ]
        assert "DTensor" in sharded[0] and "FSDP" in sharded[1] and "model.module" in sharded[2]
    assert procs[1].returncode != 0 and "rank 1 fails here" in procs[1].stderr
    assert procs[0].returncode != 0  # not left waiting: an error of its own


CLI_SCRIPT = """
import runpy, sys
for argv in [ARGVS]:  # each as `python -m landscape ...`, one after the other in one launch
    sys.argv = ["landscape", *argv]
    try:
        runpy.run_module("landscape", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        if exc.code:
            raise
"""


def test_cli_probe_surface_and_path_under_torchrun_equal_one_process(tmp_path: Path) -> None:
    from landscape.cli.main import main
    from landscape.store.file import Store
    from landscape.surfaces.result import Surface
    from probes.curvature.results import Eigenvalues
    from probes.paths.results import Curve

    tiny = ["--data", "digits", "--data-arg", "n_train=61", "--data-arg", "n_test=20"]
    tiny += ["--model", "mlp", "--model-arg", "width=6", "--model-arg", "depth=1"]
    path = tmp_path / "r.h5"
    assert main(["train", str(path), *tiny, "--steps", "5", "--quiet", "--run", "a"]) == 0
    probe = ["hessian", "--k", "2", "--tol", "1e-9"]
    surf = ["--x=-1:1:3", "--y=-1:1:2", "--quiet"]
    bend = ["--from", "a:init", "--to", "a", "--kind", "bezier", "--steps", "3"]
    bend += ["--n-points", "4", "--seed", "2"]
    assert main(["probe", str(path), "--run", "a", *probe, "--name", "one"]) == 0
    assert main(["surface", str(path), "--run", "a", *surf, "--name", "one"]) == 0
    assert main(["path", str(path), *bend, "--name", "one"]) == 0
    argvs = [
        ["probe", str(path), "--run-name", "a", *probe, "--name", "two"],
        ["surface", str(path), "--run-name", "a", *surf, "--name", "two"],
        ["path", str(path), *bend, "--name", "two"],
    ]
    script = tmp_path / "cli.py"
    script.write_text(CLI_SCRIPT.replace("ARGVS", ", ".join(map(repr, argvs))))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
         "--master_port", str(_port()), str(script)],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=WAIT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for where in ("probes/two", "runs/a/surfaces/two", "runs/a/paths/two"):
        assert done.stdout.count(f"stored as {where}") == 1, done.stdout  # rank 0 alone writes
    with Store(path) as s:
        one = Eigenvalues.from_record(s.record("a", "probes", "one")).values
        two = Eigenvalues.from_record(s.record("a", "probes", "two")).values
        surfaces = [Surface.from_record(s.record("a", "surfaces", k)) for k in ("one", "two")]
        curves = [Curve.from_record(s.record("a", "paths", k)) for k in ("one", "two")]
    _close(two, one, rtol=1e-4)  # float32 model: the rounding of a reordered sum
    assert surfaces[1].done.all()
    for key in ("train_loss", "test_loss", "train_accuracy", "test_accuracy"):
        _close(surfaces[1].grids[key], surfaces[0].grids[key], rtol=1e-5)
    for key in ("loss", "test_loss", "accuracy", "test_accuracy", "bend", "train_loss"):
        _close(getattr(curves[1], key), getattr(curves[0], key), rtol=1e-5)
