"""The training loop of :func:`landscape.train.fit`: steps, stopping rules, the random streams.

:func:`run` takes the steps of a :class:`Plan` with a given optimizer and schedule, draws the
batch order and the label noise from streams seeded by the config (or continued from a
:class:`~landscape.train.resume.Checkpoint`), stops at the first of the step limit, ``until``,
a diverged loss or a target, and returns the checkpoint where it stopped.

What is recorded along the way is not the loop's business: it keeps a :class:`Progress`
(step, rate, gradient norm, time, stop reason) and asks its recorder, through the
:class:`Recording` interface, only whether a step is due, to record it, and for the training
loss near a target (:class:`landscape.train.recording.Recorder` is the recorder ``fit`` uses).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from landscape.engine.metrics import count_correct
from landscape.train.config import TrainConfig
from landscape.train.optim import noisy_labels
from landscape.train.resume import Checkpoint
from landscape.train.resume import take as take_checkpoint

__all__ = ["Plan", "Progress", "Recording", "fork_devices", "run"]


@dataclass(frozen=True)
class Plan:
    """How a config goes over the training set.

    Attributes:
        batch: the batch size. per_epoch: steps per epoch. limit: the step limit (``inf``:
            none, e.g. a run that stops at a target only).
    """

    batch: int
    per_epoch: int
    limit: float

    @classmethod
    def of(cls, config: TrainConfig, n: int) -> Plan:
        """The plan of ``config`` on ``n`` training examples.

        Args:
            config: the run's config.
            n: the number of training examples.

        Returns:
            A :class:`Plan`.
        """
        batch = n if config.optimizer.full_batch else min(config.batch_size or 128, n)
        per_epoch = math.ceil(n / batch)
        limit = min(
            config.max_steps or math.inf,
            math.ceil(config.epochs * per_epoch) if config.epochs else math.inf,
        )
        return cls(batch, per_epoch, limit)


def fork_devices(device: torch.device) -> list[int]:
    """The CUDA devices whose random state ``torch.random.fork_rng`` saves for work on ``device``.

    Args:
        device: the model's device.

    Returns:
        ``[index]`` for a CUDA device, else ``[]``.
    """
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


# --------------------------------------------------------------------------- the interface
@dataclass
class Progress:
    """Where the training loop is; the loop keeps it up to date, the recorder reads it.

    Attributes:
        step: updates done. lr: the rate of the last update. grad_norm: the norm of the
            minibatch gradient of the last update where the loop read it (NaN before).
        seconds: training time so far (recording excluded).
        stop: why training stops, or None while it goes on; the recorder sets ``"diverged"``
            when an evaluation finds the loss not finite.
    """

    step: int
    lr: float
    grad_norm: float = math.nan
    seconds: float = 0.0
    stop: str | None = None


class Recording(Protocol):
    """What the training loop asks of its recorder; everything else is the recorder's business.

    The recorder reads the loop's :class:`Progress` (the step to record, its rate, gradient
    norm and time) and sets its ``stop`` to ``"diverged"`` when an evaluation finds the loss
    not finite. :class:`landscape.train.recording.Recorder` is the one ``fit`` uses.
    """

    def due(self, step: int) -> bool:
        """Whether anything is recorded after ``step`` updates (history, snapshot, callback)."""
        ...

    def history_due(self, step: int) -> bool:
        """Whether a history row is due after ``step`` updates (besides the first and last)."""
        ...

    def record(self, final: bool = False) -> Mapping[str, float] | None:
        """Record what is due at the progress's step (all of it if ``final``).

        Returns:
            The metrics of the history row written now (``train_loss``, ``train_acc``,
            ``test_loss``, ``test_acc``), or None if none was.
        """
        ...

    def evaluate(self) -> tuple[float, float]:
        """The training loss and accuracy now, over the whole set (timed as recording).

        Returns:
            ``(loss, accuracy)``; NaN where undefined or not finite (then the progress's
            ``stop`` is ``"diverged"``).
        """
        ...


# --------------------------------------------------------------------------- the loop
def run(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: tuple[Tensor, Tensor],
    config: TrainConfig,
    plan: Plan,
    *,
    params: Mapping[str, Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    recorder: Recording,
    device: torch.device,
    num_classes: int | None = None,
    until: int | None = None,
    resume: Checkpoint | None = None,
    show: bool = False,
) -> Checkpoint:
    """Train ``model`` in place from ``progress.step`` until a stopping rule says stop.

    The recorder records the first step, every step it says is due, and the last one.

    Args:
        model: the model, in train mode for the steps (its modes are the caller's to restore).
        loss_fn: the mean loss of a batch.
        data: ``(inputs, targets)`` on the model's device.
        config: the run's config (seed, label noise, targets, limits).
        plan: its :class:`Plan`.
        params: the trained parameters by name (for the gradient norm).
        optimizer: set up (and, resuming, loaded) by the caller.
        scheduler: the learning-rate schedule, likewise.
        progress: where training starts (``step``, ``lr``); kept up to date.
        recorder: what records along the way (:class:`Recording`).
        device: the model's device.
        num_classes: classes, for label noise.
        until: stop after this many steps (stop reason ``until``).
        resume: the checkpoint training continues from (its random streams and position in
            the epoch), or None.
        show: show a progress bar.

    Returns:
        The :class:`~landscape.train.resume.Checkpoint` where training stopped (taken before
        the final record); ``progress.stop`` says why it stopped.
    """
    return _Loop(
        model,
        loss_fn,
        data,
        config,
        plan,
        params,
        optimizer,
        scheduler,
        progress,
        recorder,
        device,
        num_classes,
        until,
        resume,
        show,
    ).run()


def _limit_reason(config: TrainConfig, step: int) -> str:
    """Which limit a run that reached the end of its steps stopped at."""
    return "max_steps" if config.max_steps and step >= config.max_steps else "epochs"


def _reached(config: TrainConfig, loss: float, acc: float) -> str | None:
    """The target a training loss and accuracy reach, if any."""
    if config.target_loss is not None and loss <= config.target_loss:
        return "target_loss"
    if config.target_accuracy is not None and acc >= config.target_accuracy:
        return "target_accuracy"
    return None


class _Loop:
    """One call of :func:`run`: its inputs, random streams and position in the epoch."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        data: tuple[Tensor, Tensor],
        config: TrainConfig,
        plan: Plan,
        params: Mapping[str, Tensor],
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        progress: Progress,
        recorder: Recording,
        device: torch.device,
        num_classes: int | None,
        until: int | None,
        resume: Checkpoint | None,
        show: bool,
    ) -> None:
        self.model, self.loss_fn, (self.x, self.y) = model, loss_fn, data
        self.config, self.plan, self.params = config, plan, params
        self.optimizer, self.scheduler = optimizer, scheduler
        self.progress, self.recorder, self.device = progress, recorder, device
        self.num_classes, self.until, self.resume, self.show = num_classes, until, resume, show
        spec = config.optimizer
        self.constant_lr = spec.hyper.get("schedule", {}).get(
            "name"
        ) == "constant" and not spec.hyper.get("warmup")
        self.order = torch.Generator().manual_seed(config.seed)
        self.noise = torch.Generator().manual_seed(config.seed + 1_000_003)
        self.same_streams = resume is not None and resume.seed == config.seed
        if resume is not None and self.same_streams:
            self.order.set_state(resume.rng["order"])
            self.noise.set_state(resume.rng["noise"])
        n = len(self.y)
        # where the first epoch starts: (its order or None to draw one, offset, running sums)
        self.pending: tuple[Tensor | None, int, tuple] | None = None
        if resume is not None and resume.perm is not None and resume.offset < n:
            self.pending = (
                resume.perm.to(device) if self.same_streams else None,
                resume.offset,
                resume.epoch_sums,
            )
        self.position: dict[str, Any] = {"perm": None, "offset": 0, "sums": None}
        self.checked: int | None = None  # the step of the last history row (targets checked)

    def run(self) -> Checkpoint:
        p, config, resume, start = self.progress, self.config, self.resume, self.progress.step
        with torch.random.fork_rng(devices=fork_devices(self.device)):
            torch.manual_seed(config.seed)
            if resume is not None and self.same_streams:
                torch.set_rng_state(resume.rng["torch"])
                if resume.rng.get("cuda") is not None and self.device.type == "cuda":
                    torch.cuda.set_rng_state(resume.rng["cuda"], self.device)
            self.model.train()
            m = self.recorder.record()  # the first step: a history row, always
            assert m is not None
            self.checked = start
            p.stop = p.stop or _reached(config, m["train_loss"], m["train_acc"])
            if p.stop is None and start >= self.plan.limit:
                p.stop = _limit_reason(config, start)
            elif p.stop is None and self.until is not None and start >= self.until:
                p.stop = "until"
            limit = self.plan.limit
            self.bar = tqdm(
                total=None if math.isinf(limit) else int(limit),
                disable=not self.show,
                unit="step",
                dynamic_ncols=True,
            )
            while p.stop is None:
                self._epoch()
            self.bar.close()
            checkpoint = take_checkpoint(
                {"step": p.step, "lr": p.lr},
                config,
                self.model,
                self.optimizer,
                self.scheduler,
                self.order,
                self.noise,
                self.device,
                self.position,
                resume,
            )
            self.recorder.record(final=True)
        return checkpoint

    def _epoch(self) -> None:
        """One pass over the training set (the rest of one, resuming), or until a stop."""
        p, config, n, batch = self.progress, self.config, len(self.y), self.plan.batch
        perm, first, sums = self.pending or (None, 0, None)
        self.pending = None
        if perm is None:
            perm = torch.randperm(n, generator=self.order).to(self.device)
        # running sums stay on the device: no host sync per step
        running = torch.zeros((), dtype=torch.float64, device=self.device)
        hits = torch.zeros((), dtype=torch.float64, device=self.device)
        hits_known = True
        if sums is not None:
            running, hits = sums[0].to(self.device), sums[1].to(self.device)
            hits_known = sums[2]
        for begin in range(first, n, batch):
            t0 = time.perf_counter()
            idx = perm[begin : begin + batch]
            xb, yb = self.x[idx], self.y[idx]
            label_noise = config.optimizer.label_noise
            if label_noise:
                yb = noisy_labels(yb, label_noise, self.num_classes or 1, self.noise)
            step = p.step + 1
            epoch_end = begin + batch >= n
            # the norm is read where a history row may follow: history steps, the last step,
            # and epochs' ends (where divergence and targets are checked)
            want_norm = bool(
                self.recorder.history_due(step) or step == self.plan.limit or epoch_end
            )
            value, out = self._update(xb, yb, want_norm)
            p.step = step
            self.position.update(perm=perm, offset=begin + len(idx))
            running.add_(value, alpha=len(idx))
            if config.target_accuracy is not None:
                # out is None only for an optimizer that never called the closure
                counted = None if out is None else count_correct(out, yb)
                if counted is None:
                    hits_known = False
                else:
                    hits += counted
            self.position["sums"] = (running, hits, hits_known)
            p.seconds += time.perf_counter() - t0
            self.bar.update(1)
            self._check(step, epoch_end, running)
            if p.stop is not None:
                break
        if self.show and p.stop is None:
            self.bar.set_postfix(
                epoch=f"{p.step / self.plan.per_epoch:.0f}", batch_loss=f"{float(running) / n:.4g}"
            )
        targets = config.target_loss is not None or config.target_accuracy is not None
        if targets and p.stop is None and self.checked != p.step:
            # an epoch's end (not just checked by a history row): a full check once the
            # running means come near a target
            near = (
                config.target_loss is not None and float(running) / n <= 2 * config.target_loss
            ) or (
                config.target_accuracy is not None
                and (not hits_known or float(hits) / n >= config.target_accuracy - 0.05)
            )
            if near:
                p.stop = _reached(config, *self.recorder.evaluate())

    def _update(self, xb: Tensor, yb: Tensor, want_norm: bool) -> tuple[Tensor, Tensor | None]:
        """One optimizer step on a batch: its loss and the outputs where the step started."""
        p = self.progress
        seen: list[Tensor] = []

        def closure() -> Tensor:
            self.optimizer.zero_grad(set_to_none=True)
            out = self.model(xb)
            value = self.loss_fn(out, yb)
            value.backward()
            if not seen:  # the first call: the gradient at the current point
                seen.append(out.detach())
                if want_norm:
                    p.grad_norm = float(
                        torch.linalg.vector_norm(
                            torch.stack(
                                [
                                    torch.linalg.vector_norm(q.grad)
                                    for q in self.params.values()
                                    if q.grad is not None
                                ]
                            )
                        )
                    )
            return value.detach()

        p.lr = self.optimizer.param_groups[0]["lr"]
        # torch types a closure's value (and step's) as a float; its optimizers return the
        # closure's value, here a tensor
        value = cast(Tensor, self.optimizer.step(closure))  # type: ignore[arg-type]
        if not self.constant_lr:
            self.scheduler.step()
        return value, seen[0] if seen else None

    def _check(self, step: int, epoch_end: bool, running: Tensor) -> None:
        """The stopping rules after a step, and its record if due."""
        p, config = self.progress, self.config
        if epoch_end and not bool(torch.isfinite(running)):
            p.stop = "diverged"
        elif step >= self.plan.limit:
            p.stop = _limit_reason(config, step)
        elif self.until is not None and step >= self.until:
            p.stop = "until"
        elif self.recorder.due(step):
            m = self.recorder.record()
            if m is not None:
                self.checked = step
                p.stop = p.stop or _reached(config, m["train_loss"], m["train_acc"])
                self.bar.set_postfix(loss=f"{m['train_loss']:.4g}", acc=f"{m['train_acc']:.3f}")
