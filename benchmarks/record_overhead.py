"""What recording costs: a training run with full recording, with none, and as a bare loop.

For an MLP and the 1-D CNN on MNIST-1D (Adam, batch 128), three ways of running the same
steps on the same batches:

- ``bare``: a hand-written torch loop (zero_grad, forward, backward, step), nothing else;
- ``fit, no recording``: :func:`landscape.train.fit` with ``history_every=0``,
  ``snapshot_every=0`` and no file (it still evaluates the first and the last point);
- ``fit, recording``: ``fit`` at the default recording interval into an HDF5 file: history
  (whole training and test sets evaluated), trajectory snapshots, file commits.

Prints the fastest wall-clock time of each over interleaved repeats (the least disturbed by
other processes) and the ratios; the target is that full recording costs at most 5% over no
recording. Since whole-run timings on a shared machine move by several percent from one repeat
to the next, it also prints the accounting inside each recording run: the seconds fit spent
recording (evaluations, snapshots, commits) over the seconds it spent training, measured in the
same process, step by step. ``--every`` sets the recording interval (steps)
to see how the cost grows when one records more often.

Run:  .venv/bin/python benchmarks/record_overhead.py [--repeats 5] [--epochs 40]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile

import torch
from _timing import samples  # benchmarks/_timing.py: the script's folder is on sys.path
from torch import nn

from landscape import data, models
from landscape.train.fit import DEFAULT_EPOCHS_BETWEEN_RECORDS, TrainConfig, fit


def bare_loop(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> None:
    """The same updates as fit: Adam, batches from randperm of a seeded generator."""
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optimizer.lr)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(cfg.seed)
    n, b, steps = len(y), cfg.batch_size, 0
    total = int(cfg.epochs * -(-n // b))
    model.train()
    while steps < total:
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, b):
            idx = perm[start : start + b]
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
            if steps == total:
                break


def compare(name: str, kwargs: dict, split: data.Split, args: argparse.Namespace) -> None:
    """Time the three ways on one model and print the figures."""
    x, y = split.train
    base = models.build(name, kwargs, seed=0)
    cfg = TrainConfig("adam", lr=1e-2, batch_size=128, epochs=args.epochs, seed=0)
    quiet = TrainConfig(
        "adam",
        lr=1e-2,
        batch_size=128,
        epochs=args.epochs,
        seed=0,
        history_every=0,
        snapshot_every=0,
    )
    loud = TrainConfig(
        "adam",
        lr=1e-2,
        batch_size=128,
        epochs=args.epochs,
        seed=0,
        history_every=args.every,
        snapshot_every=args.every,
    )
    tmp = tempfile.mkdtemp()
    counter = iter(range(10**6))
    info: dict = {}

    def recording() -> None:
        path = os.path.join(tmp, f"r{next(counter)}.h5")
        r = fit(copy.deepcopy(base), "cross_entropy", split, loud, store=path, run="adam")
        info.update(
            rows=len(r.history["step"]),
            steps=r.steps,
            acc=r.final["test_acc"],
            size=os.path.getsize(path),
        )
        info.setdefault("share", []).append(r.record_seconds / r.seconds)
        os.remove(path)

    runs = {
        "bare": lambda: bare_loop(copy.deepcopy(base), x, y, cfg),
        "fit, no recording": lambda: fit(copy.deepcopy(base), "cross_entropy", split, quiet),
        "fit, recording": recording,
    }
    runs["bare"]()  # warm-up
    med = {k: min(v) for k, v in samples(runs, args.repeats).items()}
    print(
        f"\n{name}: {info['steps']} steps, {info['rows']} history rows and snapshots, "
        f"file {info['size'] / 1e6:.2f} MB, test accuracy {info['acc']:.3f}"
    )
    for key, value in med.items():
        print(f"  {key:<20} {value:7.3f} s   x{value / med['bare']:.3f} of bare")
    over = med["fit, recording"] / med["fit, no recording"] - 1
    print(f"  recording overhead over no recording: {over:+.1%} (target <= +5%)")
    share = statistics.median(info["share"])
    print(
        f"  inside the recording runs: recording {share:.1%} of training time "
        f"(median of {len(info['share'])})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=float, default=40)
    ap.add_argument(
        "--every",
        type=int,
        default=None,
        help="recording interval in steps (default: fit's default)",
    )
    args = ap.parse_args()
    split = data.standardize(data.mnist1d())
    print(
        f"MNIST-1D, {len(split.y_train)} training examples, Adam lr 1e-2, batch 128, "
        f"{args.epochs:g} epochs; default recording interval "
        f"{DEFAULT_EPOCHS_BETWEEN_RECORDS} epochs; torch threads {torch.get_num_threads()}"
    )
    for name, kwargs in (("mlp", {"in_features": 40, "num_classes": 10}), ("cnn1d", {})):
        compare(name, kwargs, split, args)


if __name__ == "__main__":
    main()
