"""Interleaved timing for the benchmark scripts: each round runs every callable once.

So drifts of the machine (frequency, other processes) fall on all of them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def samples(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: bool = False
) -> dict[str, list[float]]:
    """Seconds of each callable over ``repeats`` interleaved rounds.

    With ``warmup``, each callable is called once before the first round.
    """
    if warmup:
        for fn in fns.values():
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out
