r"""How many eigenvalues of a curvature spectrum are outliers, by a rule written down.

A trained classifier's Hessian (and its Gauss-Newton part) has a bulk of eigenvalues near zero
and a few outliers above it, about as many as there are classes (Sagun et al. 2017; Papyan
2019, 2020). Papyan defines them informally (2020, Definitions 1.1 and 1.2: a bulk is a set of
eigenvalues that seemingly follows a continuous distribution; outliers are eigenvalues each
individually separated from the bulk) and counts them from plots. :func:`outliers` makes the
count a rule, on the top ``m`` eigenvalues ``lambda_1 >= ... >= lambda_m`` (descending):

- ``rule="ratio"`` (default): the eigengap. Over the positive leading eigenvalues, the ratios
  ``r_i = lambda_i / lambda_{i+1}`` (``i = 1 .. m-1``); the count is the ``i`` of the largest
  ratio, provided that ratio is at least ``min_ratio`` (else 0: no gap stands out). Guards:

  * *threshold*: ``min_ratio`` (default 1.3). Near the edge of a Marchenko-Pastur bulk
    consecutive eigenvalues differ by a few percent (ratios 1.0-1.1 for a few hundred
    eigenvalues), and the smoothly decaying top of the trained CNN's MSE Hessian of
    ``experiments/hessian_outliers.toml`` has ratios up to 1.24 besides its gap of 1.47 at
    ``C = 10``; 1.3 separates the two.
  * *ties*: where several ratios equal the largest (to a relative 1e-9), the smallest count
    wins and ``tied`` says so (a geometric spectrum ``8, 4, 2, 1`` has no distinct gap).
    Equal eigenvalues give the ratio 1 and are never split: a degenerate group of outliers
    stays together.
  * *signs*: the rule only sees the leading eigenvalues above ``floor`` (default 0): the
    sequence stops at the first eigenvalue ``<= floor`` (zero or negative eigenvalues of an
    indefinite Hessian belong to the bulk, and a ratio across a sign change means nothing), so
    the largest count the rule can give is the number of leading eigenvalues above the floor
    minus one. With fewer than two such eigenvalues the count is 0. So outliers above a bulk
    at exactly zero (``5, 5, 5, 0, 0``) are not seen by this rule: use ``rule="edge"`` with
    an edge at the rounding level there.
  * ``runner_up``: the second largest ratio, to judge how distinct the gap is.

- ``rule="edge"``: the gap relative to the bulk. Given the upper edge of the bulk (``edge``,
  e.g. the Marchenko-Pastur edge ``sigma^2 (1 + sqrt(gamma))^2`` of a spiked covariance model,
  which Papyan 2020 uses to explain the outliers of the Fisher of multinomial logistic
  regression, or an upper quantile of the spectral density), the outliers are the eigenvalues
  with ``lambda_i > edge * (1 + margin)`` (``margin`` default 0.1). Counts every eigenvalue
  past the edge, however they are spaced among themselves.

References:
    - L. Sagun, U. Evci, V. U. Guney, Y. Dauphin, L. Bottou, "Empirical analysis of the Hessian
      of over-parametrized neural networks", 2017.
    - V. Papyan, "Measurements of three-level hierarchical structure in the outliers in the
      spectrum of deepnet Hessians", ICML 2019.
    - V. Papyan, "Traces of class/cross-class structure pervade deep learning spectra", JMLR
      2020.

Examples:
    >>> top = eigenvalues(model, nn.CrossEntropyLoss(), (X, y), k=20, tol=1e-5)  # doctest: +SKIP
    >>> outlier_count(top.values[::-1])                 # the values come ascending: reverse them
    >>> outliers([9.0, 8.5, 8.0, 2.1, 2.0, 1.9]).count, outliers([9.0, 8.5, 8.0, 2.1]).ratio
    (3, 3.8095238095238093)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OUTLIER_RULES", "Outliers", "outlier_count", "outliers"]

OUTLIER_RULES = ("ratio", "edge")
"""The rules of :func:`outliers`: the largest eigengap ratio, or the eigenvalues past the bulk's
edge."""


@dataclass(frozen=True)
class Outliers:
    """The outliers of a spectrum by :func:`outliers`.

    Attributes:
        count: how many of the leading eigenvalues are outliers.
        rule: ``"ratio"`` or ``"edge"``.
        ratios: ``lambda_i / lambda_{i+1}`` over the leading eigenvalues above the floor
            (``"ratio"``; empty for ``"edge"``).
        ratio: the ratio at the gap (``lambda_count / lambda_{count+1}``), or the largest ratio
            when it falls short of ``min_ratio`` (NaN when there is none, and for ``"edge"``).
        runner_up: the second largest ratio (NaN when there is none).
        tied: several ratios equal the largest (the smallest count was taken).
        threshold: ``min_ratio`` (``"ratio"``) or ``edge * (1 + margin)`` (``"edge"``).
        m: how many eigenvalues the rule looked at.
    """

    count: int
    rule: str
    ratios: np.ndarray
    ratio: float
    runner_up: float
    tied: bool
    threshold: float
    m: int


def _values(values: Any, top: int | None) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    if v.size == 0:
        raise ValueError("outliers: expected at least one eigenvalue, got none")
    if not np.all(np.isfinite(v)):
        raise ValueError("outliers: the eigenvalues must be finite, got NaN or inf")
    if np.any(np.diff(v) > 1e-12 * max(float(np.max(np.abs(v))), 1e-300)):
        raise ValueError(
            "outliers: expected eigenvalues in descending order (Eigenvalues.values are "
            "ascending: pass values[::-1])"
        )
    if top is not None:
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"outliers: top must be a positive int, got {top!r}")
        v = v[:top]
    return v


def outliers(
    values: Any,
    *,
    rule: str = "ratio",
    top: int | None = None,
    min_ratio: float = 1.3,
    floor: float = 0.0,
    edge: float | None = None,
    margin: float = 0.1,
) -> Outliers:
    """The outliers of the top of a spectrum, by the rule of the module docstring.

    Args:
        values: eigenvalues in descending order (``lambda_1 >= lambda_2 >= ...``), e.g.
            ``Eigenvalues.values[::-1]``.
        rule: ``"ratio"`` (the largest ``lambda_i / lambda_{i+1}``) or ``"edge"`` (the
            eigenvalues past the bulk's upper edge).
        top: look at the first ``top`` values only (default: all given).
        min_ratio: ``"ratio"``: the smallest ratio that counts as a gap (> 1).
        floor: ``"ratio"``: the sequence stops at the first eigenvalue ``<= floor`` (>= 0).
        edge: ``"edge"``: the upper edge of the bulk (required, > 0).
        margin: ``"edge"``: outliers lie above ``edge * (1 + margin)`` (>= 0).

    Returns:
        :class:`Outliers`.

    Raises:
        ValueError: eigenvalues that are empty, not finite or not descending; an unknown rule;
            ``min_ratio <= 1``; a negative floor or margin; ``rule="edge"`` without a positive
            ``edge``.
    """
    if rule not in OUTLIER_RULES:
        raise ValueError(f"outliers: rule must be one of {', '.join(OUTLIER_RULES)}, got {rule!r}")
    v = _values(values, top)
    if rule == "edge":
        if edge is None or not np.isfinite(edge) or edge <= 0:
            raise ValueError(f"outliers: rule='edge' needs the bulk's edge > 0, got edge={edge!r}")
        if not margin >= 0:
            raise ValueError(f"outliers: margin must be >= 0, got {margin!r}")
        threshold = float(edge) * (1.0 + float(margin))
        count = int(np.sum(v > threshold))
        nan = float("nan")
        return Outliers(count, rule, np.zeros(0), nan, nan, False, threshold, len(v))
    if not min_ratio > 1:
        raise ValueError(f"outliers: min_ratio must be > 1, got {min_ratio!r}")
    if not floor >= 0:
        raise ValueError(f"outliers: floor must be >= 0, got {floor!r}")
    above = int(np.argmax(v <= floor)) if np.any(v <= floor) else len(v)
    lead = v[:above]
    ratios = lead[:-1] / lead[1:] if len(lead) >= 2 else np.zeros(0)
    nan = float("nan")
    if len(ratios) == 0:
        return Outliers(0, rule, ratios, nan, nan, False, float(min_ratio), len(v))
    best = float(np.max(ratios))
    ties = np.flatnonzero(ratios >= best * (1 - 1e-9))
    i = int(ties[0])
    rest = np.delete(ratios, i)
    runner_up = float(np.max(rest)) if len(rest) else nan
    count = i + 1 if best >= min_ratio else 0
    return Outliers(count, rule, ratios, best, runner_up, len(ties) > 1, float(min_ratio), len(v))


def outlier_count(values: Any, **options: Any) -> int:
    """The number of outliers among descending ``values``: :func:`outliers` ``(...).count``.

    Args:
        values: eigenvalues, descending.
        **options: the options of :func:`outliers` (``rule``, ``top``, ``min_ratio``,
            ``floor``, ``edge``, ``margin``).

    Returns:
        The count.
    """
    return outliers(values, **options).count
