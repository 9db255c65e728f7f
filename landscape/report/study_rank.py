r"""The study's rankings: how well each generalisation measure orders the runs by their gap.

The runs are those of :mod:`landscape.report.study` (the mapping is described there); only the
converged ones are ranked. NumPy and SciPy only (no torch).

**Design** (what a reviewer will ask, answered once):

- *Seeds*: a configuration's value is the mean over its seeds
  (:func:`landscape.report.study.mean_ci` gives its Student-t interval).
- *Kendall's tau* over all converged runs that have the measure: tau-b
  (:func:`scipy.stats.kendalltau`, through :func:`landscape.report.ranking.kendall_tau`).
- *Its interval*: runs of one configuration are not independent (they share the
  hyperparameters), so resampling runs as if they were would understate the spread. The 95%
  interval is a two-level (hierarchical) percentile bootstrap: draw configurations with
  replacement, then seeds with replacement within each drawn configuration (Davison and
  Hinkley 1997, Sec. 3.8). :func:`scipy.stats.bootstrap` resamples one level of independent
  observations only, hence the hand-written resampling with :class:`numpy.random.Generator`
  (:func:`~landscape.report.study_stats.hierarchical_weights`). Resampling both levels adds
  the seed-to-seed spread twice, so the interval errs towards wide: in simulations with a
  known tau (8 configurations x 3 seeds, bivariate normal, 400 draws) it covered the truth in
  96-99.8% of draws at the nominal 95%, the more the larger the seed noise;
  ``resample_seeds=False`` (configurations only, the cluster bootstrap) covered 91-96%.
- *Its p-value*: a permutation test (:func:`scipy.stats.permutation_test`, pairings; exact
  when every pairing can be enumerated). By default the unit permuted is the configuration
  (tau-b of the configuration means, measure against gap), because shuffling runs assumes
  exchangeable runs and is too liberal when seeds of one configuration resemble each other;
  ``p_unit="run"`` shuffles runs. With one seed per configuration the two coincide.
- *Granulated tau* (Jiang et al. Sec. 4): ``psi_k`` is the mean tau-b within groups of
  configurations that differ only in axis ``k``; ``Psi`` the mean over axes. Seeds are
  *averaged* first: a group is meant to hold pairs that differ in ``k`` only, and two seeds of
  one configuration differ in no axis, so pooling them would mix seed noise into ``psi_k``;
  averaging also weighs configurations equally whatever their number of converged seeds.
- *Conditional mutual information* (Jiang et al. Sec. 4), also over configuration means:
  every ordered pair ``(i, j)`` of configurations gives ``V_mu = sign(mu_i - mu_j)`` and
  ``V_g = sign(g_i - g_j)``; ``U_S`` is the pair's levels on the axes ``S``, of both
  configurations. For axis ``k``, ``S`` is every other axis and

  .. math:: \hat I_k = I(V_\mu; V_g \mid U_S) \,/\, H(V_g \mid U_S),

  in ``[0, 1]`` (plug-in, in bits; 1: the measure's sign gives the gap's sign, 0: nothing);
  ``cmi`` is ``min_k \hat I_k``. The probability space is all ordered pairs, as in Jiang et
  al. (and the PGDL scoring code), not only the pairs that differ in ``k`` alone: within a
  stratum of those the pairs come as mirror images ``(i, j), (j, i)``, and with a two-level
  axis any untied measure would score 1. Jiang et al.'s own ``K(mu)``, the minimum over every
  ``S`` of at most two axes (the empty set included), is ``cmi_jiang``. Mutual information
  ignores the direction: a measure that orders the gap backwards scores as high as one that
  orders it forwards; read it beside tau. Plug-in estimates from few pairs per stratum are
  biased upwards.
- *Many measures*: p-values adjusted across every measure and baseline ranked together
  (:func:`rank_all`): Benjamini-Hochberg by default, Holm on request.

The sign of tau the literature expects for each measure is
:mod:`landscape.report.expectations`.

References:
    Jiang, Neyshabur, Mobahi, Krishnan, Bengio, "Fantastic generalization measures and where
    to find them", ICLR 2020. Dziugaite, Drouin, Neal, Rajkumar, Caballero, Wang, Mitliagkas,
    Roy, "In search of robust measures of generalization", NeurIPS 2020. Liu, Papailiopoulos,
    Achlioptas, "Bad global minima exist and SGD can reach them", NeurIPS 2020. See
    :mod:`landscape.report.study_stats` for the statistical references.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from landscape.report import study_stats as st
from landscape.report.expectations import expected_sign
from landscape.report.ranking import granulated_tau, kendall_tau
from landscape.report.study import _check, _confidence, _finite, _groups, _key, _value

__all__ = ["MIN_RUNS", "rank", "rank_all"]

MIN_RUNS = 4
"""Fewest converged runs with a measure for :func:`rank` to give a tau."""


def _empty_rank(measure: str, **counts: Any) -> dict[str, Any]:
    return {
        "measure": measure,
        "tau": None,
        "ci": None,
        "p": None,
        "p_unit": None,
        "p_exact": None,
        "psi": None,
        "psi_by_axis": {},
        "cmi": None,
        "cmi_by_axis": {},
        "cmi_jiang": None,
        "cmi_jiang_set": None,
        "cmi_jiang_by_set": {},
        "n_boot_used": 0,
        "reason": None,
        "notes": [],
        **counts,
    }


def rank(
    runs: Iterable[Mapping[str, Any]],
    measure: str,
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
    confidence: float = 0.95,
    p_unit: str = "configuration",
    resample_seeds: bool = True,
) -> dict[str, Any]:
    r"""How well one measure orders the converged runs by their generalisation gap.

    Over the converged runs that have both the measure and a gap (a run lacking either is
    left out and counted in ``n_missing``):

    - ``tau``: Kendall's tau-b, :func:`scipy.stats.kendalltau`,
      :math:`\tau_b = (C - D)/\sqrt{(n_0 - n_\mu)(n_0 - n_g)}` (0 for a constant measure).
    - ``ci``: its percentile interval from a two-level bootstrap, ``n_boot`` samples, each
      drawing configurations with replacement and then seeds with replacement within each
      (module docstring: why not :func:`scipy.stats.bootstrap`). Needs 2 configurations.
    - ``p``: two-sided permutation p-value (``n_perm`` pairings, exact when all can be
      listed), of tau-b between configuration means (``p_unit="configuration"``, default)
      or between runs (``"run"``). ``n_perm=0`` skips it.
    - ``psi_by_axis``, ``psi``: Jiang et al.'s granulated tau over configuration means
      (:func:`landscape.report.ranking.granulated_tau`).
    - ``cmi_by_axis``, ``cmi``: :math:`I(V_\mu;V_g\mid U_{S_k})/H(V_g\mid U_{S_k})` with
      :math:`S_k` every axis but ``k``, and its minimum over axes; ``cmi_jiang`` and
      ``cmi_jiang_set``: Jiang et al.'s :math:`K(\mu)`, the minimum over every set of at most
      two axes (module docstring). Axes with one level are left out of both.

    Args:
        runs: run mappings (:mod:`landscape.report.study`).
        measure: a key of the runs' ``measures``, or a top-level number such as
            ``"train_loss"`` or ``"steps"``.
        n_boot: bootstrap samples (0: no interval).
        n_perm: permutations (0: no p-value).
        seed: of the bootstrap and the permutations (two independent streams).
        confidence: of the interval.
        p_unit: ``"configuration"`` or ``"run"``.
        resample_seeds: the second level of the bootstrap (False: configurations only).

    Returns:
        A dict: ``measure, tau, ci, p, p_unit, p_exact, psi, psi_by_axis, cmi, cmi_by_axis,
        cmi_jiang, cmi_jiang_set, cmi_jiang_by_set, n`` (runs ranked), ``n_configs``,
        ``n_missing``, ``n_unconverged``, ``n_boot_used``, ``reason`` (why ``tau`` is None)
        and ``notes`` (why another part is None). With fewer than :data:`MIN_RUNS` runs, or
        a constant gap, everything is None and ``reason`` says why.

    References:
        Jiang et al. 2020, Sec. 2.2 and 4; Davison and Hinkley 1997, Sec. 3.8.
    """
    confidence = _confidence(confidence, "rank")
    if p_unit not in ("configuration", "run"):
        raise ValueError(f"rank: p_unit must be 'configuration' or 'run', got {p_unit!r}")
    if n_boot < 0 or n_perm < 0:
        raise ValueError("rank: n_boot and n_perm must be >= 0")
    runs = _check(runs, "rank")
    groups = _groups(runs, "rank")
    conv = [r for r in runs if r["converged"]]
    kept = [(r, _value(r, measure), _finite(r.get("gap"))) for r in conv]
    kept = [(r, m, g) for r, m, g in kept if m is not None and g is not None]
    configs = list(dict.fromkeys(r["config"] for r, _, _ in kept))
    out = _empty_rank(
        measure,
        n=len(kept),
        n_configs=len(configs),
        n_missing=len(conv) - len(kept),
        n_unconverged=len(runs) - len(conv),
    )
    if len(kept) < MIN_RUNS:
        out["reason"] = (
            f"{len(kept)} converged run(s) with the measure and a gap: need at least {MIN_RUNS}"
        )
        return out
    mu = np.array([m for _, m, _ in kept])
    g = np.array([y for _, _, y in kept])
    t = kendall_tau(mu.tolist(), g.tolist())
    if t.tau is None:
        out["reason"] = t.note
        return out
    out["tau"] = t.tau
    notes: list[str] = out["notes"]
    if t.note:
        notes.append(t.note)
    boot_rng, perm_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    index = {c: i for i, c in enumerate(configs)}
    members: list[list[int]] = [[] for _ in configs]
    for i, (r, _, _) in enumerate(kept):
        members[index[r["config"]]].append(i)
    if n_boot == 0:
        notes.append("no interval: n_boot is 0")
    elif len(configs) < 2:
        notes.append("no interval: one configuration, nothing to resample between")
    else:
        out["ci"], out["n_boot_used"], why = st.tau_bootstrap_ci(
            mu,
            g,
            members,
            n_boot=n_boot,
            confidence=confidence,
            rng=boot_rng,
            resample_seeds=resample_seeds,
        )
        if why:
            notes.append(f"no interval: {why}")
    cmu = np.array([mu[ix].mean() for ix in members])
    cg = np.array([g[ix].mean() for ix in members])
    if n_perm == 0:
        notes.append("no p-value: n_perm is 0")
    else:
        x, y = (cmu, cg) if p_unit == "configuration" else (mu, g)
        out["p"], out["p_exact"] = st.permutation_pvalue(x, y, n_perm=n_perm, rng=perm_rng)
        out["p_unit"] = p_unit
        if out["p"] is None:
            notes.append(
                f"no p-value: the measure or the gap is the same for every "
                f"{p_unit} (or there is one {p_unit})"
            )
    cfg_axes = [{str(k): v for k, v in (groups[c][0].get("axes") or {}).items()} for c in configs]
    _granular(out, cmu, cg, cfg_axes)
    return out


def _granular(
    out: dict[str, Any], cmu: np.ndarray, cg: np.ndarray, cfg_axes: list[dict[str, Any]]
) -> None:
    """Psi and the CMI of configuration means, into ``out``."""
    names = sorted({str(k) for a in cfg_axes for k in a})
    if not names:
        out["notes"].append("no axes: no granulated tau, no CMI")
        return
    gt = granulated_tau(cmu.tolist(), cg.tolist(), cfg_axes)
    out["psi"] = gt.psi
    out["psi_by_axis"] = {k: a.psi for k, a in gt.axes.items()}
    codes: list[dict[Hashable, int]] = [{} for _ in names]
    levels = np.array(
        [
            [codes[c].setdefault(_key(a.get(k)), len(codes[c])) for c, k in enumerate(names)]
            for a in cfg_axes
        ],
        dtype=np.int64,
    )
    varying = [c for c in range(len(names)) if len(set(levels[:, c].tolist())) > 1]
    if not varying:
        out["notes"].append("no axis varies among the configurations: no CMI")
        return
    by_axis: dict[str, float | None] = {}
    for c in varying:
        cond = [o for o in varying if o != c]
        by_axis[names[c]] = st.pair_cmi(cmu, cg, levels, cond)["normalised"]
    out["cmi_by_axis"] = by_axis
    defined = [v for v in by_axis.values() if v is not None]
    out["cmi"] = min(defined) if defined else None
    if not defined:
        out["notes"].append("no CMI: the other axes fix the sign of every gap difference")
    sub = levels[:, varying]
    k, s, by = st.jiang_k(cmu, cg, sub, [names[c] for c in varying])
    out["cmi_jiang"], out["cmi_jiang_set"], out["cmi_jiang_by_set"] = (
        k,
        (list(s) if s is not None else None),
        by,
    )


def rank_all(
    runs: Iterable[Mapping[str, Any]],
    measures: Sequence[str] | None = None,
    baselines: Sequence[str] = ("train_loss", "steps"),
    expected_signs: Mapping[str, int | None] | None = None,
    method: str = "bh",
    *,
    n_boot: int = 2000,
    n_perm: int = 9999,
    seed: int = 0,
    confidence: float = 0.95,
    p_unit: str = "configuration",
    resample_seeds: bool = True,
) -> dict[str, Any]:
    r"""Rank every measure and the baselines (:func:`rank`), with p-values adjusted together.

    ``beats_baselines`` (conservative): with the measure's interval ``[lo, hi]`` for tau, the
    lower end of its interval for ``|tau|`` is ``0`` if ``lo <= 0 <= hi`` and
    ``min(|lo|, |hi|)`` otherwise; the measure beats the baselines when that lower end is
    strictly above ``|tau_b|`` of every baseline ``b`` with a tau. It asks the whole interval
    to clear each baseline's estimate; the baselines' own uncertainty is not added. None for
    a baseline, a measure without an interval, or when no baseline has a tau.

    ``sign_agrees``: ``sign(tau) == expected_sign`` (``tau = 0`` disagrees); None without an
    expected sign or a tau.

    Args:
        runs: run mappings.
        measures: the names to rank (default: every measure a converged run has, sorted).
        baselines: top-level numbers every measure must beat (Jiang et al.: train loss and
            steps to the criterion).
        expected_signs: pattern -> sign (default
            :data:`~landscape.report.expectations.EXPECTED_SIGNS`).
        method: ``"bh"`` (Benjamini-Hochberg, :func:`scipy.stats.false_discovery_control`;
            false discovery rate) or ``"holm"`` (Holm; family-wise error rate).
        n_boot: as for :func:`rank`.
        n_perm: as for :func:`rank`.
        seed: as for :func:`rank`, one for all, so that measures with the same runs see the
            same bootstrap draws.
        confidence: as for :func:`rank`.
        p_unit: as for :func:`rank`.
        resample_seeds: as for :func:`rank`.

    Returns:
        ``{"correction": method, "n_tests": p-values adjusted, "rows": [...]}``: a row a
        measure then a baseline, each :func:`rank`'s dict with ``p_adjusted, baseline,
        expected_sign, sign_agrees, beats_baselines, correction`` added.

    References:
        Jiang et al. 2020; Holm 1979; Benjamini and Hochberg 1995.
    """
    if method not in st.CORRECTIONS:
        raise ValueError(f"rank_all: method must be one of {st.CORRECTIONS}, got {method!r}")
    runs = _check(runs, "rank_all")
    if measures is None:
        measures = sorted({k for r in runs if r["converged"] for k in (r.get("measures") or {})})
    names = [m for m in measures if m not in baselines]
    rows = []
    for name, is_base in [(m, False) for m in names] + [(b, True) for b in baselines]:
        row = rank(
            runs,
            name,
            n_boot=n_boot,
            n_perm=n_perm,
            seed=seed,
            confidence=confidence,
            p_unit=p_unit,
            resample_seeds=resample_seeds,
        )
        sign = expected_sign(name, expected_signs)
        row.update(
            baseline=is_base,
            expected_sign=sign,
            correction=method,
            sign_agrees=None
            if sign is None or row["tau"] is None
            else bool(np.sign(row["tau"]) == sign),
            p_adjusted=None,
            beats_baselines=None,
        )
        rows.append(row)
    tested = [r for r in rows if r["p"] is not None]
    for r, q in zip(tested, st.adjust_pvalues([r["p"] for r in tested], method), strict=True):
        r["p_adjusted"] = float(q)
    base_taus = [abs(r["tau"]) for r in rows if r["baseline"] and r["tau"] is not None]
    for r in rows:
        if r["baseline"] or r["ci"] is None or not base_taus:
            continue
        lo, hi = r["ci"]
        floor = 0.0 if lo <= 0 <= hi else min(abs(lo), abs(hi))
        r["beats_baselines"] = bool(floor > max(base_taus))
    return {"correction": method, "n_tests": len(tested), "rows": rows}
