r"""Permutation alignment of two networks by weight matching (Ainsworth et al. 2022).

Permuting the hidden units of a network (the rows of one layer, the matching columns of the
next, every per-unit parameter and statistic between) leaves its function unchanged. :func:`align`
finds the permutations :math:`P_l` of ``model_b``'s hidden layers that maximise

.. math:: J(P) = \sum_{\text{tensors } t} \langle A_t,\; P_{\mathrm{out}(t)}\, B_t\,
   P_{\mathrm{in}(t)}^\top \rangle ,

over the terms: the weight and bias of every Linear/Conv layer (a conv weight's kernel axes
summed over) and the affine weight and bias of every BatchNorm. BatchNorm running means and
variances are statistics, not parameters: they are permuted with their channels but left out
of :math:`J`. Coordinate descent over the layers, in a seeded random order, solves each layer's
subproblem exactly as a linear assignment (``scipy.optimize.linear_sum_assignment``) and stops
after a sweep in which no layer improves (or after ``max_iter`` sweeps); :math:`J` never
decreases. The result holds a new model, a deep copy of ``model_b`` with permuted parameters
and buffers: ``model_b``'s function up to rounding.

The architectures handled (chains of Linear/Conv layers, BatchNorm, unit-wise activations,
pooling and a flatten; no skip connections, attention or other containers than
``nn.Sequential``) and how a permutation is applied are described in
:mod:`probes.paths.permutations`, whose :func:`hidden_units` and :func:`permute` are
re-exported here.

Examples:
    >>> result = align(model_a, model_b, seed=0)
    >>> result.model                      # model_b, permuted towards model_a
    >>> result.perms["layers.0"]          # unit i of the new model is unit perm[i] of model_b
    >>> result.objective_before, result.objective_after, result.iterations

References:
    - S. K. Ainsworth, J. Hayase, S. Srinivasa, "Git Re-Basin: merging models modulo
      permutation symmetries", ICLR 2023 (weight matching).
    - R. Entezari, H. Sedghi, O. Saukh, B. Neyshabur, "The role of permutation invariance in
      linear mode connectivity of neural networks", ICLR 2022.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from landscape.engine.checks import _check_int
from landscape.engine.cost import Cost
from probes.paths.permutations import _apply, _structure, _take, hidden_units, permute
from probes.paths.results import WeightMatching

__all__ = ["WeightMatching", "align", "hidden_units", "permute"]


# ---------------------------------------------------------------------------- weight matching
def align(
    model_a: nn.Module, model_b: nn.Module, *, max_iter: int = 100, seed: int = 0
) -> WeightMatching:
    """Permute the hidden units of ``model_b`` to match ``model_a`` by weight matching.

    Coordinate descent over the hidden layers (see the module docstring for :math:`J`, the
    terms and the architectures handled): each sweep visits the layers in an order drawn from
    ``seed`` and replaces layer l's permutation by the exact maximiser of :math:`J` with the
    others fixed, a linear assignment on the ``n_l x n_l`` matrix of inner products between
    the units' incoming and outgoing weights; a change is kept only if it raises :math:`J`.
    It stops after a sweep without change. Computed in float64 NumPy on the host; the new
    model keeps ``model_b``'s device and dtype.

    Args:
        model_a: the reference model; never modified.
        model_b: the model to permute, of the same architecture; never modified.
        max_iter: most sweeps over the layers.
        seed: seed of the random order of the layers in each sweep.

    Returns:
        :class:`~probes.paths.results.WeightMatching`: the aligned model, the permutations,
        :math:`J` before and after and along the sweeps, the sweeps done and whether they
        converged, the cost (wall time).

    Raises:
        TypeError: a model that is not an ``nn.Module``.
        ValueError: an unsupported architecture (the message names the module: a skip
            connection, attention, a container other than ``nn.Sequential``, ...), models of
            different architectures, a bad ``max_iter`` or ``seed``.

    Examples:
        >>> result = align(model_a, model_b, seed=0)
        >>> path = interpolation.linear(model_a, result.model, loss_fn, loader)
    """
    fn = "align"
    started = time.perf_counter()
    max_iter, seed = _check_int(fn, "max_iter", max_iter, 1), _check_int(fn, "seed", seed, 0)
    layers, terms = _structure(fn, model_a, "model_a")
    layers_b, terms_b = _structure(fn, model_b, "model_b")
    sa, sb = model_a.state_dict(), model_b.state_dict()
    same = f"{fn}: model_a and model_b must have the same architecture"
    for name in sorted(set(sa) | set(sb)):
        shape_a, shape_b = (tuple(s[name].shape) if name in s else None for s in (sa, sb))
        if shape_a != shape_b:
            raise ValueError(
                f"{same}; {name!r} has shape {shape_a} in model_a and {shape_b} "
                "in model_b (None: missing)"
            )
    if (layers_b, terms_b) != (layers, terms):
        raise ValueError(f"{same}; model_a has hidden layers {layers}, model_b {layers_b}")

    def host(t: torch.Tensor, view: tuple[int, ...]) -> np.ndarray:
        return t.detach().to("cpu", torch.float64).numpy().reshape(view)

    matched = [t for t in terms if t.matched]
    A = {t.name: host(sa[t.name], t.view) for t in matched}
    B = {t.name: host(sb[t.name], t.view) for t in matched}
    perms = [np.arange(units) for _, units in layers]

    def objective() -> float:
        return float(sum(np.vdot(A[t.name], _take(B[t.name], perms, t)) for t in matched))

    def gain(layer: int) -> np.ndarray:
        n = layers[layer][1]
        total = np.zeros((n, n))
        for t in matched:
            axis = next((ax for ax, lay in t.axes.items() if lay == layer), None)
            if axis is not None:
                a = np.moveaxis(A[t.name], axis, 0).reshape(n, -1)
                b = np.moveaxis(_take(B[t.name], perms, t, skip=layer), axis, 0).reshape(n, -1)
                total += a @ b.T
        return total

    rng = np.random.default_rng(seed)
    history = [objective()]
    iterations, converged = 0, not layers
    while not converged and iterations < max_iter:
        changed = False
        for layer in rng.permutation(len(layers)):
            g = gain(layer)
            _, cols = linear_sum_assignment(g, maximize=True)
            rows = np.arange(len(cols))
            old, new = g[rows, perms[layer]].sum(), g[rows, cols].sum()
            if new - old > 1e-12 * max(abs(old), abs(new)):
                perms[layer], changed = cols.astype(np.int64), True
        iterations += 1
        history.append(objective())
        converged = not changed
    return WeightMatching(
        model=_apply(model_b, terms, perms),
        perms={name: p for (name, _), p in zip(layers, perms, strict=True)},
        iterations=iterations,
        converged=converged,
        objective_before=history[0],
        objective_after=history[-1],
        objective=np.asarray(history, dtype=np.float64),
        matched=tuple(t.name for t in matched),
        max_iter=max_iter,
        seed=seed,
        cost=Cost(seconds=time.perf_counter() - started),
    )
