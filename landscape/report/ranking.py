r"""Rank generalisation measures by how well they order runs by their generalisation gap.

Two statistics: Kendall's tau and Jiang et al.'s granulated tau.

**Kendall's tau** (:func:`kendall_tau`) of a measure ``mu`` with the gap ``g`` over ``n`` runs
is SciPy's :func:`scipy.stats.kendalltau`, variant ``"b"`` by default::

    tau_b = (C - D) / sqrt((n0 - t_mu) (n0 - t_g)),   n0 = n (n - 1) / 2

with ``C``/``D`` the concordant/discordant pairs and ``t_mu``, ``t_g`` the pairs tied in the
measure or in the gap. Without ties it equals Jiang et al.'s
``tau = mean_{i<j} sign(mu_i - mu_j) sign(g_i - g_j)`` (variant ``"a"``, computed directly;
a tie contributes 0 to it). A positive tau: the larger the measure, the larger the gap.

How the awkward cases are handled, the same everywhere:

- **Missing values**: a run whose measure or gap is None or NaN is dropped (pairwise
  deletion); the count is reported as ``n_dropped``.
- **Too few runs**: with fewer than 2 runs left, tau is None (``note`` says why).
- **Ties**: tau-b discounts tied pairs (SciPy); ties in both give no information.
- **Constant gap**: nothing to predict, tau is None.
- **Constant measure, varying gap**: the measure orders no pair: tau is 0 (SciPy's tau-b
  would be NaN; tau-a is 0), p-value None.

**Granulated tau** (:func:`granulated_tau`, Jiang et al. 2020, Sec. 4): with each run described
by its hyperparameter axes (``{"lr": 0.1, "batch_size": 32, ...}``), for each axis ``k`` the runs
are grouped by their values on every *other* axis (a group's runs differ only in ``k``), the
tau of each group is computed as above, and ``psi_k`` is the mean over the groups whose tau is
defined. ``Psi`` is the mean of ``psi_k`` over the axes that have one. Groups of fewer than 2
runs (after dropping missing values) and groups with a constant gap have no tau: they are
skipped and counted (``n_skipped``); an axis with no usable group has ``psi`` None and is left
out of ``Psi``. A run that lacks an axis another run has takes the value None on it (a level of
its own). ``strata`` (e.g. the sweep a run belongs to) keeps runs of different strata out of
each other's groups.

Examples:
    >>> kendall_tau([1, 2, 3], [0.1, 0.2, 0.3]).tau
    1.0
    >>> g = granulated_tau([1, 2, 3, 4], [1, 2, 3, 4],
    ...                    [{"lr": 1, "bs": 1}, {"lr": 2, "bs": 1},
    ...                     {"lr": 1, "bs": 2}, {"lr": 2, "bs": 2}])
    >>> g.psi, g.axes["lr"].psi
    (1.0, 1.0)

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where to
    find them", ICLR 2020 (Sec. 2.2 and 4: Kendall's rank correlation and the granulated
    coefficient Psi).
"""

from __future__ import annotations

import json
import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["AxisTau", "GranulatedTau", "Tau", "granulated_tau", "kendall_tau"]

VARIANTS = ("a", "b", "c")


@dataclass(frozen=True)
class Tau:
    """Kendall's tau of a measure with the gap.

    Attributes:
        tau: the coefficient, or None where it is undefined (fewer than 2 runs, constant gap).
        pvalue: SciPy's two-sided p-value (None where tau is None, for a constant measure, and
            for variant ``"a"``).
        n: runs with both values. n_pairs: ``n (n - 1) / 2``, the pairs behind tau.
        n_dropped: runs left out for a missing (None or NaN) measure or gap.
        variant: ``"a"``, ``"b"`` or ``"c"``. note: why tau is None or 0, else empty.
    """

    tau: float | None
    pvalue: float | None
    n: int
    n_pairs: int
    n_dropped: int
    variant: str = "b"
    note: str = ""


@dataclass(frozen=True)
class AxisTau:
    """The granulated tau of one axis ``k``.

    Attributes:
        axis: the axis. psi: mean tau over the groups that differ only in ``k`` (None without
            a usable group). taus: each usable group's tau.
        n_groups: usable groups. n_runs, n_pairs: runs and within-group pairs behind ``psi``.
        n_skipped: groups without a tau (fewer than 2 runs, or a constant gap).
    """

    axis: str
    psi: float | None
    taus: tuple[float, ...]
    n_groups: int
    n_runs: int
    n_pairs: int
    n_skipped: int


@dataclass(frozen=True)
class GranulatedTau:
    """Jiang et al.'s granulated tau.

    Attributes:
        psi: ``Psi``, the mean of ``psi_k`` over the axes that have one (None if none has).
        axes: axis -> :class:`AxisTau`, in sorted order of the axes.
        n: runs with both values and axes. n_dropped: runs left out for a missing measure or
            gap, or without axes (None).
    """

    psi: float | None
    axes: dict[str, AxisTau] = field(default_factory=dict)
    n: int = 0
    n_dropped: int = 0


def _number(value: Any) -> float | None:
    """A finite float, or None for None/NaN; anything else not a number is an error."""
    if value is None:
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"ranking: values must be numbers or None, got {value!r}") from None
    return None if math.isnan(x) else x


def _as_list(values: Any, where: str) -> list:
    if isinstance(values, (str, bytes, Mapping)) or not hasattr(values, "__iter__"):
        raise TypeError(
            f"{where}: expected a sequence with one entry a run, got {type(values).__name__}"
        )
    return list(values)


def _pairs(measure: list, gap: list, where: str) -> tuple[list[int], list[float], list[float]]:
    if len(measure) != len(gap):
        raise ValueError(
            f"{where}: measure and gap must have one value a run, got {len(measure)} and {len(gap)}"
        )
    keep, mu, g = [], [], []
    for i, (m, y) in enumerate(zip(measure, gap, strict=True)):
        m, y = _number(m), _number(y)
        if m is not None and y is not None:
            keep.append(i)
            mu.append(m)
            g.append(y)
    return keep, mu, g


def _tau(mu: list[float], g: list[float], n_dropped: int, variant: str) -> Tau:
    n = len(mu)
    n_pairs = n * (n - 1) // 2
    if n < 2:
        return Tau(
            None, None, n, n_pairs, n_dropped, variant, f"{n} run(s) with both values: need 2"
        )
    if len(set(g)) == 1:
        return Tau(
            None,
            None,
            n,
            n_pairs,
            n_dropped,
            variant,
            "the gap is the same for every run: nothing to rank",
        )
    if len(set(mu)) == 1:
        return Tau(
            0.0,
            None,
            n,
            n_pairs,
            n_dropped,
            variant,
            "the measure is the same for every run: it orders no pair",
        )
    if variant == "a":
        a, b = np.asarray(mu), np.asarray(g)
        s = np.sign(a[:, None] - a[None, :]) * np.sign(b[:, None] - b[None, :])
        return Tau(float(s[np.triu_indices(n, 1)].mean()), None, n, n_pairs, n_dropped, variant)
    res = stats.kendalltau(mu, g, variant=variant)
    tau, p = float(res.statistic), float(res.pvalue)
    return Tau(
        None if math.isnan(tau) else tau,
        None if math.isnan(p) else p,
        n,
        n_pairs,
        n_dropped,
        variant,
    )


def _check_variant(where: str, variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"{where}: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")


def kendall_tau(
    measure: Sequence[float | None], gap: Sequence[float | None], *, variant: str = "b"
) -> Tau:
    """Kendall's tau of a measure with the generalisation gap over runs.

    Args:
        measure: one value a run (None or NaN where the run has none).
        gap: the generalisation gap of each run, in the same order (None or NaN: unknown).
        variant: ``"b"`` (default: SciPy's tau-b, adjusted for ties), ``"c"`` (SciPy's
            tau-c) or ``"a"`` (Jiang et al.'s formula: the mean over all pairs of
            ``sign(mu_i - mu_j) sign(g_i - g_j)``; ties count 0).

    Returns:
        :class:`Tau`: the coefficient (None where undefined), its p-value and the number of
        runs, pairs and dropped runs behind it. See the module docstring for ties, missing
        values and constant inputs.

    Raises:
        ValueError: measure and gap of different lengths, an unknown variant.
        TypeError: a value that is not a number or None.

    Examples:
        >>> kendall_tau([3, 2, 1], [1, 2, 3]).tau
        -1.0
        >>> kendall_tau([1, None, 3], [1, 2, 3]).n_dropped
        1
    """
    _check_variant("kendall_tau", variant)
    measure, gap = _as_list(measure, "kendall_tau"), _as_list(gap, "kendall_tau")
    keep, mu, g = _pairs(measure, gap, "kendall_tau")
    return _tau(mu, g, len(gap) - len(keep), variant)


def _level(value: Any) -> Hashable:
    """An axis value as a dictionary key (lists and dicts through JSON)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 1.0 and 1 are one level
    if isinstance(value, Hashable):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def granulated_tau(
    measure: Sequence[float | None],
    gap: Sequence[float | None],
    axes: Sequence[Mapping[str, Any] | None],
    *,
    strata: Sequence[Hashable] | None = None,
    variant: str = "b",
) -> GranulatedTau:
    """Jiang et al.'s granulated Kendall tau: ``psi_k`` per hyperparameter axis and ``Psi``.

    For each axis ``k`` (every key that occurs in ``axes``), runs that agree on every other
    axis (and on ``strata``, when given) form a group; ``psi_k`` is the mean of the groups'
    :func:`kendall_tau` (``variant``) over the groups where it is defined; ``Psi`` is the mean
    of ``psi_k`` over the axes that have one.

    Args:
        measure: one value a run, None or NaN where unknown (those runs are dropped).
        gap: the runs' generalisation gaps, likewise.
        axes: each run's hyperparameter values, ``{axis: value}`` (scalars or labels), or None
            for a run outside any grid (dropped). A missing key is the level None.
        strata: optional labels (e.g. the sweep's name): runs of different strata never share
            a group.
        variant: as in :func:`kendall_tau`.

    Returns:
        :class:`GranulatedTau`.

    Raises:
        ValueError: sequences of different lengths, an unknown variant. TypeError: a value
            that is not a number or None, axes that are not mappings.

    Examples:
        >>> axes = [{"lr": 1, "bs": 1}, {"lr": 2, "bs": 1}, {"lr": 1, "bs": 2},
        ...         {"lr": 2, "bs": 2}]
        >>> granulated_tau([1, 2, 4, 3], [1, 2, 3, 4], axes).axes["lr"].psi
        0.0
    """
    _check_variant("granulated_tau", variant)
    measure, gap = _as_list(measure, "granulated_tau"), _as_list(gap, "granulated_tau")
    keep, mu, g = _pairs(measure, gap, "granulated_tau")
    axes = _as_list(axes, "granulated_tau")
    strata = [None] * len(axes) if strata is None else list(strata)
    if len(axes) != len(gap) or len(strata) != len(axes):
        raise ValueError(
            f"granulated_tau: axes (and strata) must have one entry a run: "
            f"{len(gap)} runs, {len(axes)} axes, {len(strata)} strata"
        )
    rows = []
    for i, m, y in zip(keep, mu, g, strict=True):
        a = axes[i]
        if a is None:
            continue
        if not isinstance(a, Mapping):
            raise TypeError(
                f"granulated_tau: axes must be mappings {{axis: value}} or None, "
                f"got {type(a).__name__} for run {i}"
            )
        rows.append((m, y, {str(k): _level(v) for k, v in a.items()}, strata[i]))
    names = sorted({k for _, _, a, _ in rows for k in a})
    out = {}
    for k in names:
        groups: dict[Hashable, list[tuple[float, float]]] = {}
        for m, y, a, s in rows:
            key = (s, tuple(a.get(o) for o in names if o != k))
            groups.setdefault(key, []).append((m, y))
        taus, n_runs, n_pairs, skipped = [], 0, 0, 0
        for members in groups.values():
            t = _tau([m for m, _ in members], [y for _, y in members], 0, variant)
            if t.tau is None:
                skipped += 1
                continue
            taus.append(t.tau)
            n_runs += t.n
            n_pairs += t.n_pairs
        psi = float(np.mean(taus)) if taus else None
        out[k] = AxisTau(k, psi, tuple(taus), len(taus), n_runs, n_pairs, skipped)
    psis = [a.psi for a in out.values() if a.psi is not None]
    return GranulatedTau(
        float(np.mean(psis)) if psis else None, out, len(rows), len(gap) - len(rows)
    )
