r"""How many loss terms a batch holds, so that any batching gives the mean over the whole dataset.

A loss that averages over examples weights each batch by its number of examples, and that is the
default. A token-level loss averages over tokens: a batch's mean is over the labels that count
(not ``ignore_index``, e.g. the padding's ``-100``; for a causal language model the labels from
the second position on, since the logits at ``t`` predict the token at ``t + 1``), whose number
changes from batch to batch. :class:`landscape.Objective` takes ``terms``, a callable giving a
batch's number of loss terms from its targets (what ``loss_fn`` receives: the targets tensor, or
the mapping batch itself), and weights each batch's mean loss by it:

.. math:: L(\theta) = \frac{\sum_b t_b \, \ell_b(\theta)}{\sum_b t_b}.

A loss may carry its count as an attribute ``terms``, which is how it reaches every probe that
takes ``loss_fn``: :func:`counted` attaches one to any loss (``"model"`` included), and
:func:`causal_lm_loss` and :func:`token_loss` are cross-entropies over tokens that carry theirs.

- :func:`causal_lm`: labels ``!= ignore_index`` after the causal shift (GPT-2's labels are its
  ``input_ids``; ``outputs.loss`` averages over ``labels[:, 1:]``);
- :func:`token_labels`: labels ``!= ignore_index`` in place (masked language models, token
  classification).

Both are :class:`Tokens`, which also tell accuracy and margins how logits and labels align.

Examples:
    >>> obj = Objective(gpt2, counted("model", causal_lm()), loader)   # mean over all tokens
    >>> obj = Objective(bert_mlm, token_loss(), loader)                # the same, own loss
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch.nn.functional as F
from torch import Tensor

from landscape.engine.losses import model_loss

__all__ = [
    "Counted",
    "Tokens",
    "causal_lm",
    "causal_lm_loss",
    "count",
    "counted",
    "terms_of",
    "token_labels",
    "token_loss",
]

Terms = Callable[[Any], Any]
"""A batch's targets -> its number of loss terms (an int or an integer 0-d tensor)."""


class Tokens:
    """The labels of a batch that are loss terms: ``!= ignore_index``, after a causal shift.

    Called on a batch's targets (a tensor of labels, or a mapping with them under ``key``) it
    gives their number; :meth:`align` pairs logits with the labels they predict.

    Args:
        shift: True for a causal language model (logits at ``t`` predict the label at ``t+1``:
            the labels from the second position on count, the logits up to the last but one).
        ignore_index: the label that marks a position without loss (padding).
        key: where a mapping batch holds its labels.
    """

    def __init__(self, *, shift: bool, ignore_index: int = -100, key: str = "labels") -> None:
        if not isinstance(shift, bool):
            raise TypeError(f"Tokens: shift must be True or False, got {shift!r}")
        if not isinstance(ignore_index, int) or isinstance(ignore_index, bool):
            raise TypeError(f"Tokens: ignore_index must be an int, got {ignore_index!r}")
        self.shift, self.ignore_index, self.key = shift, ignore_index, key

    def labels(self, targets: Any) -> Tensor:
        """The labels that logits predict (shifted for a causal model), ignored ones included.

        Raises:
            TypeError: ``targets`` is neither a tensor of labels nor a mapping holding them.
        """
        labels = targets.get(self.key) if isinstance(targets, Mapping) else targets
        if not isinstance(labels, Tensor) or labels.is_floating_point() or labels.ndim < 2:
            got = (
                f"a mapping with keys {', '.join(map(repr, list(targets)[:6]))}"
                if isinstance(targets, Mapping)
                else type(targets).__name__
                if not isinstance(targets, Tensor)
                else f"a {targets.dtype} tensor of shape {tuple(targets.shape)}"
            )
            raise TypeError(
                f"token terms: expected integer labels of sequences (N, T) (a tensor, or a "
                f"mapping batch with {self.key!r}), got {got}"
            )
        return labels[..., 1:] if self.shift else labels

    def mask(self, targets: Any) -> Tensor:
        """Where the (shifted) labels are loss terms."""
        labels = self.labels(targets)
        return (labels != self.ignore_index) & (labels >= 0)

    def __call__(self, targets: Any) -> Tensor:
        """The number of loss terms of a batch (a 0-d tensor on the labels' device)."""
        return self.mask(targets).sum()

    def align(self, logits: Tensor, targets: Any) -> tuple[Tensor, Tensor]:
        """Logits (M, K) and labels (M,) of the M tokens that count, in order.

        Args:
            logits: (..., T, K) for labels (..., T).
            targets: the batch's targets.

        Raises:
            ValueError: logits whose leading shape is not the labels'.
        """
        labels = self.labels(targets)
        if self.shift:
            logits = logits[..., :-1, :]
        if logits.ndim != labels.ndim + 1 or logits.shape[:-1] != labels.shape:
            raise ValueError(
                f"token terms: expected logits (..., T, K) for labels (..., T), got logits "
                f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
                + (" after the causal shift" if self.shift else "")
            )
        keep = (labels != self.ignore_index) & (labels >= 0)
        return logits[keep], labels[keep]

    def __repr__(self) -> str:
        """``Tokens(shift=..., ignore_index=...)``."""
        return f"Tokens(shift={self.shift}, ignore_index={self.ignore_index}, key={self.key!r})"


def causal_lm(ignore_index: int = -100, key: str = "labels") -> Tokens:
    """The terms of a causal language model: labels ``!= ignore_index`` from position 2 on."""
    return Tokens(shift=True, ignore_index=ignore_index, key=key)


def token_labels(ignore_index: int = -100, key: str = "labels") -> Tokens:
    """The terms of a masked language model or a token classifier: labels ``!= ignore_index``."""
    return Tokens(shift=False, ignore_index=ignore_index, key=key)


class Counted:
    """A loss that carries its term count: ``loss_fn(outputs, targets)`` and ``.terms``.

    Args:
        loss_fn: any loss :class:`landscape.Objective` accepts, ``"model"`` included.
        terms: the batch's number of loss terms from its targets (e.g. :func:`causal_lm`).
    """

    def __init__(self, loss_fn: Callable[[Any, Any], Tensor] | str, terms: Terms) -> None:
        if isinstance(loss_fn, str):
            if loss_fn != "model":
                raise ValueError(f"loss_fn must be callable or 'model', got {loss_fn!r}")
            loss_fn = model_loss
        if not callable(loss_fn) or not callable(terms):
            bad = "loss_fn" if not callable(loss_fn) else "terms"
            got = loss_fn if bad == "loss_fn" else terms
            raise TypeError(f"counted: expected {bad} to be callable, got {type(got).__name__}")
        self.loss_fn, self.terms = loss_fn, terms

    def __call__(self, outputs: Any, targets: Any) -> Tensor:
        """The loss of a batch: ``loss_fn(outputs, targets)``."""
        return self.loss_fn(outputs, targets)

    def __repr__(self) -> str:
        """``counted(loss, terms)``."""
        name = "'model'" if self.loss_fn is model_loss else repr(self.loss_fn)
        return f"counted({name}, {self.terms!r})"


def counted(loss_fn: Callable[[Any, Any], Tensor] | str, terms: Terms) -> Counted:
    """``loss_fn`` carrying ``terms``, so that every probe taking ``loss_fn`` weights by it.

    Args:
        loss_fn: a loss returning the mean over the batch's terms, or ``"model"``.
        terms: the batch's number of those terms from its targets.

    Returns:
        A :class:`Counted` loss.

    Examples:
        >>> hessian.eigenvalues(gpt2, counted("model", causal_lm()), loader, k=2)
    """
    return Counted(loss_fn, terms)


class _TokenLoss:
    """Cross-entropy averaged over the tokens :class:`Tokens` counts, in the logits' dtype."""

    def __init__(self, tokens: Tokens) -> None:
        self.terms = tokens

    def __call__(self, outputs: Any, targets: Any) -> Tensor:
        logits = outputs if isinstance(outputs, Tensor) else None
        if logits is None:
            found = (
                outputs.get("logits")
                if isinstance(outputs, Mapping)
                else getattr(outputs, "logits", None)
            )
            logits = found if isinstance(found, Tensor) else None
        if logits is None:
            raise TypeError(
                f"token loss: expected outputs with logits (a tensor, or a 'logits' field), "
                f"got {type(outputs).__name__}"
            )
        tokens = self.terms
        labels = tokens.labels(targets)
        if tokens.shift:
            logits = logits[..., :-1, :]
        if logits.ndim != labels.ndim + 1 or logits.shape[:-1] != labels.shape:
            raise ValueError(
                f"token loss: expected logits (..., T, K) for labels (..., T), got logits "
                f"{tuple(logits.shape)} and labels {tuple(labels.shape)}"
            )
        # no boolean indexing: shapes that do not depend on the data (vmap, linearize)
        total = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels.reshape(-1),
            ignore_index=tokens.ignore_index,
            reduction="sum",
        )
        return total / (labels != tokens.ignore_index).sum().clamp_min(1)

    def __repr__(self) -> str:
        kind = "causal_lm_loss" if self.terms.shift else "token_loss"
        return f"{kind}(ignore_index={self.terms.ignore_index})"


def causal_lm_loss(ignore_index: int = -100, key: str = "labels") -> Callable[[Any, Any], Tensor]:
    """A causal language model's cross-entropy, mean over its tokens, carrying its terms.

    The loss GPT-2's ``outputs.loss`` computes, in the logits' dtype (that one upcasts to
    float32).
    """
    return _TokenLoss(causal_lm(ignore_index, key))


def token_loss(ignore_index: int = -100, key: str = "labels") -> Callable[[Any, Any], Tensor]:
    """Cross-entropy over the labels ``!= ignore_index`` in place (masked LM, token classes)."""
    return _TokenLoss(token_labels(ignore_index, key))


def terms_of(loss_fn: Any) -> Terms | None:
    """The term count ``loss_fn`` carries (its ``terms`` attribute), or None."""
    terms = getattr(loss_fn, "terms", None)
    return terms if callable(terms) else None


def tokens_of(terms: Any) -> Tokens | None:
    """``terms`` when it is a :class:`Tokens` (it says how logits and labels align), else None."""
    return terms if isinstance(terms, Tokens) else None


def count(terms: Terms | None, targets: Any, n: int) -> int:
    """A batch's number of loss terms: ``terms(targets)``, or ``n`` (its examples) without one.

    Raises:
        TypeError: ``terms`` returned something other than a non-negative integer.
    """
    if terms is None:
        return n
    value = terms(targets)
    if isinstance(value, Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(
            f"terms must give a batch's number of loss terms (a non-negative int), got {value!r}"[
                :200
            ]
        )
    return value
