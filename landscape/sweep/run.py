"""Running a sweep (:mod:`landscape.sweep`) into one landscape file, resumably.

:func:`~landscape.sweep.jobs.plan` reads the file and lists, run by run, what it does not hold
yet: training (a run that is absent, incomplete or failed), end-of-run probes, surfaces (absent
or partly done), init-to-final paths; then the paths between runs (``/compare``).
:func:`run_sweep` does that work and nothing else: a complete run is never trained again, a
stored probe never redone, a partly done surface resumed; so the same command after an
interruption finishes the work. A result the file holds with other settings than the spec now
asks for (an edited ``[probes]``, ``[surfaces]``, ``[paths]`` or ``[along]``) is removed and
computed again (:mod:`landscape.sweep.stale`; a series along training by training the run
again). A complete run whose recorded spec differs from the sweep's is
an error (another sweep wrote that file).

**Executors.** ``workers=1``: in this process, straight into the file. ``workers=N``: N local
worker processes; ``executor="ray"``: tasks on a Ray cluster. Either way the work is shared out
as tasks (a run's training and probes, blocks of each surface's points, the paths between
runs) by :mod:`landscape.sweep.dist`: a worker never opens the file; it gets a small file with
what its task reads, and the sweep's process merges what comes back, the only process that
writes the file. The worker runs the same code on the same inputs, so the numbers are the same
as in-process (on the CPU, with the same number of threads: with ``[resources] threads`` every
task on every executor, in this process too, gets that many (:mod:`landscape.sweep.threads`);
without it local workers get ``torch.get_num_threads() // N`` each, a Ray task as many as the
CPUs it asks for, and in-process jobs this process's count).

**Killed anywhere.** Every write is a journaled commit (:mod:`landscape.store.journal`); a run
killed while it trains is trained again from the start (its seed makes it the same run), a
surface resumes from the points the file holds (along the directions it was begun with), and on
Ray a task lost with its worker is run again (a local worker lost stops the sweep, which the
same command resumes). So the file after any number of interruptions and resumptions holds the
numbers of an uninterrupted sweep (``tests/test_sweep_kill.py`` kills one 20 times).

Examples:
    >>> sweep = load("experiments/quick.toml")                          # doctest: +SKIP
    >>> for item in plan(sweep, "quick.h5"): print(item.describe())
    >>> run_sweep(sweep, "quick.h5", workers=2)
    >>> run_sweep(sweep, "quick.h5", executor="ray", address="auto")
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

from tqdm.auto import tqdm

from landscape.store.file import FileBusyError, Store
from landscape.sweep.dist import distribute
from landscape.sweep.executors import Processes, RayCluster
from landscape.sweep.jobs import Job, do_job, plan
from landscape.sweep.spec import Sweep
from landscape.sweep.stale import clear_stale
from landscape.sweep.threads import using_threads

__all__ = ["EXECUTORS", "run_sweep"]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the executor
EXECUTORS = ("local", "ray")
"""``local``: in this process (``workers=1``) or local worker processes; ``ray``: a Ray
cluster (:class:`landscape.sweep.executors.RayCluster`)."""


def run_sweep(
    sweep: Sweep,
    file: str | os.PathLike,
    *,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    take_over: bool = False,
    progress: bool = False,
    say: Callable[[str], None] | None = None,
) -> list[Job]:
    """Do what ``file`` lacks of ``sweep`` (:func:`plan`); return the jobs (tasks) done.

    The sweep claims the file while it runs (:meth:`landscape.store.Store.claim`): another
    process that opens it to write (a second sweep, ``landscape train``) is refused, while
    readers may read it between the sweep's commits.

    Args:
        sweep: a :class:`~landscape.sweep.Sweep`.
        file: the landscape file (created if missing).
        workers: with ``executor="local"``, 1 (in this process) or the number of worker
            processes; with ``"ray"`` and no ``address``, the CPUs of the local Ray instance
            started for the sweep (default: all).
        executor: one of :data:`EXECUTORS`.
        address: the Ray cluster to join (``"auto"``: the one this machine belongs to); None
            starts a local one.
        take_over: take the file over from a claim that cannot be checked (a sweep on another
            host).
        progress: progress bars.
        say: called with a line for each task done.

    Returns:
        The jobs (tasks) done.

    Raises:
        ValueError: bad options, a spec that disagrees with the file (:func:`plan`).
        FileBusyError: another process writes the file.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: workers must be an integer >= 1, got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"sweep: executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise ValueError("sweep: an address is for executor='ray'")
    file = os.fspath(file)
    say = say or (lambda line: None)
    with Store(file, "a", take_over=take_over) as s:
        token = s.claim(f"landscape sweep {sweep.name!r}")
    bar = tqdm(total=0, desc=f"sweep {sweep.name}", unit="task", disable=not progress)

    def done(job: Job) -> None:
        bar.update(1)
        say(f"{job.run or 'compare'}: {job.describe()}")

    failed = False
    try:
        jobs = [j for j in plan(sweep, file) if not j.empty]
        clear_stale(file, [item for j in jobs for item in j.stale()])
        if executor == "local" and workers == 1:
            bar.total = len(jobs)
            for job in jobs:
                bar.set_postfix_str(job.run or job.describe())
                with using_threads(sweep.resources.get("threads")):
                    do_job(file, sweep, job, progress=progress)
                done(job)
            return jobs

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        ex = (
            Processes(workers)
            if executor == "local"
            else RayCluster(address, num_cpus=workers if workers > 1 else None)
        )
        with ex:
            return distribute(sweep, file, jobs, ex, on_total=total, on_done=done) if jobs else []
    except BaseException:
        failed = True
        raise
    finally:
        bar.close()
        try:
            with Store(file, "a", timeout=60) as s:
                s.release(token)
        except FileBusyError as err:  # the claim lapses with this process anyway
            if not failed:
                raise
            log.warning("sweep: could not release the claim on %s: %s", file, err)
