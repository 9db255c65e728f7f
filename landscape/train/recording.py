"""What :func:`landscape.train.fit` records along training, and how it gets into the store.

- :class:`Callback` (made with :func:`callback`): a probe run every k steps (e.g. the top
  Hessian eigenvalue), which sees a :class:`TrainState`;
- :class:`Recorder`: the recorder :func:`~landscape.train.fit` uses, which the training loop
  talks to as a :class:`~landscape.train.loop.Recording` (reading the loop's
  :class:`~landscape.train.loop.Progress`). It evaluates the history rows (``train_loss``,
  ``test_acc``, ...), takes snapshots, calls the callbacks, buffers all of it and writes it
  into the store at each flush; it also creates the run there (:meth:`~Recorder.begin`),
  writes its end (:meth:`~Recorder.finish`) or marks it failed (:meth:`~Recorder.fail`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.objective import Objective
from landscape.engine.params import ParamLayout
from landscape.engine.params import to_numpy as _np
from landscape.train.loop import Progress, fork_devices

__all__ = ["Callback", "Recorder", "TrainState", "callback"]

log = logging.getLogger("landscape.train")


@dataclass(frozen=True)
class TrainState:
    """What a callback sees.

    The step (updates done), the epoch, the model (do not modify it), the loss, ``train``: an
    :class:`Objective` over the training set at the current parameters ``theta``, and
    ``optimizer``.
    """

    step: int
    epoch: float
    model: nn.Module
    loss_fn: Callable[[Any, Tensor], Tensor]
    train: Objective
    theta: Tensor
    optimizer: torch.optim.Optimizer


class Callback(Protocol):
    """Called every ``every`` steps (and at steps 0 and last) with a :class:`TrainState`.

    Returns numbers (or arrays of a fixed shape) by name, recorded as the series
    ``probes/<name>``.
    """

    @property
    def name(self) -> str:
        """The series' name: ``probes/<name>`` in the store."""
        ...

    @property
    def every(self) -> int:
        """Steps between calls."""
        ...

    def __call__(self, state: TrainState) -> Mapping[str, Any]:
        """The values to record at ``state``'s step, by name."""
        ...


@dataclass(frozen=True)
class _FnCallback:
    name: str
    every: int
    fn: Callable[[TrainState], Mapping[str, Any]]

    def __call__(self, state: TrainState) -> Mapping[str, Any]:
        return self.fn(state)


def callback(name: str, every: int, fn: Callable[[TrainState], Mapping[str, Any]]) -> Callback:
    """A :class:`Callback` from a function.

    For example the top Hessian eigenvalue every 100 steps:
    ``callback("top_eig", 100, lambda s: {"value": top_eigenvalue(s.train, s.theta)})``.
    """
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"callback: name must be a non-empty string without '/', got {name!r}")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"callback: every must be an int >= 1, got {every!r}")
    if not callable(fn):
        raise TypeError(f"callback: fn must be callable, got {type(fn).__name__}")
    return _FnCallback(name, every, fn)


def _buffers(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's buffers (BatchNorm statistics) as NumPy arrays."""
    return {n: _np(b) for n, b in model.named_buffers()}


# --------------------------------------------------------------------------- the recorder
class Recorder:
    """Records history rows, snapshots and callbacks' series; writes them into the store.

    History rows are taken every ``history_every`` steps, snapshots every ``snapshot_every``,
    each callback every ``callback.every``, and all of them at the first step and the last
    one (:meth:`record` with ``final``). The records are buffered and written into the store
    (when there is one) every ``flush_seconds``: a flush that finds the file busy (a reader
    keeping it open) keeps the rows and tries again at the next one; only the last write of a
    run waits (:meth:`finish`). Every write first checks that the run is still this writer's
    (``token``).

    Args:
        store: path of the landscape file, or None to keep the records in memory only.
        run: the run's name there.
        flush_seconds: seconds between writes.
        progress: the loop's :class:`Progress`, read at each record.
        train: the objective on the training data, evaluated for the history rows.
        test: the objective on the test data, or None.
        model: what callbacks see (:class:`TrainState`).
        loss_fn: what callbacks see.
        optimizer: what callbacks see.
        per_epoch: steps per epoch.
        history_every: steps between history rows (0: at the first and last steps only).
        snapshot_every: steps between snapshots (0: at the first and last steps only).
        callbacks: :class:`Callback` s.
        device: the model's device (for the callbacks' own random streams).

    Attributes:
        history: the history rows so far, column by column. series: callback name -> its
            columns. metrics: those of the last history row. seconds: time spent recording
            (evaluations, snapshots, callbacks, flushes). token: the writer's token in the
            store, once :meth:`begin` created the run.
    """

    def __init__(
        self,
        *,
        store: str | None,
        run: str | None,
        flush_seconds: float,
        progress: Progress,
        train: Objective,
        test: Objective | None,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        optimizer: torch.optim.Optimizer,
        per_epoch: int,
        history_every: int,
        snapshot_every: int,
        callbacks: Sequence[Callback] = (),
        device: torch.device | None = None,
    ) -> None:
        self.store, self.run, self.flush_seconds = store, run, flush_seconds
        self.progress, self.train, self.test = progress, train, test
        self.model, self.loss_fn, self.optimizer = model, loss_fn, optimizer
        self.per_epoch, self.callbacks = per_epoch, tuple(callbacks)
        self.history_every, self.snapshot_every = history_every, snapshot_every
        self.device = device if device is not None else torch.device("cpu")
        self.start_step = progress.step
        self.token: str | None = None
        self.history: dict[str, list] = {}
        self.series: dict[str, dict[str, list]] = {}
        self.metrics: dict[str, float] = {}
        self.seconds = 0.0
        self.last: dict[str, Any] = {"history": None, "snapshot": None}  # step of each record
        self.pending: dict[str, Any] = {"steps": [], "rows": [], "history": {}, "series": {}}
        self.last_flush = time.perf_counter()

    # -- what the loop asks (Recording) ------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether anything is recorded after ``step`` updates (history, snapshot, callback)."""
        h, s = self.history_every, self.snapshot_every
        return bool(
            (h and step % h == 0)
            or (s and step % s == 0)
            or any(step % cb.every == 0 for cb in self.callbacks)
        )

    def history_due(self, step: int) -> bool:
        """Whether a history row is due after ``step`` updates (besides the first and last)."""
        return bool(self.history_every and step % self.history_every == 0)

    def record(self, final: bool = False) -> dict[str, float] | None:
        """Record what is due at the progress's step (all of it if ``final``).

        Returns:
            The metrics of the history row written now, or None if none was.
        """
        start = time.perf_counter()
        p = self.progress
        step = p.step
        theta, epoch = self.train.theta, step / self.per_epoch

        def due(every: int) -> bool:
            return step == self.start_step or bool(every and step % every == 0) or final

        written = None
        if due(self.history_every) and self.last["history"] != step:
            tr, te = self._evaluate(self.train, theta), self._evaluate(self.test, theta)
            self.metrics = {
                "train_loss": tr[0],
                "train_acc": tr[1],
                "test_loss": te[0],
                "test_acc": te[1],
            }
            self.row(
                {
                    "step": step,
                    "epoch": epoch,
                    **self.metrics,
                    "lr": p.lr,
                    "grad_norm": p.grad_norm,
                    "time": p.seconds,
                }
            )
            self.last["history"] = step
            written = self.metrics
            log.info(
                "step %d (epoch %.2f): train loss %.4g acc %.4g, test loss %.4g acc %.4g",
                step,
                epoch,
                *tr,
                *te,
            )
        if due(self.snapshot_every) and self.last["snapshot"] != step:
            self.snapshot(step, theta)
            self.last["snapshot"] = step
        for cb in self.callbacks:
            if due(cb.every) and self.last.get(cb.name) != step:
                # its own random stream: a probe that draws (Hutchinson, Lanczos starts)
                # must not change the dropout masks of training
                with torch.random.fork_rng(devices=fork_devices(self.device)):
                    values = cb(
                        TrainState(
                            step, epoch, self.model, self.loss_fn, self.train, theta, self.optimizer
                        )
                    )
                self.series_row(
                    cb.name,
                    {
                        "step": step,
                        **{
                            k: (_np(v) if isinstance(v, Tensor) else np.asarray(v))
                            for k, v in dict(values).items()
                        },
                    },
                )
                self.last[cb.name] = step
        if not final:
            self.maybe_flush()
        self.seconds += time.perf_counter() - start
        return written

    def evaluate(self) -> tuple[float, float]:
        """The training loss and accuracy now, over the whole set (timed as recording).

        Returns:
            ``(loss, accuracy)``; NaN where undefined or not finite (then the progress's
            ``stop`` is ``"diverged"``).
        """
        start = time.perf_counter()
        out = self._evaluate(self.train, self.train.theta)
        self.seconds += time.perf_counter() - start
        return out

    def _evaluate(self, obj: Objective | None, theta: Tensor) -> tuple[float, float]:
        if obj is None or self.progress.stop == "diverged":
            return math.nan, math.nan
        try:
            m = obj.evaluate(theta)
        except ValueError as err:
            if "not finite" not in str(err):
                raise
            self.progress.stop = "diverged"
            return math.nan, math.nan
        return m.loss, math.nan if m.accuracy is None else m.accuracy

    # -- the buffer ----------------------------------------------------------------------------
    @staticmethod
    def _add(target: dict[str, list], row: Mapping[str, Any], what: str) -> None:
        if target and set(target) != set(row):
            raise ValueError(f"fit: {what} columns changed from {sorted(target)} to {sorted(row)}")
        for key, value in row.items():
            if target and np.shape(value) != np.shape(target[key][0]):
                raise ValueError(
                    f"fit: {what} column {key!r} changed shape from "
                    f"{np.shape(target[key][0])} to {np.shape(value)}"
                )
        for key, value in row.items():
            target.setdefault(key, []).append(value)

    def row(self, row: Mapping[str, Any]) -> None:
        """Add a history row."""
        self._add(self.history, row, "history")
        self._add(self.pending["history"], row, "history")

    def series_row(self, name: str, row: Mapping[str, Any]) -> None:
        """Add a row to the series of callback ``name``."""
        self._add(self.series.setdefault(name, {}), row, f"callback {name!r}")
        self._add(self.pending["series"].setdefault(name, {}), row, f"callback {name!r}")

    def snapshot(self, step: int, theta: Tensor) -> None:
        """Add a snapshot of the parameters ``theta`` after ``step`` updates."""
        self.pending["steps"].append(step)
        self.pending["rows"].append(_np(theta))

    # -- the store -----------------------------------------------------------------------------
    def begin(
        self, layout: ParamLayout, init: Tensor, attrs: Mapping[str, Any], replace: bool = False
    ) -> None:
        """Create the run in the store, ``running``, with its initial parameters and buffers.

        Args:
            layout: the trained parameters' layout.
            init: their initial values, flat.
            attrs: the run's settings (JSON-ready).
            replace: replace a complete run of that name.
        """
        from landscape.store.file import Store  # noqa: PLC0415 - h5py only to write a file

        store, run = self._target()
        with Store(store, "a", timeout=60) as s:
            self.token = s.create_run(
                run,
                names=layout.names,
                shapes=layout.shapes,
                init=_np(init),
                attrs=attrs,
                replace=replace,
            )
            if buffers := _buffers(self.model):
                s.set_buffers(run, "init", buffers)

    def _target(self) -> tuple[str, str]:
        """The store and the run written into (for the methods that need a store)."""
        if self.store is None or self.run is None:
            raise ValueError("Recorder: writing needs a store and a run name")
        return self.store, self.run

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
        """Write what is pending if ``flush_seconds`` passed; a busy file waits for the next."""
        if self.store and time.perf_counter() - self.last_flush >= self.flush_seconds:
            from landscape.store.file import FileBusyError, Store  # noqa: PLC0415 - as above

            try:
                with Store(self.store, "a", timeout=1) as s:
                    self.flush(s)
            except FileBusyError as err:
                log.warning("%s; keeping the records for the next flush", err)
                self.last_flush = time.perf_counter()

    def finish(
        self,
        theta: Tensor,
        attrs: Mapping[str, Any],
        timeout: float,
        rename_to: str | None = None,
    ) -> float:
        """Write the rest, the final parameters and buffers, and mark the run ``complete``.

        Args:
            theta: the final parameters, flat.
            attrs: the run's final attributes.
            timeout: seconds to wait for another process that holds the file.
            rename_to: put the run in the place of this one, in the same commit
                (:func:`landscape.store.file.swap_run`): a run replaced atomically.

        Returns:
            The seconds it took.
        """
        from landscape.store.file import Store, swap_run  # noqa: PLC0415 - as above

        start = time.perf_counter()
        store, run = self._target()
        with Store(store, "a", timeout=timeout) as s:
            self.flush(s)
            if buffers := _buffers(self.model):
                s.set_buffers(run, "final", buffers)
            s.set_final(run, _np(theta), status="complete", attrs=attrs)
            if rename_to is not None:
                swap_run(s, run, rename_to)
        return time.perf_counter() - start

    def fail(self, exc: BaseException) -> None:
        """Keep what was recorded and mark the run failed, if it was created and is ours.

        Never raises over the original error ``exc``.
        """
        if not self.store or self.run is None or self.token is None:
            return  # (a token means begin() created the run: there is a run name)
        from landscape.store.file import Store, StoreError  # noqa: PLC0415 - as above

        try:
            with Store(self.store, "a", timeout=60) as s:
                s.check_writer(self.run, self.token)
                try:
                    with contextlib.suppress(ValueError, TypeError):
                        self.flush(s)
                finally:
                    s.set_attrs(
                        self.run,
                        {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]},
                    )
        except StoreError:
            pass  # replaced by another writer: not ours to mark
        except Exception as err:  # noqa: BLE001 - the original error matters more
            # a failed write (full disk) is the original error too: said once, by it
            (log.info if isinstance(err, OSError) else log.warning)(
                "could not mark run %r failed in %s: %s", self.run, self.store, err
            )
