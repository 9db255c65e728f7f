r"""Instability to SGD noise: the linear barrier between two runs forked from one training state.

Train a copy of the model to step ``k`` with a config; fork two copies that continue from that
same full state (parameters, buffers, optimizer state, schedule position:
:class:`landscape.train.Checkpoint`) to the config's end, each with its own data order (the
seeds of the forks); measure the loss and error barriers on the straight line between the two
ends (:func:`probes.paths.interpolation.linear`). The **instability** is that barrier as a
function of ``k`` (Frankle et al. 2020): large when the forks are made early (k = 0: two runs
from one initialisation), it falls to about zero once the run is *stable*, from some early step
on.

The trunk is trained once, to each ``k`` in increasing order, and continued from there; the
model given is never modified, and the global RNG state is left as it was.

Examples:
    >>> cfg = TrainConfig("sgd", lr=0.1, momentum=0.9, batch_size=64, epochs=10)
    >>> r = instability(model, "cross_entropy", split, cfg, k=[0, 50, 200], n=11)
    >>> r.ks, r.barriers, r.accuracy_barriers, r.test_barriers
    >>> arrays, attrs = r.to_record()          # Store.write_record(None, "probes", "inst", ...)

References:
    Frankle, Dziugaite, Roy, Carbin, "Linear mode connectivity and the lottery ticket
    hypothesis", ICML 2020.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.data.split import Split
from landscape.engine import losses
from landscape.engine.cost import Cost
from landscape.train.fit import TrainConfig, fit, total_steps
from probes.paths.interpolation import linear
from probes.paths.results import Instability

__all__ = ["Instability", "instability"]


def _ks(k: Any, end: int) -> list[int]:
    many = isinstance(k, Sequence) and not isinstance(k, str)
    ks = list(k) if many else [k]
    if not ks or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in ks):
        raise TypeError(f"instability: k must be an int or a non-empty sequence of ints, got {k!r}")
    if bad := [int(v) for v in ks if not 0 <= v <= end]:
        raise ValueError(
            f"instability: k must be in [0, {end}] (the config trains {end} "
            f"steps on this data), got {bad}"
        )
    return sorted({int(v) for v in ks})


def _seeds(seeds: Any) -> tuple[int, int]:
    if (
        not isinstance(seeds, Sequence)
        or len(seeds) != 2
        or any(isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0 for s in seeds)
    ):
        raise ValueError(
            f"instability: seeds must be two ints >= 0 (the forks' data orders), got {seeds!r}"
        )
    if seeds[0] == seeds[1]:
        warnings.warn(
            f"instability: both forks have seed {seeds[0]}: they train identically "
            "and the barrier is 0 by construction (a control, not a measurement)",
            UserWarning,
            stacklevel=3,
        )
    return int(seeds[0]), int(seeds[1])


def instability(
    model: nn.Module,
    loss: str | Callable[[Any, torch.Tensor], torch.Tensor],
    train: Any,
    config: TrainConfig,
    *,
    k: int | Sequence[int],
    seeds: Sequence[int] = (1, 2),
    n: int = 11,
    test: Any = None,
    recalibrate: bool = False,
) -> Instability:
    """The linear barrier between two forks of a run made at step ``k`` (Frankle et al. 2020).

    A copy of ``model`` is trained with ``config`` (its seed: the trunk's data order) to each
    ``k`` in increasing order (:func:`landscape.train.fit` with ``until``); at each, two
    copies continue from the trunk's full state (``resume``) to ``config``'s end with the
    data-order seeds ``seeds``, and the loss along the line between their ends is measured
    at ``n`` points on the training data (and ``test``). The trunk and the forks record no
    history in between (``history_every=0``).

    Args:
        model: the model at initialisation; not modified.
        loss: a name of :data:`landscape.engine.losses.LOSSES` or ``loss(outputs, targets)``.
        train: a :class:`~landscape.data.Split` (its test part is the test data unless
            ``test`` is given) or an ``(inputs, targets)`` pair of tensors.
        config: a :class:`~landscape.train.TrainConfig` without loss or accuracy targets (the
            forks must train to the same end).
        k: a fork step or steps in ``[0, end]`` (``end``: :func:`landscape.train.total_steps`);
            sorted, duplicates dropped.
        seeds: the two forks' data-order seeds; equal seeds warn (the barrier is then 0).
        n: points a path (>= 2).
        test: an ``(inputs, targets)`` pair for test barriers.
        recalibrate: recompute BatchNorm statistics along the paths (see
            :func:`probes.paths.interpolation.linear`).

    Returns:
        :class:`Instability`: ``ks``, ``barriers``, ``accuracy_barriers``, ``test_barriers``,
        the paths, options and cost.

    Raises:
        TypeError: a model that is not an ``nn.Module``, a config that is not a
            ``TrainConfig``, a k that is not an int or ints.
        ValueError: k outside ``[0, end]``, bad seeds, a config with targets, test data given
            twice, or as :func:`landscape.train.fit` and :func:`~probes.paths.interpolation.linear`.

    Examples:
        >>> r = instability(model, "cross_entropy", split, cfg, k=[0, 100, 1000])
        >>> dict(zip(r.ks, r.barriers))
    """
    start = time.perf_counter()
    if not isinstance(model, nn.Module):
        raise TypeError(f"instability: model must be an nn.Module, got {type(model).__name__}")
    if not isinstance(config, TrainConfig):
        raise TypeError(f"instability: config must be a TrainConfig, got {type(config).__name__}")
    if config.target_loss is not None or config.target_accuracy is not None:
        raise ValueError(
            "instability: config must not have a loss or accuracy target (the "
            "forks must train to the same end); give max_steps or epochs only"
        )
    if isinstance(train, Split):
        if test is not None and train.test is not None:
            raise ValueError(
                "instability: give test data either in the Split or as test=, not both"
            )
        train, test = train.train, test if test is not None else train.test
    if not (isinstance(train, (tuple, list)) and len(train) == 2):
        raise TypeError(
            f"instability: train must be a Split or an (inputs, targets) pair, got "
            f"{type(train).__name__}"
        )
    seeds = _seeds(seeds)
    end = total_steps(config, len(train[1]))
    ks = _ks(k, end)
    loss_fn = losses.get(loss)
    quiet = replace(config, history_every=0, snapshot_every=0)
    trunk, checkpoint, steps, paths = copy.deepcopy(model), None, 0, []
    for at in ks:
        done = fit(trunk, loss_fn, tuple(train), quiet, until=at, resume=checkpoint)
        steps += done.steps - (checkpoint.step if checkpoint else 0)
        checkpoint = done.checkpoint
        ends = []
        for s in seeds:
            fork = copy.deepcopy(trunk)
            ran = fit(fork, loss_fn, tuple(train), replace(quiet, seed=s), resume=checkpoint)
            steps += ran.steps - at
            ends.append(fork)
        fork_a, fork_b = ends
        paths.append(
            linear(fork_a, fork_b, loss_fn, tuple(train), n=n, test=test, recalibrate=recalibrate)
        )
    spent = sum((p.cost for p in paths), Cost()).with_seconds(time.perf_counter() - start)
    return Instability.of(
        tuple(paths),
        ks=np.asarray(ks, dtype=np.int64),
        seeds=seeds,
        seed=config.seed,
        end=end,
        config=config.to_dict(),
        n=n,
        recalibrate=recalibrate,
        steps=steps,
        cost=spent,
    )
