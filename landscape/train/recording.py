"""What :func:`landscape.train.fit` records along training: callbacks (probes run every k
steps, e.g. the top Hessian eigenvalue), the state they see, and the buffer of history rows,
snapshots and series that is written to the store at each flush.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.objective import Objective
from landscape.engine.params import to_numpy as _np

__all__ = ["Callback", "Recorder", "TrainState", "callback"]

log = logging.getLogger("landscape.train")


@dataclass(frozen=True)
class TrainState:
    """What a callback sees: the step (updates done), the epoch, the model (do not modify
    it), the loss, ``train``: an :class:`Objective` over the training set at the current
    parameters ``theta``, and ``optimizer``."""

    step: int
    epoch: float
    model: nn.Module
    loss_fn: Callable[[Any, Tensor], Tensor]
    train: Objective
    theta: Tensor
    optimizer: torch.optim.Optimizer


class Callback(Protocol):
    """Called every ``every`` steps (and at steps 0 and last) with a :class:`TrainState`; returns
    numbers (or arrays of a fixed shape) by name, recorded as the series ``probes/<name>``."""

    name: str
    every: int

    def __call__(self, state: TrainState) -> Mapping[str, Any]: ...


@dataclass(frozen=True)
class _FnCallback:
    name: str
    every: int
    fn: Callable[[TrainState], Mapping[str, Any]]

    def __call__(self, state: TrainState) -> Mapping[str, Any]:
        return self.fn(state)


def callback(name: str, every: int, fn: Callable[[TrainState], Mapping[str, Any]]) -> Callback:
    """A :class:`Callback` from a function, e.g. the top Hessian eigenvalue every 100 steps:
    ``callback("top_eig", 100, lambda s: {"value": top_eigenvalue(s.train, s.theta)})``."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"callback: name must be a non-empty string without '/', got {name!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"callback: every must be an int >= 1, got {every!r}")
    if not callable(fn):
        raise TypeError(f"callback: fn must be callable, got {type(fn).__name__}")
    return _FnCallback(name, every, fn)


class Recorder:
    """Buffers history, snapshots and series; writes them to the store at flushes.

    A flush that finds the file busy (a reader keeping it open) keeps the rows and tries again
    at the next one; only the last write of a run waits (up to ``final_timeout`` seconds).
    Every write first checks that the run is still this writer's (``token``).
    """

    def __init__(self, store: str | None, run: str | None, flush_seconds: float) -> None:
        self.store, self.run, self.flush_seconds = store, run, flush_seconds
        self.token: str | None = None
        self.history: dict[str, list] = {}
        self.series: dict[str, dict[str, list]] = {}
        self.pending: dict[str, Any] = {"steps": [], "rows": [], "history": {}, "series": {}}
        self.last_flush = time.perf_counter()

    @staticmethod
    def _add(target: dict[str, list], row: Mapping[str, Any], what: str) -> None:
        if target and set(target) != set(row):
            raise ValueError(f"fit: {what} columns changed from {sorted(target)} to "
                             f"{sorted(row)}")
        for key, value in row.items():
            if target and np.shape(value) != np.shape(target[key][0]):
                raise ValueError(f"fit: {what} column {key!r} changed shape from "
                                 f"{np.shape(target[key][0])} to {np.shape(value)}")
        for key, value in row.items():
            target.setdefault(key, []).append(value)

    def row(self, row: Mapping[str, Any]) -> None:
        self._add(self.history, row, "history")
        self._add(self.pending["history"], row, "history")

    def series_row(self, name: str, row: Mapping[str, Any]) -> None:
        self._add(self.series.setdefault(name, {}), row, f"callback {name!r}")
        self._add(self.pending["series"].setdefault(name, {}), row, f"callback {name!r}")

    def snapshot(self, step: int, theta: Tensor) -> None:
        self.pending["steps"].append(step)
        self.pending["rows"].append(_np(theta))

    def flush(self, s: Any) -> None:
        """Write what is pending into the open store ``s`` (after checking the run is ours)."""
        s.check_writer(self.run, self.token)
        p = self.pending
        if p["steps"]:
            s.append_trajectory(self.run, p["steps"], np.stack(p["rows"]))
        if p["history"]:
            s.append_series(self.run, "history", p["history"])
        for name, cols in p["series"].items():
            s.append_series(self.run, f"probes/{name}", cols)
        self.drop()

    def drop(self) -> None:
        """Forget what is pending."""
        self.pending = {"steps": [], "rows": [], "history": {}, "series": {}}
        self.last_flush = time.perf_counter()

    def maybe_flush(self) -> None:
        if self.store and time.perf_counter() - self.last_flush >= self.flush_seconds:
            from landscape.store.file import FileBusyError, Store

            try:
                with Store(self.store, "a", timeout=1) as s:
                    self.flush(s)
            except FileBusyError as err:
                log.warning("%s; keeping the records for the next flush", err)
                self.last_flush = time.perf_counter()
