"""Reading a landscape file with plain h5py: no landscape, no torch.

A landscape file is ordinary HDF5 (format v1, described in :mod:`landscape.store.file`):
``/runs/<run>/`` holds a run's attributes (plain values, or JSON strings listed in its
``json_attrs`` attribute), its parameters (``init``, ``final``, ``trajectory``), the names
and shapes that cut a flat vector into tensors (``params/names``, ``params/shapes``), its
training history (``history/<metric>``) and its probes, surfaces and paths. Nothing is
pickled, so any HDF5 reader in any language can read it.

This script first trains two small runs into a file with :func:`landscape.fit` (the only part
that needs torch), then reads everything back with h5py and NumPy alone and plots the training
curves with matplotlib.

Run it::

    python examples/read_with_h5py.py [OUT_DIR]

It writes ``read_with_h5py.h5`` and ``read_with_h5py.png`` into ``OUT_DIR`` (default: the
current folder). ``LANDSCAPE_EXAMPLE_SCALE=tiny``: fewer epochs.

Read a file only while no process writes it (``landscape info`` says so), or read a copy:
a writer's uncommitted changes are rolled back by the next :class:`landscape.Store` that
opens the file, not by h5py.
"""

import json
import os
import sys
from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from landscape import TrainConfig, data, fit, models  # the writing half only

TINY = os.environ.get("LANDSCAPE_EXAMPLE_SCALE") == "tiny"
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else ".")


def make_file(path: Path) -> None:
    """Train SGD and Adam on digits into ``path`` (this part uses landscape and torch)."""
    split = data.digits(seed=0)
    epochs = 4 if TINY else 15
    record = {"history_every": 5, "snapshot_every": 20, "epochs": epochs, "seed": 0}
    for name, cfg in {
        "sgd": TrainConfig("sgd", lr=0.2, momentum=0.9, **record),
        "adam": TrainConfig("adam", lr=0.003, **record),
    }.items():
        model = models.build("mlp", in_features=64, num_classes=10, width=32, seed=0)
        fit(
            model,
            "cross_entropy",
            split,
            cfg,
            store=str(path),
            run=name,
            replace_run=True,
            attrs={"model": model.spec},
        )


def attrs_of(obj: h5py.HLObject) -> dict:
    """An HDF5 object's attributes, with the JSON ones decoded."""
    json_keys = set(json.loads(obj.attrs.get("json_attrs", "[]")))
    out = {}
    for key, value in obj.attrs.items():
        if key == "json_attrs":
            continue
        if isinstance(value, bytes):
            value = value.decode()
        elif isinstance(value, np.generic):
            value = value.item()
        out[key] = json.loads(value) if key in json_keys else value
    return out


def unflatten(f: h5py.File, run: str, which: str = "final") -> dict[str, np.ndarray]:
    """A stored flat parameter vector cut into named arrays."""
    group = f["runs"][run]
    names = [n.decode() if isinstance(n, bytes) else n for n in group["params/names"][()]]
    shapes = [tuple(int(d) for d in s) for s in group["params/shapes"][()]]  # variable length
    flat = group[which][()]
    out, start = {}, 0
    for name, shape in zip(names, shapes, strict=True):
        size = int(np.prod(shape))
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def main() -> None:
    """Write the file, then read it with h5py alone and plot the histories."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "read_with_h5py.h5"
    make_file(path)

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.8))
    with h5py.File(path, "r") as f:
        print("file:", attrs_of(f))
        for i, (run, group) in enumerate(f["runs"].items()):
            a = attrs_of(group)
            print(f"run {run}: status {a['status']}, optimizer {a.get('optimizer')}")
            print("  holds:", sorted(group.keys()))
            print("  history:", sorted(group["history"].keys()))
            params = unflatten(f, run)
            print("  final parameters:", {k: v.shape for k, v in params.items()})
            print(
                f"  trajectory {group['trajectory'].shape} at steps "
                f"{group['trajectory_step'][()].tolist()}"
            )
            h = group["history"]
            ax0.plot(h["step"][()], h["train_loss"][()], color=f"C{i}", label=f"{run} train")
            ax0.plot(h["step"][()], h["test_loss"][()], color=f"C{i}", ls="--", label=f"{run} test")
            ax1.plot(h["step"][()], h["test_acc"][()], color=f"C{i}", label=run)
    ax0.set(xlabel="step", ylabel="cross-entropy", yscale="log", title="loss (from h5py)")
    ax1.set(xlabel="step", ylabel="test accuracy", title="test accuracy (from h5py)")
    ax0.legend()
    ax1.legend()
    fig.tight_layout()
    fig.savefig(OUT / "read_with_h5py.png", dpi=100)
    print(f"wrote {OUT / 'read_with_h5py.png'}")


if __name__ == "__main__":
    main()
