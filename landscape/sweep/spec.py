"""Sweep specs: one TOML file that says which runs to train and what to measure on them.

A sweep trains the same model several ways (optimizers, hyperparameters, batch sizes, seeds,
label noise, initialisations) and measures every run the same way. :func:`load` reads and
checks a spec and expands it into named runs (:class:`Sweep`); :mod:`landscape.sweep.run`
runs what a file does not hold yet (``landscape sweep SPEC --out FILE``).

The format::

    name = "optimizers"                  # the sweep's name (required)
    description = "..."                  # optional

    [base]                               # a run spec (landscape.train.spec) shared by all runs
    model = {name = "mlp", width = 64}
    data = {name = "mnist1d", n_train = 1000}
    optimizer = {name = "sgd", lr = 0.05}
    train = {epochs = 20, batch_size = 64, seed = 0}   # the budget and stopping rule
    init = "random"                      # "random" (the model's seeded init) or
                                         # "random_labels" (the bad-minimum init, below)

    [grid]                               # dotted keys into the run spec; cartesian product
    optimizer = [{name = "sgd", lr = 0.05}, {name = "adam", lr = 0.003}]
    "train.seed" = [0, 1]

    [[runs]]                             # and/or explicit runs, each merged over [base]
    name = "sam"                         # optional; default from its settings
    optimizer = {name = "sam", lr = 0.05, rho = 0.05}

    [stop]                               # one stopping rule for every run (matched stopping)
    train_loss = 0.01                    # the target: train_loss (whole training set) or
                                         # train_accuracy = 1.0, exactly one
    max_steps = 20000                    # the step cap (required)
    max_epochs = 500                     # and an epoch cap (optional)

    [init.random_labels]                 # options of the bad-minimum init (Liu et al. 2020)
    optimizer = {name = "sgd", lr = 0.05, momentum = 0.9}
    epochs = 200                         # its budget; stops earlier at target_accuracy
    target_accuracy = 1.0
    batch_size = 64
    fraction = 1.0                       # fraction of training labels made random
    seed = 0                             # seed of the random labels

    [probes]                             # at the end of each run, on its final parameters
    n = 1000                             # first N training examples (default all), any probe
    hessian = {k = 3}                    # probes.curvature.hessian.eigenvalues keywords
    trace = {n_products = 60}            # probes.curvature.hessian.trace
    density = {n_vectors = 2, steps = 30}     # probes.curvature.hessian.density
    measures = {include = ["norms", "margins"], rho = 0.05, adaptive_rho = 0.5}
    sharpness = [{kind = "worst", adaptive = true, rho = 0.5},   # worst, average, epsilon,
                 {kind = "pac_bayes"}]                           # pac_bayes (+ keywords)
    max_margin = {}                      # bias-free linear classifiers: probes.implicit_bias.
    interpolators = {}                   # recovery.margin_alignment; diagonal nets:
                                         # recovery.interpolator_distances

    [along]                              # during training (callbacks of landscape.train.fit)
    lambda_max = {every = 50, k = 1, n = 500}
    max_margin = {every = 100, n = 500}  # probes.along.max_margin_alignment (linear classifiers)
    param_norm = {every = 100}           # probes.along.param_norms: ||theta||, weights, dist_init
    preconditioned_sharpness = {every = 20}  # Adam's lambda_max(P^-1 H): probes.along

    [surfaces.random_2d]                 # one table a surface, the table's name its name
    directions = "random"                # random, pca or hessian
    x = [-1.0, 1.0, 11]                  # [start, stop, num]
    y = [-1.0, 1.0, 11]                  # leave out for a 1-D surface
    n = 500                              # also seed, normalization, ignore, bn, test

    [paths]
    init_to_final = true                 # each run's own init -> final path
    between = "all"                      # every pair of runs, "init" (each pair that differs
                                         # only in its init), or [["sgd", "adam"], ...]
    kind = ["linear", "bezier"]         # and/or "aligned": linear after weight matching
    points = 25                          # n (examples), steps, lr, seed: as for the CLI

    [resources]                          # what a task uses and asks of a Ray cluster
    threads = 1                          # torch CPU threads a task, on every executor
                                         # (default: the executor's own; see below)
    cpus = 1                             # CPUs a Ray task asks for (default: threads, or 1);
    gpus = 1                             # GPUs a task (default 1 for runs on CUDA, else 0);
    surface_block = 64                   # grid points a surface task (default: enough
                                         # blocks for ~2 tasks a worker; none when the runs
                                         # alone make that many)

**Runs.** The explicit ``[[runs]]`` (one empty run when there are none), each merged over
``[base]``, are crossed with the ``[grid]``. A grid key is a table (``"optimizer"``,
``"model"``, ``"data"``, ``"train"``: its values are tables merged over the run's; a table
that names another ``name`` replaces the run's table, as another optimizer's settings do not
apply), a dotted key into a table (``"optimizer.lr"``, ``"train.batch_size"``,
``"data.label_noise"``; whole tables are applied before dotted keys), or ``"init"``.

**Names.** An explicit run's ``name``, else its settings' tokens; then one token a grid key,
in the order of ``[grid]``, joined by ``-``. A token is: a table's ``name`` (with the
settings that tell apart values of the same name, e.g. ``sgd-lr0.1``); an abbreviated key and
the value for a scalar (``bs32``, ``seed0``, ``lr0.05``, ``noise0.2``; abbreviations in
:data:`ABBREVIATIONS`, else the last part of the key); the value itself for ``init``. So
``optimizer x train.batch_size x train.seed`` gives ``sgd-bs32-seed0``. Names must be unique
(a clash is an error that shows both runs: give ``[[runs]]`` names).

**Axes.** Each run records ``attrs["sweep"] = {"name": <sweep name>, "axes": {<key>: <value
or label>}}``: one entry per grid key and per key that any explicit run sets, the same keys
for every run (a run that does not set one: its base value, or None). Scalars as they are;
tables as short labels, e.g. ``"sgd(lr=0.05)"``; recording settings (``train.history_every``,
``train.snapshot_every``, ``train.device``) are not axes. Reports group runs by these axes.

**Configurations and seeds.** The grid key ``"train.seed"`` is the seed axis: runs that differ
only in it are seeds of one configuration (run names keep their ``seedN`` token). Each run also
records ``attrs["sweep"]["config"]``, its axes without the seed as JSON with sorted keys
(:func:`landscape.sweep.runs.config_id`), and ``attrs["sweep"]["seed"]``, its ``train.seed``.

**Matched stopping.** ``[stop]`` stops every run by one rule, as studies that compare measures
with generalisation do (Jiang et al. 2020: cross-entropy 0.01): its target (``train_loss`` or
``train_accuracy``, exactly one, over the whole training set) and caps (``max_steps``, required;
``max_epochs``) are set in every run's ``[train]`` (``target_loss`` / ``target_accuracy``,
``max_steps``, ``epochs``). A target or cap that ``[base]``, ``[[runs]]`` or ``[grid]`` sets
otherwise is an error naming the key (``sweep spec: grid.'train.target_loss': mixing stopping
targets across configurations is refused: ...``); so is, without ``[stop]``, a spec whose runs
stop at different targets. ``[init.random_labels]`` keeps its own target (the pretraining).
Each run of a sweep with ``[stop]`` records ``attrs["converged"]``: true iff it stopped at the
target (``attrs["stop_reason"]`` says why it stopped otherwise: ``max_steps``, ``epochs``,
``diverged``), and ``attrs["sweep"]["stop"]``, the ``[stop]`` table. A sweep without ``[stop]``
records neither (no matched target).

**Threads.** torch's float sums on the CPU depend on the number of threads, so a sweep's
numbers are its spec's alone (the same on any executor and machine with the same torch build)
only with ``[resources] threads``: every task then runs with that many torch threads, in this
process (restored after the task), on local workers and on Ray (:mod:`landscape.sweep.threads`).
Without it each executor keeps its own count: in-process the process's, local workers its share
(``torch.get_num_threads() // workers``), a Ray task its CPUs. :func:`with_threads` (``landscape
sweep --threads``) overrides the spec's. The sweep's ``[resources]`` (as used) is recorded in
``attrs["sweep"]["resources"]``, and each run records the threads it was trained with in
``attrs["threads"]``.

**Checking.** :class:`SweepSpec`, with the tables of :mod:`landscape.sweep.run_tables` and
:mod:`landscape.sweep.measure`, is the schema (:func:`schema` gives it as JSON schema). Unknown
tables and keys, values of the wrong type or out of range are errors before anything runs, one
line each that names the dotted key, what came and what is allowed (``sweep spec:
probes.hessian.kk: unknown key; allowed: k, which, ...``: a ``TypeError`` for a wrong type, else
a ``ValueError``); each run is then checked as a complete run spec
(:func:`landscape.train.schema.check`: ``sweep spec: run 'sgd': train.batch_size: ...``).

Probe, along and path options are the keyword arguments of the probe functions
(:mod:`probes.curvature.hessian`, :mod:`probes.sharpness`, :mod:`probes.implicit_bias`,
:mod:`probes.paths.interpolation`), checked by name before anything runs; their values are checked
by the probes. Stored names: ``probes/hessian_eigenvalues``, ``hessian_trace``,
``hessian_density``, ``measures``, ``sharpness_<kind>[_adaptive]``, ``max_margin_alignment``,
``interpolator_distances`` (or the entry's ``name``), ``probes/lambda_max``,
``probes/max_margin`` and ``probes/param_norm`` (along training), ``surfaces/<name>``,
``paths/<kind>_init_final`` and ``/compare/<kind>_<a>_final_<b>_final``. ``between = "init"``
pairs each random-init run with the random-label-init runs that have all its other settings,
seed included (:func:`landscape.sweep.runs.init_pairs`): the paths between good and bad minima,
``a`` the random-init run.

Examples:
    >>> sweep = load("experiments/quick.toml")                          # doctest: +SKIP
    >>> [r.name for r in sweep.runs]
    ['sgd', 'adam']
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, StrictStr

from landscape.sweep.measure import AlongTable, PathsTable, ProbesTable, Surfaces
from landscape.sweep.run_tables import INITS, Grid, InitTables, RunEntry, RunTables, StopTable
from landscape.sweep.runs import ABBREVIATIONS, PlannedRun, expand_runs
from landscape.train.spec import read_toml
from landscape.train.tables import Name, Table, json_schema, validate

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "ABBREVIATIONS",
    "INITS",
    "PlannedRun",
    "ResourcesTable",
    "StopTable",
    "Sweep",
    "SweepSpec",
    "expand",
    "load",
    "loads",
    "on_device",
    "schema",
    "with_threads",
]


@dataclass(frozen=True)
class Sweep:
    """A checked, expanded sweep spec (see the module docstring)."""

    name: str
    runs: tuple[PlannedRun, ...]
    probes: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)
    along: dict[str, dict[str, Any]] = field(default_factory=dict)
    surfaces: dict[str, dict[str, Any]] = field(default_factory=dict)
    init_to_final: tuple[str, ...] = ()
    between: tuple[tuple[str, str, str], ...] = ()  # (run a, run b, kind)
    path_options: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    resources: dict[str, Any] = field(default_factory=dict)
    stop: dict[str, Any] = field(default_factory=dict)  # [stop] as given; {}: none

    def run(self, name: str) -> PlannedRun:
        """The run called ``name`` (KeyError if the sweep has none)."""
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"sweep {self.name!r} has no run {name!r}")

    def stop_rule(self) -> str:
        """The sweep's stopping rule in words (``[stop]``), or ``""`` without one.

        Examples:
            >>> load("experiments/optimizers.toml").stop_rule()         # doctest: +SKIP
            'train_loss <= 0.01, at most 20000 steps'
        """
        return StopTable.model_validate(self.stop).describe() if self.stop else ""

    def attrs(self, run: PlannedRun) -> dict[str, Any]:
        """What a run of the sweep records as ``attrs["sweep"]`` (the module docstring).

        Args:
            run: one of its runs.

        Returns:
            ``{"name", "axes", "config", "seed"}``, and ``"stop"`` and ``"resources"`` where
            the sweep has them.
        """
        out = {"name": self.name, "axes": run.axes, "config": run.config, "seed": run.seed}
        if self.stop:
            out["stop"] = dict(self.stop)
        if self.resources:
            out["resources"] = dict(self.resources)
        return out


class ResourcesTable(Table):
    """``[resources]``: what a task uses and asks of a Ray cluster (:mod:`landscape.sweep.dist`)."""

    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads a task, on every executor, so that the numbers do not "
        "depend on the executor or machine (default: the executor's own: in-process the "
        "process's, local workers their share, a Ray task its cpus)",
    )
    cpus: int | None = Field(
        default=None,
        ge=1,
        description="CPUs a Ray task asks for (default: threads, else 1; without threads "
        "also its torch threads)",
    )
    gpus: float | None = Field(
        default=None, ge=0, description="GPUs a task (default 1 for runs on CUDA, else 0)"
    )
    surface_block: int | None = Field(
        default=None,
        ge=1,
        description="grid points a surface task (default: enough blocks for ~2 tasks a worker)",
    )


class SweepSpec(Table):
    """A sweep spec as it is written (the module docstring); :func:`expand` expands it."""

    name: Name = Field(description="the sweep's name (a non-empty string without '/')")
    description: StrictStr = ""
    base: RunTables = Field(default_factory=RunTables, description="a run spec shared by all runs")
    grid: Grid = Field(
        default_factory=dict,
        description="dotted keys into the run spec -> values; the runs are their cartesian product",
    )
    runs: list[RunEntry] = Field(
        default_factory=list, description="explicit runs, each merged over [base]"
    )
    stop: StopTable | None = Field(
        default=None, description="one stopping rule for every run (matched stopping)"
    )
    init: InitTables = Field(default_factory=InitTables)
    probes: ProbesTable = Field(default_factory=ProbesTable)
    along: AlongTable = Field(default_factory=AlongTable)
    surfaces: Surfaces = Field(default_factory=dict)
    paths: PathsTable = Field(default_factory=PathsTable)
    resources: ResourcesTable = Field(default_factory=ResourcesTable)


def schema() -> dict[str, Any]:
    """The JSON schema of a sweep spec (:class:`SweepSpec`), for its documentation.

    Every table and key with its type, bounds, default and description.

    Examples:
        >>> sorted(schema()["properties"])[:3]
        ['along', 'base', 'description']
    """
    return json_schema(SweepSpec)


def on_device(sweep: Sweep, device: str) -> Sweep:
    """The sweep with every run trained and measured on ``device`` (``landscape sweep --device``).

    A complete run trained elsewhere is kept (the device is not part of what makes a run,
    :func:`landscape.sweep.jobs.plan`).
    """
    if not isinstance(device, str) or not device:
        raise TypeError(f"sweep: device must be a string such as 'cuda', got {device!r}")
    runs = tuple(
        PlannedRun(
            r.name,
            {**r.spec, "train": {**r.spec.get("train", {}), "device": device}},
            r.init,
            r.axes,
        )
        for r in sweep.runs
    )
    return dataclasses.replace(sweep, runs=runs)


def with_threads(sweep: Sweep, threads: int) -> Sweep:
    """The sweep with ``[resources] threads = threads`` (``landscape sweep --threads``).

    Raises:
        ValueError: ``threads`` is not an integer >= 1.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"sweep: threads must be an integer >= 1, got {threads!r}")
    return dataclasses.replace(sweep, resources={**sweep.resources, "threads": threads})


# ----------------------------------------------------------------------------- reading
def load(path: str | os.PathLike) -> Sweep:
    """Read, check and expand a sweep spec file."""
    return expand(read_toml(path, "sweep spec"))


def loads(text: str) -> Sweep:
    """:func:`load` from a string."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"sweep spec is not valid TOML: {err}") from None
    return expand(raw)


def expand(raw: Mapping[str, Any]) -> Sweep:
    """A :class:`Sweep` from a parsed spec (a dict as TOML gives it), checked.

    Raises:
        ValueError, TypeError: one line, ``sweep spec: <dotted key>: <problem>``.
    """
    spec = validate(SweepSpec, raw, "sweep spec")
    runs = expand_runs(spec.base, spec.grid, spec.runs, spec.init, spec.stop)
    return Sweep(
        name=spec.name,
        runs=tuple(runs),
        probes=spec.probes.entries(),
        along=spec.along.entries(),
        surfaces={k: v.options() for k, v in spec.surfaces.items()},
        description=spec.description,
        source=json.loads(json.dumps(dict(raw))),
        resources=spec.resources.given(),
        stop=spec.stop.given() if spec.stop is not None else {},
        **spec.paths.resolve(runs),
    )
