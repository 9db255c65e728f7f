r"""Norm-based complexity measures.

Per-layer norms, distance from initialisation, path-norm and the Fisher-Rao norm.

**Layers.** A layer is a selected parameter with ``ndim >= 2`` seen as the matrix
``W = p.reshape(p.shape[0], -1)`` (a convolution kernel (out, in, k...) becomes
(out, in * prod(k)); its spectral norm is then that of the reshaped kernel, not the operator
norm of the convolution, as in Jiang et al. 2020's "approximate" measures). Biases and
normalisation vectors are no layers but count in :attr:`Norms.param_norm`. ``params=`` selects
parameters as everywhere in the engine (e.g. :func:`landscape.engine.params.no_bias_norm`).

**Per-layer norms and their aggregates** (:func:`norms`): ``||W_l||_F``, ``||W_l||_2`` (the
largest singular value), ``log prod_l ||W_l||_F`` and ``log prod_l ||W_l||_2`` (logarithms, so
that deep products do not overflow), ``sum_l ||W_l||_F^2`` and ``sum_l ||W_l||_2^2``; with
``init``: ``||W_l - W_l^0||_F`` and ``||W_l - W_l^0||_2`` per layer and ``||theta - theta_0||``
over all selected parameters.

**Path-norm** (:func:`path_norm`, Neyshabur et al. 2015; Jiang et al. 2020's measure): the sum
over all paths from an input unit to an output unit of the product of the squared weights on
the path,

.. math:: \mathrm{path}(w) = \sum_{\text{paths } p} \prod_{e \in p} w_e^2 = \mathbf 1^T
          f_{w^2}(\mathbf 1),

the outputs of the network with every parameter squared on an all-ones input, summed (the
square of Neyshabur's l2 path-norm). Conventions:

- a bias is the weight of an edge from a constant unit 1, so paths may start at a bias: each
  contributes ``b^2`` times the squared weights downstream of it;
- a convolution is a linear layer with shared weights; its zero padding adds no paths;
- BatchNorm (eval mode, running statistics) is the per-channel affine map ``x -> a x + c``,
  ``a = gamma / sqrt(running_var + eps)``, ``c = beta - a * running_mean``, whose squared form
  is ``x -> a^2 x + c^2``. When the layer before it has no bias (the usual conv-BN) this equals
  folding BatchNorm into that layer first (Jiang et al.'s reparametrisation); with a bias
  ``b`` before it, folding would give ``(a b + c)^2`` instead of ``a^2 b^2 + c^2``;
- ReLU and LeakyReLU are the identity on the squared network's non-negative values; average
  pooling keeps its fixed weights ``1/k`` unsquared; dropout (eval) and reshapes are identity.

With ``strict=True`` (default) any other module that holds parameters or computes (Tanh,
max pooling, LayerNorm, attention, ...) is refused, since for them the sum over paths is not
defined. Activations called as functions inside a ``forward`` (``F.relu``, ``torch.tanh``)
cannot be seen: the value is a path-norm only when they are ReLU. ``strict=False`` returns the
squared network's output for any model (the recipe, applied verbatim). Node-wise rescaling of a
ReLU unit (in-weights and bias times ``a``, out-weights over ``a``) leaves it unchanged.

**Fisher-Rao norm** (:func:`fisher_rao`, Liang et al. 2019): with ``I(theta)`` the Fisher
information, ``||theta||_fr^2 = <theta, I(theta) theta>``. We use the empirical Fisher at the
observed labels,

.. math:: \|\theta\|_{fr}^2 = \frac 1N \sum_{i=1}^N \langle \theta, \nabla_\theta
          \ell(f_\theta(x_i), y_i) \rangle^2,

over the selected parameters (per-example gradients from
:meth:`landscape.Objective.per_example_grads`). For a bias-free ReLU network with ``D`` weight
layers ``<theta, grad_theta f(x)> = D f(x)`` (Liang et al., Lemma 2.1), so
``||theta||_fr^2 = D^2 (1/N) sum_i <d ell / d f, f(x_i)>^2``, their Eq. (3.2) with the
empirical expectation; for other networks the definition above is what is computed.

References:
    Neyshabur, B., Tomioka, R., Srebro, N. (2015). Norm-based capacity control in neural
    networks. COLT.
    Liang, T., Poggio, T., Rakhlin, A., Stokes, J. (2019). Fisher-Rao metric, geometry, and
    complexity of neural networks. AISTATS.
    Jiang, Y., Neyshabur, B., Mobahi, H., Krishnan, D., Bengio, S. (2020). Fantastic
    generalization measures and where to find them. ICLR.

Examples:
    >>> n = norms(model, init=init_model, input_shape=(784,))
    >>> n.layers, n.spectral, n.log_prod_spectral, n.dist_frobenius, n.path_norm
    >>> fr = fisher_rao(model, nn.CrossEntropyLoss(), (X, y))
    >>> fr.value, fr.squared
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from landscape.engine.checks import _check_int
from landscape.engine.context import evaluation
from landscape.engine.cost import Cost
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from probes.implicit_bias.gradient_noise import stream
from probes.implicit_bias.layers import matrices, resolve_init, selected
from probes.implicit_bias.results import FisherRao, Norms

__all__ = ["FisherRao", "Norms", "fisher_rao", "fisher_rao_of", "norms", "path_norm"]

_BN = nn.modules.batchnorm._BatchNorm
_PATH_MODULES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
    _BN,
    nn.ReLU,
    nn.LeakyReLU,
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
)


def _as_numpy(values: list[Tensor]) -> np.ndarray:
    return torch.stack(values).to("cpu", torch.float64).numpy()


def norms(
    model: nn.Module,
    *,
    init: Any = None,
    params: ParamFilter | Iterable[str] | None = None,
    input_shape: Sequence[int] | None = None,
    strict: bool = True,
) -> Norms:
    """Per-layer Frobenius and spectral norms, their products and sums, the parameter norm.

    Also the distance from ``init`` and (with ``input_shape``) the path-norm.

    Args:
        model: any ``nn.Module``; read, never written.
        init: the initialisation: a model with the same parameter names, a state dict, or a
            flat vector (of the selected or of all trainable parameters); None for no
            distances.
        params: which parameters count: None (all trainable), a filter
            ``f(name, param, module)`` or a list of names. The path-norm ignores it: it is
            a property of the whole network.
        input_shape: the shape of one input (no batch dimension), for :func:`path_norm`.
        strict: passed to :func:`path_norm`.

    Returns:
        :class:`Norms`.

    Raises:
        TypeError: a model that is no ``nn.Module``, an init of the wrong kind.
        ValueError: no layer selected, an init whose names or shapes differ, a bad
            ``input_shape``, a model refused by :func:`path_norm`.
    """
    start = time.perf_counter()
    where = "norms"
    chosen = selected(where, model, params)
    mats = matrices(where, chosen)
    start_values = None if init is None else resolve_init(where, model, init, chosen)
    shape = None if input_shape is None else _check_shape(where, input_shape)
    if not isinstance(strict, bool):
        raise ValueError(f"{where}: strict must be a bool, got {strict!r}")
    work = torch.promote_types(next(iter(chosen.values())).dtype, torch.float32)
    fro, spec, dfro, dspec = [], [], [], []
    for name, w in mats.items():
        w = w.to(work)
        fro.append(torch.linalg.matrix_norm(w, "fro"))
        spec.append(torch.linalg.matrix_norm(w, 2))
        if start_values is not None:
            d = w - start_values[name].reshape(w.shape).to(work)
            dfro.append(torch.linalg.matrix_norm(d, "fro"))
            dspec.append(torch.linalg.matrix_norm(d, 2))
    fro_np, spec_np = _as_numpy(fro), _as_numpy(spec)
    param_sq = sum(float(p.to(work).square().sum()) for p in chosen.values())
    dist = None
    if start_values is not None:
        dist = math.sqrt(
            sum(
                float((p.to(work) - start_values[n].to(work)).square().sum())
                for n, p in chosen.items()
            )
        )
    with np.errstate(divide="ignore"):
        logs = float(np.log(fro_np).sum()), float(np.log(spec_np).sum())
    return Norms(
        layers=tuple(mats),
        shapes=tuple((w.shape[0], w.shape[1]) for w in mats.values()),  # (out, rest) each
        frobenius=fro_np,
        spectral=spec_np,
        dist_frobenius=None if start_values is None else _as_numpy(dfro),
        dist_spectral=None if start_values is None else _as_numpy(dspec),
        log_prod_frobenius=logs[0],
        log_prod_spectral=logs[1],
        sum_frobenius_sq=float((fro_np**2).sum()),
        sum_spectral_sq=float((spec_np**2).sum()),
        param_norm=math.sqrt(param_sq),
        dist_param_norm=dist,
        path_norm=None if shape is None else path_norm(model, shape, strict=strict),
        input_shape=shape,
        strict=strict,
        n_params=sum(p.numel() for p in chosen.values()),
        cost=Cost(seconds=time.perf_counter() - start),
    )


def _check_shape(where: str, input_shape: Any) -> tuple[int, ...]:
    ok = (
        isinstance(input_shape, (tuple, list, torch.Size))
        and len(input_shape) > 0
        and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0
            for s in input_shape
        )
    )
    if not ok:
        raise ValueError(
            f"{where}: input_shape must be a non-empty tuple of positive ints (one "
            f"input, without the batch dimension), got {input_shape!r}"
        )
    return tuple(int(s) for s in input_shape)


def _refuse(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, _PATH_MODULES):
            if isinstance(m, _BN) and m.running_mean is None:
                raise ValueError(
                    f"path_norm: BatchNorm {name or 'model'!r} keeps no running statistics "
                    "(track_running_stats=False), so it is no fixed affine map and has no "
                    "path-norm; pass strict=False to use the squared network's output anyway"
                )
            continue
        leaf = next(m.children(), None) is None
        if leaf or next(m.parameters(recurse=False), None) is not None:
            raise ValueError(
                f"path_norm: the path-norm is defined for networks of Linear/Conv layers, "
                f"BatchNorm (running statistics), ReLU/LeakyReLU, average pooling, dropout and "
                f"reshapes; got module {name or 'model'!r} ({type(m).__name__}). Pass "
                "strict=False to take the output of the squared network anyway"
            )


def path_norm(model: nn.Module, input_shape: Sequence[int], *, strict: bool = True) -> float:
    """The path-norm ``1^T f_{w^2}(1)``.

    The outputs of the network with every parameter squared, on one all-ones input of
    ``input_shape``, summed (see the module docstring for biases, convolutions and BatchNorm).

    Runs in eval mode (restored afterwards) on the model's device and dtype, through
    :func:`torch.func.functional_call`; the model is not written to. All parameters count,
    trainable or not.

    Raises:
        ValueError: a bad ``input_shape``; with ``strict``, a module for which the path-norm is
            undefined; an output that is not a finite tensor.
    """
    shape = _check_shape("path_norm", input_shape)
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"path_norm: expected model to be a torch.nn.Module, got {type(model).__name__}"
        )
    if not isinstance(strict, bool):
        raise ValueError(f"path_norm: strict must be a bool, got {strict!r}")
    named = dict(model.named_parameters())
    if not named:
        raise ValueError(f"path_norm: model {type(model).__name__} has no parameters")
    if strict:
        _refuse(model)
    first = next(iter(named.values()))
    tensors = {n: p.detach().square() for n, p in named.items()}
    buffers = {n: b for n, b in model.named_buffers()}
    for prefix, m in model.named_modules():
        if not isinstance(m, _BN) or m.running_mean is None or m.running_var is None:
            continue
        at = prefix + "." if prefix else ""
        mean, var = m.running_mean.detach(), m.running_var.detach()
        if m.affine:  # weight' = a^2 sqrt(1 + eps) over running stats (0, 1): a^2 x + c^2
            a = m.weight.detach() / torch.sqrt(var + m.eps)
            c = m.bias.detach() - a * mean
            tensors[at + "weight"] = a.square() * math.sqrt(1 + m.eps)
            tensors[at + "bias"] = c.square()
            buffers[at + "running_mean"] = torch.zeros_like(mean)
            buffers[at + "running_var"] = torch.ones_like(var)
        else:  # (x + mean^2) / (var + eps) = a^2 x + c^2 with a = 1/sqrt(var+eps), c = -a mean
            buffers[at + "running_mean"] = -mean.square()
            buffers[at + "running_var"] = (var + m.eps).square() - m.eps
    ones = torch.ones((1, *shape), dtype=first.dtype, device=first.device)
    with torch.no_grad(), evaluation(model, False):
        out = functional_call(model, {**buffers, **tensors}, (ones,))
    if not isinstance(out, Tensor):
        raise ValueError(
            f"path_norm: expected the model to return a tensor, got {type(out).__name__}"
        )
    value = float(out.to(torch.float64).sum())
    if not math.isfinite(value):
        raise ValueError(
            f"path_norm: the squared network's output is not finite ({value}); "
            "expected finite parameters"
        )
    return value


def fisher_rao(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    chunk_size: int = 256,
    check: bool = True,
) -> FisherRao:
    """The empirical Fisher-Rao norm ``sqrt(mean_i <theta, grad ell_i(theta)>^2)``.

    Args:
        model: as for every probe.
        loss_fn: as for every probe; each example's loss is ``loss_fn`` on a batch of one.
        data: as for every probe.
        params: the parameters ``theta`` (and gradients) are over; None for all trainable.
        mode: passed to :class:`landscape.Objective` (eval by default).
        batch_size: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        chunk_size: per-example gradients computed at once (memory: ``chunk_size * P``).

    Returns:
        :class:`FisherRao`.

    Raises:
        ValueError: bad options; whatever :class:`landscape.Objective` refuses (a loss that is
            not a scalar, empty data, ...); a non-finite gradient.
    """
    _check_int("fisher_rao", "chunk_size", chunk_size, 1)
    start = time.perf_counter()
    obj = Objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    return fisher_rao_of(obj, stream(obj, chunk_size, "fisher_rao").inner, start)


def fisher_rao_of(obj: Objective, inner: Tensor, start: float) -> FisherRao:
    """The :class:`FisherRao` from the inner products ``<theta, g_i>`` of a gradient stream.

    The stream is a :func:`probes.implicit_bias.gradient_noise.stream`; ``start`` is when the probe
    began.
    """
    inner_np = inner.to("cpu", torch.float64).numpy()
    squared = float(np.mean(inner_np**2))
    return FisherRao(
        value=math.sqrt(squared),
        squared=squared,
        inner=inner_np,
        n_examples=obj.n_examples,
        n_params=obj.layout.numel,
        mode=obj.mode,
        cost=obj.cost.with_seconds(time.perf_counter() - start),
    )
