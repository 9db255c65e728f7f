"""How a run is trained: :class:`TrainConfig`, validated up front and JSON-ready.

Examples:
    >>> cfg = TrainConfig("sgd", lr=0.1, momentum=0.9, batch_size=128, epochs=50, seed=0)
    >>> TrainConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.train.optim import OptimizerSpec, optimizer_spec

__all__ = ["DEFAULT_EPOCHS_BETWEEN_RECORDS", "SEED_MAX", "TrainConfig"]

SEED_MAX = 2**63 - 1
"""The largest seed: seeds are stored as int64 (and torch takes no more)."""

DEFAULT_EPOCHS_BETWEEN_RECORDS = 10
"""Default recording interval, in epochs' worth of steps (see ``benchmarks/record_overhead.py``:
the full evaluations it costs stay within a few percent of training)."""


def _positive_int(name: str, value: Any, low: int = 1, high: int | None = None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"TrainConfig: {name} must be an int >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(
            f"TrainConfig: {name} must be an int from {low} to {high} (2**63 - 1), got {value!r}"
        )
    return int(value)


def _number(name: str, value: Any, low: float, high: float = math.inf) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float, np.number))
        or not math.isfinite(value)
        or not low <= value <= high
    ):
        raise ValueError(
            f"TrainConfig: {name} must be a finite number in [{low}, {high}], got {value!r}"
        )
    return float(value)


@dataclass(frozen=True)
class TrainConfig:
    """How to train: optimizer, batches, when to stop and when to record.

    Args:
        optimizer: an :class:`~landscape.train.optim.OptimizerSpec`, a name or a mapping;
            ``**hyper`` are its hyperparameters (``TrainConfig("sgd", lr=0.1)``).
        batch_size: examples a step; default 128, the whole training set for full-batch
            optimizers (``gd``), which refuse any other value.
        max_steps, epochs: stop after this many updates / passes over the training set
            (epochs may be fractional). At least one is required.
        target_loss, target_accuracy: stop once the whole training set reaches them.
            Checked at every history point, and at every epoch's end once the running mean of
            the minibatch loss (accuracy) comes within 2x (0.05) of the target; for outputs
            whose shape does not say what a correct prediction is
            (:func:`landscape.engine.metrics.count_correct`), at every epoch's end.
        seed: batch order, label noise and randomness in the model.
        history_every, snapshot_every: steps between history rows / trajectory snapshots.
            Default: about 10 epochs (``DEFAULT_EPOCHS_BETWEEN_RECORDS``) for both; 0: none
            between the first and the last.
    """

    optimizer: OptimizerSpec  # a name or mapping given to __init__ is made a spec
    batch_size: int | None = None
    max_steps: int | None = None
    epochs: float | None = None
    target_loss: float | None = None
    target_accuracy: float | None = None
    seed: int = 0
    history_every: int | None = None
    snapshot_every: int | None = None

    def __init__(
        self,
        optimizer: OptimizerSpec | str | Mapping[str, Any] = "sgd",
        *,
        batch_size: int | None = None,
        max_steps: int | None = None,
        epochs: float | None = None,
        target_loss: float | None = None,
        target_accuracy: float | None = None,
        seed: int = 0,
        history_every: int | None = None,
        snapshot_every: int | None = None,
        **hyper: Any,
    ) -> None:
        spec = optimizer_spec(optimizer, **hyper)
        if spec.full_batch and batch_size is not None:
            raise ValueError(
                f"TrainConfig: {spec.name} is full-batch; leave batch_size out (got {batch_size})"
            )
        if max_steps is None and epochs is None:
            raise ValueError(
                "TrainConfig: give max_steps or epochs (a loss or accuracy target "
                "alone may never be reached)"
            )
        values = {
            "optimizer": spec,
            "batch_size": _positive_int("batch_size", batch_size),
            "max_steps": _positive_int("max_steps", max_steps),
            "epochs": _number("epochs", epochs, 1e-12),
            "target_loss": _number("target_loss", target_loss, 0.0),
            "target_accuracy": _number("target_accuracy", target_accuracy, 0.0, 1.0),
            "seed": _positive_int("seed", seed, 0, SEED_MAX),
            "history_every": _positive_int("history_every", history_every, 0),
            "snapshot_every": _positive_int("snapshot_every", snapshot_every, 0),
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready; ``TrainConfig.from_dict(cfg.to_dict()) == cfg``."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "optimizer"}
        return {"optimizer": self.optimizer.to_dict(), **out}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        """The config that :meth:`to_dict` wrote (unknown keys: TypeError naming them)."""
        d = dict(d)
        known = set(cls.__dataclass_fields__)
        if bad := sorted(set(d) - known):
            raise TypeError(
                f"TrainConfig: unexpected setting(s) {', '.join(bad)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(d.pop("optimizer", "sgd"), **d)
