"""Running a sweep (:mod:`landscape.sweep`) into one landscape file, resumably.

:func:`plan` reads the file and lists, run by run, what it does not hold yet: training (a run
that is absent, incomplete or failed), end-of-run probes, surfaces (absent or partly done),
init-to-final paths; then the paths between runs (``/compare``). :func:`run_sweep` does that
work and nothing else: a complete run is never trained again, a stored probe never redone, a
partly done surface resumed; so the same command after an interruption finishes the work. A
complete run whose recorded spec differs from the sweep's is an error (another sweep wrote
that file).

**Executors.** ``workers=1``: in this process, straight into the file. ``workers=N``: N local
worker processes; ``executor="ray"``: tasks on a Ray cluster. Either way the work is shared out
as tasks (a run's training and probes, blocks of each surface's points, the paths between
runs) by :mod:`landscape.sweep.dist`: a worker never opens the file; it gets a small file with
what its task reads, and the sweep's process merges what comes back, the only process that
writes the file. The worker runs the same code on the same inputs, so the numbers are the same
as in-process (on the CPU, with the same number of threads: local workers get
``torch.get_num_threads() // N`` each, a Ray task as many as the CPUs it asks for).

**Killed anywhere.** Every write is a journaled commit (:mod:`landscape.store.journal`); a run killed
while it trains is trained again from the start (its seed makes it the same run), a surface
resumes from the points the file holds (along the directions it was begun with), and on Ray a
task lost with its worker is run again (a local worker lost stops the sweep, which the same
command resumes). So the file after any number of interruptions and resumptions holds the
numbers of an uninterrupted sweep (``tests/test_sweep_kill.py`` kills one 20 times).

Examples:
    >>> sweep = load("experiments/quick.toml")                          # doctest: +SKIP
    >>> for item in plan(sweep, "quick.h5"): print(item.describe())
    >>> run_sweep(sweep, "quick.h5", workers=2)
    >>> run_sweep(sweep, "quick.h5", executor="ray", address="auto")
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landscape.sweep.spec import PlannedRun, Sweep

__all__ = ["EXECUTORS", "Job", "plan", "run_sweep"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Job:
    """Work on one run (``run``) or between two runs (``pair``), as :func:`plan` found it."""

    run: str | None = None
    train: bool = False
    probes: tuple[str, ...] = ()
    surfaces: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()          # kinds of init -> final paths
    pair: tuple[str, str, str] | None = None   # (run a, run b, kind) of a /compare path
    notes: tuple[str, ...] = field(default=())
    block: tuple[int, int] | None = None      # points (start, stop) of the one surface

    @property
    def empty(self) -> bool:
        return not (self.train or self.probes or self.surfaces or self.paths or self.pair)

    def describe(self) -> str:
        if self.pair:
            a, b, kind = self.pair
            return f"compare/{compare_name(a, b, kind)}"
        block = f"[{self.block[0]}:{self.block[1]}]" if self.block else ""
        parts = (["train"] if self.train else []) + [f"probes/{p}" for p in self.probes] + \
            [f"surfaces/{s}{block}" for s in self.surfaces] + \
            [f"paths/{k}_init_final" for k in self.paths]
        return ", ".join(parts + list(self.notes)) or "complete"


def compare_name(a: str, b: str, kind: str) -> str:
    """The name of the path between two runs' final points under ``/compare``."""
    return f"{kind}_{a}_final_{b}_final"


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(json.loads(json.dumps(b)),
                                                       sort_keys=True)


def _placeless(spec: Any) -> Any:
    """A run spec without its device: where a run was trained does not make another run."""
    if not isinstance(spec, dict) or not isinstance(spec.get("train"), dict):
        return spec
    return {**spec, "train": {k: v for k, v in spec["train"].items() if k != "device"}}


def plan(sweep: Sweep, file: str | os.PathLike) -> list[Job]:
    """What ``file`` lacks of ``sweep``: one :class:`Job` a run (``empty`` when complete),
    then one a missing ``/compare`` path.

    Raises:
        ValueError: a complete run of the file was made with another spec than the sweep's.
    """
    from landscape.train.spec import merge
    from landscape.store.file import Store

    jobs: list[Job] = []
    all_probes = tuple(sweep.probes)
    all_surfaces = tuple(sweep.surfaces)
    if not os.path.exists(file):
        jobs = [Job(r.name, True, all_probes, all_surfaces, sweep.init_to_final)
                for r in sweep.runs]
        return jobs + [Job(pair=p) for p in sweep.between]
    with Store(file) as s:
        for r in sweep.runs:
            if r.name not in s or s.info(r.name).status != "complete":
                jobs.append(Job(r.name, True, all_probes, all_surfaces, sweep.init_to_final))
                continue
            info = s.info(r.name)
            if not _same(_placeless(info.attrs.get("spec")), _placeless(merge({}, r.spec))) or \
                    not _same(info.attrs.get("init", {"name": "random"}), r.init):
                raise ValueError(f"{file}: run {r.name!r} is complete but was trained with "
                                 "another spec than this sweep's; sweep into another --out "
                                 "file, or rename the runs")
            surfaces = tuple(n for n in all_surfaces if not s.has_record(r.name, "surfaces", n)
                             or not np.all(s.record(r.name, "surfaces", n).arrays["done"]))
            notes = tuple(f"probes/{n} (along training) missing: not redone"
                          for n in sweep.along if n not in info.probes)
            jobs.append(Job(r.name, False,
                            tuple(p for p in all_probes if p not in info.probes), surfaces,
                            tuple(k for k in sweep.init_to_final
                                  if not s.has_record(r.name, "paths", f"{k}_init_final")),
                            notes=notes))
        done = set(s.compares())
    return jobs + [Job(pair=p) for p in sweep.between if compare_name(*p) not in done]


# ----------------------------------------------------------------------------- the work
def train_run(file: str, sweep: Sweep, run: PlannedRun, *, progress: bool = False) -> Any:
    """Train one run of the sweep into ``file`` (with its along-training probes and init)."""
    from landscape.train.spec import build
    from landscape.sweep.bad_init import pretrain_random_labels
    from landscape.sweep.measure import along_callback
    from landscape.train.fit import fit

    model, split, loss, config, attrs, _ = build(run.spec)
    attrs = {**attrs, "sweep": {"name": sweep.name, "axes": run.axes}, "init": run.init}
    if run.init["name"] == "random_labels":
        attrs["pretraining"] = pretrain_random_labels(model, loss, split, run.init,
                                                      seed=config.seed)
    callbacks = [along_callback(name, split.train, opts) for name, opts in sweep.along.items()]
    return fit(model, loss, split, config, store=file, run=run.name, attrs=attrs,
               callbacks=callbacks, progress=progress)


def measure_run(file: str, sweep: Sweep, run: str, names: tuple[str, ...]) -> None:
    """The end-of-run probes ``names`` of the sweep on a stored run, each stored when done."""
    import importlib

    from landscape.train.spec import rebuild, stored_params
    from landscape.store.file import Store

    if not names:
        return
    model, split, loss_fn = rebuild(file, run)
    x, y = split.train
    for name in names:
        module, fn_name, opts = sweep.probes[name]
        opts = dict(opts)
        n = opts.pop("n", len(y))
        fn = getattr(importlib.import_module(f"probes.{module}"), fn_name)
        if fn_name == "measures":
            opts["init"] = stored_params(file, run, model)
        try:
            result = fn(model, loss_fn, (x[:n], y[:n]), **opts)
        except (TypeError, ValueError) as err:
            raise type(err)(f"sweep: probe {name!r} on run {run!r}: {err}") from None
        arrays, attrs = result.to_record()
        attrs = {**attrs, "data": {"split": "train", "n": int(min(n, len(y)))},
                 "checkpoint": "final"}
        with Store(file, "a", timeout=60) as s:
            s.write_record(run, "probes", name, arrays=arrays, attrs=attrs)


def surface_run(file: str, sweep: Sweep, run: str, name: str, *, progress: bool = False,
                points: tuple[int, int] | None = None) -> Any:
    """One surface of the sweep around a stored run (resumed if partly done), or the block
    ``points`` of it."""
    from landscape.surfaces.stored import surface_of_run

    o = dict(sweep.surfaces[name])
    x = np.linspace(*o.pop("x"))
    y = np.linspace(*o.pop("y")) if "y" in o else None
    if o.get("ignore") == "none":
        o["ignore"] = None
    return surface_of_run(file, run, x=x, y=y, name=name, progress=progress, points=points,
                          **o)


def path_run(file: str, sweep: Sweep, a: str, b: str, kind: str) -> Any:
    """A path of the sweep: ``a``'s init to final (``a == b``) or ``a``'s final to ``b``'s."""
    from landscape.surfaces.stored import path_between

    o = sweep.path_options
    kw = {"n": o.get("points", 25), "n_examples": o.get("n"),
          **{k: o[k] for k in ("steps", "lr", "seed") if k in o}}
    if a == b:
        return path_between(file, a, a, which_a="init", which_b="final", kind=kind, **kw)
    return path_between(file, a, b, kind=kind, name=compare_name(a, b, kind), **kw)


def do_job(file: str, sweep: Sweep, job: Job, *, progress: bool = False) -> Job:
    """Do ``job`` into ``file`` (the sweep's file, or a worker's temporary one)."""
    if job.pair:
        path_run(file, sweep, *job.pair)
        return job
    from landscape.train.spec import reuse_rebuilds

    run = sweep.run(job.run)
    if job.train:
        train_run(file, sweep, run, progress=progress)
    with reuse_rebuilds():  # the run is final now: build it and its data once
        measure_run(file, sweep, run.name, job.probes)
        for name in job.surfaces:
            surface_run(file, sweep, run.name, name, progress=progress, points=job.block)
        for kind in job.paths:
            path_run(file, sweep, run.name, run.name, kind)
    return job


# ----------------------------------------------------------------------------- the executor
EXECUTORS = ("local", "ray")
"""``local``: in this process (``workers=1``) or local worker processes; ``ray``: a Ray
cluster (:class:`landscape.sweep.executors.RayCluster`)."""


def run_sweep(sweep: Sweep, file: str | os.PathLike, *, workers: int = 1,
              executor: str = "local", address: str | None = None, take_over: bool = False,
              progress: bool = False, say: Callable[[str], None] | None = None) -> list[Job]:
    """Do what ``file`` lacks of ``sweep`` (:func:`plan`); return the jobs (tasks) done.

    The sweep claims the file while it runs (:meth:`landscape.store.Store.claim`): another
    process that opens it to write (a second sweep, ``landscape train``) is refused, while
    readers may read it between the sweep's commits.

    Args:
        sweep: a :class:`~landscape.sweep.Sweep`. file: the landscape file (created if
            missing).
        workers: with ``executor="local"``, 1 (in this process) or the number of worker
            processes; with ``"ray"`` and no ``address``, the CPUs of the local Ray instance
            started for the sweep (default: all).
        executor: one of :data:`EXECUTORS`. address: the Ray cluster to join (``"auto"``: the
            one this machine belongs to); None starts a local one.
        take_over: take the file over from a claim that cannot be checked (a sweep on another
            host).
        progress: progress bars. say: called with a line for each task done.

    Raises:
        ValueError: bad options, a spec that disagrees with the file (:func:`plan`).
        FileBusyError: another process writes the file.
    """
    from tqdm.auto import tqdm

    from landscape.store.file import FileBusyError, Store

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: workers must be an integer >= 1, got {workers!r}")
    if executor not in EXECUTORS:
        raise ValueError(f"sweep: executor must be one of {', '.join(EXECUTORS)}, got "
                         f"{executor!r}")
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
        if executor == "local" and workers == 1:
            bar.total = len(jobs)
            for job in jobs:
                bar.set_postfix_str(job.run or job.describe())
                do_job(file, sweep, job, progress=progress)
                done(job)
            return jobs
        from landscape.sweep.executors import Processes, RayCluster
        from landscape.sweep.dist import distribute

        def total(n: int) -> None:
            bar.total = n
            bar.refresh()

        ex = Processes(workers) if executor == "local" else \
            RayCluster(address, num_cpus=workers if workers > 1 else None)
        with ex:
            return distribute(sweep, file, jobs, ex, on_total=total, on_done=done) if jobs \
                else []
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
