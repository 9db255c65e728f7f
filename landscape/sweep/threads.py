"""The torch CPU threads a sweep's task uses (``[resources] threads``), on every executor.

torch's float sums on the CPU depend on how many threads share them, so a sweep's numbers are
the spec's alone only when every task runs with the same number of threads. With ``[resources]
threads = N`` each task runs with ``N`` torch threads wherever it runs: in the sweep's process
(:func:`using_threads` sets them for the task and restores the previous count after it), in a
local worker process (:func:`worker_env` gives it ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS``
before torch starts, :func:`set_threads` the rest) or in a Ray task (:func:`set_threads`; Ray
sets ``OMP_NUM_THREADS`` to the task's CPUs, which default to ``N``). In a worker the inter-op
threads are set to ``N`` too where torch still allows it (once a process, before its first
inter-op parallel work; else they are left as they are); the sweep's own process keeps its
inter-op threads, which could not be restored after the task. They do not change the numbers.
Without ``threads`` each executor keeps its own count (:func:`task_threads`). A run records
the count it was trained with in ``attrs["threads"]``.

Examples:
    >>> with using_threads(1):
    ...     torch.get_num_threads()
    1
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["THREAD_ENV", "set_threads", "task_threads", "using_threads", "worker_env"]

THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""The environment variables that size the thread pools of a process before torch starts."""


def task_threads(resources: Mapping[str, Any], default: int) -> int:
    """The torch threads of a task: ``[resources] threads``, else the executor's ``default``.

    Args:
        resources: the sweep's ``[resources]`` as given (:attr:`~landscape.sweep.Sweep.resources`).
        default: the executor's own count (the process's threads in-process, their share on
            local workers, the task's CPUs on Ray).

    Returns:
        A count >= 1.
    """
    return max(1, int(resources.get("threads") or default))


def set_threads(threads: int, *, interop: bool = True) -> None:
    """Set this process's torch threads to ``threads``.

    Args:
        threads: the count (>= 1).
        interop: set the inter-op threads too, where torch still allows it (a worker's).
    """
    threads = max(1, int(threads))
    torch.set_num_threads(threads)
    if interop and torch.get_num_interop_threads() != threads:
        with contextlib.suppress(RuntimeError):  # once a process, before inter-op work, only
            torch.set_num_interop_threads(threads)


@contextlib.contextmanager
def using_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` torch threads, then restore the previous count.

    The inter-op threads are left as they are (once set they could not be restored); ``None``
    leaves the count as it is.
    """
    if threads is None:
        yield
        return
    before = torch.get_num_threads()
    set_threads(threads, interop=False)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def worker_env(threads: int | None) -> Iterator[None]:
    """Start processes in the block with ``OMP_NUM_THREADS`` = ``MKL_NUM_THREADS`` = ``threads``.

    This process's own environment is restored after the block; ``None`` changes nothing.
    """
    if threads is None:
        yield
        return
    before = {k: os.environ.get(k) for k in THREAD_ENV}
    os.environ.update({k: str(int(threads)) for k in THREAD_ENV})
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
