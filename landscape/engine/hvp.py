"""Exact Hessian-vector products of a scalar function of a flat vector, four ways.

All four compute ``H v`` exactly (up to rounding) for ``f: R^P -> R``; they differ in cost and
memory (Pearlmutter 1994; torch.func):

``"forward-over-reverse"``
    ``torch.func.jvp`` of ``torch.func.grad``: one forward and one backward pass carrying a
    tangent, recomputed for every product. Needs forward-mode AD of every layer.
``"reverse-over-reverse"``
    double backward: the gradient with ``create_graph=True``, then a backward pass of
    ``<grad, v>``, recomputed for every product.
``"cached-reverse"``
    the same, but the graph of the gradient is built once per point and kept; each product is
    then one backward pass through it (``H`` is symmetric, so the vector-Jacobian product of
    the gradient is ``H v``). Holds that graph in memory between products.
``"linearize"``
    ``torch.func.linearize`` of the gradient: traces the forward-over-reverse computation once
    per point (a one-off cost of tens to hundreds of gradients), after which each product only
    carries the tangent. Holds the traced graph and its constants in memory.

The cached kinds are built with :func:`build` and applied with their ``apply`` method; the
others are plain functions. Blocks of vectors (k, P) go through ``torch.func.vmap`` (the
recomputing kinds share the primal pass between the k products) or, for the kept graph, one
backward pass per row.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.func import grad, jvp, linearize, vmap

__all__ = [
    "CACHED",
    "STRATEGIES",
    "CachedReverse",
    "Linearized",
    "build",
    "forward_over_reverse",
    "measured",
    "reverse_over_reverse",
    "saved_bytes",
]

STRATEGIES = ("forward-over-reverse", "reverse-over-reverse", "cached-reverse", "linearize")
"""The Hessian-vector product strategies, by name (``hvp=`` of the engine)."""
CACHED = ("cached-reverse", "linearize")
"""The strategies that keep a graph or a linearisation at a point between products."""

Fn = Callable[[Tensor], Tensor]


def forward_over_reverse(f: Fn, theta: Tensor, v: Tensor) -> Tensor:
    """``H v`` by ``jvp(grad(f))``; ``v`` of shape (P,) or a block (k, P)."""

    def one(u: Tensor) -> Tensor:
        return jvp(grad(f), (theta,), (u,))[1]

    return vmap(one)(v) if v.ndim == 2 else one(v)


def reverse_over_reverse(f: Fn, theta: Tensor, v: Tensor) -> Tensor:
    """``H v`` by double backward, the graph built for this call only."""
    return CachedReverse(f, theta).apply(v)


class CachedReverse:
    """The graph of ``grad f`` at ``theta``, kept to apply ``H`` by one backward pass each.

    Also holds ``loss`` and ``grad`` at ``theta``, which building it computes anyway.
    """

    def __init__(self, f: Fn, theta: Tensor) -> None:
        with torch.enable_grad():
            # a copy: the caller may change theta in place while the graph is kept
            self._leaf = theta.detach().clone().requires_grad_(True)
            value = f(self._leaf)
            (self._grad,) = torch.autograd.grad(value, self._leaf, create_graph=True)
        self.loss = value.detach()
        self.grad = self._grad.detach()
        self.point = self._leaf.detach()  # theta as built (a copy; never changed in place)

    def apply(self, v: Tensor) -> Tensor:
        """``H v`` by one backward pass through the kept graph; ``v`` of shape (P,) or (k, P)."""
        if not self._grad.requires_grad:  # f is linear in theta: H = 0
            return torch.zeros_like(v)
        if v.ndim == 2:
            # One backward per row: measured faster here than is_grads_batched (which vmaps
            # the backward graph) on an MLP, 6.5 vs 12 ms a product.
            return torch.stack([self.apply(u) for u in v])
        with torch.enable_grad():
            (out,) = torch.autograd.grad(
                self._grad, self._leaf, v, retain_graph=True, allow_unused=True
            )
        return torch.zeros_like(v) if out is None else out


class Linearized:
    """``torch.func.linearize`` of ``grad f`` at ``theta``; applies ``H`` by its JVP."""

    def __init__(self, f: Fn, theta: Tensor) -> None:
        with warnings.catch_warnings():
            # torch.fx's constant folding warns about its own internal get_attr nodes.
            warnings.filterwarnings("ignore", message="Attempted to insert a get_attr Node")
            self.grad, self._jvp = linearize(grad(f), theta.detach())
        self.grad = self.grad.detach()
        self.loss = None
        self._vmap = True

    def apply(self, v: Tensor) -> Tensor:
        """``H v`` by the traced JVP; ``v`` of shape (P,) or a block (k, P)."""
        if v.ndim == 1:
            return self._jvp(v)
        if self._vmap:
            try:
                return vmap(self._jvp)(v)
            except RuntimeError:
                # Some traced graphs (e.g. views after convolutions) have no batching rule
                # under vmap; fall back to one product per row for this operator.
                self._vmap = False
        return torch.stack([self._jvp(u) for u in v])


def build(strategy: str, f: Fn, theta: Tensor) -> CachedReverse | Linearized:
    """Build the cached operator of ``strategy`` (one of :data:`CACHED`) at ``theta``."""
    if strategy == "cached-reverse":
        return CachedReverse(f, theta)
    if strategy == "linearize":
        return Linearized(f, theta)
    raise ValueError(f"build: expected one of {CACHED}, got {strategy!r}")


def saved_bytes(f: Fn, theta: Tensor, existing: Iterable[Tensor] = ()) -> int:
    """Bytes of the tensors that the graph of ``grad f`` at ``theta`` keeps.

    That is what ``"cached-reverse"`` holds per batch, measured with saved-tensor hooks.
    Tensors whose storage is one of ``existing`` (the data, the model's parameters and
    buffers) are not counted: the graph refers to them but does not allocate them.

    Args:
        f: the scalar function of a flat vector.
        theta: the point.
        existing: tensors that live anyway; their storages are not counted.

    Returns:
        The bytes of the distinct storages the graph saves.
    """
    return measured(f, theta, existing)[1]


def measured(f: Fn, theta: Tensor, existing: Iterable[Tensor] = ()) -> tuple[CachedReverse, int]:
    """The graph of ``grad f`` at ``theta`` and the bytes it keeps (see :func:`saved_bytes`).

    For a caller that keeps the graph when it fits (one build instead of two).
    """
    known = {(t.device, t.untyped_storage().data_ptr()) for t in existing}
    storages: dict[tuple, int] = {}

    def pack(t: Tensor) -> Tensor:
        try:
            key = (t.device, t.untyped_storage().data_ptr())
            if key not in known:
                storages[key] = max(storages.get(key, 0), t.numel() * t.element_size())
        except (RuntimeError, NotImplementedError):  # tensors without storage
            storages[(t.device, id(t))] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        graph = CachedReverse(f, theta)
    return graph, sum(storages.values())
