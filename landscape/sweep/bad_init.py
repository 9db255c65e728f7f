"""The bad-minimum initialisation of a sweep: pretraining on random labels (Liu et al. 2020).

Liu, Papailiopoulos and Achlioptas (2020), "Bad global minima exist and SGD can reach them":
train the model first on the training inputs with random labels until it fits them (about
100% training accuracy), then train it on the true labels from there. The second phase fits
the true labels as well as from a random init, yet the minimum it reaches generalises much
worse: a minimum that interpolates the training set and is bad.

:func:`pretrain_random_labels` does the first phase in place on a model built by
:func:`landscape.train.spec.build`; the sweep then trains the run as usual from those parameters
(so the run's stored ``init`` is the pretrained point, the start of the true-label phase) and
records what the pretraining did in the run's ``pretraining`` attribute.

Options (``[init.random_labels]`` of a sweep spec): ``optimizer`` (a table; default Adam at
lr 1e-3), ``epochs`` / ``max_steps`` (the budget; default 100 epochs), ``target_accuracy``
(default 1.0: stop once every random label is fitted), ``target_loss``, ``batch_size``,
``fraction`` (of training labels made random; default 1.0) and ``seed`` (of the random
labels; default 0). Batch order follows the run's ``train.seed``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from landscape.data.split import corrupt
from landscape.train.config import TrainConfig
from landscape.train.fit import fit

__all__ = ["pretrain_random_labels"]


def pretrain_random_labels(
    model: Any, loss: Any, split: Any, options: Mapping[str, Any], *, seed: int = 0
) -> dict[str, Any]:
    """Train ``model`` in place on ``split``'s training inputs with random labels.

    Args:
        model: the freshly built model (trained in place).
        loss: the run's loss.
        split: the run's :class:`~landscape.data.split.Split` (its labels are not changed).
        options: ``[init.random_labels]`` (module docstring), as checked by the sweep.
        seed: the batch order's seed (the run's ``train.seed``).

    Returns:
        What the pretraining did, JSON-ready: ``steps``, ``epochs``, ``stop_reason``,
        ``train_loss`` and ``train_acc`` on the random labels, ``test_acc`` (true labels),
        ``seconds``, ``n_random`` (labels changed).
    """
    noisy = corrupt(split, float(options.get("fraction", 1.0)), seed=int(options.get("seed", 0)))
    train = {
        k: options[k]
        for k in ("epochs", "max_steps", "target_accuracy", "target_loss", "batch_size")
        if k in options
    }
    config = TrainConfig(options.get("optimizer", {"name": "adam", "lr": 1e-3}), seed=seed, **train)
    result = fit(model, loss, noisy, config)
    f = result.final
    step = noisy.info["transforms"][-1] if isinstance(getattr(noisy, "info", None), dict) else {}
    return {
        "steps": int(result.steps),
        "epochs": float(result.epochs),
        "stop_reason": result.stop_reason,
        "train_loss": f.get("train_loss"),
        "train_acc": f.get("train_acc"),
        "test_acc": f.get("test_acc"),
        "seconds": float(result.seconds),
        "n_random": step.get("n_changed"),
    }
