"""Probes recorded along training, as callbacks of :func:`landscape.train.fit`.

:func:`top_eigenvalues` measures the top Hessian (or GGN) eigenvalues every ``every`` steps,
warm-starting Lanczos from the eigenvectors of the previous call: between nearby points of a
trajectory the top eigenvectors move little, so each call needs few products. It is what edge
of stability studies record (Cohen et al. 2021: lambda_max rises to about 2/lr under
full-batch GD and hovers there). :func:`max_margin_alignment` records how close a bias-free
linear classifier is to the l2, l1 and linf max-margin directions of its data (Soudry et al.
2018: GD's direction error falls like 1/log t; Gunasekar et al. 2018: steepest descent in a
norm goes to that norm's max-margin direction, sign descent to the linf one).
:func:`param_norms` records the parameter norm and the distance from the first measured point
(grokking: with weight decay the norm falls as test accuracy rises, Nanda et al. 2023).
:func:`preconditioned_sharpness` records ``lambda_max(P^-1 H)`` of an Adam run, ``P`` from the
optimizer's second moments, against its threshold ``(2 + 2 beta1) / ((1 - beta1) eta)`` (Cohen
et al. 2022: it rises to that threshold, 38/eta for beta1 = 0.9, and hovers there).

Examples:
    >>> cb = top_eigenvalues((X_sub, y_sub), every=20, k=1)                # doctest: +SKIP
    >>> result = fit(model, "mse", split, TrainConfig("gd", lr=0.02, max_steps=2000),
    ...              store="eos.h5", run="gd", callbacks=[cb])
    >>> result.series["lambda_max"]["value"]                               # one per 20 steps
    >>> cb = max_margin_alignment((X, y), every=10)       # series "max_margin": cosine_l2, ...
    >>> cb = param_norms(every=100)                       # series "param_norm": value, ...
    >>> cb = preconditioned_sharpness((X, y), every=20)   # Adam: value, threshold, ratio, ...
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from landscape.engine.params import ParamFilter
from landscape.train.recording import Callback, TrainState, callback
from probes.curvature.hessian import eigenvalues
from probes.curvature.preconditioned import preconditioned_sharpness as _preconditioned
from probes.implicit_bias.ground_truth import MARGIN_NORMS, max_margin
from probes.implicit_bias.recovery import margin_alignment

__all__ = ["max_margin_alignment", "param_norms", "preconditioned_sharpness", "top_eigenvalues"]


def top_eigenvalues(
    data: Any,
    every: int,
    *,
    k: int = 1,
    name: str = "lambda_max",
    tol: float = 1e-6,
    curvature: str = "hessian",
    params: ParamFilter | Iterable[str] | None = None,
    loss_fn: Any = None,
) -> Callback:
    """A callback recording the top ``k`` eigenvalues every ``every`` steps, warm-started.

    Args:
        data: the data the curvature is measured on (tensors, a Dataset or a DataLoader), e.g.
            the training set or a fixed subset of it.
        every: steps between measurements (also at step 0 and the last step).
        k: how many of the largest eigenvalues.
        name: the series' name (``probes/<name>`` in the store).
        tol: relative accuracy of each eigenvalue (see
            :func:`probes.curvature.hessian.eigenvalues`).
        curvature: ``"hessian"``, ``"ggn"`` or ``"fisher"``.
        params: the parameters the matrix is over.
        loss_fn: the loss (default: the run's).

    Returns:
        A :class:`~landscape.train.recording.Callback`; each call records ``value`` (the largest),
        ``values`` (k, descending), ``residual`` (the largest relative residual
        ``||H v - lambda v|| / |lambda|``), ``error`` (the largest relative error bound) and
        ``n_hvp`` (curvature-vector products spent by the call: its ``cost.hvp``, or
        ``cost.ggn_vp`` for the GGN and the Fisher).
    """
    previous: dict[str, Any] = {"vectors": None}

    def measure(state: TrainState) -> dict[str, Any]:
        v0 = previous["vectors"]
        result = eigenvalues(
            state.model,
            loss_fn or state.loss_fn,
            data,
            k=k,
            which="largest",
            tol=tol,
            curvature=curvature,
            params=params,
            vectors=True,
            v0=v0,
            check=False,
        )
        previous["vectors"] = torch.from_numpy(np.asarray(result.vectors))
        values = np.asarray(result.values)[::-1].copy()
        scale = np.maximum(np.abs(values), np.finfo(np.float64).tiny)
        residual = float(np.max(np.asarray(result.residuals)[::-1] / scale))
        error = float(np.max(np.asarray(result.errors)[::-1] / scale))
        return {
            "value": float(values[0]),
            "values": values,
            "residual": residual,
            "error": error,
            "n_hvp": int(result.cost.hvp + result.cost.ggn_vp),
        }

    return callback(name, every, measure)


def max_margin_alignment(data: Any, every: int, *, name: str = "max_margin") -> Callback:
    """A callback recording a linear classifier against the max-margin directions of ``data``.

    The classifier is bias-free, the directions are the l2, l1 and linf ones, recorded every
    ``every`` steps.

    The three max-margin classifiers (:func:`probes.implicit_bias.ground_truth.max_margin`) are
    solved once, when the callback is made; each call is then
    :func:`probes.implicit_bias.recovery.margin_alignment` of the run's model with them.

    Args:
        data: an ``(x, y)`` pair of tensors or arrays, binary labels ({0, 1} or {-1, +1}),
            linearly separable through the origin (else ValueError, here).
        every: steps between measurements (also at step 0 and the last step).
        name: the series' name (``probes/<name>`` in the store).

    Returns:
        A :class:`~landscape.train.recording.Callback`; each call records ``cosine_<p>``,
        ``direction_error_<p>``, ``margin_<p>`` (``min_i y_i w.x_i / ||w||_p``) and
        ``max_margin_<p>`` for p in l2, l1 and linf, and ``weight_norm`` (``||w||_2``).

    Examples:
        >>> cb = max_margin_alignment((X, y), every=10)
        >>> fit(model, "logistic", split, TrainConfig("gd", lr=1.0, max_steps=10000),
        ...     callbacks=[cb]).series["max_margin"]["direction_error_l2"]
    """
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(
            f"max_margin_alignment: data must be an (x, y) pair, got {type(data).__name__}"
        )
    x, y = data
    references = {norm: max_margin(x, y, norm=norm) for norm in MARGIN_NORMS}

    def measure(state: TrainState) -> dict[str, Any]:
        return margin_alignment(state.model, None, (x, y), references=references).row()

    return callback(name, every, measure)


def param_norms(every: int, *, name: str = "param_norm") -> Callback:
    """A callback recording the norm of the trained parameters every ``every`` steps.

    Args:
        every: steps between measurements (also at step 0 and the last step).
        name: the series' name (``probes/<name>`` in the store).

    Returns:
        A :class:`~landscape.train.recording.Callback`; each call records ``value`` (``||theta||_2``
        over every trained parameter), ``weights`` (the l2 norm of the matrices and embeddings
        only, the parameters with two or more dimensions: no biases, no LayerNorm gains) and
        ``dist_init`` (``||theta - theta_first||_2``, from the callback's first call, step 0
        of a fresh run).

    Examples:
        >>> cb = param_norms(every=100)
        >>> fit(model, "cross_entropy", split, TrainConfig("adamw", lr=1e-3, weight_decay=1.0,
        ...     max_steps=5000), callbacks=[cb]).series["param_norm"]["value"]
    """
    first: dict[str, Any] = {"theta": None}

    def measure(state: TrainState) -> dict[str, Any]:
        theta = state.theta.detach().double()
        if first["theta"] is None:
            first["theta"] = theta.clone()
        matrices = [
            p.detach().double().reshape(-1)
            for p in state.model.parameters()
            if p.requires_grad and p.dim() >= 2
        ]
        weights = torch.linalg.vector_norm(torch.cat(matrices)) if matrices else torch.zeros(())
        return {
            "value": float(torch.linalg.vector_norm(theta)),
            "weights": float(weights),
            "dist_init": float(torch.linalg.vector_norm(theta - first["theta"])),
        }

    return callback(name, every, measure)


def preconditioned_sharpness(
    data: Any,
    every: int,
    *,
    k: int = 1,
    name: str = "preconditioned_sharpness",
    tol: float = 1e-4,
    params: ParamFilter | Iterable[str] | None = None,
    loss_fn: Any = None,
) -> Callback:
    """A callback recording Adam's preconditioned sharpness every ``every`` steps, warm-started.

    ``lambda_max(P^-1 H)`` with ``P = diag(sqrt(v_hat) + eps)`` from the run's Adam (AdamW) state
    (:func:`probes.curvature.preconditioned.preconditioned_sharpness`), each call starting
    Lanczos from the previous call's eigenvectors.

    Args:
        data: the data the Hessian is measured on (the training set for full-batch runs).
        every: steps between measurements (also at step 0 and the last step).
        k: how many of the largest eigenvalues.
        name: the series' name (``probes/<name>`` in the store).
        tol: relative accuracy of each eigenvalue.
        params: the parameters the matrix is over.
        loss_fn: the loss (default: the run's).

    Returns:
        A :class:`~landscape.train.recording.Callback`; each call records ``value`` (the
        largest eigenvalue of ``P^-1 H``), ``values`` (k, descending), ``threshold``
        (``(2 + 2 beta1) / ((1 - beta1) eta)`` at the optimizer's current lr), ``ratio``
        (``value / threshold``), ``residual``, ``error`` (the largest relative residual and
        error bound) and ``n_hvp``. At step 0 Adam has no second moments yet: every value is
        NaN there.

    Examples:
        >>> cb = preconditioned_sharpness((X, y), every=20)
        >>> fit(model, "mse", split, TrainConfig("adam", lr=1e-3, batch_size=len(X)),
        ...     callbacks=[cb]).series["preconditioned_sharpness"]["ratio"]
    """
    previous: dict[str, Any] = {"vectors": None}
    nan = float("nan")

    def measure(state: TrainState) -> dict[str, Any]:
        opt = state.optimizer
        if not any("exp_avg_sq" in s for s in opt.state.values()):
            return {
                "value": nan, "values": np.full(k, nan), "threshold": nan, "ratio": nan,
                "residual": nan, "error": nan, "n_hvp": 0,
            }  # fmt: skip
        r = _preconditioned(
            state.model,
            loss_fn or state.loss_fn,
            data,
            opt,
            k=k,
            tol=tol,
            params=params,
            vectors=True,
            v0=previous["vectors"],
            check=False,
        )
        previous["vectors"] = r.vectors
        scale = np.maximum(np.abs(r.values), np.finfo(np.float64).tiny)
        return {
            "value": r.value,
            "values": r.values,
            "threshold": r.threshold,
            "ratio": r.value / r.threshold,
            "residual": float(np.max(r.residuals / scale)),
            "error": float(np.max(r.errors / scale)),
            "n_hvp": int(r.cost.hvp),
        }

    return callback(name, every, measure)
