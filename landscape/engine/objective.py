r"""The empirical risk of a model over a whole dataset, as a function of a flat vector.

:class:`Objective` is what every probe goes through. For parameters ``theta`` (flat) it gives

.. math:: L(\theta) = \frac{1}{T} \sum_b t_b \, \ell_b(\theta), \quad T = \sum_b t_b,

the mean of ``loss_fn`` over all the loss terms of the data, each batch's mean loss ``l_b``
weighted by its number of terms ``t_b`` (its examples unless ``terms`` counts otherwise, e.g. the
tokens that are not padding, see :mod:`landscape.engine.terms`), so that any batching gives the
full-batch value. The model may return a tensor, a
tuple, a dict or a ``ModelOutput``: ``loss_fn`` receives the outputs as returned, inside the
functional call, so every differentiated function still returns a scalar. A mapping batch goes
in as ``model(**batch)`` and ``loss_fn(outputs, batch)``; ``loss_fn="model"`` is the model's
own ``outputs.loss``. Gradient, Hessian-vector products (four exact strategies, see
:mod:`landscape.engine.hvp`), generalised Gauss-Newton-vector products and per-example gradients
follow the same weighting. Under ``torch.distributed`` the data are this rank's shard and every
sum over them is summed over the ranks (:mod:`landscape.engine.distributed`): each rank gets
the value of one process on the union of the shards.

The model is never written to: parameters are substituted with
:func:`torch.func.functional_call`; buffers are copied before a train-mode pass could update
them; each module's train/eval flag is restored after every call. Scaled-dot-product
attention runs on its math kernel and the fused ``nn.MultiheadAttention`` path is switched off
during every call, because the fused kernels support neither forward-mode AD nor double
backward.

Where the parts live: :class:`Objective` is one class assembled from parts, one concept a
module, each a base class of it (:mod:`landscape.engine.parts`). Here are its state, the
functional core every evaluation goes through, and the loss and gradient; the checks of its
inputs are in :mod:`landscape.engine.validation`; the Hessian- and Gauss-Newton-vector
products, with the HVP strategy chosen and the Hessian graphs cached at the last point (and when
they are stale), in :mod:`landscape.engine.products`; loss and accuracy in one pass in
:mod:`landscape.engine.evaluate`; the per-example gradients in
:mod:`landscape.engine.per_example`. What stands apart from the objective lives apart (the HVP
strategies in :mod:`landscape.engine.hvp`, the batches, the evaluation context, the metrics of a
batch, the determinism check).
"""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad_and_value

from landscape.engine import allocator
from landscape.engine import distributed as _dist
from landscape.engine import hvp as _hvp
from landscape.engine.batches import Batch, Batches, Kwargs
from landscape.engine.context import evaluation
from landscape.engine.cost import Cost
from landscape.engine.determinism import check
from landscape.engine.evaluate import _Evaluation
from landscape.engine.losses import model_loss
from landscape.engine.params import ParamFilter, ParamLayout, select
from landscape.engine.per_example import _PerExample
from landscape.engine.products import _Products
from landscape.engine.terms import Terms, terms_of, tokens_of
from landscape.engine.validation import _Validation

__all__ = ["Cost", "Objective"]

MODES = ("eval", "train")


class Objective(_Validation, _Products, _Evaluation, _PerExample):
    """The mean loss of ``model`` over ``data`` as a function of its flat parameters.

    Args:
        model: any ``nn.Module``; never modified. Its device and dtype are used.
        loss_fn: ``loss_fn(outputs, targets)`` returning the *mean* loss of a batch, a scalar
            (e.g. ``nn.CrossEntropyLoss()``); ``loss_fn(outputs, batch)`` for mapping batches;
            or ``"model"`` for the model's own ``outputs.loss`` / ``outputs["loss"]``. The
            outputs are passed as the model returns them (tensor, tuple, dict, ``ModelOutput``).
            A loss with a ``terms`` attribute (:func:`landscape.engine.terms.counted`) brings
            its term count.
        data: ``(inputs, targets)`` tensors, a ``Dataset`` or a ``DataLoader`` yielding pairs or
            mappings (a mapping batch goes in as ``model(**batch)``, its tensors on the model's
            device; its size is the first dimension of its first tensor).
        params: which parameters form ``theta``: ``None`` (all with ``requires_grad``), a
            filter ``f(name, param, module) -> bool`` (e.g.
            :func:`landscape.engine.params.no_bias_norm`) or a list of names. The others stay
            fixed at the model's values.
        mode: ``"eval"`` (default: BatchNorm uses running statistics, dropout off) or
            ``"train"`` (batch statistics; the model's buffers are not updated).
        batch_size: batch size for tensors and datasets (default 4096 and 256).
        cache: keep the data on the device when they fit (``"auto"``), always, or never.
        memory_budget: bytes for cached data and cached Hessian graphs (default: half the
            free memory of a GPU, a quarter of the RAM).
        hvp: ``"auto"`` or one of :data:`landscape.engine.hvp.STRATEGIES`. ``"auto"`` keeps the
            graph of the gradient between products (``"cached-reverse"``) when it fits the
            budget, otherwise times one product of each recomputing strategy and keeps the
            faster.
        check: two forward passes at the model's parameters must agree (outputs and loss)
            (catches shuffling loaders with ``drop_last``, random augmentation, dropout or
            BatchNorm in train mode). Costs two forward passes at construction.
        terms: a batch's number of loss terms from its targets (what ``loss_fn`` receives),
            e.g. :func:`landscape.engine.terms.causal_lm`; default ``loss_fn.terms`` where the
            loss carries one, else the batch's number of examples. Every sum over batches
            weights a batch's mean by it, so the loss is the mean over all the data's terms.
        group: the ``torch.distributed`` group whose ranks hold the other shards of the data:
            None (default) for the engine's setting (:func:`landscape.engine.distributed.
            distributed`, else the default group when ``torch.distributed`` is initialised),
            a ProcessGroup, or False for this process's data alone. Every rank must build the
            objective with the same model parameters (checked) and call the same methods in
            the same order.

    Attributes:
        has_accuracy: whether the outputs and targets of the first batch define an accuracy
            (:func:`landscape.engine.metrics.correct`: logits against classes, one-hot or
            binary labels; False for outputs without logits).
        model, loss_fn, mode, layout, batches, n_examples: as given or derived; read only.
        terms, n_terms: the term count (None: examples) and the data's number of terms (over
            every rank's shard, as ``n_examples``).
        group: the resolved group, or None for one process.
        batch_size: the batch size given (a DataLoader's own), or None for the default.
        tokens: the :class:`~landscape.engine.terms.Tokens` that ``terms`` is, else None (how
            accuracy pairs sequence logits with labels).

    Engine interface: what the engine's own evaluators (:mod:`landscape.engine.pointwise`,
    :mod:`landscape.engine.determinism`) and the surfaces use to run their own passes through
    an objective as its methods do, besides :meth:`outputs` and :meth:`batch_loss`:
    :meth:`context` (the evaluation context, timed), :attr:`accumulator_dtype` (of sums over
    batches), :meth:`~landscape.engine.objective.Objective.check_theta` (a vector checked
    against the layout), :meth:`~landscape.engine.objective.Objective.require_finite` (the one
    message for a NaN), :meth:`add_cost` (work done outside counted into :attr:`cost`) and
    :meth:`rebatched` (the held data in other batches). Probes need none of them.

    Examples:
        >>> obj = Objective(model, nn.CrossEntropyLoss(), (X, y))
        >>> theta = obj.theta
        >>> obj.loss(theta), obj.grad(theta).norm(), obj.hvp(theta, torch.randn_like(theta))
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Any, Any], Tensor] | str,
        data: Any,
        *,
        params: ParamFilter | Iterable[str] | None = None,
        mode: str = "eval",
        batch_size: int | None = None,
        cache: bool | str = "auto",
        memory_budget: int | None = None,
        hvp: str = "auto",
        check: bool = True,
        terms: Terms | None = None,
        group: Any = None,
    ) -> None:
        terms = terms_of(loss_fn) if terms is None else terms
        if terms is not None and not callable(terms):
            raise TypeError(f"terms must be callable or None, got {type(terms).__name__}")
        if isinstance(loss_fn, str):
            if loss_fn != "model":
                raise ValueError(f"loss_fn must be callable or 'model', got {loss_fn!r}")
            loss_fn = model_loss
        if not callable(loss_fn):
            raise TypeError(
                f"expected loss_fn to be callable or 'model', got {type(loss_fn).__name__}"
            )
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if hvp != "auto" and hvp not in _hvp.STRATEGIES:
            raise ValueError(f"hvp must be 'auto' or one of {_hvp.STRATEGIES}, got {hvp!r}")
        _dist.refuse_sharded(model)
        self.group = _dist.resolve(group)
        self.model, self.loss_fn, self.mode = model, loss_fn, mode
        self._selected = select(model, params)
        self.layout = ParamLayout.of(self._selected)
        self._fixed = {n: p for n, p in model.named_parameters() if n not in self._selected}
        self.batches = Batches(
            data,
            device=self.layout.device,
            dtype=self.layout.dtype,
            batch_size=batch_size,
            cache=cache,
            memory_budget=memory_budget,
            terms=terms,
            group=self.group,
        )
        _dist.check_parameters(self.theta, group=self.group)
        self.terms, self.tokens = terms, tokens_of(terms)
        self.n_examples, self.n_terms = self.batches.n_examples, self.batches.n_terms
        self._requested_hvp = hvp
        # the batch size asked for (a DataLoader's own), None for the default of the data's kind
        self.batch_size: int | None = (
            batch_size if batch_size is not None else getattr(data, "batch_size", None)
        )
        self.hvp_strategy: str | None = None if hvp == "auto" else hvp
        self._graphs: tuple[Tensor, tuple[int, ...], list] | None = None  # point, key, graphs
        self._cost = Cost().as_dict()
        if self.layout.device.type == "cpu":
            allocator.prime()  # the same activations at every evaluation: keep their pages
        self._validate(self.batches.first())
        if check:
            self.check_determinism()

    # -- the functional core -------------------------------------------------------------
    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """The context every evaluation runs in (engine interface).

        The objective's train/eval mode on every module (restored after), the math attention
        kernel, the time spent counted into :attr:`cost`. Wrap calls of :meth:`outputs` and
        :meth:`batch_loss` in it.

        Examples:
            >>> with torch.no_grad(), obj.context():                   # doctest: +SKIP
            ...     out = obj.outputs(theta, batch.inputs)
        """
        start = time.perf_counter()
        try:
            with evaluation(self.model, self.mode == "train"):
                yield
        finally:
            self._cost["seconds"] += time.perf_counter() - start

    _context = context  # the former name, which tests still use

    def _tensors(
        self, theta: Tensor, buffers: Mapping[str, Tensor] | None = None
    ) -> dict[str, Tensor]:
        tensors = self.layout.unflatten(theta)
        tensors.update({n: p.detach() for n, p in self._fixed.items()})
        if self.mode == "train":  # copies made inside the transform, so updates stay local
            tensors.update({n: b.clone() for n, b in self.model.named_buffers()})
        if buffers is not None:
            unknown = sorted(set(buffers) - {n for n, _ in self.model.named_buffers()})
            if unknown:
                raise ValueError(
                    f"buffers: expected names of the model's buffers, got "
                    f"{', '.join(map(repr, unknown[:5]))}"
                )
            tensors.update(
                {n: (b.clone() if self.mode == "train" else b) for n, b in buffers.items()}
            )
        return tensors

    def outputs(
        self, theta: Tensor, inputs: Any, buffers: Mapping[str, Tensor] | None = None
    ) -> Any:
        """The model's outputs at ``theta`` (call inside the objective's context).

        As the model returns them (a tensor, tuple, dict or ``ModelOutput``); a mapping batch
        (:class:`~landscape.engine.batches.Kwargs`) goes in as ``model(**inputs)``. With the
        model's buffers or, where given, ``buffers`` (e.g. recalibrated BatchNorm statistics).
        """
        tensors = self._tensors(theta, buffers)
        if isinstance(inputs, Kwargs):
            return functional_call(self.model, tensors, (), dict(inputs))
        return functional_call(self.model, tensors, (inputs,))

    def batch_loss(self, theta: Tensor, batch: Batch) -> Tensor:
        """The mean loss of one batch at ``theta`` (call inside the objective's context)."""
        return self.loss_fn(self.outputs(theta, batch.inputs), batch.targets)

    def _f(self, batch: Batch) -> Callable[[Tensor], Tensor]:
        return lambda theta: self.batch_loss(theta, batch)

    @property
    def accumulator_dtype(self) -> torch.dtype:
        """The dtype of sums over batches (engine interface).

        The parameters' dtype, at least float32 (float16 would overflow).
        """
        return torch.promote_types(self.layout.dtype, torch.float32)

    def add_cost(self, **kw: float) -> None:
        """Count work done outside the objective's own methods into :attr:`cost` (engine interface).

        By :class:`Cost` field, e.g. ``add_cost(passes=1, loss_evals=k)``.
        """
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
        return Cost.of(self._cost)

    def loss(self, theta: Tensor | None = None) -> Tensor:
        """The mean loss over the whole dataset at ``theta`` (default: the model's)."""
        theta = self.check_theta(theta)
        total = torch.zeros((), dtype=self.accumulator_dtype, device=self.layout.device)
        with torch.no_grad(), self.context():
            for batch in self.batches:
                total += batch.weight * self.batch_loss(theta, batch)
        self.add_cost(passes=1, loss_evals=1)
        (total,) = _dist.all_reduce(total, group=self.group)
        total = (total / self.n_terms).to(self.layout.dtype)
        self.require_finite(total, "at the given theta")
        return total

    def loss_and_grad(self, theta: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Loss and gradient over the whole dataset in one pass."""
        theta = self.check_theta(theta)
        cached = self._cached_graphs(theta)
        if cached is not None and all(g.loss is not None for _, g in cached):
            acc = self.accumulator_dtype
            zero = torch.zeros((), dtype=acc, device=theta.device)  # a shard may hold none
            loss = sum((n * g.loss.to(acc) for n, g in cached), zero)
            gradient = sum((n * g.grad.to(acc) for n, g in cached), zero.expand(theta.shape))
            loss, gradient = _dist.all_reduce(loss, gradient, group=self.group)
            loss, gradient = loss / self.n_terms, gradient / self.n_terms
            loss, gradient = loss.to(self.layout.dtype), gradient.to(self.layout.dtype)
        else:
            loss, gradient, _ = self._loss_grad_pass(theta, iter(self.batches))
        self.require_finite(loss, "at the given theta")
        self.require_finite(gradient, "at the given theta", "the gradient")
        return loss, gradient

    def grad(self, theta: Tensor | None = None) -> Tensor:
        """The gradient of the mean loss over the whole dataset."""
        return self.loss_and_grad(theta)[1]

    def _loss_grad_pass(self, theta: Tensor, batches: Iterable[Batch], scales: bool = False):
        """Loss and gradient over one pass; with ``scales`` also what rounding is relative to.

        The scales are the term-weighted means of |loss_b| and ||grad_b||. Summed over the ranks.
        """
        acc = self.accumulator_dtype
        loss = torch.zeros((), dtype=acc, device=self.layout.device)
        gradient = torch.zeros(theta.shape, dtype=acc, device=theta.device)
        loss_scale, grad_scale, n = 0.0, 0.0, 0
        with self.context():
            for batch in batches:
                g, value = grad_and_value(self._f(batch))(theta)
                loss += batch.weight * value.detach()
                gradient += batch.weight * g
                n += batch.weight
                if scales:
                    loss_scale += batch.weight * abs(float(value))
                    grad_scale += batch.weight * float(g.norm())
        self.add_cost(passes=1, grad_evals=1)
        if self.group is not None:
            extra = torch.tensor([n, loss_scale, grad_scale], dtype=acc, device=loss.device)
            loss, gradient, extra = _dist.all_reduce(loss, gradient, extra, group=self.group)
            n, loss_scale, grad_scale = int(extra[0]), float(extra[1]), float(extra[2])
        loss, gradient = (loss / n).to(self.layout.dtype), (gradient / n).to(self.layout.dtype)
        return loss, gradient, (n, loss_scale / n, grad_scale / n)

    # -- determinism -----------------------------------------------------------------------
    def rebatched(self, batch_size: int) -> Objective:
        """The same objective in batches of up to ``batch_size`` (engine interface).

        Over the examples it holds on the device (a mean loss over the same examples; only its
        rounding differs), with its own cost counter; built from the cached batches without
        another validation. See :func:`landscape.engine.pointwise.merged`.

        Args:
            batch_size: examples a batch.

        Returns:
            A new :class:`Objective` sharing the model.
        """
        held = list(self.batches)
        new = copy.copy(self)
        new.batches = Batches(
            (torch.cat([b.inputs for b in held]), torch.cat([b.targets for b in held])),
            device=self.layout.device,
            dtype=self.layout.dtype,
            batch_size=batch_size,
            cache=True,
            terms=self.terms,
        )  # no collective: ranks may rebatch or not; the totals are this objective's
        new.batches.group, new.batch_size = self.group, batch_size
        new.batches.n_examples, new.batches.n_terms = self.n_examples, self.n_terms
        new._cost, new._graphs = Cost().as_dict(), None
        return new

    def check_determinism(self) -> None:
        """Raise :class:`DeterminismError` unless two evaluations agree to rounding.

        Evaluates loss and gradient twice at the model's parameters (the second time reading the
        data source anew) and compares them. See :func:`landscape.engine.determinism.check`.
        """
        check(self)

    def describe(self) -> dict:
        """A JSON-able description: parameters, data, mode and strategy."""
        return {
            "params": self.layout.describe(),
            "n_params": self.layout.numel,
            "data": self.batches.describe(),
            "mode": self.mode,
            "hvp": self.hvp_strategy or self._requested_hvp,
        }
