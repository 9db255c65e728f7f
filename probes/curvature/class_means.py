r"""The top curvature eigenspace against the class means of the gradients (Papyan 2019, 2020).

For a classifier trained with cross-entropy, the Gauss-Newton matrix (for cross-entropy, also
the Fisher) is

.. math:: G = \frac{1}{N} \sum_i J_i^\top \big(\mathrm{diag}(p_i) - p_i p_i^\top\big) J_i
   = \frac{1}{N} \sum_i \sum_{c'} p_{i,c'}\, g_{i,c'} g_{i,c'}^\top,
   \qquad g_{i,c'} = J_i^\top (e_{c'} - p_i),

with ``J_i`` the Jacobian of the logits of example ``i`` and ``p_i`` its softmax: a second
moment of gradients of the loss, one for each example and each label ``c'``. Papyan (2019,
"Measurements of three-level hierarchical structure in the outliers in the spectrum of deepnet
Hessians", sections 2-3; 2020, "Traces of class/cross-class structure pervade deep learning
spectra") shows that these gradients cluster by the class of the example: their means over
the examples of a class dominate the second moment, and the ``C`` outliers of the spectrum are
attributable to those ``C`` class means (his first level; the ``C(C-1)`` cross-class means
``(c, c')`` give a second, smaller group of outliers). Where the model fits its data
(``p_{i,y_i}`` near 1), the gradient of an example's own loss ``J_i^T (p_i - e_{y_i})``
carries that class structure, and its class mean is what this module uses:

.. math:: \delta_c = \frac{1}{N_c} \sum_{i:\, y_i = c} \nabla_\theta \ell(x_i, y_i)
   = \frac{1}{N_c} \sum_{i:\, y_i = c} J_i^\top (p_i - e_c)
   \quad \text{(cross-entropy)}.

(For other losses the same formula: the class means of the per-example gradients.)
Papyan's own class means average the label gradients ``g_{i,c'}`` with weights from the
two-way (class, label) structure; we take the true-label gradients, which need no choice of
weights and which the test of this probe (``tests/test_class_means.py``) finds spanning the
top-``C`` Gauss-Newton eigenspace to within a few percent on a trained MLP.

:func:`class_mean_overlap` measures how much of the top-``k`` eigenspace ``V`` (``k = C`` by
default, Lanczos at ``tol = 1e-5``) lies in ``span{delta_c}``:

- ``overlap = ||Q^T V||_F^2 / k`` (``Q`` an orthonormal basis of the span): 1 when ``V`` lies
  in it, ``k / P`` in expectation for a random subspace; the mean of the squared cosines of the
  principal angles;
- the principal angles themselves (``scipy.linalg.subspace_angles``);
- each eigenvector's share ``||Q^T v_j||^2`` in the span.

Examples:
    >>> r = class_mean_overlap(model, nn.CrossEntropyLoss(), (X, y))          # doctest: +SKIP
    >>> r.overlap, np.degrees(r.angles).max(), r.values, r.cost.ggn_vp
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from landscape.engine import distributed as _dist
from landscape.engine.checks import _check_int
from landscape.engine.cost import Cost
from landscape.engine.objective import Objective
from landscape.engine.params import ParamFilter
from probes.curvature.hessian import eigenvalues
from probes.curvature.results import ClassMeanOverlap

__all__ = ["ClassMeanOverlap", "class_mean_gradients", "class_mean_overlap", "subspace_overlap"]


def _classes(fn: str, targets: Tensor) -> Tensor:
    if targets.is_floating_point() and targets.ndim == 2:  # one-hot (MSE on one-hot targets)
        return targets.argmax(dim=1)
    if targets.is_floating_point() or targets.ndim != 1:
        raise ValueError(
            f"{fn}: expected class-index targets (N,) or one-hot targets (N, C), got "
            f"{targets.dtype} of shape {tuple(targets.shape)}"
        )
    return targets


def class_mean_gradients(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    chunk_size: int = 256,
    check: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Cost]:
    """The mean over each class of the per-example loss gradients (float64).

    ``delta_c = mean_{i: y_i = c} grad_theta loss(x_i, y_i)``; for cross-entropy
    ``J_i^T (p_i - e_c)`` (see the module docstring).

    Args:
        model: the classifier (never modified).
        loss_fn: the mean loss, e.g. ``nn.CrossEntropyLoss()``.
        data: ``(inputs, targets)`` with class-index (or one-hot) targets, a Dataset or a
            DataLoader.
        params: the parameters the gradients are over (as for :class:`landscape.Objective`).
        mode: ``"eval"`` (per-example gradients have no meaning with batch statistics).
        batch_size: passed to :class:`landscape.Objective`.
        chunk_size: examples a vectorised per-example-gradient call.
        check: passed to :class:`landscape.Objective`.

    Returns:
        ``(means, classes, counts, cost)``: means ``(C, P)`` (one row per class present, in the
        order of ``classes``, ascending labels), the labels, the examples per class, the cost.

    Raises:
        ValueError: targets that are not classes.
    """
    fn = "class_mean_gradients"
    start = time.perf_counter()
    obj = Objective(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    labels = torch.cat([_classes(fn, b.targets).reshape(-1).cpu() for b in obj.batches])
    # over torch.distributed ranks: the classes of every shard, the sums summed
    everywhere = _dist.gather_rows(labels.to(obj.layout.device), group=obj.group).cpu()
    classes = torch.unique(everywhere)
    index = torch.searchsorted(classes, labels)
    sums = torch.zeros(len(classes), obj.layout.numel, dtype=torch.float64)
    seen = 0
    for block in obj.per_example_grads(obj.theta, chunk_size=chunk_size):
        rows = index[seen : seen + len(block)]
        sums.index_add_(0, rows, block.detach().to("cpu", torch.float64))
        seen += len(block)
    counts = torch.bincount(index, minlength=len(classes))
    if obj.group is not None:
        dev = obj.layout.device
        sums, counts = _dist.all_reduce(sums.to(dev), counts.to(dev), group=obj.group)
        sums, counts = sums.cpu(), counts.cpu()
    means = (sums / counts[:, None].double()).numpy()
    cost = Cost.of({**obj.cost.as_dict(), "seconds": time.perf_counter() - start})
    return means, classes.numpy(), counts.numpy(), cost


def subspace_overlap(
    vectors: np.ndarray, span: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, int]:
    """How much of the subspace of ``vectors`` lies in that of ``span`` (rows, float64).

    Args:
        vectors: ``(k, P)`` orthonormal rows (e.g. eigenvectors).
        span: ``(m, P)`` rows spanning the other subspace (need not be orthonormal).

    Returns:
        ``(overlap, angles, shares, rank)``: ``||Q^T V||_F^2 / k``, the principal angles
        (radians, ascending), each row's ``||Q^T v_j||^2``, and the rank of ``span``.
    """
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float64))
    s = np.atleast_2d(np.asarray(span, dtype=np.float64))
    u, sv, _ = np.linalg.svd(s.T, full_matrices=False)
    tol = max(s.shape) * np.finfo(np.float64).eps * (sv[0] if len(sv) else 0.0)
    rank = int(np.sum(sv > tol))
    q = u[:, :rank]
    proj = v @ q  # (k, rank)
    shares = np.sum(proj**2, axis=1)
    angles = np.sort(scipy.linalg.subspace_angles(v.T, q)) if rank else np.zeros(0)
    return float(np.sum(shares) / len(v)), angles, shares, rank


def class_mean_overlap(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    k: int | None = None,
    tol: float = 1e-5,
    curvature: str = "ggn",
    params: ParamFilter | Iterable[str] | None = None,
    mode: str = "eval",
    batch_size: int | None = None,
    seed: int = 0,
    max_products: int | None = None,
    check: bool = True,
) -> ClassMeanOverlap:
    """The overlap of the top-k curvature eigenspace with the span of the class-mean gradients.

    Papyan's claim (module docstring): for a classifier trained with cross-entropy, the top-C
    eigenspace of the Gauss-Newton matrix (and of the Hessian) lies close to the span of the C
    class means of the gradients, so the overlap is close to 1.

    Args:
        model: the classifier (never modified).
        loss_fn: the mean loss, e.g. ``nn.CrossEntropyLoss()``.
        data: ``(inputs, targets)`` with class-index targets (or one-hot), a Dataset or a
            DataLoader.
        k: the eigenvectors compared (default C, the number of classes in ``data``).
        tol: relative accuracy of the eigenvalues (Lanczos; at most 1e-5 for eigenvectors
            good to about ``sqrt(tol)`` relative to the gaps).
        curvature: ``"ggn"`` (default), ``"hessian"`` or ``"fisher"``.
        params: the parameters (as for :class:`landscape.Objective`).
        mode: ``"eval"`` (default) or ``"train"``.
        batch_size: passed to :class:`landscape.Objective`.
        seed: seed of Lanczos' start vector.
        max_products: budget of curvature products (None: until converged).
        check: passed to :class:`landscape.Objective`.

    Returns:
        :class:`ClassMeanOverlap`.

    Raises:
        ValueError: targets that are not classes, a bad ``k`` or ``tol``, what
            :func:`probes.curvature.hessian.eigenvalues` refuses.
    """
    fn = "class_mean_overlap"
    start = time.perf_counter()
    if k is not None:
        k = _check_int(fn, "k", k, 1)
    means, classes, counts, mean_cost = class_mean_gradients(
        model, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    k = len(classes) if k is None else k
    top = eigenvalues(
        model,
        loss_fn,
        data,
        k=k,
        which="largest",
        tol=tol,
        curvature=curvature,
        params=params,
        mode=mode,
        vectors=True,
        seed=seed,
        max_products=max_products,
        batch_size=batch_size,
        check=check,
    )
    vectors = np.asarray(top.vectors)[::-1]
    overlap, angles, shares, rank = subspace_overlap(vectors, means)
    c = top.cost.as_dict()
    for key, value in mean_cost.as_dict().items():
        if key != "seconds":
            c[key] += value
    c["seconds"] = time.perf_counter() - start
    return ClassMeanOverlap(
        overlap=overlap,
        angles=angles,
        shares=shares,
        values=np.asarray(top.values)[::-1].copy(),
        converged=np.asarray(top.converged)[::-1].copy(),
        classes=classes,
        counts=counts,
        mean_norms=np.linalg.norm(means, axis=1),
        rank=rank,
        chance=k / vectors.shape[1],
        k=k,
        tol=float(tol),
        curvature=curvature,
        params=top.params,
        mode=mode,
        cost=Cost.of(c),
    )
