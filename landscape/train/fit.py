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

The steps and stopping rules are :mod:`landscape.train.loop`'s; what is recorded and written
is :class:`landscape.train.recording.Recorder`'s; :func:`fit` sets both up and joins them.

Examples:
    >>> cfg = TrainConfig("sgd", lr=0.1, batch_size=128, epochs=50, seed=0)  # doctest: +SKIP
    >>> result = fit(model, "cross_entropy", split, cfg, store="cmp.h5", run="sgd")
    >>> result.final["test_acc"], result.stop_reason
    >>> trunk = fit(model, "cross_entropy", split, cfg, until=100)            # doctest: +SKIP
    >>> fork = fit(copy.deepcopy(model), "cross_entropy", split, replace(cfg, seed=1),
    ...            resume=trunk.checkpoint)
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from torch import Tensor, nn

from landscape.data.split import Split
from landscape.engine import losses
from landscape.engine.objective import Objective
from landscape.engine.params import ParamLayout, select
from landscape.train import loop
from landscape.train.config import DEFAULT_EPOCHS_BETWEEN_RECORDS, TrainConfig
from landscape.train.loop import Plan, Progress
from landscape.train.optim import make_optimizer
from landscape.train.recording import Callback, Recorder, TrainState, callback
from landscape.train.resume import Checkpoint, check_resume
from landscape.train.schedules import make_scheduler

__all__ = [
    "DEFAULT_EPOCHS_BETWEEN_RECORDS",
    "Callback",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "callback",
    "fit",
    "total_steps",
]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`fit` did.

    Attributes:
        config: the :class:`TrainConfig`. run: the run's name in the store (or None).
        steps: updates done. epochs: passes over the training set (fractional).
        stop_reason: one of ``max_steps``, ``epochs``, ``target_loss``, ``target_accuracy``,
            ``diverged`` (the loss became NaN or infinite: noticed at an epoch's end or at a
            record, whichever comes first), ``until`` (stopped by ``fit(..., until=k)``).
        final: ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` at the end (NaN
            where undefined, e.g. without test data).
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
    final: dict[str, float]
    history: dict[str, np.ndarray]
    series: dict[str, dict[str, np.ndarray]]
    seconds: float
    record_seconds: float
    checkpoint: Checkpoint | None = None


# --------------------------------------------------------------------------- data


def _split_data(
    train: Any, test: Any
) -> tuple[tuple[Any, Tensor], tuple[Any, Tensor] | None, int | None, dict]:
    if isinstance(train, Split):
        if test is not None:
            raise ValueError("fit: give test data either in the Split or as test=, not both")
        return train.train, train.test, train.num_classes, train.describe()
    for name, part in (("train", train), ("test", test)):
        if part is not None and not (
            isinstance(part, (tuple, list))
            and len(part) == 2
            and all(isinstance(t, Tensor) for t in part)
        ):
            raise TypeError(
                f"fit: {name} data must be a Split or an (inputs, targets) pair of "
                f"tensors, got {type(part).__name__}"
            )
    x, y = train
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(
            f"fit: train inputs have {len(x)} rows and targets {len(y)}; expected "
            "the same number, at least one"
        )
    classes = int(y.max()) + 1 if not y.is_floating_point() and y.ndim == 1 else None
    return (
        tuple(train),
        (tuple(test) if test is not None else None),
        classes,
        {
            "n_train": len(y),
            "n_test": len(test[1]) if test is not None else 0,
            "input_shape": list(x.shape[1:]),
        },
    )


def _to(t: Tensor, layout: ParamLayout) -> Tensor:
    t = t.to(layout.device)
    return t.to(layout.dtype) if t.is_floating_point() else t


def total_steps(config: TrainConfig, n_train: int) -> int:
    """The number of updates ``config`` makes on ``n_train`` training examples.

    The length of its learning-rate schedule, unless a target or divergence stops it first.

    Examples:
        >>> total_steps(TrainConfig("sgd", batch_size=100, epochs=2), 250)
        6
    """
    return int(Plan.of(config, n_train).limit)


# --------------------------------------------------------------------------- fit
REPLACING = "~replacing"
"""The suffix of the name a complete run's replacement is trained under (``replace_run``)."""


def _complete(store: str, run: str) -> bool:
    """Whether ``store`` holds ``run`` complete."""
    from landscape.store.file import Store  # noqa: PLC0415 - h5py only to write a file

    if not os.path.exists(store):
        return False
    with Store(store) as s:
        return run in s and s.info(run).status == "complete"


def fit(
    model: nn.Module,
    loss: str | Callable[[Any, Tensor], Tensor],
    train: Any,
    config: TrainConfig,
    *,
    test: Any = None,
    store: str | None = None,
    run: str | None = None,
    replace_run: bool = False,
    attrs: Mapping[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    progress: bool = False,
    flush_seconds: float = 60.0,
    final_timeout: float = 600.0,
    until: int | None = None,
    resume: Checkpoint | None = None,
    record_converged: bool = False,
) -> TrainResult:
    """Train ``model`` in place as ``config`` says; record into ``store`` as ``run``.

    Args:
        model: any ``nn.Module``; trained on its device and dtype; its train/eval mode is
            restored at the end.
        loss: a name of :data:`landscape.engine.losses.LOSSES` or ``loss(outputs, targets)``,
            the mean over a batch.
        train: a :class:`~landscape.data.Split` (then its test part is the test set) or an
            ``(inputs, targets)`` pair of tensors.
        test: an ``(inputs, targets)`` pair.
        config: a :class:`TrainConfig`.
        store: path of a landscape file to write the run into (created if missing).
        run: the run's name there (default: the optimizer's name).
        replace_run: replace a complete run of that name (an incomplete or failed one is
            always redone). The new run is trained under the name ``<run>~replacing`` and takes
            the old one's place in the commit that completes it: a process killed before
            leaves the old run as it was (and an incomplete ``<run>~replacing``, redone by the
            next replace).
        attrs: extra JSON-ready attributes for the run (e.g. ``{"model": model.spec}``).
        callbacks: :class:`Callback` s, recorded as ``probes/<name>`` series.
        progress: show a progress bar.
        flush_seconds: write buffered records this often (a busy file is tried again at the
            next flush).
        final_timeout: seconds the last write waits for another process that holds the file.
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
        record_converged: also write the final attribute ``converged``: whether training
            stopped at its target (``target_loss`` or ``target_accuracy``), as a sweep with
            matched stopping (``[stop]``) records.

    Returns:
        A :class:`TrainResult`.

    Raises:
        TypeError: a config that is not a :class:`TrainConfig`, a resume that is not a
            :class:`Checkpoint`. ValueError: bad data or options; a checkpoint of another
            optimizer, batch size, training set or architecture, or beyond ``config``'s end;
            ``until`` below the step resumed from.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"fit: config must be a TrainConfig, got {type(config).__name__}")
    loss_fn = losses.get(loss)
    (x, y), test_pair, num_classes, data_desc = _split_data(train, test)
    params = select(model)
    layout = ParamLayout.of(params)
    x, y = _to(x, layout), _to(y, layout)
    spec, n = config.optimizer, len(y)
    plan = Plan.of(config, n)
    start_step = 0
    if resume is not None:
        check_resume(resume, config, model, n, plan.limit)
        start_step = resume.step
    if until is not None:
        if (
            isinstance(until, bool)
            or not isinstance(until, (int, np.integer))
            or until < start_step
        ):
            raise ValueError(
                f"fit: until must be an int >= {start_step} (the step it starts "
                f"from), got {until!r}"
            )
        until = int(until)
    every_default = max(1, DEFAULT_EPOCHS_BETWEEN_RECORDS * plan.per_epoch)
    h_every = config.history_every if config.history_every is not None else every_default
    s_every = config.snapshot_every if config.snapshot_every is not None else h_every
    if spec.label_noise and num_classes is None and not y.is_floating_point():
        raise ValueError("fit: label noise needs class labels or float targets")
    run = run or spec.name if store else run
    target = run  # a complete run replaced: trained beside it, swapped in when complete
    if store and run and replace_run and _complete(store, run):
        run = f"{run}{REPLACING}"
    train_obj = Objective(model, loss_fn, (x, y), check=False)
    test_obj = (
        Objective(model, loss_fn, tuple(_to(t, layout) for t in test_pair), check=False)
        if test_pair is not None
        else None
    )
    optimizer = make_optimizer(spec, params.values())
    scheduler = make_scheduler(spec, optimizer, None if math.isinf(plan.limit) else int(plan.limit))
    if resume is not None:  # copies: two forks of one checkpoint must not share buffers
        optimizer.load_state_dict(copy.deepcopy(resume.optimizer))
        scheduler.load_state_dict(copy.deepcopy(resume.scheduler))
    settings = {
        "optimizer": spec.to_dict(),
        "config": config.to_dict(),
        "seed": config.seed,
        "loss": losses.describe(loss),
        "data": data_desc,
        "batch_size": plan.batch,
        "steps_per_epoch": plan.per_epoch,
        "history_every": h_every,
        "snapshot_every": s_every,
        **dict(attrs or {}),
    }
    if resume is not None:
        settings["resumed_from"] = {"step": resume.step, "seed": resume.seed}
    if spec.label_noise > 1 and not y.is_floating_point():
        raise ValueError(
            f"fit: label noise on class labels is a probability, must be in "
            f"[0, 1], got noise={spec.label_noise}"
        )
    state = Progress(step=start_step, lr=spec.lr if resume is None else resume.lr)
    rec = Recorder(
        store=store,
        run=run,
        flush_seconds=flush_seconds,
        progress=state,
        train=train_obj,
        test=test_obj,
        model=model,
        loss_fn=loss_fn,
        optimizer=optimizer,
        per_epoch=plan.per_epoch,
        history_every=h_every,
        snapshot_every=s_every,
        callbacks=callbacks,
        device=layout.device,
    )
    if store:
        rec.begin(layout, train_obj.theta, settings, replace=replace_run or run != target)
    was_training = {m: m.training for m in model.modules()}
    try:
        checkpoint = loop.run(
            model,
            loss_fn,
            (x, y),
            config,
            plan,
            params=params,
            optimizer=optimizer,
            scheduler=scheduler,
            progress=state,
            recorder=rec,
            device=layout.device,
            num_classes=num_classes,
            until=until,
            resume=resume,
            show=progress,
        )
        assert state.stop is not None  # run() returns once a stopping rule has said why
        result = TrainResult(
            config=config,
            run=target,
            steps=state.step,
            epochs=state.step / plan.per_epoch,
            stop_reason=state.stop,
            final=rec.metrics,
            history={k: np.asarray(v) for k, v in rec.history.items()},
            series={
                name: {k: np.asarray(v) for k, v in cols.items()}
                for name, cols in rec.series.items()
            },
            seconds=state.seconds,
            record_seconds=rec.seconds,
            checkpoint=checkpoint,
        )
        if store:
            # the last write waits for a reader that keeps the file open, within reason
            spent = rec.finish(
                train_obj.theta,
                {
                    "steps": result.steps,
                    "epochs": result.epochs,
                    "stop_reason": result.stop_reason,
                    "final_metrics": result.final,
                    "seconds": result.seconds,
                    **(
                        {"converged": result.stop_reason in ("target_loss", "target_accuracy")}
                        if record_converged
                        else {}
                    ),
                },
                timeout=final_timeout,
                rename_to=target if run != target else None,
            )
            result = replace(result, record_seconds=result.record_seconds + spent)
    except BaseException as exc:
        rec.fail(exc)
        raise
    finally:
        for m, mode in was_training.items():
            m.train(mode)
    return result
