"""Implicit-bias and generalisation measures: norms (:mod:`~probes.implicit_bias.norms`),
margins (:mod:`~probes.implicit_bias.margins`), weight spectra
(:mod:`~probes.implicit_bias.weight_spectra`), gradient noise
(:mod:`~probes.implicit_bias.gradient_noise`), the ground-truth solutions of implicit-bias
results (:mod:`~probes.implicit_bias.ground_truth`) and a model's distance to them
(:mod:`~probes.implicit_bias.recovery`), and every measure at once
(:func:`measures`, :mod:`~probes.implicit_bias.suite`). The names ``norms``, ``margins``,
``gradient_noise`` and ``weight_spectra`` are the modules; their probes are
``norms.norms`` and so on.
"""

from probes.implicit_bias.suite import (
    FAMILIES,
    FisherRao,
    GradientNoise,
    Margins,
    Measures,
    Norms,
    WeightSpectra,
    alignment,
    diagonal,
    effective_rank,
    factorization,
    fisher_rao,
    fit_power_law,
    max_margin,
    measures,
    min_norm_interpolator,
    path_norm,
)

from probes.implicit_bias import gradient_noise, margins, norms, weight_spectra

__all__ = ["FAMILIES", "FisherRao", "GradientNoise", "Margins", "Measures", "Norms",
           "WeightSpectra", "alignment", "diagonal", "effective_rank", "factorization",
           "fisher_rao", "fit_power_law", "gradient_noise", "margins", "max_margin",
           "measures", "min_norm_interpolator", "norms", "path_norm", "weight_spectra"]
