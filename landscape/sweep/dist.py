"""A sweep shared out among workers (:mod:`landscape.sweep.executors`).

The sweep's process is the only writer of its file. The jobs of
:func:`landscape.sweep.jobs.plan` become tasks:

- a run's own work (training, end-of-run probes, its init-to-final paths);
- each surface in *blocks* of grid points (``[resources] surface_block`` points, a multiple
  of the surface's chunk; by default as many as make the surfaces about two tasks a worker),
  which start once the run is trained, the first block before the others (they go on along
  its directions); a block that the file already holds whole is not redone. A surface in one
  block (the default when there are at least twice as many runs as workers) is done in the
  run's own task;
- each path between two runs, once both are trained.

A task gets a small landscape file with what it reads (copied from the sweep's file, or from
a trained run that came back and waits to be merged) and returns its own file. Results are
merged into the sweep's file as they come, except that new runs are added in the spec's
order, so the file lists its runs as the in-process sweep does. A block adds only the grid
points that the file does not hold yet, so a block done twice (a task run again after its
worker was lost, or a sweep resumed) never writes a point twice. Every number is computed by
the same code on the same inputs as in-process.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np

from landscape.store.file import Store
from landscape.surfaces.grid import METRICS, Surface, same_grid
from landscape.sweep.jobs import Job, compare_name
from landscape.sweep.spec import Sweep

__all__ = ["blocks", "copy_run", "distribute", "resources_of"]

_RUN_ONLY_ATTRS = ("status", "writer_host", "writer_pid", "writer_token", "created", "finished")
_CHUNK = 16  # landscape.surfaces.grid's default chunk: blocks start at its multiples


# ----------------------------------------------------------------------------- copying
def _copy_record(src: Any, dst: Any, run: str | None, kind: str, name: str) -> None:

    rec = src.record(run, kind, name)
    dims = None
    if kind == "surfaces":
        axes = ("x", "y") if "y" in rec.arrays else ("x",)
        dims = {k: axes for k in rec.arrays if k in METRICS or k == "done"}
    dst.write_record(run, kind, name, arrays=rec.arrays, attrs=rec.attrs, dims=dims)


def copy_run(src: Any, dst: Any, run: str, *, records: bool = True) -> None:
    """Copy a run from one open :class:`~landscape.store.Store` to another (a writer).

    Its settings, parameters, buffers, trajectory and history go, and its status and times.

    Args:
        src: the store to copy from.
        dst: the store to copy into, open for writing.
        run: the run.
        records: copy its probes, surfaces and paths too.
    """
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
    for kind, held in (("probes", info.probes), ("surfaces", info.surfaces), ("paths", info.paths)):
        for name in held if records else ():
            _copy_record(src, dst, run, kind, name)
    if info.has_final:
        dst.set_final(
            run, src.params(run, "final"), status=info.status if info.status == "complete" else None
        )
    dst.set_attrs(run, {k: info.attrs[k] for k in ("created", "finished") if k in info.attrs})


def _merge_block(src: Any, dst: Any, run: str, name: str) -> None:
    """Add a block's grid points to the surface in ``dst``, those it does not hold yet."""
    rec = src.record(run, "surfaces", name)
    if not dst.has_record(run, "surfaces", name):
        _copy_record(src, dst, run, "surfaces", name)
        return
    new = Surface.from_record(rec)
    held = Surface.from_record(dst.record(run, "surfaces", name))
    if not same_grid(held, new):
        raise ValueError(
            f"sweep: run {run!r}: a block of surface {name!r} came back with "
            "other coordinates, directions or options than the file holds"
        )
    fresh = new.done & ~held.done
    points = [tuple(int(i) for i in p) for p in np.argwhere(fresh)]
    if not points:
        return
    arrays: dict[str, list[bool] | list[float]] = {"done": [True] * len(points)}
    for m, grid in new.grids.items():
        arrays[m] = [float(grid[p]) for p in points]
    dst.update_record(
        run,
        "surfaces",
        name,
        points=points,
        arrays=arrays,
        attrs={
            "n_points": int((held.done | new.done).sum()),
            "seconds": float(held.seconds + new.seconds),
        },
    )


def _merge(tmp: str, file: str, job: Job) -> None:
    """Copy what a worker computed for ``job`` from its file into the sweep's."""
    with Store(tmp) as src, Store(file, "a", timeout=120) as dst:
        if job.pair:
            _copy_record(src, dst, None, "paths", compare_name(*job.pair))
        elif job.block:
            _merge_block(src, dst, job.run_name, job.surfaces[0])
        elif job.train:
            copy_run(src, dst, job.run_name)
        else:
            for name in job.probes:
                _copy_record(src, dst, job.run, "probes", name)
            for name in job.surfaces:
                _copy_record(src, dst, job.run, "surfaces", name)
            for kind in job.paths:
                _copy_record(src, dst, job.run, "paths", f"{kind}_init_final")


def _prepare(job: Job, source: Callable[[str], str]) -> bytes:
    """The bytes of a worker's file for ``job``: the stored runs it reads.

    Each run is copied from ``source(run)`` (the sweep's file, or a finished task's file not
    merged yet). A surface block gets its run with that surface only, if begun (its directions
    and the points done, with its time set to 0, so that what comes back holds the block's own
    time).
    """
    needed = list(job.pair[:2]) if job.pair else ([] if job.train else [job.run_name])
    with tempfile.TemporaryDirectory(prefix="landscape-prep-") as tmp:
        path = os.path.join(tmp, "job.h5")
        with Store(path, "w") as dst:
            for run in needed:
                with Store(source(run)) as src:
                    copy_run(src, dst, run, records=not (job.pair or job.block))
                    name = job.surfaces[0] if job.block else None
                    if name and src.has_record(run, "surfaces", name):
                        _copy_record(src, dst, run, "surfaces", name)
                        dst.update_record(
                            run, "surfaces", name, points=[], arrays={}, attrs={"seconds": 0.0}
                        )
        with open(path, "rb") as f:
            return f.read()


# ----------------------------------------------------------------------------- the tasks
def resources_of(sweep: Sweep, run: str, device: str | None = None) -> dict[str, Any]:
    """What a task on ``run`` asks of a cluster.

    Args:
        sweep: the sweep.
        run: the run.
        device: where a stored run was trained (its probes and surfaces are computed there);
            default: the spec's.

    Returns:
        ``{"cpus": [resources] cpus (default: [resources] threads, else 1), "gpus":
        [resources] gpus (default 1 when the run is on CUDA, else 0)}``.
    """
    r = sweep.resources
    if device is None:
        device = str(sweep.run(run).spec.get("train", {}).get("device", "cpu"))
    return {
        "cpus": int(r.get("cpus") or r.get("threads") or 1),
        "gpus": r.get("gpus", 1 if str(device).startswith("cuda") else 0),
    }


def _stored_devices(file: str, runs: list[str]) -> dict[str, str]:

    if not os.path.exists(file):
        return {}
    with Store(file) as s:
        return {r: str(s.info(r).attrs.get("device") or "cpu") for r in runs if r in s}


def blocks(sweep: Sweep, name: str, slots: int, runs: int = 1) -> list[tuple[int, int]]:
    """The blocks ``(start, stop)`` of flat grid indices that surface ``name`` is split into.

    Each block has ``[resources] surface_block`` points (rounded up to whole chunks); by
    default there are enough blocks that the surfaces make about two tasks a worker, so a
    single block when there are that many runs.

    Args:
        sweep: the sweep.
        name: the surface.
        slots: the workers that share the work.
        runs: the runs that need the surface.

    Returns:
        The blocks, in order, covering the grid.
    """
    o = sweep.surfaces[name]
    n = int(o["x"][2]) * (int(o["y"][2]) if "y" in o else 1)
    size = sweep.resources.get("surface_block") or math.ceil(
        n / math.ceil(2 * max(1, slots) / max(1, runs))
    )
    size = max(_CHUNK, math.ceil(size / _CHUNK) * _CHUNK)
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _done(file: str, run: str, name: str) -> np.ndarray | None:

    with Store(file) as s:
        if not s.has_record(run, "surfaces", name):
            return None
        return np.asarray(s.record(run, "surfaces", name).arrays["done"], bool).reshape(-1)


def distribute(
    sweep: Sweep,
    file: str,
    jobs: list[Job],
    executor: Any,
    *,
    on_total: Callable[[int], None] = lambda n: None,
    on_done: Callable[[Job], None] = lambda job: None,
) -> list[Job]:
    """Do ``jobs`` (from :func:`landscape.sweep.jobs.plan`) on ``executor``, merging into ``file``.

    Args:
        sweep: the sweep.
        file: its landscape file.
        jobs: the jobs.
        executor: an :class:`~landscape.sweep.executors.Executor`.
        on_total: called with the number of tasks once they are known.
        on_done: called with each task after it is merged.

    Returns:
        The tasks done.
    """
    trains = [j.run_name for j in jobs if j.train]  # new runs, added in spec order
    stored = _stored_devices(file, [j.run for j in jobs if j.run and not j.train])
    begun: set[tuple[str, str]] = set()  # surfaces the file holds
    # (task, what it waits for): its runs trained, and for the blocks of a surface that the
    # file does not hold yet, all but the first wait for the first to be merged (so that
    # every block is evaluated along the directions the first one made)
    waiting: list[tuple[Job, tuple[str, str] | None]] = []
    runs_of = {name: sum(name in j.surfaces for j in jobs) for name in sweep.surfaces}
    for job in jobs:
        if job.pair:
            waiting.append((job, None))
            continue
        split = {name: blocks(sweep, name, executor.slots, runs_of[name]) for name in job.surfaces}
        # a surface in one block is done in the run's own task, as in-process
        own = replace(job, surfaces=tuple(n for n in job.surfaces if len(split[n]) == 1))
        if not own.empty:
            waiting.append((own, None))
        for name, parts in split.items():
            done = None if job.train else _done(file, job.run_name, name)
            if done is not None and done.size != parts[-1][1]:
                raise ValueError(
                    f"sweep: {file}: run {job.run!r} already holds a surface "
                    f"{name!r} of {done.size} points, the spec asks for "
                    f"{parts[-1][1]}: sweep into another --out file"
                )
            if len(parts) == 1:
                continue
            if done is not None:
                begun.add((job.run_name, name))
            todo = [
                Job(job.run, surfaces=(name,), block=b)
                for b in parts
                if done is None or not done[b[0] : b[1]].all()
            ]
            waiting += [
                (t, None if i == 0 or done is not None else (job.run_name, name))
                for i, t in enumerate(todo)
            ]
    on_total(len(waiting))
    held: dict[str, str] = {}  # trained runs that came back, not merged yet
    finished: list[tuple[str, Job]] = []
    tmpdir = tempfile.mkdtemp(prefix="landscape-sweep-")
    running: dict[Any, Job] = {}
    ready: list[Job] = []
    out: list[Job] = []
    count = 0

    def source(run: str) -> str:
        return held.get(run, file)

    def trained(run: str) -> bool:
        return run not in trains or run in held

    def can_start(job: Job, surface: tuple[str, str] | None) -> bool:
        if job.train:
            return True
        runs = job.pair[:2] if job.pair else (job.run_name,)
        return all(trained(r) for r in runs) and (surface is None or surface in begun)

    def submit(job: Job) -> Any:
        first = job.pair[0] if job.pair else job.run_name
        return executor.submit(
            _prepare(job, source), sweep, job, **resources_of(sweep, first, stored.get(first))
        )

    def merge_what_can_be() -> None:
        progress = True
        while progress:
            progress = False
            for item in list(finished):
                tmp, job = item
                touches = job.pair[:2] if job.pair else (job.run,)
                if job.train:
                    ok = trains[0] == job.run
                else:
                    ok = not any(r in trains for r in touches)
                if ok:
                    _merge(tmp, file, job)
                    if job.block:
                        begun.add((job.run_name, job.surfaces[0]))
                    finished.remove(item)
                    if job.train:
                        trains.pop(0)
                        held.pop(job.run_name, None)
                    if tmp not in held.values():
                        os.remove(tmp)
                    out.append(job)
                    on_done(job)
                    progress = True

    try:
        while ready or waiting or running:
            for item in [w for w in waiting if can_start(*w)]:
                waiting.remove(item)
                ready.append(item[0])
            while ready and len(running) < 2 * executor.slots:
                job = ready.pop(0)
                running[submit(job)] = job
            if not running:
                break
            for handle in executor.wait(running):
                job = running.pop(handle)
                data = executor.result(handle)
                count += 1
                tmp = os.path.join(tmpdir, f"task{count}.h5")
                with open(tmp, "wb") as f:
                    f.write(data)
                if job.train:
                    held[job.run_name] = tmp
                finished.append((tmp, job))
            merge_what_can_be()
        if waiting or finished:
            left = [j.describe() for j, _ in waiting] + [j.describe() for _, j in finished]
            raise RuntimeError(f"sweep: tasks left undone: {', '.join(left)}")
    except BaseException:
        executor.cancel(list(running))
        raise
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return out
