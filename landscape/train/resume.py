"""The full training state where :func:`landscape.train.fit` stopped, to continue from.

``fit(..., until=k)`` then ``fit(..., resume=result.checkpoint, ...)``, with the run's seed
(bitwise the uninterrupted run) or another (a fork with another data order, as in Frankle et
al. 2020's instability analysis).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from landscape.train.config import TrainConfig

__all__ = ["Checkpoint"]


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """The full training state where :func:`fit` stopped: ``fit(..., resume=checkpoint)``.

    Copies, never shared with a live run.

    Attributes:
        step: updates done.
        seed: the seed of the run that made it.
        config: its config.
        model: the model's ``state_dict`` (parameters and buffers).
        optimizer: the optimizer's ``state_dict`` (momentum, Adam moments).
        scheduler: the scheduler's ``state_dict`` (its position in the schedule).
        lr: the rate of the last update.
        rng: the states of the batch-order and label-noise generators and of the global torch
            RNG (``"order"``, ``"noise"``, ``"torch"``, ``"cuda"``: None on the CPU).
        perm: the current epoch's order (None: none drawn yet).
        offset: how many of ``perm`` were used (0 when none is drawn yet).
        epoch_sums: the running minibatch loss sum, hits and whether the hits are known, over
            the current epoch (for the stopping checks).
    """

    step: int
    seed: int
    config: TrainConfig
    model: dict[str, Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    lr: float
    rng: dict[str, Any]
    perm: Tensor | None
    offset: int
    epoch_sums: tuple[Tensor, Tensor, bool]


def check_resume(resume: Any, config: TrainConfig, model: nn.Module, n: int, limit: float) -> None:
    if not isinstance(resume, Checkpoint):
        raise TypeError(
            f"fit: resume must be a Checkpoint (TrainResult.checkpoint), got "
            f"{type(resume).__name__}"
        )
    old = resume.config
    if old.optimizer != config.optimizer or old.batch_size != config.batch_size:
        raise ValueError(
            "fit: resume needs the optimizer and batch size of the checkpoint's "
            f"run; got {config.optimizer.to_dict()}, batch_size="
            f"{config.batch_size}, expected {old.optimizer.to_dict()}, "
            f"batch_size={old.batch_size}"
        )
    if resume.perm is not None and len(resume.perm) != n:
        raise ValueError(
            f"fit: resume needs the checkpoint's training set ({len(resume.perm)} "
            f"examples), got {n}"
        )
    if resume.step > limit:
        raise ValueError(
            f"fit: the checkpoint is at step {resume.step}, beyond the end of "
            f"config ({int(limit)} steps)"
        )
    try:
        model.load_state_dict(resume.model)
    except RuntimeError as err:
        raise ValueError(f"fit: the checkpoint's parameters do not fit the model: {err}") from err


def take(
    state: dict,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    order: torch.Generator,
    noise: torch.Generator,
    device: torch.device,
    position: dict,
    resume: Checkpoint | None,
) -> Checkpoint:
    """A copy of the training state, taken before the final record.

    The final record draws nothing from the training streams, but callbacks' forks of the RNG
    are not ours to rely on.
    """
    perm, offset, sums = position["perm"], position["offset"], position["sums"]
    if perm is None and resume is not None:  # no step taken: the state resumed from
        perm, offset, sums = resume.perm, resume.offset, resume.epoch_sums
    zero = torch.zeros((), dtype=torch.float64)
    sums = (
        (zero, zero, True)
        if sums is None
        else (sums[0].detach().cpu().clone(), sums[1].detach().cpu().clone(), bool(sums[2]))
    )
    return Checkpoint(
        step=state["step"],
        seed=config.seed,
        config=config,
        model={k: v.detach().clone() for k, v in model.state_dict().items()},
        optimizer=copy.deepcopy(optimizer.state_dict()),
        scheduler=copy.deepcopy(scheduler.state_dict()),
        lr=float(state["lr"]),
        rng={
            "order": order.get_state(),
            "noise": noise.get_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        },
        perm=None if perm is None else perm.detach().cpu().clone(),
        offset=int(offset),
        epoch_sums=sums,
    )
