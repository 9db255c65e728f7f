"""Accuracy of a model's outputs against targets, for the usual kinds of targets.

Outputs may be a tensor, a tuple (its first element the logits), a dict or an object with a
``logits`` attribute or key (a ``transformers`` ``ModelOutput`` is both): :func:`logits_of`
finds the logits; where there are none, accuracy is None. Targets may be a tensor or a mapping
batch, whose ``labels`` are the targets.

Sequence logits (N, T, K) against labels (N, T) give the token accuracy: labels that are
negative (``ignore_index``, e.g. -100) are not counted. A mapping batch's sequence labels need a
:class:`~landscape.engine.terms.Tokens` to say how they align with the logits (a causal language
model's labels are its inputs, predicted one position later); tensor targets are taken in place.
:func:`no_accuracy` says why a batch has no accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from landscape.engine.terms import Tokens

__all__ = [
    "Metrics",
    "combine",
    "correct",
    "count_correct",
    "count_counted",
    "labels_of",
    "logits_of",
    "no_accuracy",
]


def logits_of(outputs: Any) -> Tensor | None:
    """The logits in a model's outputs, or None where there are none.

    The tensor itself; the ``logits`` key of a mapping or the ``logits`` attribute of an
    object (a ``ModelOutput``); the first element of a tuple or list when it is a tensor.

    Args:
        outputs: what the model returned.

    Returns:
        A tensor, or None.
    """
    if isinstance(outputs, Tensor):
        return outputs
    if isinstance(outputs, Mapping):
        found = outputs.get("logits")
    elif isinstance(outputs, (tuple, list)):
        found = outputs[0] if outputs else None
    else:
        found = getattr(outputs, "logits", None)
    return found if isinstance(found, Tensor) else None


def labels_of(targets: Any, tokens: Tokens | None = None) -> Tensor | None:
    """The targets accuracy compares with: a tensor, or the ``labels`` of a mapping batch.

    Without ``tokens`` a mapping batch's labels count only with one label per example (shape
    (N,)); sequence labels (e.g. a language model's, whose logits predict the next token) give
    None. With ``tokens`` the labels they name, shifted for a causal model.

    Args:
        targets: a batch's targets, or a mapping batch.
        tokens: how sequence labels align with the logits, or None.

    Returns:
        A tensor, or None.
    """
    if tokens is not None:
        try:
            return tokens.labels(targets)
        except TypeError:
            return None
    if isinstance(targets, Tensor):
        return targets
    if isinstance(targets, Mapping):
        labels = targets.get("labels")
        if isinstance(labels, Tensor) and labels.ndim == 1:
            return labels
    return None


@dataclass(frozen=True)
class Metrics:
    """Loss and accuracy over the whole dataset (accuracy None where it is not defined)."""

    loss: float
    accuracy: float | None
    n_examples: int


def _is_one_hot(t: Tensor) -> bool:
    return bool(((t == 0) | (t == 1)).all()) and bool((t.sum(-1) == 1).all())


def _argmax(out: Tensor) -> Tensor:
    """``out.argmax(-1)`` (the first maximum), through the transpose for (N, C) outputs.

    On the CPU the reduction over a short contiguous last dimension is several times slower
    (0.9 ms against 0.06 ms for 4000 x 10 here, as much as a small MLP's forward pass).
    """
    return out.t().argmax(0) if out.ndim == 2 else out.argmax(-1)


def _pair(outputs: Any, targets: Any, tokens: Tokens | None) -> tuple[Tensor, Tensor] | None:
    """Logits and labels to compare, the logits shifted when ``tokens`` says so."""
    logits, labels = logits_of(outputs), labels_of(targets, tokens)
    if logits is None or labels is None:
        return None
    if tokens is not None:
        labels = labels.masked_fill(labels == tokens.ignore_index, -1)  # not counted
        if tokens.shift and logits.ndim >= 2:
            logits = logits[..., :-1, :]
    return logits.detach(), labels


def no_accuracy(outputs: Any, targets: Any, tokens: Tokens | None = None) -> str | None:
    """Why a batch has no accuracy (one line), or None where :func:`correct` gives one.

    Args:
        outputs: the model's outputs for a batch.
        targets: the batch's targets, or a mapping batch.
        tokens: how sequence labels align with the logits, or None.
    """
    if correct(outputs, targets, tokens) is not None:
        return None
    if logits_of(outputs) is None:
        return (
            f"the outputs have no logits (expected a tensor or a 'logits' field, got "
            f"{type(outputs).__name__})"
        )
    if isinstance(targets, Mapping) and tokens is None:
        labels = targets.get("labels")
        if labels is None:
            return "the mapping batch has no 'labels'"
        if isinstance(labels, Tensor) and labels.ndim > 1:
            return (
                "sequence labels: give the loss a token count (landscape.engine.terms: "
                "causal_lm() or token_labels()) to say how they align with the logits"
            )
    return "the targets are not classes (regression?)"


def correct(outputs: Any, targets: Any, tokens: Tokens | None = None) -> tuple[float, int] | None:
    """Correct predictions and predictions counted, or None where accuracy is undefined.

    - class indices: outputs (..., C) with C > 1, integer targets (...); negative targets
      (``ignore_index``, e.g. -100) are not counted;
    - one-hot targets of the outputs' shape: argmax against argmax;
    - one logit per example: targets in {0, 1} (logit > 0) or in {-1, +1} (its sign).

    Anything else (regression targets, outputs without logits, sequence labels of a mapping
    batch without ``tokens``) has no accuracy.

    Args:
        outputs: the model's outputs for a batch (see :func:`logits_of`).
        targets: the batch's targets, or a mapping batch (see :func:`labels_of`).
        tokens: how sequence labels align with the logits (the causal shift), or None.

    Returns:
        ``(correct, counted)``, or None.
    """
    pair = _pair(outputs, targets, tokens)
    if pair is None:
        return None
    out, targets = pair
    if (
        not targets.is_floating_point()
        and out.ndim >= 2
        and out.shape[:-1] == targets.shape
        and out.shape[-1] > 1
    ):
        valid = targets >= 0
        hits = (_argmax(out) == targets) & valid
        return float(hits.sum()), int(valid.sum())
    if out.shape == targets.shape and out.ndim >= 2 and out.shape[-1] > 1:
        if _is_one_hot(targets):
            return float((_argmax(out) == _argmax(targets)).sum()), targets[..., 0].numel()
        return None
    if out.numel() == targets.numel() and out.ndim >= 1 and out.shape[0] == targets.shape[0]:
        o, t = out.reshape(-1), targets.reshape(-1)
        if bool(((t == 0) | (t == 1)).all()):
            return float(((o > 0) == (t == 1)).sum()), t.numel()
        if bool(((t == -1) | (t == 1)).all()):
            return float(((o > 0) == (t == 1)).sum()), t.numel()
    return None


def count_correct(outputs: Any, targets: Any, tokens: Tokens | None = None) -> Tensor | None:
    """The number of correct predictions as a tensor on the outputs' device (no host sync).

    Decided from the shapes alone: class indices against (..., C) outputs (negative targets
    not counted), one-hot targets, or one logit per example against labels in {0, 1} or
    {-1, +1} (positive means 1).

    Args:
        outputs: the model's outputs for a batch.
        targets: the batch's targets.
        tokens: as for :func:`correct`.

    Returns:
        A 0-d integer tensor, or None where the shapes do not say (use :func:`correct`) or
        there are no logits or labels (:func:`logits_of`, :func:`labels_of`).
    """
    pair = _pair(outputs, targets, tokens)
    if pair is None:
        return None
    out, targets = pair
    if (
        not targets.is_floating_point()
        and out.ndim >= 2
        and out.shape[:-1] == targets.shape
        and out.shape[-1] > 1
    ):
        return ((_argmax(out) == targets) & (targets >= 0)).sum()
    if out.shape == targets.shape and out.ndim >= 2 and out.shape[-1] > 1:
        return (_argmax(out) == _argmax(targets)).sum()
    if (
        out.ndim >= 1
        and out.numel() == targets.numel()
        and out.shape[0] == targets.shape[0]
        and (out.ndim == 1 or out.shape[1:].numel() == 1)
    ):
        return ((out.reshape(-1) > 0) == (targets.reshape(-1) == 1)).sum()
    return None


def count_counted(outputs: Any, targets: Any, tokens: Tokens | None = None) -> Tensor | int:
    """The number of predictions :func:`count_correct` counts.

    Args:
        outputs: the model's outputs for a batch.
        targets: the batch's targets.
        tokens: as for :func:`correct`.

    Returns:
        For class-index targets, those that are not negative (``ignore_index``) as a device
        tensor; else every example, as an int (0 without logits or labels).
    """
    pair = _pair(outputs, targets, tokens)
    if pair is None:
        return 0
    outputs, targets = pair
    if (
        not targets.is_floating_point()
        and outputs.ndim >= 2
        and outputs.shape[:-1] == targets.shape
        and outputs.shape[-1] > 1
    ):
        return (targets >= 0).sum()
    if outputs.shape == targets.shape and outputs.ndim >= 2 and outputs.shape[-1] > 1:
        return targets[..., 0].numel()  # one-hot
    return targets.numel()


def combine(parts: list[tuple[float, int] | None]) -> float | None:
    """Accuracy over batches from their ``correct`` counts (None if any batch has none)."""
    known = [p for p in parts if p is not None]
    if not parts or len(known) < len(parts):
        return None
    counted = sum(p[1] for p in known)
    return sum(p[0] for p in known) / counted if counted else None
