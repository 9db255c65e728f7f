r"""The statistics behind the study: intervals, resampling, information.

NumPy and SciPy only (no torch). Each function works on plain arrays; the study modules
(:mod:`~landscape.report.study`, :mod:`~landscape.report.study_rank`) decide which runs and
configurations go in.

- :func:`student_t_interval`: the Student-t interval of a mean over seeds.
- :func:`welch_interval`: the Welch interval of a difference of two means (unequal variances).
- :func:`tau_b_weighted`: Kendall's tau-b of resampled runs, many resamples at once.
- :func:`hierarchical_weights` and :func:`tau_bootstrap_ci`: the two-level (configuration, then
  seed) percentile bootstrap of tau-b.
- :func:`permutation_pvalue`: the permutation p-value of tau-b (SciPy's
  :func:`scipy.stats.permutation_test`, ``permutation_type="pairings"``).
- :func:`conditional_mutual_information`, :func:`pair_cmi`, :func:`jiang_k`: Jiang et al.'s
  conditional mutual information between the signs of measure and gap differences.
- :func:`holm` and :func:`benjamini_hochberg`: p-values adjusted for testing many measures.

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where
    to find them", ICLR 2020 (Sec. 4). Davison and Hinkley, "Bootstrap methods and their
    application", 1997 (Sec. 3.8, hierarchical data). Holm, "A simple sequentially rejective
    multiple test procedure", Scand. J. Statist. 1979. Benjamini and Hochberg, "Controlling the
    false discovery rate", JRSS B 1995. Welch, "The generalization of Student's problem when
    several different population variances are involved", Biometrika 1947.
"""

from __future__ import annotations

import inspect
import itertools
import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy import stats

__all__ = [
    "adjust_pvalues",
    "benjamini_hochberg",
    "conditional_mutual_information",
    "hierarchical_weights",
    "holm",
    "jiang_k",
    "pair_cmi",
    "permutation_pvalue",
    "student_t_interval",
    "tau_b_weighted",
    "tau_bootstrap_ci",
    "welch_interval",
]

CORRECTIONS = ("bh", "holm")
"""Multiple-testing corrections: Benjamini-Hochberg (false discovery rate) and Holm
(family-wise error rate)."""


# ------------------------------------------------------------------------------ intervals
def student_t_interval(x: np.ndarray, confidence: float) -> tuple[float, float, float]:
    r"""The Student-t interval of the mean of ``x`` (``n >= 2`` finite values).

    .. math:: \bar x \pm t_{(1+c)/2,\,n-1}\; s / \sqrt{n},\qquad
              s^2 = \frac{1}{n-1}\sum_i (x_i - \bar x)^2.

    Returns:
        ``(low, high, s)``.
    """
    n = len(x)
    s = float(np.std(x, ddof=1))
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1)) * s / math.sqrt(n)
    m = float(np.mean(x))
    return m - half, m + half, s


def welch_interval(
    a: np.ndarray, b: np.ndarray, confidence: float
) -> tuple[float, float, float, float | None]:
    r"""Welch's interval of ``mean(a) - mean(b)`` (unequal variances; ``len >= 2`` each).

    .. math:: \bar a - \bar b \pm t_{(1+c)/2,\,\nu}\,\mathrm{se},\quad
              \mathrm{se}^2 = \frac{s_a^2}{n_a} + \frac{s_b^2}{n_b},\quad
              \nu = \frac{\mathrm{se}^4}{\frac{(s_a^2/n_a)^2}{n_a-1}+\frac{(s_b^2/n_b)^2}{n_b-1}}

    (Welch-Satterthwaite degrees of freedom). Both samples without spread: the interval is the
    point and ``df`` None.

    Returns:
        ``(low, high, se, df)``.
    """
    va = float(np.var(a, ddof=1)) / len(a)
    vb = float(np.var(b, ddof=1)) / len(b)
    d = float(np.mean(a) - np.mean(b))
    se = math.sqrt(va + vb)
    if se == 0:
        return d, d, 0.0, None
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf((1 + confidence) / 2, df)) * se
    return d - half, d + half, se, df


# ------------------------------------------------------------------------------ tau-b
def _sign_matrices(mu: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    sm = np.sign(mu[:, None] - mu[None, :])
    sg = np.sign(g[:, None] - g[None, :])
    return sm * sg, np.abs(sm), np.abs(sg)


def tau_b_weighted(mu: np.ndarray, g: np.ndarray, weights: np.ndarray) -> np.ndarray:
    r"""Kendall's tau-b of samples that hold run ``i`` ``weights[r, i]`` times.

    With ``S^mu_ij = sign(mu_i - mu_j)`` (likewise ``S^g``) and a sample's multiplicities
    ``w``:

    .. math:: \tau_b = \frac{w^\top (S^\mu \circ S^g) w}
                            {\sqrt{(w^\top |S^\mu| w)\,(w^\top |S^g| w)}}

    which is SciPy's tau-b ``(C - D) / sqrt((n0 - n1)(n0 - n2))`` of the sample: copies of one
    run are tied in both values and drop out of numerator and denominator alike, as tau-b
    drops pairs tied in both.

    Args:
        mu: the runs' measure, shape ``(n,)``.
        g: the runs' gap, shape ``(n,)``.
        weights: shape ``(R, n)`` (or ``(n,)``), non-negative counts.

    Returns:
        shape ``(R,)`` (or a 0-d array): tau-b, NaN where a sample has a constant measure or
        gap.
    """
    p, a, b = _sign_matrices(np.asarray(mu, float), np.asarray(g, float))
    w = np.atleast_2d(np.asarray(weights, float))
    num = ((w @ p) * w).sum(axis=1)
    den = ((w @ a) * w).sum(axis=1) * ((w @ b) * w).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        tau = np.where(den > 0, num / np.sqrt(np.where(den > 0, den, 1.0)), np.nan)
    return tau if np.ndim(weights) == 2 else tau[0]


def hierarchical_weights(
    groups: Sequence[Sequence[int]],
    n: int,
    n_boot: int,
    rng: np.random.Generator,
    resample_seeds: bool = True,
) -> np.ndarray:
    """Multiplicities of the runs in ``n_boot`` two-level bootstrap samples.

    Each sample draws as many configurations as there are, with replacement; for each drawn
    configuration it draws as many of its runs (seeds) as it has, with replacement
    (``resample_seeds=False``: takes its runs as they are, the one-level cluster bootstrap).

    Args:
        groups: the run indices (into ``0..n-1``) of each configuration (non-empty).
        n: the number of runs.
        n_boot: samples.
        rng: the generator.
        resample_seeds: draw the seeds of a drawn configuration with replacement.

    Returns:
        ``(n_boot, n)`` integer counts (a row sums to the seeds of the configurations drawn).
    """
    sizes = np.array([len(x) for x in groups])
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in groups])
    start = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    c, top = len(groups), int(sizes.max())
    pick = rng.integers(0, c, size=(n_boot, c))  # configurations
    ns = sizes[pick]  # their seed counts
    if resample_seeds:
        within = np.floor(rng.random((n_boot, c, top)) * ns[..., None]).astype(np.int64)
    else:
        within = np.broadcast_to(np.arange(top), (n_boot, c, top))
    used = np.arange(top) < ns[..., None]  # slot < n_c
    run = flat[np.minimum(start[pick][..., None] + within, len(flat) - 1)]
    rows = np.broadcast_to(np.arange(n_boot)[:, None, None], run.shape)
    counts = np.bincount((rows * n + run)[used], minlength=n_boot * n)
    return counts.reshape(n_boot, n)


def tau_bootstrap_ci(
    mu: np.ndarray,
    g: np.ndarray,
    groups: Sequence[Sequence[int]],
    *,
    n_boot: int,
    confidence: float,
    rng: np.random.Generator,
    resample_seeds: bool = True,
) -> tuple[list[float] | None, int, str | None]:
    """Percentile interval of tau-b by the two-level bootstrap (:func:`hierarchical_weights`).

    Runs ``mu``, ``g``; the runs of each configuration ``groups``; ``n_boot`` samples drawn with
    ``rng`` (``resample_seeds`` as for :func:`hierarchical_weights`); ``confidence`` the level.

    Samples whose tau-b is undefined (a constant measure or gap among the drawn runs) are left
    out and counted; with fewer than half of them left the interval is None.

    Returns:
        ``([low, high] or None, samples used, reason or None)``.
    """
    w = hierarchical_weights(groups, len(mu), n_boot, rng, resample_seeds)
    taus = tau_b_weighted(mu, g, w)
    ok = taus[np.isfinite(taus)]
    if len(ok) < max(2, n_boot // 2):
        return (
            None,
            len(ok),
            (
                f"only {len(ok)} of {n_boot} bootstrap samples have a defined "
                "tau (constant measure or gap in the others)"
            ),
        )
    alpha = 1 - confidence
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return [float(lo), float(hi)], len(ok), None


_RNG_KEYWORD = (
    "rng" if "rng" in inspect.signature(stats.permutation_test).parameters else "random_state"
)  # SciPy >= 1.15 names it rng


def permutation_pvalue(
    x: np.ndarray, y: np.ndarray, *, n_perm: int, rng: np.random.Generator
) -> tuple[float | None, bool]:
    """Two-sided permutation p-value of tau-b between ``x`` and ``y``.

    :func:`scipy.stats.permutation_test` with ``permutation_type="pairings"``: the pairing of
    ``x`` with ``y`` is shuffled (``x`` permuted, ``y`` held); with ``n! <= n_perm`` every
    pairing is enumerated (exact), else ``n_perm`` random ones.

    Returns:
        ``(p or None, exact)``: None for a constant ``x`` or ``y`` (tau-b undefined).
    """
    x, y = np.asarray(x, float), np.asarray(y, float)
    n = len(x)
    if n < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None, False
    exact = math.factorial(n) <= n_perm
    sy = np.sign(y[:, None] - y[None, :])
    # tau-b's denominator does not change when x is permuted
    den = math.sqrt(np.abs(np.sign(x[:, None] - x[None, :])).sum() * np.abs(sy).sum())

    def statistic(xs: np.ndarray, axis: int = -1) -> np.ndarray:
        # only x is shuffled, y is held here: n! pairings, not (n!)^2
        xs = np.moveaxis(xs, axis, -1)
        sx = np.sign(xs[..., :, None] - xs[..., None, :])
        return np.einsum("...ij,ij->...", sx, sy) / den

    res = stats.permutation_test(
        (x,),
        statistic,
        permutation_type="pairings",
        vectorized=True,
        n_resamples=n_perm,
        batch=max(1, 2_000_000 // (n * n)),
        **{_RNG_KEYWORD: rng},
    )
    p = float(res.pvalue)
    return (None if math.isnan(p) else p), exact


# ------------------------------------------------------------------------------ information
def _codes(labels: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "biuf":
        return np.unique(labels, return_inverse=True)[1].ravel().astype(np.int64)
    seen: dict[Hashable, int] = {}
    return np.array([seen.setdefault(v, len(seen)) for v in labels], dtype=np.int64)


def conditional_mutual_information(
    x: Sequence[Hashable] | np.ndarray,
    y: Sequence[Hashable] | np.ndarray,
    z: Sequence[Hashable] | np.ndarray | None = None,
) -> dict[str, Any]:
    r"""Plug-in conditional mutual information ``I(X; Y | Z)`` of discrete samples, in bits.

    With the empirical frequencies ``p`` of the samples ``(x_t, y_t, z_t)``:

    .. math::
        I(X;Y\mid Z) = \sum_{x,y,z} p(x,y,z)\,\log_2\frac{p(z)\,p(x,y,z)}{p(x,z)\,p(y,z)},
        \qquad H(Y\mid Z) = -\sum_{y,z} p(y,z)\log_2\frac{p(y,z)}{p(z)},

    and the normalised value ``I(X;Y|Z) / H(Y|Z)`` in ``[0, 1]`` (None where ``H(Y|Z) = 0``:
    ``Z`` alone fixes ``Y``). Without ``z``: the plain mutual information and ``H(Y)``.

    Args:
        x: labels (hashable) of ``X``, one a sample.
        y: labels of ``Y``, likewise.
        z: labels of the conditioning variable ``Z``, or None (no conditioning).

    Returns:
        ``{"cmi": bits, "h_y_given_z": bits, "normalised": float or None, "n": samples,
        "n_strata": distinct z}``.
    """
    n = len(x)
    if n == 0 or len(y) != n or (z is not None and len(z) != n):
        raise ValueError(
            f"conditional_mutual_information: x, y (and z) need the same, "
            f"non-zero length; got {len(x)}, {len(y)}" + ("" if z is None else f", {len(z)}")
        )
    cx, cy = _codes(x), _codes(y)
    cz = np.zeros(n, np.int64) if z is None else _codes(z)
    nx, ny, nz = cx.max() + 1, cy.max() + 1, cz.max() + 1
    joint = np.zeros((nz, nx, ny))
    np.add.at(joint, (cz, cx, cy), 1.0)
    joint /= n
    pz = joint.sum(axis=(1, 2))
    pxz = joint.sum(axis=2)
    pyz = joint.sum(axis=1)
    k, i, j = np.nonzero(joint)
    p = joint[k, i, j]
    cmi = float(np.sum(p * np.log2(pz[k] * p / (pxz[k, i] * pyz[k, j]))))
    kk, jj = np.nonzero(pyz)
    q = pyz[kk, jj]
    h = float(-np.sum(q * np.log2(q / pz[kk])))
    cmi, h = max(cmi, 0.0), max(h, 0.0)
    return {
        "cmi": cmi,
        "h_y_given_z": h,
        "normalised": cmi / h if h > 1e-12 else None,
        "n": n,
        "n_strata": int(nz),
    }


def pair_cmi(
    mu: np.ndarray, g: np.ndarray, levels: np.ndarray, condition: Sequence[int]
) -> dict[str, Any]:
    r"""Jiang et al.'s ``I(V_mu, V_g | U_S)`` over the ordered pairs of points.

    Every ordered pair ``(i, j)``, ``i != j``, is a sample of ``V_mu = sign(mu_i - mu_j)``,
    ``V_g = sign(g_i - g_j)`` (each in ``{-1, 0, +1}``) and ``U_S``: the levels of both points
    on the axes ``S``, ``(a_i[S], a_j[S])``. Returns :func:`conditional_mutual_information`
    (``normalised`` is ``I / H(V_g | U_S)``).

    Args:
        mu: the points' measure, shape ``(n,)``.
        g: the points' gap, shape ``(n,)``.
        levels: integer level codes, shape ``(n, n_axes)``.
        condition: the columns ``S`` of ``levels`` conditioned on.
    """
    n = len(mu)
    i, j = np.nonzero(~np.eye(n, dtype=bool))
    vm = np.sign(mu[i] - mu[j]).astype(np.int64)
    vg = np.sign(g[i] - g[j]).astype(np.int64)
    cond = list(condition)
    z = None
    if cond:
        u = np.concatenate([levels[i][:, cond], levels[j][:, cond]], axis=1)
        z = np.unique(u, axis=0, return_inverse=True)[1].ravel()
    return conditional_mutual_information(vm, vg, z)


def jiang_k(
    mu: np.ndarray, g: np.ndarray, levels: np.ndarray, names: Sequence[str], max_size: int = 2
) -> tuple[float | None, tuple[str, ...] | None, dict[str, float | None]]:
    """Jiang et al.'s ``K(mu) = min_{|S| <= 2} I(V_mu, V_g | U_S) / H(V_g | U_S)``.

    Over every set ``S`` of at most ``max_size`` axes (the empty set included), with
    :func:`pair_cmi`; sets where ``H(V_g | U_S) = 0`` have no value and are skipped.

    Returns:
        ``(K or None, the minimising S, {"+".join(S) or "-": value})``.
    """
    by: dict[str, float | None] = {}
    best: tuple[float | None, tuple[str, ...] | None] = (None, None)
    for size in range(min(max_size, len(names)) + 1):
        for cols in itertools.combinations(range(len(names)), size):
            v = pair_cmi(mu, g, levels, cols)["normalised"]
            key = tuple(names[c] for c in cols)
            by["+".join(key) or "-"] = v
            if v is not None and (best[0] is None or v < best[0]):
                best = (v, key)
    return best[0], best[1], by


# ------------------------------------------------------------------------------ many tests
def holm(p: Sequence[float]) -> np.ndarray:
    r"""Holm's step-down adjusted p-values (family-wise error rate).

    With the ``m`` p-values sorted, ``p_(1) <= ... <= p_(m)``:

    .. math:: \tilde p_{(i)} = \max_{k \le i} \min\{1, (m - k + 1)\, p_{(k)}\}.
    """
    q = np.asarray(p, float)
    m = len(q)
    if m == 0:
        return q.copy()
    order = np.argsort(q, kind="stable")
    adj = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * q[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    r"""Benjamini-Hochberg adjusted p-values (false discovery rate).

    .. math:: \tilde p_{(i)} = \min_{k \ge i} \min\{1, \tfrac{m}{k}\, p_{(k)}\}

    SciPy's :func:`scipy.stats.false_discovery_control` (``method="bh"``) where it exists
    (SciPy >= 1.11), else the formula above.
    """
    x = np.asarray(p, float)
    if len(x) == 0:
        return x.copy()
    fdc = getattr(stats, "false_discovery_control", None)
    if fdc is not None:
        return np.asarray(fdc(x, method="bh"), float)
    m = len(x)  # pragma: no cover - SciPy < 1.11
    order = np.argsort(x, kind="stable")
    q = np.minimum.accumulate((x[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def adjust_pvalues(p: Sequence[float], method: str = "bh") -> np.ndarray:
    """Adjust p-values for many tests: ``"bh"`` (:func:`benjamini_hochberg`) or ``"holm"``."""
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "holm":
        return holm(p)
    raise ValueError(f"adjust_pvalues: method must be one of {CORRECTIONS}, got {method!r}")
