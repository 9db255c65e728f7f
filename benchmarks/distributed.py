"""Data-parallel probes: 2 gloo processes of 1 thread each against 1 process of 1 thread.

A model whose cost is the pass over the data (an MLP on 16384 examples): the top Hessian
eigenvalues (a fixed number of products) and a 6 x 6 surface. Prints each one's seconds on 1 and
on 2 processes, the speed-up, and the share of the 2-process time spent inside the collectives
(:func:`landscape.engine.distributed.communication`). Both runs compute the same values.

Run: ``python benchmarks/distributed.py`` (about a minute). Timings depend on the machine and
on what else runs on it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

WORKER = r"""
import datetime, json, os, sys, time
import torch
import torch.distributed as dist
from torch import nn
torch.set_num_threads(1)
size = int(os.environ.get("WORLD_SIZE", "1"))
rank = int(os.environ.get("RANK", "0"))
if size > 1:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=120))
from landscape.engine import distributed as ld
from landscape.surfaces.grid import surface
from probes.curvature.hessian import eigenvalues
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 256), nn.Tanh(),
                      nn.Linear(256, 10))
gen = torch.Generator().manual_seed(1)
x, y = torch.randn(16384, 64, generator=gen), torch.randint(0, 10, (16384,), generator=gen)
block = ld.shard(len(y), index=rank, size=size)
data = (x[block.start:block.stop], y[block.start:block.stop])
out = {}
for name, job in (
    ("eigenvalues", lambda: eigenvalues(model, nn.CrossEntropyLoss(), data, k=2, tol=1e-12,
                                        max_products=30, check=False).values.tolist()),
    ("surface", lambda: surface(model, nn.CrossEntropyLoss(), data,
                                torch.randn(2, sum(p.numel() for p in model.parameters()),
                                            generator=torch.Generator().manual_seed(2)) * 0.01,
                                x=[i / 5 for i in range(-3, 3)], y=[i / 5 for i in range(-3, 3)],
                                check=False).grids["train_loss"].sum().item()),
):
    if size > 1:
        dist.barrier()
    before, start = ld.communication()["seconds"], time.perf_counter()
    value = job()
    out[name] = {"seconds": time.perf_counter() - start,
                 "comm": ld.communication()["seconds"] - before, "value": value}
if rank == 0:
    print(json.dumps(out))
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(size: int, script: Path) -> dict:
    port, procs = _port(), []
    for rank in range(size):
        env = {
            **os.environ,
            "RANK": str(rank),
            "WORLD_SIZE": str(size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
            )
        )
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit("a worker failed")
    return json.loads(outs[0])


def main() -> None:
    """Time both probes on 1 and on 2 processes and print the comparison."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "worker.py"
        script.write_text(WORKER)
        one, two = _run(1, script), _run(2, script)
    for name in one:
        a, b = one[name], two[name]
        print(
            f"{name}: 1 process {a['seconds']:.2f} s, 2 processes {b['seconds']:.2f} s, "
            f"speed-up {a['seconds'] / b['seconds']:.2f}x, communication "
            f"{100 * b['comm'] / b['seconds']:.1f}% of the 2-process time; "
            f"values {a['value']} vs {b['value']}"
        )


if __name__ == "__main__":
    main()
