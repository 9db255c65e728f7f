"""Results of the sharpness probes (NumPy only: reading them needs no torch).

:class:`WorstCase` (:func:`probes.sharpness.worst.worst_case`), :class:`AverageCase`
(:func:`probes.sharpness.average.average_case`), :class:`Epsilon` and :class:`PacBayes`
(:mod:`probes.sharpness.flatness`). Each carries its ``cost``
(:class:`~landscape.engine.cost.Cost`: ``loss_evals``, ``grad_evals``, ``passes``,
``seconds``); records go through :class:`~landscape.engine.records.RecordMixin`.

Examples:
    >>> w = WorstCase.from_record(store.record("sgd", "probes", "sharpness_worst_case"))
    >>> w.value, w.cost.grad_evals, w.cost.seconds
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.engine.cost import Cost
from landscape.engine.records import RecordMixin

__all__ = ["AverageCase", "Epsilon", "PacBayes", "WorstCase"]


@dataclass(frozen=True, eq=False)
class WorstCase(RecordMixin):
    """Worst-case (SAM-style) sharpness.

    Attributes:
        value: ``max L(w + delta) - L(w)`` over the ball (with ``m``: the size-weighted mean
            over batches of each batch's value).
        clean_loss, worst_loss: the loss at ``w`` and at the worst point found (with ``m``:
            size-weighted means over batches).
        clean_accuracy, worst_accuracy: the accuracy there (None for regression).
        delta_norm: ``||delta / c||_p`` of the worst point (<= rho; with ``m``, the largest
            over batches).
        rho, norm, adaptive, steps, restarts, m, seed, mode: the options.
        n_params: P, the number of perturbed parameters. n_batches: batches (1 without m).
        cost: gradient and loss evaluations (each over one batch with ``m``), passes over the
            whole data, wall time.
        delta: the worst perturbation, flat in the layout of the selected parameters
            (float64; None with ``m``).
        batch_values, batch_sizes: per-batch values and sizes with ``m`` (else None).
        logit_normalize: whether the losses (and so every value) are those of the centred,
            unit-norm logits (:func:`probes.sharpness.perturb.normalize_logits`); False in
            records written before the option existed.
    """

    _probe = "sharpness.worst_case"

    value: float
    clean_loss: float
    worst_loss: float
    clean_accuracy: float | None
    worst_accuracy: float | None
    delta_norm: float
    rho: float
    norm: str
    adaptive: bool
    steps: int
    restarts: int
    m: int | None
    seed: int
    mode: str
    n_params: int
    n_batches: int
    cost: Cost
    delta: np.ndarray | None = None
    batch_values: np.ndarray | None = None
    batch_sizes: np.ndarray | None = None
    logit_normalize: bool = False


@dataclass(frozen=True, eq=False)
class AverageCase(RecordMixin):
    """Average-case sharpness ``E L(w + rho c z) - L(w)``.

    ``z ~ N(0, I)`` (norm l2) or ``U[-1, 1]^P`` (linf).

    Attributes:
        value: the mean of ``samples`` (with ``m``: the size-weighted mean of
            ``batch_values``). stderr: the samples' standard deviation over ``sqrt(n)`` (NaN
            for one sample).
        clean_loss, mean_loss: the loss at ``w`` and its mean at the perturbed points (with
            ``m``: size-weighted means over batches).
        clean_accuracy, mean_accuracy: the same for the accuracy (None for regression).
        rho, adaptive, n_samples, seed, mode: the options. n_params: P.
        cost: loss evaluations, passes over the whole data, wall time.
        samples: ``L(w + rho c z_i) - L(w)`` for each draw (with ``m``: the size-weighted
            mean over batches of ``L_b(w + rho c z_bi) - L_b(w)``).
        norm, m, logit_normalize: the options (``"l2"``, None and False in records written
            before they existed). n_batches: batches (1 without m).
        batch_values, batch_sizes: per-batch values and sizes with ``m`` (else None).
    """

    _probe = "sharpness.average_case"

    value: float
    stderr: float
    clean_loss: float
    mean_loss: float
    clean_accuracy: float | None
    mean_accuracy: float | None
    rho: float
    adaptive: bool
    n_samples: int
    seed: int
    mode: str
    n_params: int
    cost: Cost
    samples: np.ndarray
    norm: str = "l2"
    m: int | None = None
    n_batches: int = 1
    logit_normalize: bool = False
    batch_values: np.ndarray | None = None
    batch_sizes: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Epsilon(RecordMixin):
    """Keskar's epsilon-sharpness.

    Attributes:
        value: ``100 (max_loss - clean_loss) / (1 + clean_loss)``.
        clean_loss, max_loss: the loss at ``w`` and the largest found in the box.
        eps, subspace (None: full space), max_iter, seed, mode: the options.
        n_iter: L-BFGS-B iterations used. message: SciPy's stop message. n_params: P.
        cost: its loss-and-gradient evaluations (``grad_evals``), passes, wall time.
        delta: the maximising perturbation (P,), float64.
        y: the maximiser in the box's coordinates ((P,) full space, (p,) subspace).
        bound: the box's half-widths, ``eps (|A^+ w| + 1)``, of ``y``'s shape.
    """

    _probe = "sharpness.epsilon"
    _cost_aliases = {"n_evals": "grad_evals"}  # SciPy's evaluations, each a loss and gradient

    value: float
    clean_loss: float
    max_loss: float
    eps: float
    subspace: int | None
    max_iter: int
    seed: int
    mode: str
    n_iter: int
    message: str
    n_params: int
    cost: Cost
    delta: np.ndarray
    y: np.ndarray
    bound: np.ndarray


@dataclass(frozen=True, eq=False)
class PacBayes(RecordMixin):
    """Magnitude-aware (or plain) PAC-Bayes flatness.

    Attributes:
        sigma: the bisection's last sigma. flatness: ``1 / sigma^2``.
        clean_accuracy: the accuracy at ``w``; accuracy: the mean perturbed accuracy at sigma.
        converged: whether the drop reached ``target`` within ``tolerance`` (else the search
            ran ``depth`` steps).
        target, tolerance, magnitude_aware, eps, n_samples, depth, sigma_max, seed, mode: the
            options. n_params: P.
        cost: loss evaluations, passes, wall time.
        sigmas, accuracies: the bisection trace (each sigma tried and its mean accuracy).
    """

    _probe = "sharpness.pac_bayes"

    sigma: float
    flatness: float
    clean_accuracy: float
    accuracy: float
    converged: bool
    target: float
    tolerance: float
    magnitude_aware: bool
    eps: float
    n_samples: int
    depth: int
    sigma_max: float
    seed: int
    mode: str
    n_params: int
    cost: Cost
    sigmas: np.ndarray
    accuracies: np.ndarray
