"""Implicit-bias and generalisation measures.

Norms (:mod:`~probes.implicit_bias.norms`), margins (:mod:`~probes.implicit_bias.margins`), weight
spectra (:mod:`~probes.implicit_bias.weight_spectra`), gradient noise
(:mod:`~probes.implicit_bias.gradient_noise`), the ground-truth solutions of implicit-bias results
(:mod:`~probes.implicit_bias.ground_truth`) and a model's distance to them
(:mod:`~probes.implicit_bias.recovery`), the minimum-nuclear-norm SDP of matrix sensing
(:mod:`~probes.implicit_bias.nuclear_norm`, needs cvxpy), and every measure at once
(:func:`measures`, :mod:`~probes.implicit_bias.suite`). The names ``norms``, ``margins``,
``gradient_noise`` and ``weight_spectra`` are the modules; their probes are ``norms.norms`` and
so on. The result types are in :mod:`~probes.implicit_bias.results` (NumPy only); every name is
imported on first use.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

_RESULTS = (
    "Diagonal",
    "DirectionAlignment",
    "Factorization",
    "FisherRao",
    "GradientNoise",
    "Interpolator",
    "InterpolatorDistances",
    "MarginAlignment",
    "Margins",
    "MatrixRecovery",
    "MaxMargin",
    "Measures",
    "Norms",
    "PowerLawFit",
    "WeightSpectra",
)
_SUITE = (
    "FAMILIES",
    "alignment",
    "diagonal",
    "effective_rank",
    "factorization",
    "fisher_rao",
    "fit_power_law",
    "max_margin",
    "measures",
    "min_norm_interpolator",
    "path_norm",
)

__all__ = sorted(
    [
        *_RESULTS,
        *_SUITE,
        "gradient_noise",
        "ground_truth",
        "layers",
        "margins",
        "norms",
        "nuclear_norm",
        "min_nuclear_norm",
        "nuclear_norm_recovery",
        "NuclearNorm",
        "NuclearNormRecovery",
        "recovery",
        "results",
        "suite",
        "weight_spectra",
    ]
)

__getattr__, __dir__ = attach(
    __name__,
    [
        "gradient_noise",
        "ground_truth",
        "layers",
        "margins",
        "norms",
        "nuclear_norm",
        "recovery",
        "results",
        "suite",
        "weight_spectra",
    ],
    {
        **{name: "results" for name in _RESULTS},
        **{name: "suite" for name in _SUITE},
        **{
            name: "nuclear_norm"
            for name in (
                "NuclearNorm",
                "NuclearNormRecovery",
                "min_nuclear_norm",
                "nuclear_norm_recovery",
            )
        },
    },
)
