"""Train a model one way and record everything needed to look back, into the store.

:func:`fit` trains ``model`` in place (as any torch loop does; deep-copy it first to keep the
original) with an optimizer of :mod:`landscape.train.optim`, stops at the first of a number of
steps, a number of epochs, a training-loss target or a training-accuracy target, and records:

- ``init`` and ``final`` parameters, and snapshots every ``snapshot_every`` steps
  (``trajectory``);
- ``history`` every ``history_every`` steps: ``step``, ``epoch``, ``train_loss``,
  ``train_acc``, ``test_loss``, ``test_acc`` (over the whole sets, in eval mode, at the
  parameters after ``step`` updates), ``lr`` (the rate of the last update), ``grad_norm`` (norm
  of the minibatch gradient of the last update; NaN at step 0) and ``time`` (seconds of
  training, recording excluded);
- what each callback returns every ``callback.every`` steps, as the series
  ``probes/<callback.name>`` (for example the top Hessian eigenvalue along training).

With a ``store`` path, the run is written into that file (see :mod:`landscape.store`): created
as ``running`` at the start, extended every ``flush_seconds``, marked ``complete`` in the same
commit as its final parameters. A killed process leaves the run ``incomplete``; fitting the same
run again redoes it.

Reproducible: batch order, label noise and any randomness inside the model (dropout) come
from ``seed``; the same model, data, config and seed give bitwise identical parameters on the
CPU. The global RNG state is left as it was.

Forking (Frankle et al. 2020): every result carries a :class:`Checkpoint` of the full training
state where it stopped (parameters and buffers, optimizer and schedule state, step, random
streams, position in the epoch); ``fit(..., until=k)`` stops after k steps of ``config``'s
schedule, and ``fit(model, ..., resume=checkpoint)`` continues from it: with the seed that made
the checkpoint, exactly as the uninterrupted run; with another seed, with that seed's data order
(and label noise, dropout) from there on.

Examples:
    >>> cfg = TrainConfig("sgd", lr=0.1, batch_size=128, epochs=50, seed=0)  # doctest: +SKIP
    >>> result = fit(model, "cross_entropy", split, cfg, store="cmp.h5", run="sgd")
    >>> result.final["test_acc"], result.stop_reason
    >>> trunk = fit(model, "cross_entropy", split, cfg, until=100)            # doctest: +SKIP
    >>> fork = fit(copy.deepcopy(model), "cross_entropy", split, replace(cfg, seed=1),
    ...            resume=trunk.checkpoint)
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine import losses
from landscape.engine.metrics import count_correct
from landscape.engine.objective import Objective
from landscape.train.optim import make_optimizer, make_scheduler, noisy_labels
from landscape.engine.params import ParamLayout, select
from landscape.engine.params import to_numpy as _np
from landscape.train.recording import Callback, Recorder, TrainState, callback
from landscape.train.resume import Checkpoint, check_resume
from landscape.train.resume import take as take_checkpoint
from landscape.data.split import Split
from landscape.train.config import DEFAULT_EPOCHS_BETWEEN_RECORDS, TrainConfig

__all__ = ["DEFAULT_EPOCHS_BETWEEN_RECORDS", "Callback", "Checkpoint", "TrainConfig",
           "TrainResult", "TrainState", "callback", "fit", "total_steps"]

log = logging.getLogger("landscape.train")


def _cuda_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` did.

    Attributes:
        config: the :class:`TrainConfig`. run: the run's name in the store (or None).
        steps: updates done. epochs: passes over the training set (fractional).
        stop_reason: one of ``max_steps``, ``epochs``, ``target_loss``, ``target_accuracy``,
            ``diverged`` (the loss became NaN or infinite: noticed at an epoch's end or at a
            record, whichever comes first), ``until`` (stopped by ``fit(..., until=k)``).
        final: ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` at the end.
        history: the recorded history, column by column. series: callback name -> columns.
        seconds: training time (recording excluded). record_seconds: time spent recording
            (evaluations, snapshots, callbacks, writing the file).
        checkpoint: the :class:`Checkpoint` where training stopped, to continue from.
    """

    config: TrainConfig
    run: str | None
    steps: int
    epochs: float
    stop_reason: str
    final: dict[str, float | None]
    history: dict[str, np.ndarray]
    series: dict[str, dict[str, np.ndarray]]
    seconds: float
    record_seconds: float
    checkpoint: Checkpoint | None = None


# --------------------------------------------------------------------------- data


def _split_data(train: Any, test: Any) -> tuple[tuple[Any, Tensor], tuple[Any, Tensor] | None,
                                                  int | None, dict]:
    if isinstance(train, Split):
        if test is not None:
            raise ValueError("fit: give test data either in the Split or as test=, not both")
        return train.train, train.test, train.num_classes, train.describe()
    for name, part in (("train", train), ("test", test)):
        if part is not None and not (isinstance(part, (tuple, list)) and len(part) == 2 and
                                     all(isinstance(t, Tensor) for t in part)):
            raise TypeError(f"fit: {name} data must be a Split or an (inputs, targets) pair of "
                            f"tensors, got {type(part).__name__}")
    x, y = train
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"fit: train inputs have {len(x)} rows and targets {len(y)}; expected "
                         "the same number, at least one")
    classes = int(y.max()) + 1 if not y.is_floating_point() and y.ndim == 1 else None
    return tuple(train), (tuple(test) if test is not None else None), classes, {
        "n_train": len(y), "n_test": len(test[1]) if test is not None else 0,
        "input_shape": list(x.shape[1:])}


def _buffers(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's buffers (BatchNorm statistics) as NumPy arrays."""
    return {n: _np(b) for n, b in model.named_buffers()}


def _to(t: Tensor, layout: ParamLayout) -> Tensor:
    t = t.to(layout.device)
    return t.to(layout.dtype) if t.is_floating_point() else t


def _plan(config: TrainConfig, n: int) -> tuple[int, int, float]:
    """Batch size, steps per epoch and the step limit of ``config`` on ``n`` examples."""
    batch = n if config.optimizer.full_batch else min(config.batch_size or 128, n)
    per_epoch = math.ceil(n / batch)
    limit = min(config.max_steps or math.inf,
                math.ceil(config.epochs * per_epoch) if config.epochs else math.inf)
    return batch, per_epoch, limit


def total_steps(config: TrainConfig, n_train: int) -> int:
    """The updates ``config`` makes on ``n_train`` training examples unless a target or
    divergence stops it first (the length of its learning-rate schedule).

    Examples:
        >>> total_steps(TrainConfig("sgd", batch_size=100, epochs=2), 250)
        6
    """
    return int(_plan(config, n_train)[2])


# --------------------------------------------------------------------------- the loop


def fit(model: nn.Module, loss: str | Callable[[Any, Tensor], Tensor], train: Any,
        config: TrainConfig, *, test: Any = None, store: str | None = None,
        run: str | None = None, replace_run: bool = False, attrs: Mapping[str, Any] | None = None,
        callbacks: Sequence[Callback] = (), progress: bool = False,
        flush_seconds: float = 60.0, final_timeout: float = 600.0, until: int | None = None,
        resume: Checkpoint | None = None) -> TrainResult:
    """Train ``model`` in place as ``config`` says; record into ``store`` as ``run``.

    Args:
        model: any ``nn.Module``; trained on its device and dtype; its train/eval mode is
            restored at the end.
        loss: a name of :data:`landscape.engine.losses.LOSSES` or ``loss(outputs, targets)``, the mean
            over a batch.
        train: a :class:`~landscape.data.Split` (then its test part is the test set) or an
            ``(inputs, targets)`` pair of tensors. test: an ``(inputs, targets)`` pair.
        config: a :class:`TrainConfig`.
        store: path of a landscape file to write the run into (created if missing).
        run: the run's name there (default: the optimizer's name). replace_run: replace a
            complete run of that name (an incomplete or failed one is always redone).
        attrs: extra JSON-ready attributes for the run (e.g. ``{"model": model.spec}``).
        callbacks: :class:`Callback` s, recorded as ``probes/<name>`` series.
        progress: show a progress bar. flush_seconds: write buffered records this often (a
            busy file is tried again at the next flush). final_timeout: seconds the last
            write waits for another process that holds the file.
        until: stop after this many steps (counted from 0, not from ``resume``), keeping
            ``config``'s schedule and stopping rules (stop reason ``until``): to fork a run.
        resume: a :class:`Checkpoint` (``TrainResult.checkpoint``) to continue from: the
            model's parameters and buffers, the optimizer's state and the schedule's position
            are set to it (the model must have its architecture), and the step counter goes on
            from its step to ``config``'s end. With the checkpoint's seed the random streams
            (batch order, label noise, dropout) go on where they were: bitwise the uninterrupted
            run on the CPU. With another ``config.seed`` they restart from that seed at the same
            place in the epoch: a fork with another data order. ``config`` must have the
            checkpoint's optimizer and batch size; its end sets the schedule's length (keep it
            to continue the same schedule). The history and the store's ``init`` start at the
            checkpoint's step.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TypeError: a config that is not a :class:`TrainConfig`, a resume that is not a
            :class:`Checkpoint`. ValueError: bad data or options; a checkpoint of another
            optimizer, batch size, training set or architecture, or beyond ``config``'s end;
            ``until`` below the step resumed from.
    """
    from tqdm.auto import tqdm

    from landscape.store.file import Store

    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit: config must be a TrainConfig, got {type(config).__name__}")
    loss_fn = losses.get(loss)
    (x, y), test_pair, num_classes, data_desc = _split_data(train, test)
    params = select(model)
    layout = ParamLayout.of(params)
    x, y = _to(x, layout), _to(y, layout)
    spec, n = config.optimizer, len(y)
    batch, per_epoch, limit = _plan(config, n)
    start_step = 0
    if resume is not None:
        check_resume(resume, config, model, n, limit)
        start_step = resume.step
    if until is not None:
        if isinstance(until, bool) or not isinstance(until, (int, np.integer)) or \
                until < start_step:
            raise ValueError(f"fit: until must be an int >= {start_step} (the step it starts "
                             f"from), got {until!r}")
        until = int(until)
    every_default = max(1, DEFAULT_EPOCHS_BETWEEN_RECORDS * per_epoch)
    h_every = config.history_every if config.history_every is not None else every_default
    s_every = config.snapshot_every if config.snapshot_every is not None else h_every
    if spec.label_noise and num_classes is None and not y.is_floating_point():
        raise ValueError("fit: label noise needs class labels or float targets")
    run = run or spec.name if store else run
    train_obj = Objective(model, loss_fn, (x, y), check=False)
    test_obj = (Objective(model, loss_fn, tuple(_to(t, layout) for t in test_pair), check=False)
                if test_pair is not None else None)
    rec = Recorder(store, run, flush_seconds)
    optimizer = make_optimizer(spec, params.values())
    scheduler = make_scheduler(spec, optimizer, None if math.isinf(limit) else int(limit))
    if resume is not None:  # copies: two forks of one checkpoint must not share buffers
        optimizer.load_state_dict(copy.deepcopy(resume.optimizer))
        scheduler.load_state_dict(copy.deepcopy(resume.scheduler))
    constant_lr = spec.hyper.get("schedule", {}).get("name") == "constant" and \
        not spec.hyper.get("warmup")
    settings = {"optimizer": spec.to_dict(), "config": config.to_dict(), "seed": config.seed,
                "loss": losses.describe(loss), "data": data_desc, "batch_size": batch,
                "steps_per_epoch": per_epoch, "history_every": h_every,
                "snapshot_every": s_every, **dict(attrs or {})}
    if resume is not None:
        settings["resumed_from"] = {"step": resume.step, "seed": resume.seed}
    if spec.label_noise > 1 and not y.is_floating_point():
        raise ValueError(f"fit: label noise on class labels is a probability, must be in "
                         f"[0, 1], got noise={spec.label_noise}")
    if store:
        with Store(store, "a", timeout=60) as s:
            rec.token = s.create_run(run, names=layout.names, shapes=layout.shapes,
                         init=_np(train_obj.theta), attrs=settings,
                         replace=replace_run)
            if buffers := _buffers(model):
                s.set_buffers(run, "init", buffers)
    was_training = {m: m.training for m in model.modules()}
    order = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1_000_003)
    same_streams = resume is not None and resume.seed == config.seed
    if same_streams:
        order.set_state(resume.rng["order"])
        noise.set_state(resume.rng["noise"])
    # where the first epoch starts: (its order or None to draw one, offset, running sums)
    pending: tuple[Tensor | None, int, tuple] | None = None
    if resume is not None and resume.perm is not None and resume.offset < n:
        pending = (resume.perm.to(layout.device) if same_streams else None, resume.offset,
                   resume.epoch_sums)
    position: dict[str, Any] = {"perm": None, "offset": 0, "sums": None}
    clock = {"train": 0.0, "record": 0.0}
    state: dict[str, Any] = {"step": start_step, "grad_norm": math.nan,
                             "lr": spec.lr if resume is None else resume.lr, "stop": None}

    def evaluate(obj: Objective | None, theta: Tensor) -> tuple[float, float]:
        if obj is None or state["stop"] == "diverged":
            return math.nan, math.nan
        try:
            m = obj.evaluate(theta)
        except ValueError as err:
            if "not finite" not in str(err):
                raise
            state["stop"] = "diverged"
            return math.nan, math.nan
        return m.loss, math.nan if m.accuracy is None else m.accuracy

    def record(step: int, final: bool = False) -> None:
        start = time.perf_counter()
        theta, epoch = train_obj.theta, step / per_epoch
        due = lambda every: (step == start_step or (every and step % every == 0)  # noqa: E731
                             or final)
        if due(h_every) and last["history"] != step:
            tr, te = evaluate(train_obj, theta), evaluate(test_obj, theta)
            last["metrics"] = {"train_loss": tr[0], "train_acc": tr[1], "test_loss": te[0],
                               "test_acc": te[1]}
            rec.row({"step": step, "epoch": epoch, **last["metrics"], "lr": state["lr"],
                     "grad_norm": state["grad_norm"], "time": clock["train"]})
            last["history"] = step
            log.info("step %d (epoch %.2f): train loss %.4g acc %.4g, test loss %.4g acc %.4g",
                     step, epoch, *tr, *te)
        if due(s_every) and last["snapshot"] != step:
            rec.snapshot(step, theta)
            last["snapshot"] = step
        for cb in callbacks:
            if due(cb.every) and last.get(cb.name) != step:
                # its own random stream: a probe that draws (Hutchinson, Lanczos starts)
                # must not change the dropout masks of training
                with torch.random.fork_rng(devices=_cuda_devices(layout.device)):
                    values = cb(TrainState(step, epoch, model, loss_fn, train_obj, theta,
                                           optimizer))
                rec.series_row(cb.name, {"step": step, **{
                    k: (_np(v) if isinstance(v, Tensor) else np.asarray(v))
                    for k, v in dict(values).items()}})
                last[cb.name] = step
        if not final:
            rec.maybe_flush()
        clock["record"] += time.perf_counter() - start

    def reached(loss: float, acc: float) -> str | None:
        if config.target_loss is not None and loss <= config.target_loss:
            return "target_loss"
        if config.target_accuracy is not None and acc >= config.target_accuracy:
            return "target_accuracy"
        return None

    def due_any(step: int) -> bool:
        return bool((h_every and step % h_every == 0) or (s_every and step % s_every == 0)
                    or any(step % cb.every == 0 for cb in callbacks))

    last: dict[str, Any] = {"history": None, "snapshot": None, "metrics": {}}
    targets = config.target_loss is not None or config.target_accuracy is not None
    try:
        with torch.random.fork_rng(devices=_cuda_devices(layout.device)):
            torch.manual_seed(config.seed)
            if same_streams:
                torch.set_rng_state(resume.rng["torch"])
                if resume.rng.get("cuda") is not None and layout.device.type == "cuda":
                    torch.cuda.set_rng_state(resume.rng["cuda"], layout.device)
            model.train()
            record(start_step)
            state["stop"] = state["stop"] or reached(last["metrics"]["train_loss"],
                                                     last["metrics"]["train_acc"])
            if state["stop"] is None and start_step >= limit:
                state["stop"] = _limit_reason(config, start_step)
            elif state["stop"] is None and until is not None and start_step >= until:
                state["stop"] = "until"
            bar = tqdm(total=None if math.isinf(limit) else int(limit), disable=not progress,
                       unit="step", dynamic_ncols=True)
            while state["stop"] is None:
                perm, first, sums = pending or (None, 0, None)
                pending = None
                if perm is None:
                    perm = torch.randperm(n, generator=order).to(layout.device)
                # running sums stay on the device: no host sync per step
                running = torch.zeros((), dtype=torch.float64, device=layout.device)
                hits = torch.zeros((), dtype=torch.float64, device=layout.device)
                hits_known = True
                if sums is not None:
                    running, hits = sums[0].to(layout.device), sums[1].to(layout.device)
                    hits_known = sums[2]
                for begin in range(first, n, batch):
                    t0 = time.perf_counter()
                    idx = perm[begin:begin + batch]
                    xb, yb = x[idx], y[idx]
                    if spec.label_noise:
                        yb = noisy_labels(yb, spec.label_noise, num_classes or 1, noise)
                    step = state["step"] + 1
                    epoch_end = begin + batch >= n
                    # the norm is read where a history row may follow: history steps, the
                    # last step, and epochs' ends (where divergence and targets are checked)
                    want_norm = bool((h_every and step % h_every == 0) or step == limit
                                     or epoch_end)
                    seen: list[Tensor] = []

                    def closure(xb: Tensor = xb, yb: Tensor = yb, want_norm: bool = want_norm,
                                seen: list[Tensor] = seen) -> Tensor:
                        optimizer.zero_grad(set_to_none=True)
                        out = model(xb)
                        value = loss_fn(out, yb)
                        value.backward()
                        if not seen:  # the first call: the gradient at the current point
                            seen.append(out.detach())
                            if want_norm:
                                state["grad_norm"] = float(torch.linalg.vector_norm(
                                    torch.stack([torch.linalg.vector_norm(p.grad)
                                                 for p in params.values()
                                                 if p.grad is not None])))
                        return value.detach()

                    state["lr"] = optimizer.param_groups[0]["lr"]
                    value = optimizer.step(closure)
                    if not constant_lr:
                        scheduler.step()
                    state["step"] = step
                    position.update(perm=perm, offset=begin + len(idx))
                    running.add_(value, alpha=len(idx))
                    if config.target_accuracy is not None:
                        counted = count_correct(seen[0], yb)
                        if counted is None:
                            hits_known = False
                        else:
                            hits += counted
                    position["sums"] = (running, hits, hits_known)
                    clock["train"] += time.perf_counter() - t0
                    bar.update(1)
                    if epoch_end and not bool(torch.isfinite(running)):
                        state["stop"] = "diverged"
                    elif step >= limit:
                        state["stop"] = _limit_reason(config, step)
                    elif until is not None and step >= until:
                        state["stop"] = "until"
                    elif due_any(step):
                        record(step)
                        if last["history"] == step:
                            m = last["metrics"]
                            state["stop"] = state["stop"] or reached(m["train_loss"],
                                                                     m["train_acc"])
                            bar.set_postfix(loss=f"{m['train_loss']:.4g}",
                                            acc=f"{m['train_acc']:.3f}")
                    if state["stop"] is not None:
                        break
                if progress and state["stop"] is None:
                    bar.set_postfix(epoch=f"{state['step'] / per_epoch:.0f}",
                                    batch_loss=f"{float(running) / n:.4g}")
                if targets and state["stop"] is None and last["history"] != state["step"]:
                    # an epoch's end (not just checked by a history row): a full check once the
                    # running means come near a target
                    near = (config.target_loss is not None and
                            float(running) / n <= 2 * config.target_loss) or (
                        config.target_accuracy is not None and
                        (not hits_known or float(hits) / n >= config.target_accuracy - 0.05))
                    if near:
                        t0 = time.perf_counter()
                        state["stop"] = reached(*evaluate(train_obj, train_obj.theta))
                        clock["record"] += time.perf_counter() - t0
            bar.close()
            checkpoint = take_checkpoint(state, config, model, optimizer, scheduler, order, noise,
                                     layout.device, position, resume)
            record(state["step"], final=True)
        result = TrainResult(
            config=config, run=run, steps=state["step"], epochs=state["step"] / per_epoch,
            stop_reason=state["stop"], final=last["metrics"],
            history={k: np.asarray(v) for k, v in rec.history.items()},
            series={name: {k: np.asarray(v) for k, v in cols.items()}
                    for name, cols in rec.series.items()},
            seconds=clock["train"], record_seconds=clock["record"], checkpoint=checkpoint)
        if store:
            t0 = time.perf_counter()
            # the last write waits for a reader that keeps the file open, within reason
            with Store(store, "a", timeout=final_timeout) as s:
                rec.flush(s)
                if buffers := _buffers(model):
                    s.set_buffers(run, "final", buffers)
                s.set_final(run, _np(train_obj.theta), status="complete", attrs={
                    "steps": result.steps, "epochs": result.epochs,
                    "stop_reason": result.stop_reason, "final_metrics": result.final,
                    "seconds": result.seconds})
            result = replace(result, record_seconds=result.record_seconds +
                             time.perf_counter() - t0)
    except BaseException as exc:
        if store and rec.token is not None:
            _mark_failed(store, run, rec, exc)
        raise
    finally:
        for m, mode in was_training.items():
            m.train(mode)
    return result


def _limit_reason(config: TrainConfig, step: int) -> str:
    """Which limit a run that reached the end of its steps stopped at."""
    return "max_steps" if config.max_steps and step >= config.max_steps else "epochs"


def _mark_failed(store: str, run: str, rec: Recorder, exc: BaseException) -> None:
    """Keep what was recorded and mark the run failed, if it is still ours; never raise over
    the original error."""
    from landscape.store.file import Store, StoreError

    try:
        with Store(store, "a", timeout=60) as s:
            s.check_writer(run, rec.token)
            try:
                with contextlib.suppress(ValueError, TypeError):
                    rec.flush(s)
            finally:
                s.set_attrs(run, {"status": "failed", "error":
                                  f"{type(exc).__name__}: {exc}"[:500]})
    except StoreError:
        pass  # replaced by another writer: not ours to mark
    except Exception:  # noqa: BLE001 - the original error matters more
        log.warning("could not mark run %r failed in %s", run, store)

