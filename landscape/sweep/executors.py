"""Where a sweep's jobs run when they do not run in the sweep's own process.

Local worker processes (:class:`Processes`) or a Ray cluster (:class:`RayCluster`, the optional
extra ``pip install 'landscape[ray]'``). Both run the same task, :func:`work`: it receives the
bytes of a small landscape file that holds what the job reads (the run's stored data, or nothing
for a run to train), does the job into that file with :func:`landscape.sweep.jobs.do_job`, and
returns the file's bytes. The worker never sees the sweep's file, so a Ray worker on another
node needs no shared disk, and the process that runs the sweep stays the only writer of its file
(:mod:`landscape.sweep.dist` merges what comes back). Each task sets torch's CPU threads to the
spec's ``[resources] threads``, or without it to its share (local processes: the parent's
threads divided among the workers; Ray: the CPUs the task asks for), so that on the CPU the
numbers equal those of in-process execution with that many threads
(:mod:`landscape.sweep.threads`).

Examples:
    >>> with RayCluster(address="auto") as ex:          # doctest: +SKIP
    ...     handle = ex.submit(prepared, sweep, job, cpus=1, gpus=0)
"""

from __future__ import annotations

import abc
import ctypes
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor
from concurrent.futures import wait as wait_futures
from typing import Any

import torch

from landscape.sweep.jobs import do_job
from landscape.sweep.threads import set_threads, task_threads, worker_env

__all__ = ["Executor", "Processes", "RayCluster", "die_with_parent", "work"]


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _watch_parent(parent: int, every: float = 1.0) -> None:
    """End this process once ``parent`` is gone (it is then re-parented: its ppid changes)."""
    while os.getppid() == parent:
        time.sleep(every)
    os.kill(os.getpid(), signal.SIGKILL)


def die_with_parent(parent: int) -> None:
    """Make this worker process end when its parent, the sweep's process, ends.

    A worker whose sweep was killed (``kill -9``: no clean-up of its own) would otherwise run
    on, blocked on a pipe or a lock nobody serves. On Linux the kernel kills it at once
    (``prctl(PR_SET_PDEATHSIG, SIGKILL)``); everywhere a daemon thread checks every second
    that the parent is still its parent, and kills the worker when it is not. (The kernel's
    signal comes when the *thread* that started the worker ends: :class:`Processes` starts its
    workers from the thread that submits, the one that runs the sweep and outlives them.)

    Args:
        parent: the pid of the process that started the worker.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):  # no prctl: the thread below does it
            pass
    if os.getppid() != parent:  # gone before the death signal was set up
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def work(prepared: bytes, sweep: Any, job: Any, threads: int) -> bytes:
    """Do ``job`` of ``sweep`` into a private copy of the file ``prepared``; its bytes.

    The task runs with the sweep's ``[resources] threads`` torch threads, else ``threads``.
    """
    set_threads(task_threads(sweep.resources, threads))
    with tempfile.TemporaryDirectory(prefix="landscape-job-") as tmp:
        path = os.path.join(tmp, "job.h5")
        with open(path, "wb") as f:
            f.write(prepared)
        do_job(path, sweep, job)
        with open(path, "rb") as f:
            return f.read()


class Executor(abc.ABC):
    """What :mod:`landscape.sweep.dist` needs of an executor.

    ``slots`` (tasks that run at once), :meth:`submit`, :meth:`wait`, :meth:`result`,
    :meth:`cancel`, :meth:`close`.
    """

    slots: int = 1

    @abc.abstractmethod
    def submit(
        self, prepared: bytes, sweep: Any, job: Any, *, cpus: int = 1, gpus: float = 0
    ) -> Any:
        """Start :func:`work` on ``prepared`` for ``job``; a handle."""

    @abc.abstractmethod
    def wait(self, handles: Iterable[Any]) -> list[Any]:
        """Block until at least one of ``handles`` is done; those done."""

    @abc.abstractmethod
    def result(self, handle: Any) -> bytes:
        """The task's file, or its exception raised here."""

    @abc.abstractmethod
    def cancel(self, handles: Iterable[Any]) -> None:
        """Stop the tasks (the sweep is failing)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Let go of the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Processes(Executor):
    """``workers`` local processes (``multiprocessing`` spawn).

    Each has the sweep's ``[resources] threads`` (started with ``OMP_NUM_THREADS`` and
    ``MKL_NUM_THREADS`` set to it), else ``torch.get_num_threads() // workers`` threads (at
    least 1), and ends with the sweep's process, however that ends (:func:`die_with_parent`).
    """

    def __init__(self, workers: int) -> None:
        self.slots = int(workers)
        self.threads = max(1, torch.get_num_threads() // self.slots)
        self._cancelled = False
        self._pool = ProcessPoolExecutor(
            self.slots,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=die_with_parent,
            initargs=(os.getpid(),),
        )

    def submit(
        self, prepared: bytes, sweep: Any, job: Any, *, cpus: int = 1, gpus: float = 0
    ) -> Any:
        """Start :func:`work` in the pool (``cpus`` and ``gpus`` are not used); a future.

        The pool starts its workers as tasks come, so a worker started here gets the
        environment of the sweep's ``[resources] threads``.
        """
        with worker_env(sweep.resources.get("threads")):
            return self._pool.submit(work, prepared, sweep, job, self.threads)

    def wait(self, handles: Iterable[Any]) -> list[Any]:
        """Block until at least one of the futures ``handles`` is done; those done."""
        done, _ = wait_futures(list(handles), return_when=FIRST_COMPLETED)
        return list(done)

    def result(self, handle: Any) -> bytes:
        """The task's file, or its exception raised here."""
        return handle.result()

    def cancel(self, handles: Iterable[Any]) -> None:
        """Stop the tasks: pending ones are dropped, running ones killed with their workers.

        The sweep is failing; its file holds what was merged.
        """
        for h in handles:
            h.cancel()
        for proc in list(getattr(self._pool, "_processes", {}).values()):
            proc.kill()
        self._cancelled = True

    def close(self) -> None:
        """Shut the pool down (at once after :meth:`cancel`)."""
        self._pool.shutdown(wait=not self._cancelled, cancel_futures=True)


class RayCluster(Executor):
    """A Ray cluster: the one at ``address``, or a local instance started here.

    ``address="auto"`` is the one this machine belongs to, or ``RAY_ADDRESS``; with
    ``address=None`` a local instance is started with ``num_cpus`` CPUs (default: all) and
    stopped at :meth:`close`. If Ray is already initialised in this process, that instance is
    used and left running.

    Each task asks for ``cpus`` CPUs and ``gpus`` GPUs and runs with the sweep's ``[resources]
    threads`` torch threads, else ``cpus``.
    A task whose worker dies (a lost node, a killed process) is run again by Ray, up to
    ``retries`` times; its result is the same, since a task starts from its own inputs.
    The tasks end with the sweep's process: Ray cancels the tasks of a driver that is gone, and
    a local instance started here (``ray.init`` without an address) goes with its driver.
    """

    def __init__(
        self, address: str | None = None, *, num_cpus: int | None = None, retries: int = 3
    ) -> None:
        try:
            import ray  # noqa: PLC0415 (optional: pip install 'landscape[ray]')
        except ImportError:
            raise ValueError(
                "sweep: the Ray executor needs Ray: pip install 'landscape[ray]'"
            ) from None
        self._ray = ray
        self._owned = not ray.is_initialized()
        if self._owned:
            kw: dict[str, Any] = {
                "address": address,
                "include_dashboard": False,
                "log_to_driver": False,
                "logging_level": "WARNING",
                "configure_logging": True,
            }
            if address is None:
                kw["num_cpus"] = num_cpus or os.cpu_count() or 1
                kw["object_store_memory"] = 256 * 2**20
            try:
                ray.init(**kw)
            except ConnectionError as err:
                raise ValueError(f"sweep: no Ray cluster at {address!r}: {err}") from None
        self._have = ray.cluster_resources()
        self.slots = max(1, int(self._have.get("CPU", 1)))
        self._task = ray.remote(max_retries=int(retries))(work)

    def submit(
        self, prepared: bytes, sweep: Any, job: Any, *, cpus: int = 1, gpus: float = 0
    ) -> Any:
        """Start :func:`work` as a Ray task asking for ``cpus`` CPUs and ``gpus`` GPUs.

        Raises:
            ValueError: the cluster has fewer CPUs or GPUs than the task asks for, or a run
                on ``cuda:N`` (Ray gives each task its own GPU, seen as ``cuda:0``).
        """
        for what, need in (("CPU", cpus), ("GPU", gpus)):
            if need > self._have.get(what, 0):  # Ray would wait for it forever
                raise ValueError(
                    f"sweep: a task of {job.describe()} asks for {need:g} {what}(s) "
                    f"but the Ray cluster has {self._have.get(what, 0):g}; see "
                    "[resources] and the runs' device"
                )
        devices = {str(r.spec.get("train", {}).get("device", "cpu")) for r in sweep.runs}
        if gpus and any(d.startswith("cuda:") for d in devices):
            raise ValueError(
                "sweep: on Ray a run's device is 'cuda', not 'cuda:N': Ray gives "
                "each task its own GPU, which the task sees as cuda:0"
            )
        return self._task.options(num_cpus=cpus, num_gpus=gpus).remote(prepared, sweep, job, cpus)

    def wait(self, handles: Iterable[Any]) -> list[Any]:
        """Block until one of the Ray object refs ``handles`` is ready; those ready."""
        done, _ = self._ray.wait(list(handles), num_returns=1)
        return done

    def result(self, handle: Any) -> bytes:
        """The task's file, or the task's own exception raised here."""
        from ray.exceptions import RayTaskError  # noqa: PLC0415 (optional, as in __init__)

        try:
            return self._ray.get(handle)
        except RayTaskError as err:  # the task's own error (e.g. a bad probe option)
            cause = getattr(err, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise

    def cancel(self, handles: Iterable[Any]) -> None:
        """Cancel the tasks, killing their workers."""
        for h in handles:
            self._ray.cancel(h, force=True)

    def close(self) -> None:
        """Shut down the Ray instance this executor started (one it joined is left alone)."""
        if self._owned and self._ray.is_initialized():
            self._ray.shutdown()
