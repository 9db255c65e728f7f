"""The runs of a sweep: its tables expanded into named runs, their configurations and pairs.

Expanded, each run has its name and axes (the rules are in :mod:`landscape.sweep.spec`), its
configuration (its axes without the seed) and seed, the sweep's stopping rule, and is checked as
a complete run spec (:func:`landscape.train.schema.check`). The tables themselves
(``[base]``, ``[[runs]]``, ``[grid]``, ``[init.random_labels]``, ``[stop]``) are
:mod:`landscape.sweep.run_tables`.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from landscape.sweep.limits import check_count
from landscape.sweep.run_tables import (
    InitTables,
    RandomLabelsInit,
    RunEntry,
    RunTables,
    StopTable,
)
from landscape.train.schema import check
from landscape.train.tables import dotted, fail

__all__ = [
    "ABBREVIATIONS",
    "PlannedRun",
    "SEED_AXES",
    "config_id",
    "expand_runs",
    "init_pairs",
]

_WHAT = "sweep spec"
ABBREVIATIONS = {
    "batch_size": "bs",
    "label_noise": "noise",
    "weight_decay": "wd",
    "momentum": "mom",
    "max_steps": "steps",
    "epochs": "ep",
    "n_train": "n",
    "width": "w",
    "depth": "d",
    "label_noise_seed": "noiseseed",
}
"""Short forms of setting names in run names."""
SEED_AXES = ("train.seed", "seed")
"""Axes that are a run's seed: runs that differ only in these form one configuration."""
_STOP_KEYS = ("target_loss", "target_accuracy", "max_steps", "epochs")
# settings of explicit runs that are not axes (they change what is recorded, not the run)
_NOT_AXES = ("train.history_every", "train.snapshot_every", "train.device")


def config_id(axes: Mapping[str, Any]) -> str:
    """The configuration of a run with these axes: the axes without the seed, as JSON.

    Keys sorted, the seed axes (:data:`SEED_AXES`) left out: runs that differ only in their seed
    have the same id, runs that differ in anything else do not.

    Args:
        axes: a run's axes (:attr:`PlannedRun.axes`).

    Returns:
        A stable string, e.g. ``'{"init": "random", "optimizer": "sgd(lr=0.1)"}'``.

    Examples:
        >>> config_id({"optimizer": "sgd(lr=0.1)", "train.seed": 3})
        '{"optimizer": "sgd(lr=0.1)"}'
    """
    return json.dumps({k: v for k, v in axes.items() if k not in SEED_AXES}, sort_keys=True)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, run spec (``landscape.train.spec`` tables), init and axes."""

    name: str
    spec: dict[str, Any]
    init: dict[str, Any]
    axes: dict[str, Any]

    @property
    def config(self) -> str:
        """Its configuration: its axes without the seed (:func:`config_id`)."""
        return config_id(self.axes)

    @property
    def seed(self) -> int:
        """Its training seed (``train.seed``, default 0)."""
        return int(self.spec.get("train", {}).get("seed") or 0)


def _apply(spec: dict[str, Any], key: str, value: Any) -> None:
    """Set a grid or run key in a run spec.

    Tables merge, unless they name another ``name`` (:mod:`landscape.sweep.spec`).
    """
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
            differ = [
                k
                for k in t
                if k != "name" and len({json.dumps(u.get(k), sort_keys=True) for u in same}) > 1
            ]
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


def _stop_settings(
    base: RunTables, grid: Mapping[str, list[Any]], entries: list[RunEntry]
) -> list[tuple[str, str, Any]]:
    """Where a spec sets a stopping key of ``[train]`` (a target or a cap).

    Returns:
        ``(dotted key, train key, value)`` for each place, ``[base]`` first.
    """
    out: list[tuple[str, str, Any]] = []

    def table(where: str, train: Any) -> None:
        if isinstance(train, Mapping):
            out.extend((f"{where}.{k}", k, train[k]) for k in _STOP_KEYS if k in train)

    table("base.train", base.given().get("train"))
    for i, entry in enumerate(entries):
        table(f"runs[{i}].train", entry.given().get("train"))
    for key, values in grid.items():
        head, _, rest = key.partition(".")
        if head == "train" and rest in _STOP_KEYS:
            out.extend((dotted(("grid", key)), rest, v) for v in values)
        elif key == "train":
            for j, v in enumerate(values):
                table(f"grid.train[{j}]", v)
    return out


def _check_stop(stop: StopTable, settings: list[tuple[str, str, Any]]) -> None:
    """Refuse a target or cap of ``[train]`` that differs from ``[stop]``'s.

    Raises:
        ValueError: one line that names the key.
    """
    want = stop.train()
    target, value = stop.target()
    for where, key, got in settings:
        if key in want and want[key] == got:
            continue
        if key in ("target_loss", "target_accuracy"):
            raise fail(
                _WHAT,
                where,
                "mixing stopping targets across configurations is refused: [stop] sets "
                f"{target} = {value:g} for every run, got {key} = {got!r} here; leave it out",
            )
        caps = f"max_steps = {stop.max_steps}" + (
            f", max_epochs = {stop.max_epochs:g}" if stop.max_epochs is not None else ""
        )
        raise fail(
            _WHAT,
            where,
            f"[stop] sets the step cap of every run ({caps}), got {key} = {got!r} here; "
            f"leave it out (or set [stop] {'max_steps' if key == 'max_steps' else 'max_epochs'})",
        )


def _target(spec: Mapping[str, Any]) -> str:
    """A run's stopping target in words (``target_loss = 0.01``, ``no target``)."""
    train = spec.get("train") or {}
    out = [f"{k} = {train[k]!r}" for k in ("target_loss", "target_accuracy") if k in train]
    return " and ".join(out) or "no target"


def _check_one_target(runs: list[PlannedRun], settings: list[tuple[str, str, Any]]) -> None:
    """Refuse runs that stop at different targets (a sweep without ``[stop]``).

    Raises:
        ValueError: one line that names the first key of ``[[runs]]`` or ``[grid]`` that sets
            a target.
    """
    first = runs[0] if runs else None
    for run in runs[1:]:
        if first is not None and _target(run.spec) != _target(first.spec):
            where = next(
                (w for w, k, _ in settings if k.startswith("target_") and w[:5] != "base."),
                "runs",
            )
            raise fail(
                _WHAT,
                where,
                "mixing stopping targets across configurations is refused: run "
                f"{first.name!r} stops at {_target(first.spec)}, run {run.name!r} at "
                f"{_target(run.spec)}; set one target for every run in [stop] (e.g. "
                "train_loss = 0.01, max_steps = 10000)",
            )


def init_pairs(runs: Sequence[PlannedRun]) -> list[tuple[str, str]]:
    """The pairs of runs that differ only in their init: ``(random, random_labels)`` names.

    Same model, data, optimizer and training settings (seed included); recording settings
    (``train.history_every``, ``train.snapshot_every``, ``train.device``) aside. In the order of
    the random-init runs.

    Args:
        runs: the runs of a sweep.

    Returns:
        ``[(random-init run, random-label-init run), ...]``.
    """

    def setting(run: PlannedRun) -> str:
        train = {
            k: v for k, v in (run.spec.get("train") or {}).items() if f"train.{k}" not in _NOT_AXES
        }
        return json.dumps({**run.spec, "train": train}, sort_keys=True)

    bad = [(setting(r), r.name) for r in runs if r.init.get("name") == "random_labels"]
    return [
        (r.name, b)
        for r in runs
        if r.init.get("name") == "random"
        for key, b in bad
        if key == setting(r)
    ]


def expand_runs(
    base: RunTables,
    grid: dict[str, list[Any]],
    entries: list[RunEntry],
    init: InitTables,
    stop: StopTable | None = None,
) -> list[PlannedRun]:
    """The runs of a checked spec, named, with their axes, each checked as a complete run.

    Args:
        base: ``[base]``.
        grid: ``[grid]``.
        entries: ``[[runs]]``.
        init: ``[init]``.
        stop: ``[stop]``: its target and caps go into every run's ``[train]`` table.

    Raises:
        ValueError, TypeError: two runs get one name; a run is not a complete run spec
            (``sweep spec: run '<name>': <key>: <problem>``); a stopping target or cap of
            ``[base]``, ``[[runs]]`` or ``[grid]`` differs from ``[stop]``'s, or, without
            ``[stop]``, the runs' targets differ (``sweep spec: <key>: mixing stopping targets
            across configurations is refused: ...``).
    """
    count = max(1, len(entries))
    for values in grid.values():
        count *= len(values)
    how = " x ".join(
        [f"{len(entries)} [[runs]]"] * bool(entries)
        + [f"{len(v)} values of {k}" for k, v in grid.items()]
    )
    check_count("runs", count, "grid" if grid else "runs", how or "the spec")
    stopping = _stop_settings(base, grid, entries)
    if stop is not None:
        _check_stop(stop, stopping)
    axes = grid
    explicit = [(e.name, {k: v for k, v in e.given().items() if k != "name"}) for e in entries]
    random_labels = (init.random_labels or RandomLabelsInit()).settings()
    run_keys = list(dict.fromkeys(k for _, e in explicit for k in _leaves(e) if k not in _NOT_AXES))
    tokens = {k: dict(zip(map(json.dumps, v), _tokens(k, v), strict=True)) for k, v in axes.items()}
    ordered = sorted(axes, key=lambda k: "." in k)  # whole tables before dotted keys
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for number, (name, entry) in enumerate(explicit or [(None, {})], 1):
        start = json.loads(json.dumps(base.given()))  # a deep copy, JSON types only
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
            made = (f"[[runs]] #{number} {json.dumps(entry)}" if explicit else "[grid]") + (
                f" at {json.dumps(chosen)}" if chosen else ""
            )
            if run_name in seen:
                raise fail(
                    _WHAT,
                    "runs",
                    f"two runs are both named {run_name!r} ({seen[run_name]} and {made}); "
                    "give [[runs]] distinct names",
                )
            seen[run_name] = made
            if stop is not None:
                spec["train"] = {**spec.get("train", {}), **stop.train()}
            kind = spec.pop("init", "random")
            settings = random_labels if kind == "random_labels" else {"name": "random"}
            check(spec, complete=True, what=f"{_WHAT}: run {run_name!r}")
            ax = {
                k: _label(_value_at(spec, k) if k != "init" else kind) for k in [*run_keys, *axes]
            }
            runs.append(PlannedRun(run_name, spec, dict(settings), ax))
    if stop is None:
        _check_one_target(runs, stopping)
    return runs
