"""The run tables of a sweep spec as typed models.

``[base]``, ``[[runs]]``, ``[grid]``, ``[init.random_labels]`` and ``[stop]``, each checked as
it is read (:class:`landscape.train.tables.Table`). Their expansion into named runs is
:mod:`landscape.sweep.runs`, the spec format :mod:`landscape.sweep.spec`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, StrictStr, model_validator

from landscape.train.config import TrainConfig
from landscape.train.optim import optimizer_spec
from landscape.train.schema import DataTable, ModelTable, OptimizerTable, TrainTable
from landscape.train.tables import Name, OneOf, Table, invalid

__all__ = [
    "INITS",
    "RUN_KEYS",
    "STOP_TARGETS",
    "Grid",
    "InitTables",
    "RandomLabelsInit",
    "RunEntry",
    "RunTables",
    "StopTable",
]

RUN_KEYS = ("model", "data", "optimizer", "train", "init")
INITS = ("random", "random_labels")
"""The initialisations a run may start from (``init`` of a run or the grid)."""
STOP_TARGETS = {"train_loss": "target_loss", "train_accuracy": "target_accuracy"}
"""``[stop]`` targets -> the :class:`~landscape.train.config.TrainConfig` field each sets."""
Init = Annotated[
    StrictStr,
    OneOf(INITS),
    Field(description="random (the model's seeded init) or random_labels (the bad-minimum init)"),
]


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


class StopTable(Table):
    """``[stop]``: one stopping rule for every run of the sweep (matched stopping).

    Exactly one target, ``train_loss`` (the run's training loss over the whole training set,
    cross-entropy by default; Jiang et al. 2020 use 0.01) or ``train_accuracy``, and a step cap
    ``max_steps`` (and optionally ``max_epochs``): every run stops at the first of them. A run
    that stops at the target is ``converged``; one stopped by a cap (or a diverged loss) is not.
    """

    train_loss: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="stop at this training loss (over the whole training set), e.g. 0.01",
    )
    train_accuracy: float | None = Field(
        default=None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="stop at this training accuracy (over the whole training set), e.g. 1.0",
    )
    max_steps: int = Field(ge=1, description="the step cap of every run")
    max_epochs: float | None = Field(
        default=None,
        gt=0,
        allow_inf_nan=False,
        description="an epoch cap of every run too (optional)",
    )

    @model_validator(mode="after")
    def _one_target(self) -> StopTable:
        given = [k for k in STOP_TARGETS if getattr(self, k) is not None]
        if len(given) != 1:
            got = f"got {' and '.join(given)}" if given else "got none"
            raise invalid(
                "give exactly one target: train_loss (e.g. 0.01) or train_accuracy "
                f"(e.g. 1.0); {got}"
            )
        return self

    def target(self) -> tuple[str, float]:
        """The target: ``("train_loss", 0.01)`` or ``("train_accuracy", 1.0)``."""
        key = next(k for k in STOP_TARGETS if getattr(self, k) is not None)
        return key, float(getattr(self, key))

    def train(self) -> dict[str, Any]:
        """What it sets in every run's ``[train]`` table (a TrainConfig's fields).

        The target (``target_loss`` or ``target_accuracy``), ``max_steps`` and, given
        ``max_epochs``, ``epochs``.
        """
        given = self.given()  # the values as written (an int stays an int)
        key, _ = self.target()
        out: dict[str, Any] = {STOP_TARGETS[key]: given[key], "max_steps": given["max_steps"]}
        if "max_epochs" in given:
            out["epochs"] = given["max_epochs"]
        return out

    def describe(self) -> str:
        """The rule in words, e.g. ``train_loss <= 0.01, at most 5000 steps``."""
        key, value = self.target()
        caps = f"at most {self.max_steps} steps"
        if self.max_epochs is not None:
            caps += f" or {self.max_epochs:g} epochs"
        return f"{key} {'<=' if key == 'train_loss' else '>='} {value:g}, {caps}"


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
