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
import torch

from landscape.store.file import Store
from landscape.surfaces.stored import path_between, surface_of_run
from landscape.sweep.bad_init import pretrain_random_labels
from landscape.sweep.measure import along_callback
from landscape.sweep.spec import PlannedRun, Sweep
from landscape.sweep.stale import (
    changed_along,
    changed_record,
    path_settings,
    probe_settings,
    surface_settings,
)
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
    # results the file holds with other settings: (what, how it differs); what is "train"
    # (the run, trained again), "probes/NAME", "surfaces/NAME", "paths/NAME" or "compare/NAME"
    changed: tuple[tuple[str, str], ...] = ()

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
            name = f"compare/{compare_name(a, b, kind)}"
            return name + "".join(f" (changed: {why})" for _, why in self.changed)
        why = dict(self.changed)
        block = f"[{self.block[0]}:{self.block[1]}]" if self.block else ""
        parts = [
            f"{key}{block if key.startswith('surfaces/') else ''}"
            + (f" (changed: {why[key]})" if key in why else "")
            for key in (
                (["train"] if self.train else [])
                + [f"probes/{p}" for p in self.probes]
                + [f"surfaces/{s}" for s in self.surfaces]
                + [f"paths/{k}_init_final" for k in self.paths]
            )
        ]
        return ", ".join(parts + list(self.notes)) or "complete"

    def stale(self) -> list[tuple[str | None, str]]:
        """What :func:`~landscape.sweep.stale.clear_stale` removes before the job is done."""
        return [(self.run, "run" if what == "train" else what) for what, _ in self.changed]


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

    A result the file holds with other settings than the sweep's (:mod:`landscape.sweep.stale`)
    is listed as to do again, with how it changed (:attr:`Job.changed`); a run whose series
    along training were measured otherwise is trained again.

    Returns:
        One :class:`Job` a run (``empty`` when complete), then one a missing or changed
        ``/compare`` path.

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
            along = changed_along(info, sweep.along)
            if along:  # a series measured during training: the run is trained again
                jobs.append(
                    Job(
                        r.name,
                        True,
                        all_probes,
                        all_surfaces,
                        sweep.init_to_final,
                        changed=(("train", along),),
                    )
                )
                continue
            jobs.append(_missing(s, sweep, r.name, info))
        done = set(s.compares())
        for p in sweep.between:
            name = compare_name(*p)
            why = changed_record(s, None, "paths", name, path_settings(sweep, *p))
            if name not in done or why:
                jobs.append(Job(pair=p, changed=((f"compare/{name}", why),) if why else ()))
    return jobs


def _missing(s: Store, sweep: Sweep, run: str, info: Any) -> Job:
    """What a complete run of ``s`` lacks of ``sweep``'s measurements, or holds otherwise."""
    changed: list[tuple[str, str]] = []

    def wanted(kind: str, name: str, settings: dict[str, Any]) -> bool:
        why = changed_record(s, run, kind, name, settings)
        if why:
            changed.append((f"{kind}/{name}", why))
        return why is not None or not s.has_record(run, kind, name)

    probes = tuple(p for p in sweep.probes if wanted("probes", p, probe_settings(sweep, p)))
    surfaces = tuple(
        n
        for n in sweep.surfaces
        if wanted("surfaces", n, surface_settings(sweep, n))
        or not np.all(s.record(run, "surfaces", n).arrays["done"])
    )
    paths = tuple(
        k
        for k in sweep.init_to_final
        if wanted("paths", f"{k}_init_final", path_settings(sweep, run, run, k))
    )
    notes = tuple(
        f"probes/{n} (along training) missing: not redone"
        for n in sweep.along
        if n not in info.probes
    )
    return Job(run, False, probes, surfaces, paths, notes=notes, changed=tuple(changed))


# ----------------------------------------------------------------------------- the work
def train_run(file: str, sweep: Sweep, run: PlannedRun, *, progress: bool = False) -> Any:
    """Train one run of the sweep into ``file`` (with its along-training probes and init).

    The run records ``attrs["sweep"]`` (:meth:`~landscape.sweep.spec.Sweep.attrs`: the sweep's
    name, the run's axes, configuration and seed, and the sweep's ``[stop]`` and
    ``[resources]``), ``attrs["threads"]`` (the torch CPU threads it was trained with) and, in
    a sweep with ``[stop]``, ``attrs["converged"]`` with its final attributes: whether it
    stopped at the target.

    Args:
        file: the landscape file.
        sweep: the sweep.
        run: one of its runs.
        progress: show a progress bar.

    Returns:
        The :class:`~landscape.train.fit.TrainResult`.
    """
    model, split, loss, config, attrs, _ = build(run.spec)
    attrs = {
        **attrs,
        "sweep": sweep.attrs(run),
        "init": run.init,
        "along": dict(sweep.along),
        "threads": torch.get_num_threads(),  # the CPU threads it was trained with
    }
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
            "settings": probe_settings(sweep, name),
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
    out = surface_of_run(file, run, x=x, y=y, name=name, progress=progress, points=points, **o)
    with Store(file, "a", timeout=60) as s:  # the settings that made it (landscape.sweep.stale)
        s.update_record(
            run,
            "surfaces",
            name,
            points=[],
            arrays={},
            attrs={"settings": surface_settings(sweep, name)},
        )
    return out


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
