"""The run spec as typed models: the tables and keys a training run may have, checked up front.

:mod:`landscape.train.spec` reads a run from TOML or flags; :class:`RunSpec` says what it may hold
(``[model]``, ``[data]``, ``[optimizer]``, ``[train]`` and the run's name), and sweep specs
(:mod:`landscape.sweep.spec`) build on the same tables. Checking comes in two depths:

- structure (:func:`check`): no unknown tables or keys, values of the right types and bounds;
  what :func:`landscape.train.spec.merge` holds every spec it returns to;
- a complete run (``check(spec, complete=True)``, as :func:`landscape.train.spec.build` and a
  sweep's runs get it): the names exist (model, dataset, optimizer, loss), the model and dataset
  take the options given (by their signatures), there is a budget (epochs or max_steps), and
  :class:`~landscape.train.config.TrainConfig` accepts the optimizer and the settings.

Errors are one line, ``"<what>: <dotted key>: <problem>"`` (:mod:`landscape.train.tables`),
e.g. ``run spec: train.epoch: unknown key; allowed: epochs, max_steps, ...``: a ``TypeError``
for a value of the wrong type, a ``ValueError`` otherwise. The models are also the source of
the format's documentation (:func:`schema`).

Examples:
    >>> check({"train": {"epochs": 5, "batch_size": 0}})                # doctest: +SKIP
    ValueError: run spec: train.batch_size: must be an integer >= 1, got 0
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from pydantic import ConfigDict, Field, StrictBool, StrictStr, ValidationInfo, model_validator

from landscape import data as datasets
from landscape import models
from landscape.engine.losses import LOSSES
from landscape.train.config import SEED_MAX, TrainConfig
from landscape.train.optim import optimizer_spec
from landscape.train.tables import Table, invalid, json_schema, validate

__all__ = [
    "DATA_OPTIONS",
    "DTYPES",
    "TRAIN_EXTRA",
    "DataTable",
    "ModelTable",
    "OptimizerTable",
    "RunSpec",
    "TrainTable",
    "check",
    "schema",
]


DATA_OPTIONS = ("name", "standardize", "label_noise", "label_noise_seed", "n_train", "n_test")
"""Keys of ``[data]`` that every dataset takes; the others are the dataset's arguments."""


class ModelTable(Table):
    """``[model]``: a name of :data:`landscape.models.MODELS` and its arguments.

    ``in_features``, ``in_length``, ``num_classes``, ``vocab_size`` and ``context_length``
    default to what the data say.
    """

    model_config = ConfigDict(extra="allow")
    name: StrictStr | None = Field(default=None, description="a name of landscape.models.MODELS")


class DataTable(Table):
    """``[data]``: a name of :data:`landscape.data.DATASETS`, its arguments, and these."""

    model_config = ConfigDict(extra="allow")
    name: StrictStr | None = Field(default=None, description="a name of landscape.data.DATASETS")
    standardize: StrictBool | None = Field(
        default=None,
        description="per-feature, training-set statistics (default true; not for ints)",
    )
    label_noise: float | None = Field(
        default=None, ge=0, le=1, description="fraction of training labels replaced at random"
    )
    label_noise_seed: int | None = Field(
        default=None, ge=0, description="seed of the label noise and of the subsets"
    )
    n_train: int | None = Field(default=None, ge=1, description="first N training examples")
    n_test: int | None = Field(default=None, ge=1, description="first N test examples")


class OptimizerTable(Table):
    """``[optimizer]``: a name of :data:`landscape.train.optim.OPTIMIZERS` and its settings.

    The settings are checked by :func:`~landscape.train.optim.optimizer_spec`.
    """

    model_config = ConfigDict(extra="allow")
    name: StrictStr | None = Field(
        default=None, description="a name of landscape.train.optim.OPTIMIZERS (default sgd)"
    )


DTYPES = ("float32", "float64", "float16", "bfloat16")
"""The dtypes a run can be trained in (``[train] dtype``, ``--dtype``)."""


class TrainTable(Table):
    """``[train]``: :class:`~landscape.train.config.TrainConfig`'s fields, loss, device, dtype."""

    epochs: float | None = Field(
        default=None,
        gt=0,
        description="passes over the training set (may be fractional); epochs or max_steps "
        "is required",
    )
    max_steps: int | None = Field(default=None, ge=1, description="stop after this many updates")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        description="examples a step (default 128; none for full-batch optimizers)",
    )
    target_loss: float | None = Field(default=None, ge=0, description="stop at this training loss")
    target_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="stop at this training accuracy"
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=SEED_MAX,
        description="model init, batch order (default 0; at most 2**63 - 1)",
    )
    history_every: int | None = Field(
        default=None,
        ge=0,
        description="steps between history rows (0: the first and last steps only)",
    )
    snapshot_every: int | None = Field(
        default=None,
        ge=0,
        description="steps between trajectory snapshots (0: the first and last steps only)",
    )
    loss: StrictStr | None = Field(
        default=None, description="a name of landscape.engine.losses.LOSSES (default cross_entropy)"
    )
    device: StrictStr | None = Field(default=None, description="a torch device (default cpu)")
    dtype: StrictStr | None = Field(
        default=None, description="float32 (default), float64, float16 or bfloat16"
    )


TRAIN_EXTRA = ("loss", "device", "dtype")
"""Keys of ``[train]`` that are not :class:`~landscape.train.config.TrainConfig` fields."""


class RunSpec(Table):
    """A training run: what :func:`landscape.train.spec.load` reads, ``landscape train`` runs.

    The rules of a complete run apply with ``context={"complete": True}`` (:func:`check`).
    """

    run: StrictStr | None = Field(default=None, description="the run's name in the file")
    model: ModelTable = Field(default_factory=ModelTable)
    data: DataTable = Field(default_factory=DataTable)
    optimizer: OptimizerTable = Field(default_factory=OptimizerTable)
    train: TrainTable = Field(default_factory=TrainTable)

    @model_validator(mode="after")
    def _complete(self, info: ValidationInfo) -> RunSpec:
        if (info.context or {}).get("complete"):
            _check_run(
                self.data.given(), self.model.given(), self.optimizer.given(), self.train.given()
            )
        return self


def _named(table: Mapping[str, Any], registry: Mapping[str, Any], what: str, example: str) -> Any:
    name = table.get("name")
    if name is None:
        raise invalid(
            f"required (e.g. name = {example!r}); allowed: {', '.join(registry)}", what, "name"
        )
    if name not in registry:
        noun = {"model": "model", "data": "dataset"}[what]
        raise invalid(f"unknown {noun} {name!r}; allowed: {', '.join(registry)}", what, "name")
    return registry[name]


def _check_run(
    data: Mapping[str, Any],
    model: Mapping[str, Any],
    optimizer: Mapping[str, Any],
    train: Mapping[str, Any],
) -> None:
    """The complete-run rules on tables whose structure is checked (see the module docstring).

    Raises:
        pydantic_core.PydanticCustomError: the first rule broken, at its key (:func:`invalid`).
    """
    loader = _named(data, datasets.DATASETS, "data", "mnist1d")
    signature = inspect.signature(loader).parameters
    accepted = sorted(set(signature) | set(DATA_OPTIONS))
    for key in data:
        if key not in accepted:
            raise invalid(f"unknown key; allowed: {', '.join(accepted)}", "data", key)
    for key, p in signature.items():  # e.g. the folder of files the user has (root, path)
        if p.default is p.empty and p.kind is not p.VAR_KEYWORD and key not in data:
            raise invalid(f"required by dataset {data['name']!r}", "data", key)
    params = inspect.signature(_named(model, models.MODELS, "model", "mlp")).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        for key in model:
            if key != "name" and key not in params:
                raise invalid(f"unknown key; allowed: {', '.join(('name', *params))}", "model", key)
    if train.get("epochs") is None and train.get("max_steps") is None:
        raise invalid("needs a budget: epochs or max_steps", "train")
    if "loss" in train and train["loss"] not in LOSSES:
        raise invalid(
            f"unknown loss {train['loss']!r}; allowed: {', '.join(LOSSES)}", "train", "loss"
        )
    try:
        opt = optimizer_spec(dict(optimizer) or {"name": "sgd"})
    except (TypeError, ValueError) as err:
        raise invalid(str(err), "optimizer", type_error=isinstance(err, TypeError)) from None
    try:
        TrainConfig(opt, **{k: v for k, v in train.items() if k not in TRAIN_EXTRA})
    except (TypeError, ValueError) as err:
        raise invalid(str(err), "train", type_error=isinstance(err, TypeError)) from None


def check(spec: Mapping[str, Any], *, complete: bool = False, what: str = "run spec") -> RunSpec:
    """A run spec checked: its structure, and with ``complete`` the rules of a complete run.

    Args:
        spec: the tables (a mapping as TOML gives it).
        complete: also check names, options against signatures, budget and settings.
        what: the start of error messages (a sweep names the run: ``"sweep spec: run 'sgd'"``).

    Returns:
        The :class:`RunSpec` (``spec`` itself is left as it is).

    Raises:
        ValueError, TypeError: one line naming the key, what came and what is allowed.
    """
    return validate(RunSpec, spec, what, complete=complete)


def schema() -> dict[str, Any]:
    """The JSON schema of a run spec (:class:`RunSpec`), for its documentation."""
    return json_schema(RunSpec)
