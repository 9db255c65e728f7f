"""The empirical risk of a model over a whole dataset, as a function of a flat vector.

:class:`Objective` is what every probe goes through. For parameters ``theta`` (flat) it gives

.. math:: L(\\theta) = \\frac{1}{N} \\sum_b n_b \\, \\ell_b(\\theta),

the mean of ``loss_fn`` over all N examples, each batch's mean loss ``l_b`` weighted by its
size ``n_b``, so that any batching gives the full-batch value. Gradient, Hessian-vector
products (four exact strategies, see :mod:`landscape.hvp`), generalised Gauss-Newton-vector
products and per-example gradients follow the same weighting.

The model is never written to: parameters are substituted with
:func:`torch.func.functional_call`; buffers are copied before a train-mode pass could update
them; each module's train/eval flag is restored after every call. Scaled-dot-product
attention runs on its math kernel and the fused ``nn.MultiheadAttention`` path is switched off
during every call, because the fused kernels support neither forward-mode AD nor double
backward.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, grad_and_value, jvp, vjp, vmap
from torch.utils._pytree import tree_flatten, tree_map

from . import hvp as _hvp
from .batches import Batch, Batches
from .params import ParamFilter, ParamLayout, select

__all__ = ["Cost", "DeterminismError", "Metrics", "Objective"]

MODES = ("eval", "train")


class DeterminismError(ValueError):
    """Two evaluations at the same point disagreed: the objective is not a function."""


@dataclass(frozen=True)
class Cost:
    """What an :class:`Objective` has spent: passes over the data, products, seconds."""

    passes: float = 0.0
    loss_evals: int = 0
    grad_evals: int = 0
    hvp: int = 0
    ggn_vp: int = 0
    seconds: float = 0.0

    def __sub__(self, other: Cost) -> Cost:
        return Cost(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Metrics:
    """Loss and accuracy over the whole dataset (accuracy None where it is not defined)."""

    loss: float
    accuracy: float | None
    n_examples: int


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


def _correct(outputs: Tensor, targets: Tensor) -> tuple[float, int]:
    """Number of correct predictions and of predictions made, for the usual target kinds."""
    out = outputs.detach()
    if not targets.is_floating_point() and out.ndim >= 2 and out.shape[:-1] == targets.shape:
        if out.shape[-1] > 1:  # class indices
            return float((out.argmax(-1) == targets).sum()), targets.numel()
    if out.shape == targets.shape and out.ndim >= 2 and out.shape[-1] > 1:  # one-hot / MSE
        return float((out.argmax(-1) == targets.argmax(-1)).sum()), targets.shape[0]
    if out.numel() == targets.numel() and out.shape[0] == targets.shape[0]:  # one logit
        o, t = out.reshape(-1), targets.reshape(-1).to(out.dtype)
        pred = torch.where(t.min() < 0, torch.sign(o), (o > 0).to(o.dtype))
        return float((pred == t).sum()), t.numel()
    raise ValueError(
        "accuracy is defined for class-index targets (outputs (n, C), targets (n,)), one-hot "
        f"targets or one logit per example; got outputs {tuple(outputs.shape)} and targets "
        f"{tuple(targets.shape)} ({targets.dtype})"
    )


class Objective:
    """The mean loss of ``model`` over ``data`` as a function of its flat parameters.

    Args:
        model: any ``nn.Module``; never modified. Its device and dtype are used.
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss of a batch, a scalar
            (e.g. ``nn.CrossEntropyLoss()``).
        data: ``(inputs, targets)`` tensors, a ``Dataset`` or a ``DataLoader``.
        params: which parameters form ``theta``: ``None`` (all with ``requires_grad``), a
            filter ``f(name, param, module) -> bool`` (e.g. :func:`landscape.params.no_bias_norm`)
            or a list of names. The others stay fixed at the model's values.
        mode: ``"eval"`` (default: BatchNorm uses running statistics, dropout off) or
            ``"train"`` (batch statistics; the model's buffers are not updated).
        batch_size: batch size for tensors and datasets (default 4096 and 256).
        cache: keep the data on the device when they fit (``"auto"``), always, or never.
        memory_budget: bytes for cached data and cached Hessian graphs (default: half the
            free memory of a GPU, a quarter of the RAM).
        hvp: ``"auto"`` or one of :data:`landscape.hvp.STRATEGIES`. ``"auto"`` keeps the graph
            of the gradient between products (``"cached-reverse"``) when it fits the budget,
            otherwise times one product of each recomputing strategy and keeps the faster.
        check: two evaluations of loss and gradient at the model's parameters must agree
            (catches shuffling loaders with ``drop_last``, random augmentation, dropout or
            BatchNorm in train mode). Costs two gradients at construction.

    Examples:
        >>> obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
        >>> theta = obj.theta
        >>> obj.loss(theta), obj.grad(theta).norm(), obj.hvp(theta, torch.randn_like(theta))
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Tensor], Tensor],
        data: Any,
        *,
        params: ParamFilter | Iterable[str] | None = None,
        mode: str = "eval",
        batch_size: int | None = None,
        cache: bool | str = "auto",
        memory_budget: int | None = None,
        hvp: str = "auto",
        check: bool = True,
    ) -> None:
        if not callable(loss_fn):
            raise TypeError(f"expected loss_fn to be callable, got {type(loss_fn).__name__}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if hvp != "auto" and hvp not in _hvp.STRATEGIES:
            raise ValueError(f"hvp must be 'auto' or one of {_hvp.STRATEGIES}, got {hvp!r}")
        self.model, self.loss_fn, self.mode = model, loss_fn, mode
        self._selected = select(model, params)
        self.layout = ParamLayout.of(self._selected)
        self._fixed = {
            n: p for n, p in model.named_parameters() if n not in self._selected
        }
        self.batches = Batches(
            data,
            device=self.layout.device,
            dtype=self.layout.dtype,
            batch_size=batch_size,
            cache=cache,
            memory_budget=memory_budget,
        )
        self.n_examples = self.batches.n_examples
        self._requested_hvp = hvp
        self.hvp_strategy: str | None = None if hvp == "auto" else hvp
        self._graphs: tuple[Tensor, list] | None = None
        self._cost = Cost().as_dict()
        self._validate(self.batches.first())
        if check:
            self.check_determinism()

    # -- the functional core -------------------------------------------------------------
    @contextlib.contextmanager
    def _context(self) -> Iterator[None]:
        flags = [(m, m.training) for m in self.model.modules()]
        self.model.train(self.mode == "train")
        start = time.perf_counter()
        try:
            with torch.nn.attention.sdpa_kernel(
                torch.nn.attention.SDPBackend.MATH
            ), _mha_fastpath_off():
                yield
        finally:
            for module, flag in flags:
                module.training = flag
            self._cost["seconds"] += time.perf_counter() - start

    def _tensors(self, theta: Tensor) -> dict[str, Tensor]:
        tensors = self.layout.unflatten(theta)
        tensors.update({n: p.detach() for n, p in self._fixed.items()})
        if self.mode == "train":  # copies made inside the transform, so updates stay local
            tensors.update({n: b.clone() for n, b in self.model.named_buffers()})
        return tensors

    def outputs(self, theta: Tensor, inputs: Any) -> Tensor:
        """The model's outputs at ``theta`` (call inside the objective's context)."""
        return functional_call(self.model, self._tensors(theta), (inputs,))

    def batch_loss(self, theta: Tensor, batch: Batch) -> Tensor:
        """The mean loss of one batch at ``theta`` (call inside the objective's context)."""
        return self.loss_fn(self.outputs(theta, batch.inputs), batch.targets)

    def _f(self, batch: Batch) -> Callable[[Tensor], Tensor]:
        return lambda theta: self.batch_loss(theta, batch)

    def _validate(self, batch: Batch) -> None:
        with torch.no_grad(), self._context():
            outputs = self.outputs(self.theta, batch.inputs)
            value = self.loss_fn(outputs, batch.targets)
        if not isinstance(value, Tensor) or value.ndim != 0:
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return a scalar (the mean loss of the batch), got {got}; use "
                "reduction='mean'"
            )
        if not value.is_floating_point():
            raise TypeError(f"loss_fn must return a floating-point tensor, got {value.dtype}")
        self._finite(value, "at the model's parameters")

    @staticmethod
    def _finite(value: Tensor, where: str) -> None:
        if not bool(torch.isfinite(value).all()):
            raise ValueError(
                f"the loss is not finite ({float(value)}) {where}; expected a finite loss: "
                "check the data for NaN/inf, the learning rate of the run, or the scale of "
                "the parameters"
            )

    def _check(self, theta: Tensor | None, what: str = "theta") -> Tensor:
        if theta is None:
            return self.theta
        self.layout.check(theta, what)
        return theta.detach()

    def _count(self, **kw: float) -> None:
        for key, value in kw.items():
            self._cost[key] += value

    # -- public API ------------------------------------------------------------------------
    @property
    def theta(self) -> Tensor:
        """The model's current values of the selected parameters, flat (a copy)."""
        return self.layout.flatten(self._selected).clone()

    @property
    def cost(self) -> Cost:
        """Work done so far; subtract two snapshots for the cost of a computation."""
        return Cost(**self._cost)

    def loss(self, theta: Tensor | None = None) -> Tensor:
        """The mean loss over the whole dataset at ``theta`` (default: the model's)."""
        theta = self._check(theta)
        total = torch.zeros((), dtype=self.layout.dtype, device=self.layout.device)
        with torch.no_grad(), self._context():
            for batch in self.batches:
                total += batch.n * self.batch_loss(theta, batch)
        self._count(passes=1, loss_evals=1)
        total = total / self.n_examples
        self._finite(total, "at the given theta")
        return total

    def loss_and_grad(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Loss and gradient over the whole dataset in one pass."""
        theta = self._check(theta)
        cached = self._cached_graphs(theta)
        if cached is not None and all(g.loss is not None for _, g in cached):
            loss = sum(n * g.loss for n, g in cached) / self.n_examples
            gradient = sum(n * g.grad for n, g in cached) / self.n_examples
        else:
            loss, gradient, _, _, _ = self._loss_grad_pass(theta, iter(self.batches))
        self._finite(loss, "at the given theta")
        return loss, gradient

    def grad(self, theta: Tensor | None = None) -> Tensor:
        """The gradient of the mean loss over the whole dataset."""
        return self.loss_and_grad(theta)[1]

    def _loss_grad_pass(self, theta: Tensor, batches: Iterable[Batch]):
        loss = torch.zeros((), dtype=self.layout.dtype, device=self.layout.device)
        gradient = torch.zeros_like(theta)
        loss_scale, grad_scale, n = 0.0, 0.0, 0
        with self._context():
            for batch in batches:
                g, value = grad_and_value(self._f(batch))(theta)
                loss += batch.n * value.detach()
                gradient += batch.n * g
                loss_scale += batch.n * abs(float(value))
                grad_scale += batch.n * float(g.norm())
                n += batch.n
        self._count(passes=1, grad_evals=1)
        return loss / n, gradient / n, n, loss_scale / n, grad_scale / n

    def hvp(self, theta: Tensor | None, v: Tensor) -> Tensor:
        """The Hessian of the mean loss at ``theta`` times ``v`` (P,), or times each row of a
        block ``v`` (k, P) in one pass (returns (k, P))."""
        theta = self._check(theta)
        self.layout.check_vectors(v, "v")
        strategy = self.hvp_strategy or self._choose_strategy(theta)
        k = v.shape[0] if v.ndim == 2 else 1
        with self._context():
            if strategy in _hvp.CACHED:
                graphs = self._cached_graphs(theta) or self._build_graphs(theta, strategy)
                out = sum(n * g.apply(v) for n, g in graphs)
            else:
                product = (
                    _hvp.forward_over_reverse
                    if strategy == "forward-over-reverse"
                    else _hvp.reverse_over_reverse
                )
                out = sum(b.n * product(self._f(b), theta, v) for b in self.batches)
                self._count(passes=1)
        self._count(hvp=k)
        return out / self.n_examples

    def _cached_graphs(self, theta: Tensor) -> list[tuple[int, Any]] | None:
        if self._graphs is not None and torch.equal(self._graphs[0], theta):
            return self._graphs[1]
        return None

    def _build_graphs(self, theta: Tensor, strategy: str) -> list[tuple[int, Any]]:
        self._graphs = None  # free the previous point's graphs first
        graphs = [(b.n, _hvp.build(strategy, self._f(b), theta)) for b in self.batches]
        self._graphs = (theta.clone(), graphs)
        self._count(passes=1, grad_evals=1)
        return graphs

    def _choose_strategy(self, theta: Tensor) -> str:
        """Pick the fastest exact strategy for this model and data (see ``hvp`` above)."""
        first = self.batches.first()
        with self._context():
            per_batch = _hvp.saved_bytes(self._f(first), theta)
        if per_batch * self.batches.n_batches * 1.25 <= self.batches.memory_budget:
            self.hvp_strategy = "cached-reverse"
            return self.hvp_strategy
        v = torch.randn_like(theta)
        timings = {}
        with self._context():
            for name, product in (
                ("forward-over-reverse", _hvp.forward_over_reverse),
                ("reverse-over-reverse", _hvp.reverse_over_reverse),
            ):
                product(self._f(first), theta, v)  # warm up
                start = time.perf_counter()
                product(self._f(first), theta, v)
                timings[name] = time.perf_counter() - start
        self.hvp_strategy = min(timings, key=timings.get)
        return self.hvp_strategy

    def ggn_vp(self, theta: Tensor | None, v: Tensor) -> Tensor:
        """The generalised Gauss-Newton matrix ``G = sum_b (n_b/N) J_b^T H_b J_b`` times ``v``
        (or a block (k, P)), with ``J_b`` the Jacobian of the outputs and ``H_b`` the Hessian
        of ``loss_fn`` with respect to the outputs. PSD when the loss is convex in the
        outputs; equals the Fisher for cross-entropy."""
        theta = self._check(theta)
        self.layout.check_vectors(v, "v")
        batched = v.ndim == 2
        total = torch.zeros_like(v)
        with self._context():
            for batch in self.batches:

                def out_fn(t: Tensor, batch: Batch = batch) -> Tensor:
                    return self.outputs(t, batch.inputs)

                def loss_of(o: Tensor, batch: Batch = batch) -> Tensor:
                    return self.loss_fn(o, batch.targets)

                outputs, pullback = vjp(out_fn, theta)

                def one(u: Tensor, out_fn=out_fn, loss_of=loss_of, outputs=outputs,
                        pullback=pullback) -> Tensor:
                    jv = jvp(out_fn, (theta,), (u,))[1]
                    hjv = jvp(grad(loss_of), (outputs.detach(),), (jv,))[1]
                    return pullback(hjv)[0]

                total += batch.n * (vmap(one)(v) if batched else one(v))
        self._count(passes=1, ggn_vp=v.shape[0] if batched else 1)
        return total / self.n_examples

    def per_example_grads(self, theta: Tensor | None = None) -> Iterator[Tensor]:
        """Yield the gradients of each example's loss, one (n_b, P) block per batch.

        Each example's loss is ``loss_fn`` on a batch of one, so their mean is :meth:`grad`.
        In train mode BatchNorm has no per-example meaning; use ``mode="eval"``.
        """
        theta = self._check(theta)

        def single(t: Tensor, inputs: Any, target: Tensor) -> Tensor:
            inputs = tree_map(lambda x: x.unsqueeze(0), inputs)
            return self.loss_fn(self.outputs(t, inputs), target.unsqueeze(0))

        per_example = vmap(grad(single), in_dims=(None, 0, 0))
        for batch in self.batches:
            with self._context():
                block = per_example(theta, batch.inputs, batch.targets)
            self._count(passes=1 / self.batches.n_batches)
            yield block

    def evaluate(self, theta: Tensor | None = None) -> Metrics:
        """Loss and accuracy over the whole dataset in one pass."""
        theta = self._check(theta)
        loss, correct, counted = 0.0, 0.0, 0
        with torch.no_grad(), self._context():
            for batch in self.batches:
                outputs = self.outputs(theta, batch.inputs)
                loss += batch.n * float(self.loss_fn(outputs, batch.targets))
                c, m = _correct(outputs, batch.targets)
                correct, counted = correct + c, counted + m
        self._count(passes=1, loss_evals=1)
        loss /= self.n_examples
        self._finite(torch.tensor(loss), "at the given theta")
        return Metrics(loss=loss, accuracy=correct / counted, n_examples=self.n_examples)

    def accuracy(self, theta: Tensor | None = None) -> float:
        """Fraction of correct predictions over the whole dataset (see :class:`Metrics`)."""
        accuracy = self.evaluate(theta).accuracy
        assert accuracy is not None
        return accuracy

    # -- determinism -----------------------------------------------------------------------
    def check_determinism(self) -> None:
        """Evaluate loss and gradient twice at the model's parameters (the second time
        reading the data source anew) and raise :class:`DeterminismError` if they differ by
        more than rounding (100 ulp of the sum of absolute per-batch contributions)."""
        theta = self.theta
        sums: list[float] = []

        def counted(batches: Iterable[Batch]) -> Iterator[Batch]:
            total = 0.0
            for b in batches:
                leaves, _ = tree_flatten((b.inputs, b.targets))
                total += sum(float(t.double().sum()) for t in leaves if isinstance(t, Tensor))
                yield b
            sums.append(total)

        l1, g1, n1, ls, gs = self._loss_grad_pass(theta, counted(iter(self.batches)))
        l2, g2, n2, _, _ = self._loss_grad_pass(theta, counted(self.batches.fresh_pass()))
        rtol = 100 * torch.finfo(self.layout.dtype).eps
        if n1 != n2:
            problem = f"the number of examples changed between two passes ({n1} vs {n2})"
        elif abs(float(l1 - l2)) > rtol * ls + 1e-300 or float((g1 - g2).norm()) > rtol * gs:
            problem = (
                f"loss {float(l1):.10g} vs {float(l2):.10g}, gradient difference "
                f"{float((g1 - g2).norm()):.3g} (norm {float(g1.norm()):.3g})"
            )
        else:
            return
        data_changed = n1 != n2 or not math.isclose(sums[0], sums[1], rel_tol=1e-9, abs_tol=1e-9)
        causes = (
            "the data differ between passes: a shuffling loader with drop_last=True, a sampler "
            "that draws with replacement, or random augmentation in the dataset"
            if data_changed
            else "the model is random: dropout in train mode, BatchNorm in train mode on "
            "batches that change between passes (a shuffling loader), or another random layer"
            if self.mode == "train"
            else "the model is random in eval mode (a layer that samples noise, or a forward "
            "that switches modules to train mode)"
        )
        raise DeterminismError(
            f"two evaluations at the same parameters disagree ({problem}); likely cause: "
            f"{causes}. Make the data and model deterministic (eval mode, no augmentation, "
            "drop_last=False), or pass check=False to accept a random objective."
        )

    def describe(self) -> dict:
        """A JSON-able description: parameters, data, mode and strategy."""
        return {
            "params": self.layout.describe(),
            "n_params": self.layout.numel,
            "data": self.batches.describe(),
            "mode": self.mode,
            "hvp": self.hvp_strategy or self._requested_hvp,
        }
