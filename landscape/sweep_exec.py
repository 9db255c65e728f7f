"""Running a sweep (:mod:`landscape.sweep`) into one landscape file, resumably.

:func:`plan` reads the file and lists, run by run, what it does not hold yet: training (a run
that is absent, incomplete or failed), end-of-run probes, surfaces (absent or partly done),
init-to-final paths; then the paths between runs (``/compare``). :func:`run_sweep` does that
work and nothing else: a complete run is never trained again, a stored probe never redone, a
partly done surface resumed; so the same command after an interruption finishes the work. A
complete run whose recorded spec differs from the sweep's is an error (another sweep wrote
that file).

**Executors.** ``workers=1``: in this process, straight into the file. ``workers=N``: N local
worker processes (``multiprocessing`` spawn). A worker never opens the file: the parent copies
what a job needs (the run's stored data, for probes on a run already trained) into a
temporary landscape file, the worker trains and measures into that, and the parent copies the
results back: the parent is the only process that opens the file. The worker runs the same
code on the same inputs, so the numbers are the same as in-process (on the CPU, with the same
number of threads: workers get ``torch.get_num_threads() // N`` each).

Examples:
    >>> sweep = load("experiments/quick.toml")                          # doctest: +SKIP
    >>> for item in plan(sweep, "quick.h5"): print(item.describe())
    >>> run_sweep(sweep, "quick.h5", workers=2)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .sweep import PlannedRun, Sweep

__all__ = ["Job", "plan", "run_sweep"]

_RUN_ONLY_ATTRS = ("status", "writer_host", "writer_pid", "writer_token", "created",
                   "finished")


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

    @property
    def empty(self) -> bool:
        return not (self.train or self.probes or self.surfaces or self.paths or self.pair)

    def describe(self) -> str:
        if self.pair:
            a, b, kind = self.pair
            return f"compare/{compare_name(a, b, kind)}"
        parts = (["train"] if self.train else []) + [f"probes/{p}" for p in self.probes] + \
            [f"surfaces/{s}" for s in self.surfaces] + \
            [f"paths/{k}_init_final" for k in self.paths]
        return ", ".join(parts + list(self.notes)) or "complete"


def compare_name(a: str, b: str, kind: str) -> str:
    """The name of the path between two runs' final points under ``/compare``."""
    return f"{kind}_{a}_final_{b}_final"


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(json.loads(json.dumps(b)),
                                                       sort_keys=True)


def plan(sweep: Sweep, file: str | os.PathLike) -> list[Job]:
    """What ``file`` lacks of ``sweep``: one :class:`Job` a run (``empty`` when complete),
    then one a missing ``/compare`` path.

    Raises:
        ValueError: a complete run of the file was made with another spec than the sweep's.
    """
    from .runspec import merge
    from .store import Store

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
            if not _same(info.attrs.get("spec"), merge({}, r.spec)) or \
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
    from .runspec import build
    from .sweep_init import pretrain_random_labels
    from .sweep_measure import along_callback
    from .train import fit

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

    from .runspec import rebuild, stored_params
    from .store import Store

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


def surface_run(file: str, sweep: Sweep, run: str, name: str, *, progress: bool = False
                ) -> Any:
    """One surface of the sweep around a stored run (resumed if partly done)."""
    from .stored import surface_of_run

    o = dict(sweep.surfaces[name])
    x = np.linspace(*o.pop("x"))
    y = np.linspace(*o.pop("y")) if "y" in o else None
    if o.get("ignore") == "none":
        o["ignore"] = None
    return surface_of_run(file, run, x=x, y=y, name=name, progress=progress, **o)


def path_run(file: str, sweep: Sweep, a: str, b: str, kind: str) -> Any:
    """A path of the sweep: ``a``'s init to final (``a == b``) or ``a``'s final to ``b``'s."""
    from .stored import path_between

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
    from .runspec import reuse_rebuilds

    run = sweep.run(job.run)
    if job.train:
        train_run(file, sweep, run, progress=progress)
    with reuse_rebuilds():  # the run is final now: build it and its data once
        measure_run(file, sweep, run.name, job.probes)
        for name in job.surfaces:
            surface_run(file, sweep, run.name, name, progress=progress)
        for kind in job.paths:
            path_run(file, sweep, run.name, run.name, kind)
    return job


# ----------------------------------------------------------------------------- copying
def _copy_record(src: Any, dst: Any, run: str | None, kind: str, name: str) -> None:
    from .surface import METRICS

    rec = src.record(run, kind, name)
    dims = None
    if kind == "surfaces":
        axes = ("x", "y") if "y" in rec.arrays else ("x",)
        dims = {k: axes for k in rec.arrays if k in METRICS or k == "done"}
    dst.write_record(run, kind, name, arrays=rec.arrays, attrs=rec.attrs, dims=dims)


def copy_run(src: Any, dst: Any, run: str, *, records: bool = True) -> None:
    """Copy a run from one open :class:`~landscape.store.Store` to another (a writer): its
    settings, parameters, buffers, trajectory, history and (``records``) its probes,
    surfaces and paths. Its status and times go with it."""
    info = src.info(run)
    names, shapes = src.layout(run)
    attrs = {k: v for k, v in info.attrs.items() if k not in _RUN_ONLY_ATTRS}
    dst.create_run(run, names=names, shapes=shapes, init=src.params(run, "init"), attrs=attrs)
    steps, traj = src.trajectory(run)
    if len(steps):
        dst.append_trajectory(run, steps, traj)
    if history := src.history(run):
        dst.append_series(run, "history", history)
    for which in ("init", "final"):
        if buffers := src.buffers(run, which):
            dst.set_buffers(run, which, buffers)
    for kind, held in (("probes", info.probes), ("surfaces", info.surfaces),
                       ("paths", info.paths)):
        for name in held if records else ():
            _copy_record(src, dst, run, kind, name)
    if info.has_final:
        dst.set_final(run, src.params(run, "final"),
                      status=info.status if info.status == "complete" else None)
    dst.set_attrs(run, {k: info.attrs[k] for k in ("created", "finished") if k in info.attrs})


def _merge(tmp: str, file: str, job: Job) -> None:
    """Copy what a worker computed for ``job`` from its file into the sweep's."""
    from .store import Store

    with Store(tmp) as src, Store(file, "a", timeout=120) as dst:
        if job.pair:
            _copy_record(src, dst, None, "paths", compare_name(*job.pair))
            return
        if job.train:
            copy_run(src, dst, job.run)
            return
        for name in job.probes:
            _copy_record(src, dst, job.run, "probes", name)
        for name in job.surfaces:
            _copy_record(src, dst, job.run, "surfaces", name)
        for kind in job.paths:
            _copy_record(src, dst, job.run, "paths", f"{kind}_init_final")


def _prepare(tmp: str, file: str, job: Job) -> None:
    """A worker's file: the stored runs its job reads (none for a run to train)."""
    from .store import Store

    needed = list(job.pair[:2]) if job.pair else ([] if job.train else [job.run])
    with Store(tmp, "w") as dst:
        if needed:
            with Store(file) as src:
                for run in needed:
                    copy_run(src, dst, run, records=not job.pair)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _work(tmp: str, sweep: Sweep, job: Job) -> Job:
    return do_job(tmp, sweep, job)


# ----------------------------------------------------------------------------- the executor
def run_sweep(sweep: Sweep, file: str | os.PathLike, *, workers: int = 1,
              progress: bool = False, say: Callable[[str], None] | None = None) -> list[Job]:
    """Do what ``file`` lacks of ``sweep`` (:func:`plan`); return the jobs done.

    Args:
        sweep: a :class:`~landscape.sweep.Sweep`. file: the landscape file (created if
            missing). workers: 1 (in this process) or the number of worker processes.
        progress: progress bars. say: called with a line for each job done.
    """
    from tqdm.auto import tqdm

    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"sweep: workers must be an integer >= 1, got {workers!r}")
    file = os.fspath(file)
    jobs = [j for j in plan(sweep, file) if not j.empty]
    say = say or (lambda line: None)
    bar = tqdm(total=len(jobs), desc=f"sweep {sweep.name}", unit="job", disable=not progress)
    try:
        if workers == 1:
            for job in jobs:
                bar.set_postfix_str(job.run or job.describe())
                do_job(file, sweep, job, progress=progress)
                bar.update(1)
                say(f"{job.run or 'compare'}: {job.describe()}")
        else:
            _pool(sweep, file, jobs, workers, bar, say)
    finally:
        bar.close()
    return jobs


def _pool(sweep: Sweep, file: str, jobs: list[Job], workers: int, bar: Any,
          say: Callable[[str], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    threads = max(1, torch.get_num_threads() // workers)
    tmpdir = tempfile.mkdtemp(prefix="landscape-sweep-")
    try:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            # runs first (in parallel), then the paths between runs, which need them;
            # results are merged in the spec's order, so the file lists runs in that order
            for phase in ([j for j in jobs if not j.pair], [j for j in jobs if j.pair]):
                running = []
                for i, job in enumerate(phase):
                    tmp = os.path.join(tmpdir, f"job{i}{'c' if job.pair else ''}.h5")
                    _prepare(tmp, file, job)
                    running.append((pool.submit(_work, tmp, sweep, job), tmp, job))
                for n, (fut, tmp, job) in enumerate(running):
                    try:
                        fut.result()
                    except BaseException:
                        for other, _, _ in running[n + 1:]:
                            other.cancel()
                        raise
                    _merge(tmp, file, job)
                    os.remove(tmp)
                    bar.update(1)
                    say(f"{job.run or 'compare'}: {job.describe()}")
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
