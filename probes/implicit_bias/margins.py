r"""Output margins of a classifier, raw and normalised by the spectral complexity.

**Margin** of example ``(x_i, y_i)``:

.. math:: \gamma_i = f_{y_i}(x_i) - \max_{j \ne y_i} f_j(x_i),

positive where the example is classified correctly. Targets are class indices (outputs
(N, K), K >= 2), one-hot rows (the class is their argmax), or binary labels for one logit per
example: ``y in {0, 1}`` or ``{-1, +1}``, margin ``s f(x)`` with ``s = +1`` for the positive
class and -1 otherwise (the margin against an implicit logit 0). Sequence logits (N, T, K)
with labels (N, T) give one margin per token that counts (labels not negative); a mapping
batch's sequence labels need ``terms`` (:class:`landscape.engine.terms.Tokens`, e.g.
:func:`landscape.engine.terms.causal_lm`) to say how they align with the logits.

**Summaries**: the minimum and the ``q``-quantile (``q = 0.1``: the 10th percentile, Jiang et
al. 2020's margin) taken as the order statistic: the ``k``-th smallest margin with
``k = max(1, floor(q N))``, as their port (``kthvalue(m // 10)``).

**Normalisation** (Bartlett, Foster and Telgarsky 2017, Sec. 2 and their Figure 1): each
margin divided by ``R_A ||X||_F / N`` with ``||X||_F = sqrt(sum_i ||x_i||^2)`` over the flattened
inputs (their floating-point tensors: token ids have no norm, and then the normalised margins
are NaN) and the spectral complexity

.. math:: R_A = \Big(\prod_l \|A_l\|_2\Big) \Big(\sum_l \frac{\|A_l - M_l\|_{2,1}^{2/3}}
          {\|A_l\|_2^{2/3}}\Big)^{3/2},

where ``A_l`` are the layers (selected parameters with ndim >= 2 reshaped to (out, rest), as
in :mod:`probes.implicit_bias.norms`), ``||B||_{2,1}`` is the sum over the rows of ``B`` (the
output units) of their l2 norms (Bartlett's ``||B^T||_{2,1}``, columns of ``B^T``), and the
reference matrices ``M_l`` are the initial weights when ``init`` is given, else zero. Biases do
not enter ``R_A`` (Bartlett's networks have none) and the activations are taken as 1-Lipschitz.
Jiang et al.'s ``spec_orig`` replaces the (2,1) norms by Frobenius norms; we keep Bartlett's.

Margins are computed under the objective's mode (eval by default: BatchNorm with running
statistics), on the model's device and dtype, through :class:`landscape.Objective` (whose
loss is here the negative mean margin, used only for its checks).

References:
    Bartlett, P. L., Foster, D. J., Telgarsky, M. (2017). Spectrally-normalized margin bounds
    for neural networks. NeurIPS.
    Jiang, Y., Neyshabur, B., Mobahi, H., Krishnan, D., Bengio, S. (2020). Fantastic
    generalization measures and where to find them. ICLR.

Examples:
    >>> m = margins(model, (X, y), init=init_model)
    >>> m.minimum, m.quantile, m.normalised_quantile, m.spectral_complexity
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_fraction
from landscape.engine.context import evaluation
from landscape.engine.cost import Cost
from landscape.engine.metrics import labels_of, logits_of
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from landscape.engine.terms import Terms, Tokens, tokens_of
from probes.implicit_bias.layers import matrices, resolve_init, selected
from probes.implicit_bias.results import Margins

__all__ = ["Margins", "margin_of", "margins", "spectral_complexity"]


def margin_of(outputs: Any, targets: Any, tokens: Tokens | None = None) -> Tensor:
    """``f_y(x) - max_{j != y} f_j(x)`` per example, or per token of sequence logits.

    See the module docstring for the targets.

    Args:
        outputs: the model's outputs (a tensor, or with a ``logits`` field).
        targets: the batch's targets, or a mapping batch.
        tokens: how sequence labels align with the logits (the causal shift), or None.

    Raises:
        TypeError: no logits, or no labels.
        ValueError: outputs and targets that are none of the accepted pairs, or class indices
            outside ``[0, K)``.
    """
    logits, labels = logits_of(outputs), labels_of(targets, tokens)
    if logits is None or labels is None:
        raise TypeError(
            f"margins: expected outputs with logits (a tensor, or a 'logits' field) and "
            f"per-example targets (sequence labels with a token count), got "
            f"{type(outputs).__name__} and {type(targets).__name__}"
        )
    if tokens is not None:
        logits, labels = tokens.align(logits, targets)
    elif (
        logits.ndim == 3
        and labels.ndim == 2
        and logits.shape[:2] == labels.shape
        and not labels.is_floating_point()
    ):
        keep = labels >= 0  # ignore_index
        logits, labels = logits[keep], labels[keep]
    outputs, targets = logits, labels
    n = targets.shape[0] if targets.ndim else -1
    if outputs.ndim == 2 and outputs.shape[1] > 1 and outputs.shape[0] == n:
        k = outputs.shape[1]
        if not targets.is_floating_point() and targets.shape == (n,):
            if bool(((targets < 0) | (targets >= k)).any()):
                raise ValueError(
                    f"margins: class indices must lie in [0, {k}), got "
                    f"{int(targets.min())}..{int(targets.max())}"
                )
            labels = targets.long()
        elif targets.shape == outputs.shape:
            labels = targets.argmax(1)
        else:
            labels = None
        if labels is not None:
            true = outputs.gather(1, labels[:, None])[:, 0]
            others = outputs.scatter(1, labels[:, None], float("-inf"))
            return true - others.max(1).values
    elif outputs.numel() == n and outputs.shape[0] == n and targets.numel() == n:
        t = targets.reshape(-1)
        if bool(((t == 0) | (t == 1)).all()):
            return (2 * t.to(outputs.dtype) - 1) * outputs.reshape(-1)
        if bool(((t == -1) | (t == 1)).all()):
            return t.to(outputs.dtype) * outputs.reshape(-1)
    raise ValueError(
        f"margins: expected outputs (N, K) with class-index targets (N,) or one-hot targets "
        f"(N, K), or one logit per example with targets in {{0, 1}} or {{-1, 1}}; got outputs "
        f"{tuple(outputs.shape)} and targets {tuple(targets.shape)} {targets.dtype}"
    )


class _NegativeMeanMargin:
    """The negative mean margin, the loss of the objective that checks the data."""

    def __init__(self, tokens: Tokens | None) -> None:
        self.tokens = tokens

    def __call__(self, outputs: Any, targets: Any) -> Tensor:
        return -margin_of(outputs, targets, self.tokens).mean()


def spectral_complexity(
    layers: dict[str, Tensor], reference: dict[str, Tensor] | None = None
) -> float:
    """Bartlett et al.'s ``R_A`` of weight matrices (out, rest), with reference matrices ``M_l``.

    ``M_l`` is zero when None; see the module docstring.
    """
    spec, ratio = [], []
    for name, a in layers.items():
        work = a.to(torch.promote_types(a.dtype, torch.float32))
        d = work if reference is None else work - reference[name].reshape(a.shape).to(work.dtype)
        s = float(torch.linalg.matrix_norm(work, 2))
        spec.append(s)
        ratio.append((float(d.norm(dim=1).sum()) / s) ** (2 / 3) if s > 0 else math.inf)
    if min(spec) == 0:
        return 0.0
    return float(np.prod(spec)) * float(np.sum(ratio)) ** 1.5


def _order_statistic(values: np.ndarray, q: float) -> float:
    k = max(1, math.floor(q * values.size))
    return float(np.partition(values, k - 1)[k - 1])


def margins(
    model: nn.Module,
    data: Any,
    *,
    q: float = 0.1,
    init: Any = None,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    check: bool = True,
    terms: Terms | None = None,
) -> Margins:
    """Per-example (or per-token) output margins, their minimum and ``q``-quantile.

    Raw and normalised by Bartlett et al.'s spectral complexity.

    Args:
        model: a classifier; read, never written.
        data: ``(inputs, targets)`` tensors, a ``Dataset`` or a ``DataLoader``; targets class
            indices, one-hot rows, or binary labels for one logit.
        q: the quantile, in (0, 1] (default 0.1: the 10th percentile).
        init: reference matrices for ``R_A``: a model, a state dict or a flat vector (see
            :func:`probes.implicit_bias.norms.norms`); None for zero.
        params: which parameters form the layers of ``R_A`` (a filter or names; None: all).
        mode: passed to :class:`landscape.Objective`.
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        terms: a :class:`landscape.engine.terms.Tokens` for sequence labels (e.g.
            ``causal_lm()``: margins of the logits at ``t`` for the label at ``t + 1``), or
            None.

    Returns:
        :class:`Margins` (for sequences, one margin per token that counts).

    Raises:
        ValueError: bad options, outputs and targets that define no margin, no layer, an init
            that does not match, or whatever :class:`landscape.Objective` refuses.
    """
    where = "margins"
    q = _check_fraction(where, "q", q)
    if q == 0:
        raise ValueError(f"{where}: q must be in (0, 1], got {q!r}")
    start = time.perf_counter()
    chosen = selected(where, model, params)
    layers = matrices(where, chosen)
    reference = None if init is None else resolve_init(where, model, init, chosen)
    tokens = tokens_of(terms)
    obj = Objective(
        model,
        _NegativeMeanMargin(tokens),
        data,
        params=params,
        mode=mode,
        batch_size=batch_size,
        check=check,
        terms=terms,
    )
    theta = obj.theta
    parts, squares, floating = [], 0.0, False
    with torch.no_grad(), evaluation(model, mode == "train"):
        for batch in obj.batches:
            parts.append(margin_of(obj.outputs(theta, batch.inputs), batch.targets, tokens))
            leaves, _ = tree_flatten(batch.inputs)
            inputs = [t for t in leaves if isinstance(t, Tensor) and t.is_floating_point()]
            floating = floating or bool(inputs)
            squares += sum(float(t.to(torch.float64).square().sum()) for t in inputs)
    # over torch.distributed ranks: every shard's margins in data order, the squares summed
    gathered = _dist.gather_rows(torch.cat(parts).to(torch.float64), group=obj.group)
    (squares,) = _dist.total([squares], group=obj.group, device=theta.device)
    floating = bool(_dist.total([float(floating)], group=obj.group, device=theta.device)[0])
    values = gathered.cpu().numpy()
    if not np.isfinite(values).all():
        raise ValueError(f"{where}: the margins are not finite; expected finite outputs")
    n = values.size
    r_a = spectral_complexity(layers, reference)
    norm_x = math.sqrt(squares) if floating else math.nan  # token ids have no norm
    with np.errstate(divide="ignore", invalid="ignore"):
        normalised = values * n / (r_a * norm_x)
    return Margins(
        margins=values,
        normalised=normalised,
        minimum=float(values.min()),
        quantile=_order_statistic(values, q),
        normalised_minimum=float(normalised.min()),
        normalised_quantile=_order_statistic(normalised, q),
        q=q,
        spectral_complexity=r_a,
        input_norm=norm_x,
        reference="zero" if init is None else "init",
        layers=tuple(layers),
        n_examples=n,
        mode=mode,
        cost=obj.cost.with_seconds(time.perf_counter() - start) + Cost(passes=1.0),
    )
