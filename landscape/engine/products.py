"""The Hessian- and Gauss-Newton-vector products of an objective.

The part of :class:`~landscape.engine.objective.Objective` (see :mod:`landscape.engine.parts`)
that multiplies its curvature with vectors:
:meth:`~landscape.engine.objective.Objective.hvp` by the strategy chosen for the model and the
data (the four strategies are :mod:`landscape.engine.hvp`'s), the graphs of the gradient kept
between products at the last point, and
:meth:`~landscape.engine.objective.Objective.ggn_vp`. Here is all that decides when the kept
graphs are stale (the point, a buffer, a fixed parameter or the cached data moved) and what
frees them.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor
from torch.func import grad, jvp, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_map

from landscape.engine import allocator
from landscape.engine import distributed as _dist
from landscape.engine import hvp as _hvp
from landscape.engine.batches import Batch
from landscape.engine.context import synchronize
from landscape.engine.losses import uses_model_loss
from landscape.engine.parts import _Part

__all__: list[str] = []

_PRODUCTS = {
    "forward-over-reverse": _hvp.forward_over_reverse,
    "reverse-over-reverse": _hvp.reverse_over_reverse,
}


def _weighted_sum(parts: Any, dtype: torch.dtype) -> Tensor | None:
    """``sum(weight * product())`` in ``dtype``, accumulated in place (None for no parts).

    Products are computed one at a time and added into the first: a product of P numbers
    costs one vector, not the three that ``sum(w * x)`` allocates.
    """
    out: Tensor | None = None
    for weight, product in parts:
        part = product().to(dtype)
        if out is None:
            out = part if weight == 1 else part.mul_(weight)
        else:
            out.add_(part, alpha=weight)
    return out


class _Products(_Part):
    """The curvature-vector products of :class:`~landscape.engine.objective.Objective` (a part)."""

    def hvp(self, theta: Tensor | None, v: Tensor) -> Tensor:
        """The Hessian of the mean loss at ``theta`` times ``v``.

        ``v`` is (P,), or a block (k, P) whose rows are all multiplied in one pass (returns (k, P)).
        """
        theta = self.check_theta(theta)
        self.layout.check_vectors(v, "v")
        strategy = self.hvp_strategy or self._choose_strategy(theta)
        k = v.shape[0] if v.ndim == 2 else 1
        acc = self.accumulator_dtype
        with self.context():
            if strategy in _hvp.CACHED:
                graphs = self._cached_graphs(theta) or self._build_graphs(theta, strategy)
                parts = ((n, lambda g=g: g.apply(v)) for n, g in graphs)
            else:
                product = _PRODUCTS[strategy]
                parts = (
                    (b.weight, lambda b=b: product(self._f(b), theta, v)) for b in self.batches
                )
                self.add_cost(passes=1)
            out = _weighted_sum(parts, acc)
        if out is None:  # a shard without batches
            out = torch.zeros(v.shape, dtype=acc, device=v.device)
        (out,) = _dist.all_reduce(out, group=self.group)
        self.add_cost(hvp=k)
        out = out.div_(self.n_terms).to(self.layout.dtype)
        self.require_finite(out, "at the given theta", "the Hessian-vector product")
        return out

    def _state_key(self) -> tuple[int, ...]:
        """Versions of everything besides theta that the objective depends on.

        The fixed parameters, the buffers and the cached data. Any in-place change bumps one.
        """
        tensors = [*self._fixed.values(), *self.model.buffers()]
        if self.batches.cached:
            for batch in self.batches:
                leaves, _ = tree_flatten((batch.inputs, batch.targets))
                tensors += [t for t in leaves if isinstance(t, Tensor)]
        return tuple(t._version for t in tensors)

    def _cached_graphs(self, theta: Tensor) -> list[tuple[int, Any]] | None:
        if self._graphs is None:
            return None
        point, key, graphs = self._graphs
        if key == self._state_key() and torch.equal(point, theta):
            return graphs
        self._graphs = None  # stale: the point, a buffer, a fixed parameter or the data moved
        return None

    def _build_graphs(self, theta: Tensor, strategy: str) -> list[tuple[int, Any]]:
        self._graphs = None  # free the previous point's graphs first
        key = self._state_key()
        graphs = [(b.weight, _hvp.build(strategy, self._f(b), theta)) for b in self.batches]
        self._graphs = (theta.clone(), key, graphs)
        if theta.device.type == "cpu":
            allocator.release()  # the build's temporaries: free, but kept resident otherwise
        self.add_cost(passes=1, grad_evals=1)
        return graphs

    def clear_cache(self) -> None:
        """Free the graphs kept for Hessian-vector products at the last point."""
        self._graphs = None

    def _choose_strategy(self, theta: Tensor) -> str:
        """The fastest exact strategy for this model and data.

        Keeps the gradient's graph (``"cached-reverse"``: each product one backward pass)
        when it fits the memory budget. Otherwise times one product of each recomputing
        strategy on the first batch and keeps the faster; a strategy that the model does not
        support (e.g. a layer without forward-mode AD) drops out. Over ranks, they decide
        together: the graphs must fit on every rank, the timings are summed.
        """
        first = self.batches.first()
        with self.context():
            leaves, _ = tree_flatten((first.inputs, first.targets))
            existing = [t for t in leaves if isinstance(t, Tensor)]
            existing += [*self.model.parameters(), *self.model.buffers()]
            graph, per_batch = _hvp.measured(self._f(first), theta, existing)
        self.add_cost(grad_evals=1 / self.batches.n_batches, passes=1 / self.batches.n_batches)
        fits = per_batch * self.batches.n_batches * 1.25 <= self.batches.memory_budget
        if fits and self.batches.n_batches == 1 and self.group is None:  # built: keep it
            self._graphs = (graph.point, self._state_key(), [(first.weight, graph)])
        del graph
        if theta.device.type == "cpu":
            allocator.release()  # the build's temporaries (and an unkept graph): see there
        if self.group is not None:
            (misses,) = _dist.all_reduce(
                torch.tensor([0.0 if fits else 1.0], device=theta.device), group=self.group
            )
            fits = float(misses[0]) == 0.0
        if fits:
            self.hvp_strategy = "cached-reverse"
            return self.hvp_strategy
        gen = torch.Generator(device=theta.device).manual_seed(0)
        v = torch.randn(theta.shape, generator=gen, dtype=theta.dtype, device=theta.device)
        timings, errors = {}, {}
        with self.context():
            for name in ("reverse-over-reverse", "forward-over-reverse"):
                try:
                    _PRODUCTS[name](self._f(first), theta, v)  # warm up
                    synchronize(theta.device)
                    start = time.perf_counter()
                    _PRODUCTS[name](self._f(first), theta, v)
                    synchronize(theta.device)
                    timings[name] = time.perf_counter() - start
                except (RuntimeError, NotImplementedError) as exc:
                    errors[name] = exc
        self.add_cost(passes=4 / self.batches.n_batches)
        if self.group is not None:  # the same choice on every rank
            names = ("reverse-over-reverse", "forward-over-reverse")
            summed = _dist.total(
                [timings.get(n, float("inf")) for n in names], group=self.group, device=theta.device
            )
            timings = {n: t for n, t in zip(names, summed, strict=True) if t != float("inf")}
        if not timings:
            raise errors["reverse-over-reverse"]
        self.hvp_strategy = min(timings, key=timings.__getitem__)
        return self.hvp_strategy

    def ggn_vp(self, theta: Tensor | None, v: Tensor) -> Tensor:
        """The generalised Gauss-Newton matrix times ``v`` (or a block (k, P)).

        ``G = sum_b (t_b/T) J_b^T H_b J_b`` (``t_b`` the batch's terms), with ``J_b`` the
        Jacobian of the outputs and ``H_b`` the Hessian of ``loss_fn`` with respect to the
        outputs. PSD when the loss is convex in the outputs; equals the Fisher for cross-entropy.
        """
        theta = self.check_theta(theta)
        self.layout.check_vectors(v, "v")
        if uses_model_loss(self.loss_fn):
            raise ValueError(
                "ggn_vp needs the loss as a function of the outputs; loss_fn='model' computes "
                "it inside the model: pass loss_fn explicitly"
            )
        batched = v.ndim == 2
        total = torch.zeros(v.shape, dtype=self.accumulator_dtype, device=v.device)
        with self.context():
            for batch in self.batches:

                def out_fn(t: Tensor, batch: Batch = batch) -> Any:
                    return self.outputs(t, batch.inputs)

                def loss_of(o: Any, batch: Batch = batch) -> Tensor:
                    return self.loss_fn(o, batch.targets)

                # (torch annotates vjp as a 2- or 3-tuple whatever has_aux says)
                outputs, pullback = vjp(out_fn, theta)  # type: ignore[misc]
                # H_out jv as a vjp of the loss's gradient (H_out is symmetric): reverse mode
                # through the loss, which some losses need (mse_loss fails under jvp here)
                detached = tree_map(lambda o: o.detach() if isinstance(o, Tensor) else o, outputs)
                _, loss_hvp = vjp(grad(loss_of), detached)  # type: ignore[misc]

                def one(u: Tensor, out_fn=out_fn, loss_hvp=loss_hvp, pullback=pullback) -> Tensor:
                    jv = jvp(out_fn, (theta,), (u,))[1]
                    return pullback(loss_hvp(jv)[0])[0]

                total += batch.weight * (vmap(one)(v) if batched else one(v))
        self.add_cost(passes=1, ggn_vp=v.shape[0] if batched else 1)
        (total,) = _dist.all_reduce(total, group=self.group)
        total = (total / self.n_terms).to(self.layout.dtype)
        self.require_finite(total, "at the given theta", "the Gauss-Newton-vector product")
        return total
