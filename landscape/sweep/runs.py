"""The runs of a sweep spec as typed models, and their expansion into named runs.

The tables are ``[base]``, ``[[runs]]``, ``[grid]`` and ``[init.random_labels]``. Expanded,
each run has its name and axes (the rules are in :mod:`landscape.sweep.spec`) and is checked as
a complete run spec (:func:`landscape.train.schema.check`).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictStr, model_validator

from landscape.train.config import TrainConfig
from landscape.train.optim import optimizer_spec
from landscape.train.schema import DataTable, ModelTable, OptimizerTable, TrainTable, check
from landscape.train.tables import Name, OneOf, Table, fail, invalid

__all__ = [
    "ABBREVIATIONS",
    "INITS",
    "RUN_KEYS",
    "Grid",
    "InitTables",
    "PlannedRun",
    "RandomLabelsInit",
    "RunEntry",
    "RunTables",
    "expand_runs",
]

_WHAT = "sweep spec"
RUN_KEYS = ("model", "data", "optimizer", "train", "init")
INITS = ("random", "random_labels")
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
# settings of explicit runs that are not axes (they change what is recorded, not the run)
_NOT_AXES = ("train.history_every", "train.snapshot_every", "train.device")
Init = Annotated[
    StrictStr,
    OneOf(INITS),
    Field(description="random (the model's seeded init) or random_labels (the bad-minimum init)"),
]


@dataclass(frozen=True)
class PlannedRun:
    """One run of a sweep: its name, run spec (``landscape.train.spec`` tables), init and axes."""

    name: str
    spec: dict[str, Any]
    init: dict[str, Any]
    axes: dict[str, Any]


class RunTables(Table):
    """``[base]`` (shared by all runs) or one ``[[runs]]`` entry (merged over ``[base]``).

    The tables of a run spec (:class:`landscape.train.schema.RunSpec`) and the init.
    """

    unknown_key_hints = {"run": "runs are named by [[runs]] name = ... or by the grid"}
    model: ModelTable | None = None
    data: DataTable | None = None
    optimizer: OptimizerTable | None = None
    train: TrainTable | None = Field(default=None, description="the budget and stopping rule")
    init: Init | None = None


class RunEntry(RunTables):
    """One ``[[runs]]`` entry: a run (crossed with the grid) and its name."""

    name: Name | None = Field(default=None, description="default: from its settings")


class RandomLabelsInit(Table):
    """``[init.random_labels]``: the bad-minimum init (Liu et al. 2020).

    Pretraining on random labels (:mod:`landscape.sweep.bad_init`).
    """

    optimizer: OptimizerTable = Field(
        default={"name": "adam", "lr": 0.001},  # type: ignore[assignment]  # shown, not used
        description="default adam with lr 0.001",
    )
    epochs: float | None = Field(
        default=None,
        gt=0,
        description="its budget (default 100 unless max_steps); stops earlier at target_accuracy",
    )
    max_steps: int | None = Field(default=None, ge=1)
    target_accuracy: float = Field(default=1.0, ge=0, le=1)
    target_loss: float | None = Field(default=None, ge=0)
    batch_size: int | None = Field(default=None, ge=1)
    fraction: float = Field(
        default=1.0, gt=0, le=1, description="fraction of training labels made random"
    )
    seed: int = Field(default=0, ge=0, description="seed of the random labels")

    @model_validator(mode="after")
    def _trainable(self) -> RandomLabelsInit:
        s = self.settings()
        train = {
            k: s[k]
            for k in ("epochs", "max_steps", "target_accuracy", "target_loss", "batch_size")
            if k in s
        }
        try:
            optimizer = optimizer_spec(s["optimizer"])
        except (TypeError, ValueError) as err:
            raise invalid(str(err), "optimizer", type_error=isinstance(err, TypeError)) from None
        try:
            TrainConfig(optimizer, **train)
        except (TypeError, ValueError) as err:
            raise invalid(str(err), type_error=isinstance(err, TypeError)) from None
        return self

    def settings(self) -> dict[str, Any]:
        """The init as a run records it (``attrs["init"]``): the options given over defaults."""
        out = {
            "name": "random_labels",
            "optimizer": {"name": "adam", "lr": 0.001},
            "fraction": 1.0,
            "seed": 0,
            "target_accuracy": 1.0,
            **self.given(),
        }
        if "epochs" not in out and "max_steps" not in out:
            out["epochs"] = 100
        return out


class InitTables(Table):
    """``[init.<kind>]``: the options of the inits other than random."""

    random_labels: RandomLabelsInit | None = None


def _grid(grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
    for key, values in grid.items():
        head, _, rest = key.partition(".")
        if head not in RUN_KEYS:
            raise invalid(
                f"unknown key; a grid key is one of {', '.join(RUN_KEYS)} or a "
                "dotted key into model, data, optimizer or train (e.g. 'train.seed')",
                key,
            )
        if head == "init" and rest:
            raise invalid(
                "init takes 'random' or 'random_labels'; set its options in [init.random_labels]",
                key,
            )
        if "." in rest:
            raise invalid("a dotted key is TABLE.KEY, one level deep (whole tables for more)", key)
        if head == "train" and rest and rest not in TrainTable.model_fields:
            raise invalid(f"unknown key; allowed: {', '.join(TrainTable.model_fields)}", key)
        if not values:
            raise invalid(
                f"must be a non-empty list of values, got {values!r}", key, type_error=True
            )
        for v in values:
            if head == "init" and v not in INITS:
                raise invalid(f"got {v!r}; allowed: {', '.join(INITS)}", key)
            if not rest and head != "init" and not isinstance(v, (Mapping, str)):
                raise invalid(f"values must be tables (or names), got {v!r}", key, type_error=True)
            if rest and isinstance(v, Mapping):
                raise invalid(
                    f"values must be scalars or lists, got the table {v!r}", key, type_error=True
                )
        if len({json.dumps(v, sort_keys=True) for v in values}) != len(values):
            raise invalid(f"values repeat: {values!r}", key)
    return grid


Grid = Annotated[dict[str, list[Any]], AfterValidator(_grid)]
"""``[grid]``: keys into the run spec -> their values (checked by key: a table, a dotted key
``TABLE.KEY``, or ``init``)."""


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


def expand_runs(
    base: RunTables, grid: dict[str, list[Any]], entries: list[RunEntry], init: InitTables
) -> list[PlannedRun]:
    """The runs of a checked spec, named, with their axes, each checked as a complete run.

    Args:
        base: ``[base]``.
        grid: ``[grid]``.
        entries: ``[[runs]]``.
        init: ``[init]``.

    Raises:
        ValueError, TypeError: two runs get one name, or a run is not a complete run spec
            (``sweep spec: run '<name>': <key>: <problem>``).
    """
    axes = grid
    explicit = [(e.name, {k: v for k, v in e.given().items() if k != "name"}) for e in entries]
    random_labels = (init.random_labels or RandomLabelsInit()).settings()
    run_keys = list(dict.fromkeys(k for _, e in explicit for k in _leaves(e) if k not in _NOT_AXES))
    tokens = {k: dict(zip(map(json.dumps, v), _tokens(k, v), strict=True)) for k, v in axes.items()}
    ordered = sorted(axes, key=lambda k: "." in k)  # whole tables before dotted keys
    runs: list[PlannedRun] = []
    seen: dict[str, str] = {}
    for name, entry in explicit or [(None, {})]:
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
            if run_name in seen:
                raise fail(
                    _WHAT,
                    "runs",
                    f"two runs are both named {run_name!r} "
                    f"({seen[run_name]} and {json.dumps(chosen)}); give [[runs]] "
                    "distinct names",
                )
            seen[run_name] = json.dumps(chosen) if chosen else json.dumps(entry)
            kind = spec.pop("init", "random")
            settings = random_labels if kind == "random_labels" else {"name": "random"}
            check(spec, complete=True, what=f"{_WHAT}: run {run_name!r}")
            ax = {
                k: _label(_value_at(spec, k) if k != "init" else kind) for k in [*run_keys, *axes]
            }
            runs.append(PlannedRun(run_name, spec, dict(settings), ax))
    return runs
