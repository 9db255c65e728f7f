"""Two landscape files compared number by number, except wall-clock times.

Every dataset of every run, probe, surface, path and comparison.
"""

from __future__ import annotations

import h5py
import numpy as np

# datasets that hold wall-clock time, not results
TIMES = ("time", "seconds")


def numbers(path) -> dict[str, np.ndarray]:
    """Every dataset of the file by its path, except times."""
    out: dict[str, np.ndarray] = {}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset) and name.rsplit("/", 1)[-1] not in TIMES:
            out[name] = obj[()]

    with h5py.File(path, "r", locking=False) as f:
        f.visititems(visit)
    return out


def differences(a, b) -> list[str]:
    """What differs between two files' numbers (empty when the same)."""
    na, nb = numbers(a), numbers(b)
    bad = [f"only in {a}: {k}" for k in sorted(na.keys() - nb.keys())]
    bad += [f"only in {b}: {k}" for k in sorted(nb.keys() - na.keys())]
    for k in sorted(na.keys() & nb.keys()):
        x, y = na[k], nb[k]
        if x.dtype.kind in "fc":
            same = x.shape == y.shape and np.array_equal(x, y, equal_nan=True)
        elif x.dtype.kind == "O":  # variable-length rows (e.g. parameter shapes)
            same = x.shape == y.shape and all(
                np.array_equal(u, v) for u, v in zip(x.ravel(), y.ravel(), strict=True)
            )
        else:
            same = x.shape == y.shape and np.array_equal(x, y)
        if not same:
            bad.append(f"differs: {k}")
    return bad
