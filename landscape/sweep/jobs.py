"""A sweep's work as jobs: what a file lacks of a sweep (:func:`plan`), and doing one job.

:func:`do_job` does a run's training and end-of-run probes, a surface or a block of it, or a
path. The leaf of the sweep's modules: :mod:`landscape.sweep.run` runs the jobs in this process or
hands them to :mod:`landscape.sweep.dist`, whose workers (:mod:`landscape.sweep.executors`)
call :func:`do_job` on a small file of their own.

Examples:
    >>> for job in plan(load("experiments/quick.toml"), "quick.h5"):  # doctest: +SKIP
    ...     print(job.describe())
"""

from __future__ import annotations

import importlib
import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landscape.store.file import Store
from landscape.surfaces.stored import path_between, surface_of_run
from landscape.sweep.bad_init import pretrain_random_labels
from landscape.sweep.measure import along_callback
from landscape.sweep.spec import PlannedRun, Sweep
from landscape.train.fit import fit
from landscape.train.spec import build, merge, rebuild, reuse_rebuilds, stored_params

__all__ = [
    "Job",
    "compare_name",
    "do_job",
    "measure_run",
    "path_run",
    "plan",
    "surface_run",
    "train_run",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Work on one run (``run``) or between two runs (``pair``), as :func:`plan` found it."""

    run: str | None = None
    train: bool = False
    probes: tuple[str, ...] = ()
    surfaces: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()  # kinds of init -> final paths
    pair: tuple[str, str, str] | None = None  # (run a, run b, kind) of a /compare path
    notes: tuple[str, ...] = field(default=())
    block: tuple[int, int] | None = None  # points (start, stop) of the one surface

    @property
    def empty(self) -> bool:
        """Whether there is nothing to do."""
        return not (self.train or self.probes or self.surfaces or self.paths or self.pair)

    @property
    def run_name(self) -> str:
        """``run``, for a job on one run.

        Raises:
            ValueError: the job is on a pair of runs.
        """
        if self.run is None:
            raise ValueError(f"sweep: job {self.describe()} is on a pair of runs, not one run")
        return self.run

    def describe(self) -> str:
        """What the job does, in a line (``train, probes/hessian, surfaces/random_2d``)."""
        if self.pair:
            a, b, kind = self.pair
            return f"compare/{compare_name(a, b, kind)}"
        block = f"[{self.block[0]}:{self.block[1]}]" if self.block else ""
        parts = (
            (["train"] if self.train else [])
            + [f"probes/{p}" for p in self.probes]
            + [f"surfaces/{s}{block}" for s in self.surfaces]
            + [f"paths/{k}_init_final" for k in self.paths]
        )
        return ", ".join(parts + list(self.notes)) or "complete"


def compare_name(a: str, b: str, kind: str) -> str:
    """The name of the path between two runs' final points under ``/compare``."""
    return f"{kind}_{a}_final_{b}_final"


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(json.loads(json.dumps(b)), sort_keys=True)


def _placeless(spec: Any) -> Any:
    """A run spec without its device: where a run was trained does not make another run."""
    if not isinstance(spec, dict) or not isinstance(spec.get("train"), dict):
        return spec
    return {**spec, "train": {k: v for k, v in spec["train"].items() if k != "device"}}


def plan(sweep: Sweep, file: str | os.PathLike) -> list[Job]:
    """What ``file`` lacks of ``sweep``.

    Args:
        sweep: the sweep.
        file: its landscape file (it may not exist yet).

    Returns:
        One :class:`Job` a run (``empty`` when complete), then one a missing ``/compare``
        path.

    Raises:
        ValueError: a complete run of the file was made with another spec than the sweep's.
    """
    jobs: list[Job] = []
    all_probes = tuple(sweep.probes)
    all_surfaces = tuple(sweep.surfaces)
    if not os.path.exists(file):
        jobs = [
            Job(r.name, True, all_probes, all_surfaces, sweep.init_to_final) for r in sweep.runs
        ]
        return jobs + [Job(pair=p) for p in sweep.between]
    with Store(file) as s:
        for r in sweep.runs:
            if r.name not in s or s.info(r.name).status != "complete":
                jobs.append(Job(r.name, True, all_probes, all_surfaces, sweep.init_to_final))
                continue
            info = s.info(r.name)
            if not _same(
                _placeless(info.attrs.get("spec")), _placeless(merge({}, r.spec))
            ) or not _same(info.attrs.get("init", {"name": "random"}), r.init):
                raise ValueError(
                    f"{file}: run {r.name!r} is complete but was trained with "
                    "another spec than this sweep's; sweep into another --out "
                    "file, or rename the runs"
                )
            surfaces = tuple(
                n
                for n in all_surfaces
                if not s.has_record(r.name, "surfaces", n)
                or not np.all(s.record(r.name, "surfaces", n).arrays["done"])
            )
            notes = tuple(
                f"probes/{n} (along training) missing: not redone"
                for n in sweep.along
                if n not in info.probes
            )
            jobs.append(
                Job(
                    r.name,
                    False,
                    tuple(p for p in all_probes if p not in info.probes),
                    surfaces,
                    tuple(
                        k
                        for k in sweep.init_to_final
                        if not s.has_record(r.name, "paths", f"{k}_init_final")
                    ),
                    notes=notes,
                )
            )
        done = set(s.compares())
    return jobs + [Job(pair=p) for p in sweep.between if compare_name(*p) not in done]


# ----------------------------------------------------------------------------- the work
def train_run(file: str, sweep: Sweep, run: PlannedRun, *, progress: bool = False) -> Any:
    """Train one run of the sweep into ``file`` (with its along-training probes and init).

    The run records ``attrs["sweep"]`` (:meth:`~landscape.sweep.spec.Sweep.attrs`: the sweep's
    name, the run's axes, configuration and seed, and the sweep's ``[stop]``) and, in a sweep
    with ``[stop]``, ``attrs["converged"]`` with its final attributes: whether it stopped at
    the target.

    Args:
        file: the landscape file.
        sweep: the sweep.
        run: one of its runs.
        progress: show a progress bar.

    Returns:
        The :class:`~landscape.train.fit.TrainResult`.
    """
    model, split, loss, config, attrs, _ = build(run.spec)
    attrs = {**attrs, "sweep": sweep.attrs(run), "init": run.init}
    if run.init["name"] == "random_labels":
        attrs["pretraining"] = pretrain_random_labels(
            model, loss, split, run.init, seed=config.seed
        )
    callbacks = [along_callback(name, split.train, opts) for name, opts in sweep.along.items()]
    return fit(
        model,
        loss,
        split,
        config,
        store=file,
        run=run.name,
        attrs=attrs,
        callbacks=callbacks,
        progress=progress,
        record_converged=bool(sweep.stop),
    )


def measure_run(file: str, sweep: Sweep, run: str, names: tuple[str, ...]) -> None:
    """The end-of-run probes ``names`` of the sweep on a stored run, each stored when done."""
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
        attrs = {
            **attrs,
            "data": {"split": "train", "n": int(min(n, len(y)))},
            "checkpoint": "final",
        }
        with Store(file, "a", timeout=60) as s:
            s.write_record(run, "probes", name, arrays=arrays, attrs=attrs)


def surface_run(
    file: str,
    sweep: Sweep,
    run: str,
    name: str,
    *,
    progress: bool = False,
    points: tuple[int, int] | None = None,
) -> Any:
    """One surface of the sweep around a stored run (resumed if partly done).

    With ``points``, only that block ``(start, stop)`` of its flat grid indices.
    """
    o = dict(sweep.surfaces[name])
    x = np.linspace(*o.pop("x"))
    y = np.linspace(*o.pop("y")) if "y" in o else None
    if o.get("ignore") == "none":
        o["ignore"] = None
    return surface_of_run(file, run, x=x, y=y, name=name, progress=progress, points=points, **o)


def path_run(file: str, sweep: Sweep, a: str, b: str, kind: str) -> Any:
    """A path of the sweep: ``a``'s init to final (``a == b``) or ``a``'s final to ``b``'s."""
    o = sweep.path_options
    kw: dict[str, Any] = {
        "n": o.get("points", 25),
        "n_examples": o.get("n"),
        **{k: o[k] for k in ("steps", "lr", "seed") if k in o},
    }
    if a == b:
        return path_between(file, a, a, which_a="init", which_b="final", kind=kind, **kw)
    return path_between(file, a, b, kind=kind, name=compare_name(a, b, kind), **kw)


def do_job(file: str, sweep: Sweep, job: Job, *, progress: bool = False) -> Job:
    """Do ``job`` into ``file`` (the sweep's file, or a worker's temporary one)."""
    if job.pair:
        path_run(file, sweep, *job.pair)
        return job

    run = sweep.run(job.run_name)
    if job.train:
        train_run(file, sweep, run, progress=progress)
    with reuse_rebuilds():  # the run is final now: build it and its data once
        measure_run(file, sweep, run.name, job.probes)
        for name in job.surfaces:
            surface_run(file, sweep, run.name, name, progress=progress, points=job.block)
        for kind in job.paths:
            path_run(file, sweep, run.name, run.name, kind)
    return job
