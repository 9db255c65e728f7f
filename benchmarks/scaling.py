"""How much faster does a sweep of 8 runs go on 2 cores with 2 workers (target >= 1.7x)?

A CPU-bound sweep (8 runs: 2 optimizers x 4 seeds of an MLP on 2000 MNIST-1D examples, the
Hessian's top eigenvalue at the end of each, a 9 x 9 random-direction surface around each,
done in the run's own task: 8 runs are tasks enough for 2 workers) is run four ways into
fresh files, one after another:

- in this process with torch's default threads (what ``landscape sweep`` does unasked),
- in this process with 1 thread,
- 2 local worker processes (``--workers 2``, 1 thread each),
- Ray with 2 CPUs (a local instance; its start-up is timed apart; 1 thread a task).

Prints the wall times, the speed-ups over the first (and over the 1-thread sequential run),
checks that all four files hold the same numbers, and Ray's cost per task: its wall time
beyond the 1-thread work split at the ceiling (below), divided by its tasks (the same for
the local processes, for comparison). One run (the CPU may be shared).

First it measures the machine's own ceiling: a fixed 1-thread torch training loop run twice
one after the other, then twice at once in two processes (3 rounds, the median ratio). Two
processes can never beat that ratio, whatever the scheduler; on a machine whose 2 CPUs do
not give twice the work of one (shared or hyper-threaded cores), it is below 2.

    .venv/bin/python benchmarks/scaling.py [--epochs 60]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from landscape.sweep.run import run_sweep
from landscape.sweep.spec import loads
from tests.filecompare import differences  # noqa: E402

SPEC = """
name = "scaling"
[base]
model = {{name = "mlp", width = 64, depth = 2}}
data = {{name = "mnist1d", n_train = 2000, n_test = 1000}}
train = {{epochs = {epochs}, batch_size = 32, seed = 0}}
[grid]
optimizer = [{{name = "sgd", lr = 0.05, momentum = 0.9}}, {{name = "adam", lr = 0.002}}]
"train.seed" = [0, 1, 2, 3]
[probes]
n = 1000
hessian = {{k = 1}}
[surfaces.r]
x = [-1.0, 1.0, 9]
y = [-1.0, 1.0, 9]
n = 1000
test = false
"""


BURN = """
import time, torch
torch.set_num_threads(1)
torch.manual_seed(0)
m = torch.nn.Sequential(torch.nn.Linear(40, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64),
                        torch.nn.ReLU(), torch.nn.Linear(64, 10))
opt = torch.optim.SGD(m.parameters(), lr=0.01)
x, y = torch.randn(32, 40), torch.randint(0, 10, (32,))
start = time.perf_counter()
for _ in range(3000):
    opt.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    opt.step()
print(time.perf_counter() - start)
"""


def ceiling(rounds: int = 3) -> float:
    """Work done by two 1-thread processes at once, relative to one after the other."""

    def burn(n: int) -> list[float]:
        procs = [
            subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True)
            for _ in range(n)
        ]
        return [float(p.communicate()[0]) for p in procs]

    ratios = []
    for _ in range(rounds):
        alone = burn(1) + burn(1)
        together = burn(2)
        ratios.append(sum(alone) / max(together))
    return statistics.median(ratios)


def _timed(spec, path, **kw) -> tuple[float, int]:
    start = time.perf_counter()
    done = run_sweep(spec, path, **kw)
    return time.perf_counter() - start, len(done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()
    spec = loads(SPEC.format(epochs=args.epochs))
    default_threads = torch.get_num_threads()
    tmp = Path(tempfile.mkdtemp(prefix="scaling-"))
    print(
        f"{len(spec.runs)} runs, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"default threads {default_threads}"
    )
    top = ceiling()
    print(
        f"the machine's ceiling: 2 processes do {top:.2f}x the work of 1 (a fixed 1-thread "
        "loop, twice at once vs twice in a row; median of 3)"
    )

    seq, n_seq = _timed(spec, tmp / "seq.h5")
    print(f"in-process, {default_threads} threads: {seq:7.1f} s  ({n_seq} jobs)")
    torch.set_num_threads(1)
    seq1, _ = _timed(spec, tmp / "seq1.h5")
    print(f"in-process, 1 thread:  {seq1:7.1f} s")
    torch.set_num_threads(2)
    local, n_local = _timed(spec, tmp / "local.h5", workers=2)
    print(
        f"2 local workers:       {local:7.1f} s  ({n_local} tasks)  "
        f"speed-up {seq / local:.2f}x ({seq1 / local:.2f}x over 1 thread, "
        f"{seq1 / local / top:.0%} of the ceiling)"
    )

    import ray  # noqa: PLC0415 (the optional Ray extra: needed from here on only)

    start = time.perf_counter()
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=256 * 2**20
    )
    ray.get(ray.remote(lambda: None).remote())  # a worker is up
    init = time.perf_counter() - start
    try:
        on_ray, n_ray = _timed(spec, tmp / "ray.h5", executor="ray")
    finally:
        ray.shutdown()
    print(
        f"Ray, 2 CPUs:           {on_ray:7.1f} s  ({n_ray} tasks; +{init:.1f} s to start "
        f"Ray)  speed-up {seq / on_ray:.2f}x ({seq1 / on_ray:.2f}x over 1 thread, "
        f"{seq1 / on_ray / top:.0%} of the ceiling)"
    )
    ideal = seq1 / top
    print(
        f"cost a task beyond a split of the 1-thread work at the ceiling: local processes "
        f"{(local - ideal) / n_local * 1e3:.0f} ms, Ray {(on_ray - ideal) / n_ray * 1e3:.0f} ms"
    )
    for name in ("seq1", "local", "ray"):
        bad = differences(tmp / "seq1.h5", tmp / f"{name}.h5")
        print(
            f"{name}.h5 holds the numbers of the 1-thread sequential sweep: "
            f"{'yes' if not bad else 'NO: ' + '; '.join(bad[:5])}"
        )
    bad = differences(tmp / "seq.h5", tmp / "seq1.h5")
    same = "the same numbers" if not bad else f"{len(bad)} arrays differ (threads reorder sums)"
    print(f"{default_threads} threads vs 1 thread: {same}")


if __name__ == "__main__":
    main()
