r"""What the literature expects of each generalisation measure: the sign of its tau with the gap.

:data:`EXPECTED_SIGNS` maps measure-name patterns to that sign; :func:`expected_sign` looks a
name up. :func:`landscape.report.study_rank.rank_all` says of each measure whether its tau
agrees.

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where
    to find them", ICLR 2020; the others at :data:`EXPECTED_SIGNS`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping

__all__ = ["EXPECTED_SIGNS", "expected_sign"]

EXPECTED_SIGNS: dict[str, int | None] = {
    # the fit itself and the baselines: no expectation
    "loss": None,
    "accuracy": None,
    "train_loss": None,
    "steps": None,
    "test_acc": None,
    # margins: larger margin, smaller gap; inverse margins the other way
    "inverse_margin*": +1,
    "*margin*": -1,
    # PAC-Bayes: sigma itself is flatness (larger = flatter), 1/sigma^2 is sharpness
    "*sigma*": -1,
    "pac_bayes_flatness*": +1,
    "sharpness_pac_bayes*": +1,
    # sharpness and curvature
    "sharpness_*": +1,
    "*epsilon_sharpness*": +1,
    "lambda_max*": +1,
    "hessian_trace*": +1,
    "trace": +1,
    # norms
    "param_norm*": +1,
    "log_prod_*": +1,
    "sum_frobenius*": +1,
    "sum_spectral*": +1,
    "dist_init*": +1,
    "path_norm*": +1,
    "fisher_rao*": +1,
    # weight spectra
    "alpha*": +1,
    "stable_rank*": +1,
    "effective_rank*": None,
    # gradient noise
    "noise_*": None,
    "gradient_noise*": None,
}
r"""Measure-name pattern (:func:`fnmatch.fnmatchcase`; the first match wins) -> the sign of
tau with the gap that the literature expects (+1: larger measure, larger gap), or None where
it expects none. A probe stored under its own name (``"lambda_max [hessian_top10]"``) is
matched without the bracket.

- Norms (Frobenius and spectral products and sums, ``param_norm``, ``dist_init*``,
  ``path_norm``, ``fisher_rao``): +1, as the norm-based bounds predict (Jiang et al. observed
  the spectral products going the other way; that is the finding, not the expectation).
- Margins (``margin_min``, ``margin_q10``, ``margin_normalised_q10``): -1;
  ``inverse_margin_q10_sq`` (``1/margin^2``): +1.
- Sharpness, worst and average case, plain and adaptive (``sharpness_worst*``,
  ``sharpness_average*``, the probes ``sharpness_worst_case*``, ``sharpness_average_case*``,
  ``sharpness_epsilon``), ``lambda_max``, ``hessian_trace`` (``trace``): +1.
- PAC-Bayes: ``pac_bayes_flatness*`` of :func:`probes.implicit_bias.suite.measures` and the
  probe ``sharpness_pac_bayes`` store ``1 / sigma'^2`` (:mod:`probes.sharpness.flatness`):
  large when a small noise already costs accuracy, a sharpness: +1. A ``*sigma*`` value
  (sigma itself, larger = flatter): -1.
- Weight spectra: ``alpha*`` (power-law exponent; smaller = better trained, Martin and
  Mahoney): +1; ``stable_rank*`` (lower stable rank, tighter spectral bounds; Sanyal et al.
  2020): +1; ``effective_rank*``: none settled, None.
- Gradient noise (``noise_trace``, ``noise_scale``): None. Train loss, steps, loss, accuracy:
  None. Unknown names: None.
"""


def expected_sign(name: str, table: Mapping[str, int | None] | None = None) -> int | None:
    """The sign of tau with the gap the literature expects for a measure (or None).

    Args:
        name: the measure's name; a trailing ``" [record]"`` is ignored.
        table: pattern -> sign, the first matching pattern wins (default
            :data:`EXPECTED_SIGNS`).

    Returns:
        +1, -1, or None (no expectation, or no pattern matches).
    """
    table = EXPECTED_SIGNS if table is None else table
    base = re.sub(r"\s*\[[^\]]*\]\s*$", "", name)
    for pattern, sign in table.items():
        if fnmatch.fnmatchcase(base, pattern):
            return sign
    return None
