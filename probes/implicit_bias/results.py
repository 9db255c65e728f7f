"""Results of the implicit-bias probes (NumPy only: reading them needs no torch).

Measures at a point: :class:`Norms`, :class:`FisherRao` (:mod:`probes.implicit_bias.norms`),
:class:`Margins` (:mod:`~probes.implicit_bias.margins`), :class:`WeightSpectra` and
:class:`PowerLawFit` (:mod:`~probes.implicit_bias.weight_spectra`), :class:`GradientNoise`
(:mod:`~probes.implicit_bias.gradient_noise`), :class:`Measures` (all at once,
:mod:`~probes.implicit_bias.suite`). Ground truth and the distance to it:
:class:`MaxMargin`, :class:`DirectionAlignment`, :class:`Factorization`, :class:`Diagonal`,
:class:`Interpolator` (:mod:`~probes.implicit_bias.ground_truth`), :class:`MarginAlignment`,
:class:`InterpolatorDistances`, :class:`MatrixRecovery` (:mod:`~probes.implicit_bias.recovery`).

Each carries its ``cost`` (:class:`~landscape.engine.cost.Cost`; zero where nothing was
counted); records go through :class:`~landscape.engine.records.RecordMixin`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from landscape.engine.cost import Cost
from landscape.engine.records import RecordMixin

__all__ = [
    "Diagonal",
    "DirectionAlignment",
    "Factorization",
    "FisherRao",
    "GradientNoise",
    "Interpolator",
    "InterpolatorDistances",
    "Margins",
    "MarginAlignment",
    "MatrixRecovery",
    "MaxMargin",
    "Measures",
    "Norms",
    "PowerLawFit",
    "WeightSpectra",
]


# ---------------------------------------------------------------------------- measures
@dataclass(frozen=True, eq=False)
class Norms(RecordMixin):
    """Norms of a model's layers (:func:`probes.implicit_bias.norms.norms`).

    Attributes:
        layers: names of the layers (selected parameters with ndim >= 2); shapes: their
            matrix shapes (out, rest).
        frobenius, spectral: ``||W_l||_F`` and ``||W_l||_2`` per layer.
        dist_frobenius, dist_spectral: ``||W_l - W_l^0||_F`` and ``_2`` per layer (None
            without ``init``).
        log_prod_frobenius, log_prod_spectral: ``sum_l log ||W_l||``.
        sum_frobenius_sq, sum_spectral_sq: ``sum_l ||W_l||^2``.
        param_norm: ``||theta||_2`` over all selected parameters (biases included).
        dist_param_norm: ``||theta - theta_0||_2`` (None without ``init``).
        path_norm: the path-norm (None without ``input_shape``); input_shape, strict: its
            options.
        n_params: the number of selected parameters. cost: the wall time.
    """

    _probe = "norms"

    layers: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    frobenius: np.ndarray
    spectral: np.ndarray
    dist_frobenius: np.ndarray | None
    dist_spectral: np.ndarray | None
    log_prod_frobenius: float
    log_prod_spectral: float
    sum_frobenius_sq: float
    sum_spectral_sq: float
    param_norm: float
    dist_param_norm: float | None
    path_norm: float | None
    input_shape: tuple[int, ...] | None
    strict: bool
    n_params: int
    cost: Cost

    @property
    def prod_frobenius(self) -> float:
        """``prod_l ||W_l||_F`` (inf where it overflows)."""
        return float(np.exp(self.log_prod_frobenius))

    @property
    def prod_spectral(self) -> float:
        """``prod_l ||W_l||_2`` (inf where it overflows)."""
        return float(np.exp(self.log_prod_spectral))


@dataclass(frozen=True, eq=False)
class FisherRao(RecordMixin):
    """The empirical Fisher-Rao norm (:func:`probes.implicit_bias.norms.fisher_rao`).

    Attributes:
        value: ``||theta||_fr``; squared: ``||theta||_fr^2 = mean_i <theta, g_i>^2``.
        inner: ``<theta, g_i>`` per example, in data order (N,).
        n_examples, n_params: N and P. mode: the evaluation mode.
        cost: passes over the data, wall time.
    """

    _probe = "norms.fisher_rao"

    value: float
    squared: float
    inner: np.ndarray
    n_examples: int
    n_params: int
    mode: str
    cost: Cost


@dataclass(frozen=True, eq=False)
class Margins(RecordMixin):
    """Margins of a dataset (:func:`probes.implicit_bias.margins.margins`).

    Attributes:
        margins: ``gamma_i`` per example, in data order (N,).
        normalised: ``gamma_i N / (R_A ||X||_F)`` (N,).
        minimum, quantile: of the margins; normalised_minimum, normalised_quantile: of the
            normalised ones. q: the quantile's level.
        spectral_complexity: ``R_A``; input_norm: ``||X||_F``; reference: ``"init"`` or
            ``"zero"`` (the matrices ``M_l``); layers: the layers in ``R_A``.
        n_examples, mode: the data size and the evaluation mode. cost: passes, wall time.
    """

    _probe = "margins"

    margins: np.ndarray
    normalised: np.ndarray
    minimum: float
    quantile: float
    normalised_minimum: float
    normalised_quantile: float
    q: float
    spectral_complexity: float
    input_norm: float
    reference: str
    layers: tuple[str, ...]
    n_examples: int
    mode: str
    cost: Cost


@dataclass(frozen=True)
class PowerLawFit:
    """A continuous power-law fit of a tail.

    ``alpha``, ``xmin``, the KS distance, the tail size ``n_tail`` and the standard error ``(alpha -
    1) / sqrt(n_tail)``.
    """

    alpha: float
    xmin: float
    ks_distance: float
    n_tail: int
    stderr: float


@dataclass(frozen=True, eq=False)
class WeightSpectra(RecordMixin):
    """Spectra of the layers (:func:`probes.implicit_bias.weight_spectra.weight_spectra`).

    Attributes:
        layers: layer names; shapes: their matrix shapes (out, rest).
        singular_values: per layer, descending (NumPy float64).
        effective_rank, stable_rank: per layer (L,).
        alpha: per layer, the power-law exponent of the eigenvalues of ``W^T W`` or None;
            alpha_reason: None where fitted, else why not; fits: the whole
            :class:`PowerLawFit` or None.
        min_eigenvalues, min_tail: the fit's options. cost: the wall time.
    """

    _probe = "weight_spectra"

    layers: tuple[str, ...]
    shapes: tuple[tuple[int, int], ...]
    singular_values: tuple[np.ndarray, ...]
    effective_rank: np.ndarray
    stable_rank: np.ndarray
    alpha: tuple[float | None, ...]
    alpha_reason: tuple[str | None, ...]
    fits: tuple[PowerLawFit | None, ...]
    min_eigenvalues: int
    min_tail: int
    cost: Cost

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Records written before the record protocol.

        The lengths as ``counts``, the fits as per-layer arrays (NaN where ``alpha_reason`` says
        there is none).
        """
        if "counts" in arrays and "singular_values.counts" not in arrays:
            arrays["singular_values.counts"] = arrays.pop("counts")
        if "fits" not in attrs and "xmin" in arrays:
            columns = {
                "alpha": "alpha",
                "xmin": "xmin",
                "ks_distance": "ks_distance",
                "n_tail": "n_tail",
                "stderr": "alpha_stderr",
            }
            fits = [
                None if reason is not None else {k: arrays[v][i].item() for k, v in columns.items()}
                for i, reason in enumerate(attrs["alpha_reason"])
            ]
            attrs = {
                **attrs,
                "fits": fits,
                "alpha": [None if f is None else f["alpha"] for f in fits],
            }
        return arrays, attrs


@dataclass(frozen=True, eq=False)
class GradientNoise(RecordMixin):
    """Gradient noise (:func:`probes.implicit_bias.gradient_noise.gradient_noise`).

    Attributes:
        trace: ``tr Sigma = (1/N) sum_i ||g_i - g||^2``.
        grad_norm_sq: ``||g||^2``, the full-batch gradient's squared norm.
        b_simple: ``trace / grad_norm_sq`` (inf where the gradient is zero).
        mean_sq_norm: ``(1/N) sum_i ||g_i||^2 = trace + grad_norm_sq``.
        names: the parameter tensors; trace_per_param: ``tr Sigma`` restricted to each.
        n_examples, n_params: N and P. mode, chunk_size: options.
        cost: passes over the data, wall time.
    """

    _probe = "gradient_noise"

    trace: float
    grad_norm_sq: float
    b_simple: float
    mean_sq_norm: float
    names: tuple[str, ...]
    trace_per_param: np.ndarray
    n_examples: int
    n_params: int
    mode: str
    chunk_size: int
    cost: Cost


@dataclass(frozen=True, eq=False)
class Measures(RecordMixin):
    """Every applicable measure at one point (:func:`probes.implicit_bias.suite.measures`).

    Attributes:
        values: measure name -> value (None where it does not apply).
        skipped: measure or family -> why it is None.
        layers: the layers (parameters of ndim >= 2) of the per-layer arrays.
        per_layer: ``frobenius``, ``spectral``, ``dist_frobenius``, ``dist_spectral``,
            ``effective_rank``, ``stable_rank``, ``alpha`` (NaN where there is none), one entry
            a layer.
        options: the options the measures were computed with.
        cost: passes over the data and evaluations, all measures together; wall time.
    """

    _probe = "measures"

    values: dict[str, float | None]
    skipped: dict[str, str]
    layers: tuple[str, ...]
    per_layer: dict[str, np.ndarray] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    cost: Cost = Cost()

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Records written before the record protocol: per-layer arrays ``layer_<name>``."""
        if "per_layer" in attrs:
            return arrays, attrs
        names = [k.removeprefix("layer_") for k in arrays if k.startswith("layer_")]
        moved = {f"per_layer.{i}": arrays[f"layer_{k}"] for i, k in enumerate(names)}
        return moved, {**attrs, "per_layer": names}


# ---------------------------------------------------------------------------- ground truth
@dataclass(frozen=True, eq=False)
class MaxMargin(RecordMixin):
    """The max-margin classifier.

    ``direction = w*/||w*||_2`` (unit l2 norm for either ``norm``); ``weights = w*`` (smallest
    functional margin 1); ``intercept = b*`` (0.0 without ``bias``); ``margin = 1/||w*||_p``, the
    largest ``min_i y_i (w.x_i + b) / ||w||_p``; ``support``: the active constraints (functional
    margin within 1e-6 of 1, relative to the data scale), int64; the options; ``solver`` (nnls-ldp,
    slsqp, highs); the wall time.
    """

    _probe = "ground_truth.max_margin"
    direction: np.ndarray
    weights: np.ndarray
    intercept: float
    margin: float
    support: np.ndarray
    norm: str
    bias: bool
    solver: str
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class DirectionAlignment(RecordMixin):
    """A linear classifier ``w`` against the max-margin ``w*`` of ``norm``.

    From :func:`probes.implicit_bias.ground_truth.alignment`: ``cosine``; ``direction_error =
    ||w/||w||_2 - w*/||w*||_2||_2 = sqrt(2 - 2 cosine)``; ``margin = min_i y_i w.x_i / ||w||_p``, at
    most ``max_margin`` (that of ``w*``), equal iff ``w`` is a solution; ``weight_norm = ||w||_2``;
    the unit (l2) ``direction`` of ``w`` and ``reference`` of ``w*``.
    """

    _probe = "ground_truth.alignment"
    cosine: float
    direction_error: float
    margin: float
    max_margin: float
    weight_norm: float
    norm: str
    direction: np.ndarray
    reference: np.ndarray
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class Factorization(RecordMixin):
    """The end-to-end ``matrix``, its ``singular_values`` (descending), their sum and largest.

    The sum is the nuclear norm. Roy and Vetterli's effective rank of the singular values above
    ``tol`` (NaN for the zero matrix); the numerical rank, the number of singular values above
    ``tol``.
    """

    _probe = "ground_truth.factorization"
    matrix: np.ndarray
    singular_values: np.ndarray
    nuclear_norm: float
    spectral_norm: float
    effective_rank: float
    numerical_rank: int
    tol: float
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class Diagonal(RecordMixin):
    """Effective weights ``beta`` of a diagonal network, their l1 and l2 norms, and the depth D.

    The depth is None for a model without a ``depth`` attribute.
    """

    _probe = "ground_truth.diagonal"
    beta: np.ndarray
    l1_norm: float
    l2_norm: float
    depth: int | None
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class Interpolator(RecordMixin):
    """The minimum-``norm`` ``beta`` with ``X beta = y``, its l1 and l2 norms.

    Also the largest residual ``max_i |x_i . beta - y_i|``, the solver, its wall time.
    """

    _probe = "ground_truth.min_norm_interpolator"
    beta: np.ndarray
    norm: str
    l1_norm: float
    l2_norm: float
    residual: float
    solver: str
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class MarginAlignment(RecordMixin):
    """A bias-free linear classifier ``w`` against the l2, l1 and linf max-margin directions.

    The directions of its data (:func:`probes.implicit_bias.recovery.margin_alignment`): for each
    norm p, ``cosine_p`` and ``direction_error_p`` (of the unit l2 directions, as
    :class:`DirectionAlignment`), ``margin_p = min_i y_i w.x_i / ||w||_p`` and the largest possible,
    ``max_margin_p``; ``weight_norm = ||w||_2``.
    """

    _probe = "ground_truth.margin_alignment"
    cosine_l2: float
    direction_error_l2: float
    margin_l2: float
    max_margin_l2: float
    cosine_l1: float
    direction_error_l1: float
    margin_l1: float
    max_margin_l1: float
    cosine_linf: float
    direction_error_linf: float
    margin_linf: float
    max_margin_linf: float
    weight_norm: float
    cost: Cost = Cost()

    def row(self) -> dict[str, float]:
        """The numbers as a dict, the cost left out (a row of a series along training)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cost"}


@dataclass(frozen=True, eq=False)
class InterpolatorDistances(RecordMixin):
    """A diagonal network's ``beta`` against the minimum-l1 and minimum-l2 interpolators.

    The interpolators of its data, ``beta_l1`` and ``beta_l2``: ``distance_l1 = ||beta -
    beta_l1||_2``, ``distance_l2 = ||beta - beta_l2||_2``; the l1 and l2 norms of ``beta`` and of
    the two interpolators (``min_l1_norm = ||beta_l1||_1``, ``min_l2_norm = ||beta_l2||_2``); the
    largest training residual ``max_i |x_i . beta - y_i|``; the depth (None if unknown).
    """

    _probe = "ground_truth.interpolator_distances"
    beta: np.ndarray
    beta_l1: np.ndarray
    beta_l2: np.ndarray
    distance_l1: float
    distance_l2: float
    l1_norm: float
    l2_norm: float
    min_l1_norm: float
    min_l2_norm: float
    residual: float
    depth: int | None
    cost: Cost = Cost()


@dataclass(frozen=True, eq=False)
class MatrixRecovery(RecordMixin):
    """A factorised model's matrix ``X`` against the truth ``X*`` of a matrix-sensing problem.

    ``X``'s nuclear norm, effective and numerical rank, the truth's nuclear norm (the reference
    minimum nuclear norm), the Frobenius distance ``||X - X*||_F`` and its ratio to ``||X*||_F``,
    and the root mean square training residual ``sqrt(mean_i (<A_i, X> - y_i)^2)``.
    """

    _probe = "ground_truth.matrix_recovery"
    matrix: np.ndarray
    truth: np.ndarray
    singular_values: np.ndarray
    nuclear_norm: float
    truth_nuclear_norm: float
    effective_rank: float
    numerical_rank: int
    distance: float
    relative_distance: float
    residual: float
    cost: Cost = Cost()
