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
    max_margin = {}                      # bias-free linear classifiers: probes.implicit_bias.ground_truth.
    interpolators = {}                   # margin_alignment; diagonal nets: interpolator_distances

    [along]                              # during training (callbacks of landscape.train.fit)
    lambda_max = {every = 50, k = 1, n = 500}
    max_margin = {every = 100, n = 500}  # probes.along.max_margin_alignment (linear classifiers)
    param_norm = {every = 100}           # probes.along.param_norms: ||theta||, weights, dist_init

    [surfaces.random_2d]                 # one table a surface, the table's name its name
    directions = "random"                # random, pca or hessian
    x = [-1.0, 1.0, 11]                  # [start, stop, num]
    y = [-1.0, 1.0, 11]                  # leave out for a 1-D surface
    n = 500                              # also seed, normalization, ignore, bn, test

    [paths]
    init_to_final = true                 # each run's own init -> final path
    between = "all"                      # every pair of runs, or [["sgd", "adam"], ...]
    kind = ["linear", "bezier"]         # and/or "aligned": linear after weight matching
    points = 25                          # n (examples), steps, lr, seed: as for the CLI

    [resources]                          # what a task asks of a Ray cluster (landscape.
    cpus = 1                             # sweep_dist): CPUs (and torch threads) a task;
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

Probe, along and path options are the keyword arguments of the probe functions
(:mod:`probes.curvature.hessian`, :mod:`probes.sharpness`, :mod:`probes.implicit_bias`,
:mod:`probes.paths.interpolation`), checked by name before anything runs; their values are checked
by the probes. Stored names: ``probes/hessian_eigenvalues``, ``hessian_trace``,
``hessian_density``, ``measures``, ``sharpness_<kind>[_adaptive]``, ``max_margin_alignment``,
``interpolator_distances`` (or the entry's ``name``), ``probes/lambda_max``,
``probes/max_margin`` and ``probes/param_norm`` (along training), ``surfaces/<name>``,
``paths/<kind>_init_final`` and ``/compare/<kind>_<a>_final_<b>_final``.

Examples:
    >>> sweep = load("experiments/quick.toml")                          # doctest: +SKIP
    >>> [r.name for r in sweep.runs]
    ['sgd', 'adam']
"""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from landscape.sweep.measure import _along, _fail, _int, _keys, _paths, _probes, _surfaces, _table

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["ABBREVIATIONS", "INITS", "PlannedRun", "Sweep", "expand", "load", "loads",
           "on_device"]

TOP = ("name", "description", "base", "grid", "runs", "init", "probes", "along", "surfaces",
       "paths", "resources")
RESOURCES = ("cpus", "gpus", "surface_block")
RUN_KEYS = ("model", "data", "optimizer", "train", "init")
INITS = ("random", "random_labels")
ABBREVIATIONS = {"batch_size": "bs", "label_noise": "noise", "weight_decay": "wd",
                 "momentum": "mom", "max_steps": "steps", "epochs": "ep", "n_train": "n",
                 "width": "w", "depth": "d", "label_noise_seed": "noiseseed"}
"""Short forms of setting names in run names."""
INIT_OPTIONS = ("optimizer", "epochs", "max_steps", "target_accuracy", "target_loss",
                "batch_size", "fraction", "seed")
# settings of explicit runs that are not axes (they change what is recorded, not the run)
_NOT_AXES = ("train.history_every", "train.snapshot_every", "train.device")


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, run spec (``landscape.train.spec`` tables), init and axes."""

    name: str
    spec: dict[str, Any]
    init: dict[str, Any]
    axes: dict[str, Any]


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

    def run(self, name: str) -> PlannedRun:
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"sweep {self.name!r} has no run {name!r}")


def on_device(sweep: Sweep, device: str) -> Sweep:
    """The sweep with every run trained and measured on ``device`` (``landscape sweep
    --device``); a complete run trained elsewhere is kept (the device is not part of what
    makes a run, :func:`landscape.sweep.run.plan`)."""
    if not isinstance(device, str) or not device:
        raise TypeError(f"sweep: device must be a string such as 'cuda', got {device!r}")
    runs = tuple(PlannedRun(r.name, {**r.spec, "train": {**r.spec.get("train", {}),
                                                         "device": device}}, r.init, r.axes)
                 for r in sweep.runs)
    return dataclasses.replace(sweep, runs=runs)


# ----------------------------------------------------------------------------- reading
def load(path: str | os.PathLike) -> Sweep:
    """Read, check and expand a sweep spec file."""
    from landscape.train.spec import read_toml

    return expand(read_toml(path, "sweep spec"))


def loads(text: str) -> Sweep:
    """:func:`load` from a string."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"sweep spec is not valid TOML: {err}") from None
    return expand(raw)


def expand(raw: Mapping[str, Any]) -> Sweep:
    """A :class:`Sweep` from a parsed spec (a dict as TOML gives it), checked."""
    _keys("", raw, TOP)
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip() or "/" in name:
        raise _fail("name", f"the sweep needs a name (a non-empty string without '/'), got "
                    f"{name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise _fail("description", f"must be a string, got {description!r}", TypeError)
    inits = _init_options(raw.get("init", {}))
    base = _run_table("base", raw.get("base", {}))
    runs = _expand_runs(base, raw.get("grid", {}), raw.get("runs", []), inits)
    names = [r.name for r in runs]
    return Sweep(name=name, runs=tuple(runs), probes=_probes(raw.get("probes", {})),
                 along=_along(raw.get("along", {})),
                 surfaces=_surfaces(raw.get("surfaces", {})),
                 description=description, source=json.loads(json.dumps(dict(raw))),
                 resources=_resources(raw.get("resources", {})),
                 **_paths(raw.get("paths", {}), names))


def _resources(value: Any) -> dict[str, Any]:
    table = _table("resources", value)
    _keys("resources", table, RESOURCES)
    for key in ("cpus", "surface_block"):
        if key in table:
            _int(f"resources.{key}", table[key], 1)
    gpus = table.get("gpus", 0)
    if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0:
        raise _fail("resources.gpus", f"must be a number >= 0, got {gpus!r}", TypeError)
    return table


def _init_options(value: Any) -> dict[str, dict[str, Any]]:
    table = _table("init", value)
    _keys("init", table, INITS[1:])
    out = {}
    for kind, opts in table.items():
        opts = _table(f"init.{kind}", opts)
        _keys(f"init.{kind}", opts, INIT_OPTIONS)
        out[kind] = opts
        _check_init("init", kind, out)
    return out


def _run_table(key: str, value: Any) -> dict[str, Any]:
    table = _table(key, value)
    if "run" in table:
        raise _fail(f"{key}.run", "runs are named by [[runs]] name = ... or by the grid")
    _keys(key, table, RUN_KEYS)
    for section in RUN_KEYS[:-1]:
        if section in table:
            table[section] = _table(f"{key}.{section}", table[section])
    return json.loads(json.dumps(table))  # a deep copy, JSON types only


# ----------------------------------------------------------------------------- runs
def _apply(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set a grid or run key in a run spec (module docstring: tables merge, unless they name
    another ``name``)."""
    head, _, rest = key.partition(".")
    if head == "init":
        spec["init"] = value
    elif not rest:
        new = dict(value) if isinstance(value, Mapping) else {"name": value}
        old = spec.get(head, {})
        if "name" in new and old.get("name") not in (None, new["name"]):
            old = {}
        spec[head] = {**old, **new}
    else:
        spec.setdefault(head, {})[rest] = value


def _check_grid_key(key: str, values: Any) -> list[Any]:
    where = f"grid.{key!r}" if "." in key else f"grid.{key}"
    head, _, rest = key.partition(".")
    if head not in RUN_KEYS:
        raise _fail(where, f"unknown key; a grid key is one of {', '.join(RUN_KEYS)} or a "
                    "dotted key into model, data, optimizer or train (e.g. 'train.seed')")
    if head == "init" and rest:
        raise _fail(where, "init takes 'random' or 'random_labels'; set its options in "
                    "[init.random_labels]")
    if not isinstance(values, list) or not values:
        raise _fail(where, f"must be a non-empty list of values, got {values!r}", TypeError)
    for v in values:
        if not rest and head != "init" and not isinstance(v, (Mapping, str)):
            raise _fail(where, f"values must be tables (or names), got {v!r}", TypeError)
        if rest and isinstance(v, Mapping):
            raise _fail(where, f"values must be scalars or lists, got the table {v!r}",
                        TypeError)
    if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
        raise _fail(where, f"values repeat: {values!r}")
    return values


def _label(value: Any) -> Any:
    """An axis value: a scalar as is, a table as ``name(k=v, ...)``."""
    if isinstance(value, Mapping):
        rest = ", ".join(f"{k}={_label(v)}" for k, v in value.items() if k != "name")
        return f"{value.get('name', '')}({rest})"
    if isinstance(value, list):
        return json.dumps(value)
    return value


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "x".join(_short(v) for v in value)
    return str(value)


def _tokens(key: str, values: list[Any]) -> list[str]:
    """A name token for each value of a key (module docstring: naming)."""
    head, _, rest = key.partition(".")
    if head == "init":
        return [str(v) for v in values]
    if rest:
        abbr = ABBREVIATIONS.get(rest.rsplit(".", 1)[-1], rest.rsplit(".", 1)[-1])
        return [f"{abbr}{_short(v)}" for v in values]
    tables = [dict(v) if isinstance(v, Mapping) else {"name": v} for v in values]
    out = []
    for t in tables:
        same = [u for u in tables if u.get("name") == t.get("name")]
        token = str(t.get("name", head))
        if len(same) > 1:  # tell them apart by the settings that differ among them
            differ = [k for k in t if k != "name" and
                      len({json.dumps(u.get(k), sort_keys=True) for u in same}) > 1]
            token += "".join(f"-{ABBREVIATIONS.get(k, k)}{_short(t[k])}" for k in differ)
        out.append(token)
    return out


def _leaves(entry: Mapping[str, Any]) -> dict[str, Any]:
    """The dotted keys an explicit run sets (whole optimizer/model tables as one key)."""
    out = {}
    for k, v in entry.items():
        if k in ("optimizer", "model", "init") or not isinstance(v, Mapping):
            out[k] = v
        else:
            out.update({f"{k}.{kk}": vv for kk, vv in v.items()})
    return out


def _value_at(spec: Mapping[str, Any], key: str) -> Any:
    head, _, rest = key.partition(".")
    v = spec.get(head)
    return v.get(rest) if rest and isinstance(v, Mapping) else v


def _expand_runs(base: dict[str, Any], grid: Any, entries: Any,
                 inits: dict[str, dict[str, Any]]) -> list[PlannedRun]:
    grid = _table("grid", grid)
    axes = {k: _check_grid_key(k, v) for k, v in grid.items()}
    if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
        raise _fail("runs", "must be an array of tables ([[runs]])", TypeError)
    explicit = []
    for i, entry in enumerate(entries):
        entry = dict(entry)
        name = entry.pop("name", None)
        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise _fail(f"runs[{i}].name", f"must be a non-empty string without '/', got "
                        f"{name!r}")
        explicit.append((name, _run_table(f"runs[{i}]", entry)))
    run_keys = list(dict.fromkeys(k for _, e in explicit for k in _leaves(e)
                                  if k not in _NOT_AXES))
    tokens = {k: dict(zip(map(json.dumps, v), _tokens(k, v), strict=True))
              for k, v in axes.items()}
    ordered = sorted(axes, key=lambda k: "." in k)  # whole tables before dotted keys
    runs, seen = [], {}
    for name, entry in explicit or [(None, {})]:
        start = json.loads(json.dumps(base))
        for k, v in _leaves(entry).items():
            _apply(start, k, v)
        prefix = name or "-".join(_tokens(k, [v])[0] for k, v in _leaves(entry).items())
        for combo in itertools.product(*axes.values()):
            chosen = dict(zip(axes, combo, strict=True))
            spec = json.loads(json.dumps(start))
            for k in ordered:
                _apply(spec, k, chosen[k])
            parts = [prefix] if prefix else []
            parts += [tokens[k][json.dumps(v)] for k, v in chosen.items()]
            run_name = "-".join(parts) or "run"
            where = f"run {run_name!r}"
            if run_name in seen:
                raise _fail("runs", f"two runs are both named {run_name!r} ({seen[run_name]} "
                            f"and {json.dumps(chosen)}); give [[runs]] distinct names")
            seen[run_name] = json.dumps(chosen) if chosen else json.dumps(entry)
            init = _check_init(where, spec.pop("init", "random"), inits)
            _check_run(where, spec)
            ax = {k: _label(_value_at(spec, k) if k != "init" else init["name"])
                  for k in [*run_keys, *axes]}
            runs.append(PlannedRun(run_name, spec, init, ax))
    return runs


def _check_init(where: str, value: Any, inits: dict[str, dict[str, Any]]) -> dict[str, Any]:
    if value not in INITS:
        raise _fail(f"{where}: init", f"got {value!r}; allowed: {', '.join(INITS)}")
    if value == "random":
        return {"name": "random"}
    opts = dict(inits.get(value, {}))
    out = {"name": value, "optimizer": {"name": "adam", "lr": 0.001}, "fraction": 1.0,
           "seed": 0, "target_accuracy": 1.0, **opts}
    if "epochs" not in out and "max_steps" not in out:
        out["epochs"] = 100
    from landscape.train.config import TrainConfig

    train = {k: out[k] for k in ("epochs", "max_steps", "target_accuracy", "target_loss",
                                 "batch_size") if k in out}
    try:
        TrainConfig(out["optimizer"], **train)
    except (TypeError, ValueError) as err:
        raise _fail("init.random_labels", str(err), type(err)) from None
    f = out["fraction"]
    if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f <= 1:
        raise _fail("init.random_labels.fraction", f"must be in (0, 1], got {f!r}")
    _int("init.random_labels.seed", out["seed"], 0)
    return out


def _check_run(where: str, spec: dict[str, Any]) -> None:
    """Check a run spec without loading data: names, keys and training settings."""
    from landscape import data, models
    from landscape.train.spec import merge
    from landscape.train.config import TrainConfig

    try:
        merge({}, spec)
    except (TypeError, ValueError) as err:
        raise _fail(where, str(err), type(err)) from None
    d = spec.get("data", {})
    if d.get("name") not in data.DATASETS:
        raise _fail(f"{where}: data.name", f"got {d.get('name')!r}; known: "
                    f"{', '.join(data.DATASETS)}")
    accepted = set(inspect.signature(data.DATASETS[d["name"]]).parameters) | {
        "name", "standardize", "label_noise", "label_noise_seed", "n_train", "n_test"}
    _keys(f"{where}: data", d, tuple(sorted(accepted)))
    m = spec.get("model", {})
    if m.get("name") not in models.MODELS:
        raise _fail(f"{where}: model.name", f"got {m.get('name')!r}; known: "
                    f"{', '.join(models.MODELS)}")
    params = inspect.signature(models.MODELS[m["name"]]).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        _keys(f"{where}: model", m, ("name", *params))
    t = {k: v for k, v in spec.get("train", {}).items() if k not in ("loss", "device", "dtype")}
    if t.get("epochs") is None and t.get("max_steps") is None:
        raise _fail(f"{where}: train", "needs a budget: epochs or max_steps (in [base.train])")
    try:
        TrainConfig(spec.get("optimizer", {"name": "sgd"}), **t)
    except TypeError as err:
        hint = ("; allowed: batch_size, max_steps, epochs, target_loss, target_accuracy, seed, "
                "history_every, snapshot_every, loss, device, dtype"
                if "keyword" in str(err) else "")
        raise _fail(f"{where}: train", f"{err}{hint}", TypeError) from None
    except ValueError as err:
        raise _fail(where, str(err)) from None


