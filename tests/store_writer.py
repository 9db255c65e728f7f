"""A writer process for the crash tests of tests/test_store.py (run as a script).

``python tests/store_writer.py FILE START STOP`` writes the runs ``r<START>`` ...
``r<STOP-1>`` into FILE, each with data fixed by its index (:func:`expected`), in several
commits: ``create_run`` + commit, trajectory and history appends in :data:`N_COMMITS` commits,
then ``set_final(status="complete")`` in a session of its own. It prints ``start`` once it is
ready and ``complete r<i>`` after each finished run. Imports only numpy and landscape.store
(which must not import torch), so that it starts fast.

``python tests/store_writer.py FILE START STOP POINT:N`` also kills itself with SIGKILL the
N-th time it reaches the window POINT of a commit (``appended``, ``journal-written``,
``half-applied``, ``applied`` or ``committed``; :mod:`landscape.store.journal`), as a crash
there would: a moment of its own progress, the same on a fast machine and a loaded one.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np

from landscape.store import journal
from landscape.store.file import Store

N_COMMITS = 3  # trajectory/history commits per run
ROWS = 4  # snapshots (and history rows) per commit


def expected(i: int) -> dict:
    """Everything run ``r<i>`` holds once complete; float32 for even ``i``, float64 for odd."""
    rng = np.random.default_rng(i)
    dtype = np.float32 if i % 2 == 0 else np.float64
    names = ["layer.weight", "layer.bias", "scale"]
    shapes = [(40, 10 + i % 3), (40,), ()]
    n_params = sum(int(np.prod(s)) for s in shapes)
    n_rows = N_COMMITS * ROWS
    return {
        "names": names,
        "shapes": shapes,
        "init": rng.standard_normal(n_params).astype(dtype),
        "steps": np.arange(n_rows, dtype=np.int64) * 5 + i,
        "traj": rng.standard_normal((n_rows, n_params)).astype(dtype),
        "loss": rng.random(n_rows),
        "final": rng.standard_normal(n_params).astype(dtype),
        "attrs": {
            "index": i,
            "optimizer": "sgd",
            "settings": {"lr": 0.1 * (i + 1), "tags": ["x", None, True]},
        },
    }


def write_run(path: str, i: int) -> None:
    """Write run ``r<i>`` the way a trainer does (replacing an incomplete one)."""
    e, name = expected(i), f"r{i}"
    with Store(path, "a") as s:
        s.create_run(name, names=e["names"], shapes=e["shapes"], init=e["init"], attrs=e["attrs"])
        s.commit()
        for c in range(N_COMMITS):
            rows = slice(c * ROWS, (c + 1) * ROWS)
            s.append_trajectory(name, e["steps"][rows], e["traj"][rows])
            s.append_series(name, "history", {"step": e["steps"][rows], "loss": e["loss"][rows]})
            s.commit()
    with Store(path, "a") as s:
        s.set_final(name, e["final"], status="complete")


def kill_at(point: str, n: int) -> None:
    """SIGKILL this process the ``n``-th time it reaches the window ``point`` of a commit."""
    seen = 0

    def reached(name: str) -> None:
        nonlocal seen
        if name == point:
            seen += 1
            if seen == n:
                os.kill(os.getpid(), signal.SIGKILL)

    journal._crash_point = reached


def main() -> None:
    path, start, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4:
        point, _, n = sys.argv[4].partition(":")
        kill_at(point, int(n))
    print("start", flush=True)
    for i in range(start, stop):
        write_run(path, i)
        print(f"complete r{i}", flush=True)


if __name__ == "__main__":
    main()
