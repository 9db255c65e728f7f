"""The curvature matrix a Hessian probe works on, as products with vectors.

:func:`operator` wraps a model, loss and data into a :class:`CurvatureOperator`: the Hessian
of the mean loss (default), or the generalised Gauss-Newton matrix (``"ggn"``, PSD, equal to
the Fisher for cross-entropy), at the model's parameters, restricted to a subset of them if
asked. Products go through :class:`landscape.Objective`, so they are exact, weighted by batch
size over the whole dataset, computed on the model's device, and never write into the model. The
operator counts its products and passes, so every probe can report its cost.

**Precision.** Products are computed in :func:`product_dtype` of the model's dtype: float32 and
float64 models in their own dtype; float16 and bfloat16 models on a float32 copy (the same
weights, exactly representable; floating buffers cast too; the model itself untouched), and
with the inputs as given, cast to float32 (not rounded to the model's dtype). A
Hessian-vector product computed in bfloat16 is off by up to ``2.5 eps_bf16 ||H||`` (2% of
``||H||``) on small test networks and by no bound that holds for every network, so no certified
statement could be made from it; in float32 the measured error is below ``1 eps_fp32 ||H||``
(``1e-7``). ``operator(..., dtype=torch.float64)`` gives float64 products on a float64 copy
(what :func:`probes.curvature.hessian.eigenvalues` checks its results with).

Examples:
    >>> op = operator(model, nn.CrossEntropyLoss(), (X, y))
    >>> hv = op.matvec(torch.randn(op.size))          # (P,)
    >>> HV = op.matvec(torch.randn(4, op.size))       # (4, P) in one pass
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.sparse.linalg import LinearOperator
from torch import Tensor, nn
from torch.func import jvp, vjp, vmap

from landscape.engine import distributed as _dist
from landscape.engine.context import evaluation
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter, ParamLayout, select

__all__ = ["CURVATURES", "CurvatureOperator", "check_finite", "operator", "product_dtype"]

CURVATURES = ("hessian", "ggn", "fisher")
"""Curvature matrices: the Hessian; the generalised Gauss-Newton J^T H_out J; the Fisher
information of the model's predictive distribution (softmax classifiers with cross-entropy)."""


@dataclass
class CurvatureOperator:
    """A symmetric P x P curvature matrix at ``theta``, available as products.

    Attributes:
        objective: the :class:`~landscape.engine.objective.Objective` (data, model, parameters;
            the model is a float32 or float64 copy when the products are computed in another
            dtype than the model's).
        curvature: one of :data:`CURVATURES`. theta: the point (the model's parameters, in
            the products' dtype).
        n_products: matrix-vector products so far (a block of k counts k).
        seconds: time spent in products.
        model_dtype: the dtype of the model's parameters (None: that of ``theta``).
    """

    objective: Objective
    curvature: str
    theta: Tensor
    model_dtype: torch.dtype | None = None
    n_products: int = 0
    seconds: float = 0.0
    _product: Callable[[Tensor, Tensor], Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._product = {
            "hessian": self.objective.hvp,
            "ggn": self.objective.ggn_vp,
            "fisher": self._fisher_vp,
        }[self.curvature]

    def _fisher_vp(self, theta: Tensor, v: Tensor) -> Tensor:
        """The Fisher of the softmax predictive distribution times ``v``.

        F v = (1/N) sum_n sum_c p_nc (g_nc . v) g_nc with g_nc = grad log p_c(x_n), as one jvp and
        one vjp of the log-probabilities per batch (an expectation over the model's classes, not the
        labels: for cross-entropy it equals the GGN, computed another way).
        """
        obj = self.objective
        batched = v.ndim == 2
        total = torch.zeros(
            v.shape, dtype=torch.promote_types(v.dtype, torch.float32), device=v.device
        )
        with evaluation(obj.model, obj.mode == "train"):
            for batch in obj.batches:

                def log_probs(t: Tensor, batch: Any = batch) -> Tensor:
                    return torch.log_softmax(obj.outputs(t, batch.inputs), dim=-1)

                # torch annotates vjp as a 2- or 3-tuple whatever has_aux says
                logp, pullback = vjp(log_probs, theta)  # type: ignore[misc]
                p = logp.detach().exp()

                def one(
                    u: Tensor, log_probs: Any = log_probs, p: Tensor = p, pullback: Any = pullback
                ) -> Tensor:
                    d = jvp(log_probs, (theta,), (u,))[1]
                    return pullback(p * d)[0]

                total += vmap(one)(v) if batched else one(v)
        obj.add_cost(passes=1)  # the products are counted by matvec
        (total,) = _dist.all_reduce(total, group=obj.group)  # every rank's shard
        return (total / obj.n_terms).to(v.dtype)

    @property
    def size(self) -> int:
        """P, the number of parameters."""
        return int(self.theta.numel())

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the parameters (and of the products)."""
        return self.theta.dtype

    @property
    def device(self) -> torch.device:
        """The device of the parameters (and of the products)."""
        return self.theta.device

    @property
    def passes(self) -> float:
        """Passes over the data so far (from the objective's cost)."""
        return self.objective.cost.passes

    def matvec(self, v: Tensor) -> Tensor:
        """The matrix times ``v`` (P,), or times each row of ``v`` (k, P)."""
        start = time.perf_counter()
        out = self._product(self.theta, v.to(self.device, self.dtype))
        self.n_products += v.shape[0] if v.ndim == 2 else 1
        self.seconds += time.perf_counter() - start
        return out

    def scipy(self) -> LinearOperator:
        """A float64 SciPy ``LinearOperator`` (for ``eigsh``); vectors cross to the host."""

        def mv(x: np.ndarray) -> np.ndarray:
            v = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64).reshape(-1))
            return self.matvec(v).detach().to("cpu", torch.float64).numpy()

        def mm(x: np.ndarray) -> np.ndarray:
            v = torch.from_numpy(np.ascontiguousarray(np.asarray(x, dtype=np.float64).T))
            return self.matvec(v).detach().to("cpu", torch.float64).numpy().T

        return LinearOperator(
            (self.size, self.size), matvec=mv, rmatvec=mv, matmat=mm, dtype=np.float64
        )

    def cost(self) -> dict[str, float]:
        """``{"n_products", "passes", "seconds"}`` so far."""
        return {"n_products": self.n_products, "passes": self.passes, "seconds": self.seconds}


def operator(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    hvp: str = "auto",
    check: bool = True,
    dtype: torch.dtype | None = None,
) -> CurvatureOperator:
    """The curvature of the mean loss of ``model`` over ``data`` at its parameters.

    Args:
        model: as for :class:`landscape.Objective`.
        loss_fn: as for :class:`landscape.Objective` (the loss is the mean over the whole
            data, batches weighted by size).
        data: as for :class:`landscape.Objective` (tensors, a Dataset or a DataLoader).
        curvature: ``"hessian"``, ``"ggn"`` or ``"fisher"`` (softmax classifiers trained with
            ``nn.CrossEntropyLoss``; the expectation over the model's classes, not the labels).
        params: the parameters the matrix is over (a filter, names, or None for all).
        mode: passed to :class:`landscape.Objective`.
        batch_size: passed to :class:`landscape.Objective`.
        hvp: passed to :class:`landscape.Objective`.
        check: passed to :class:`landscape.Objective`.
        dtype: the dtype products are computed in (None: :func:`product_dtype` of the model's,
            float32 for float16 and bfloat16 models); another than the model's means a copy of
            the model in it.

    Raises:
        ValueError: an unknown curvature (the message lists them), a dtype that is not float32
            or float64, or what the objective refuses (a loss that is not a scalar, empty
            data, ...).
    """
    if curvature not in CURVATURES:
        raise ValueError(
            f"operator: curvature must be one of {', '.join(CURVATURES)}, got {curvature!r}"
        )
    if curvature == "fisher" and not (
        isinstance(loss_fn, nn.CrossEntropyLoss)
        and loss_fn.reduction == "mean"
        and loss_fn.label_smoothing == 0
        and loss_fn.weight is None
    ):
        raise ValueError(
            "operator: curvature='fisher' is the Fisher of a softmax classifier: "
            "it needs loss_fn=nn.CrossEntropyLoss() (mean, no weights or label "
            f"smoothing), got {loss_fn!r}; use curvature='ggn' for other losses"
        )
    if dtype is not None and dtype not in (torch.float32, torch.float64):
        raise ValueError(f"operator: dtype must be torch.float32 or torch.float64, got {dtype!r}")
    names = list(select(model, params))  # by name: the same in a copy, a filter called once
    model_dtype = ParamLayout.of(select(model, names)).dtype
    target = product_dtype(model_dtype) if dtype is None else dtype
    if target != model_dtype:
        model = copy.deepcopy(model).to(target)
    obj = Objective(
        model, loss_fn, data, params=names, mode=mode, batch_size=batch_size, hvp=hvp, check=check
    )
    return CurvatureOperator(obj, curvature, obj.theta, model_dtype=model_dtype)


def product_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype curvature products of a model in ``dtype`` are computed in: at least float32.

    float16 and bfloat16 models get float32 products (see the module docstring).
    """
    return torch.promote_types(dtype, torch.float32)


def check_finite(products: Tensor, where: str) -> None:
    """Raise ``FloatingPointError`` if curvature products hold NaN or inf."""
    if not bool(torch.isfinite(products).all()):
        raise FloatingPointError(
            f"{where}: the curvature products are not finite (NaN or inf); "
            "check the loss and the parameters"
        )
