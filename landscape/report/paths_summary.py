"""The barriers of the stored paths, summarised per configuration over its pairs of seeds.

Each stored path whose two ends are different runs of one configuration (runs that differ
only in their seed, :mod:`landscape.report.read`) is one pair. For each configuration, path
kind (``"linear"``, ``"aligned"``: the line after weight matching, ``"bezier"``, ...) and ends
(``final`` to ``final`` usually), :func:`path_barriers` gives the mean and Student-t interval
(:func:`landscape.report.study.mean_ci`) over the pairs of the train-loss barrier, the
accuracy barrier and the test-loss barrier (where stored); :func:`barrier_blocks` is its
table. :func:`matching_share` gives the share of the linear barrier that weight matching
removes (``1 - aligned / linear`` a pair, over the pairs), :func:`share_blocks` its table.

Examples:
    >>> rows = path_barriers(runs, paths)                               # doctest: +SKIP
    >>> rows[0]["kind"], rows[0]["barrier"]["mean"], rows[0]["n_pairs"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from landscape.report.read import number
from landscape.report.render import _fmt
from landscape.report.render_study import stat_cell
from landscape.report.study import mean_ci

__all__ = ["BARRIER_KEYS", "barrier_blocks", "matching_share", "path_barriers", "share_blocks"]

BARRIER_KEYS = ("barrier", "accuracy barrier", "test barrier")
"""The barriers of a path that are summarised over pairs (train loss, accuracy, test loss)."""

Block = tuple[Any, ...]


def _ends(p: Mapping[str, Any]) -> str:
    a, b = str(p["a_which"]), str(p["b_which"])
    return a if a == b else f"{a} -> {b}"


def _grouped(
    runs: Iterable[Mapping[str, Any]], paths: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str, str], dict[frozenset[str], Mapping[str, Any]]]:
    """(config, kind, ends) -> {pair of runs: its first path}, pairs of one configuration."""
    config = {str(r["run"]): str(r["config"]) for r in runs}
    groups: dict[tuple[str, str, str], dict[frozenset[str], Mapping[str, Any]]] = {}
    for p in paths:
        a, b = str(p["a"]), str(p["b"])
        if a == b or a not in config or config[a] != config.get(b):
            continue
        groups.setdefault((config[a], str(p["kind"]), _ends(p)), {}).setdefault(
            frozenset((a, b)), p
        )
    return groups


def path_barriers(
    runs: Iterable[Mapping[str, Any]],
    paths: Iterable[Mapping[str, Any]],
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    """Each path kind's barriers over the pairs of seeds of each configuration.

    Args:
        runs: the runs of :func:`landscape.report.read.collect` (``run`` and ``config``).
        paths: its paths (``a``, ``b``, ``a_which``, ``b_which``, ``kind`` and the barriers).
        confidence: the level of the intervals, in (0, 1).

    Returns:
        One dict a (configuration, kind, ends), sorted by them: ``config``, ``kind``,
        ``ends``, ``n_pairs``, ``pairs`` (``"a-b"``) and, for each of :data:`BARRIER_KEYS`,
        the :func:`~landscape.report.study.mean_ci` of its values over the pairs. Paths
        between runs of different configurations, or from a run to itself, are left out;
        two paths of one kind between the same two runs and ends count once (the first).
    """
    rows = []
    for (cfg, kind, ends), pairs in sorted(_grouped(runs, paths).items()):
        members = list(pairs.values())
        row: dict[str, Any] = {
            "config": cfg,
            "kind": kind,
            "ends": ends,
            "n_pairs": len(members),
            "pairs": [f"{p['a']}-{p['b']}" for p in members],
        }
        for k in BARRIER_KEYS:
            row[k] = mean_ci([p.get(k) for p in members], confidence)
        rows.append(row)
    return rows


def matching_share(
    runs: Iterable[Mapping[str, Any]],
    paths: Iterable[Mapping[str, Any]],
    confidence: float = 0.95,
) -> list[dict[str, Any]]:
    r"""The share of the linear barrier that weight matching removes, over pairs of seeds.

    For each pair of runs of one configuration with both a ``linear`` and an ``aligned`` path
    (the line after weight matching) between the same ends, the share removed is

    .. math:: 1 - B_\text{aligned} / B_\text{linear}

    of the train-loss barriers (1: matching removes the whole barrier, 0: none of it); the
    mean and Student-t interval over the pairs (:func:`~landscape.report.study.mean_ci`). A
    pair whose linear barrier is not positive has no share (``n_dropped`` counts it).

    Args:
        runs: the runs of :func:`landscape.report.read.collect` (``run`` and ``config``).
        paths: its paths.
        confidence: the level of the intervals, in (0, 1).

    Returns:
        One dict a (configuration, ends) with such pairs, sorted: ``config``, ``ends``,
        ``n_pairs``, ``pairs``, ``linear``, ``aligned`` (the barriers a pair), ``shares`` (a
        pair, None where undefined) and ``share`` (:func:`~landscape.report.study.mean_ci`).
    """
    groups = _grouped(runs, paths)
    rows = []
    for (cfg, kind, ends), lines in sorted(groups.items()):
        if kind != "linear" or (cfg, "aligned", ends) not in groups:
            continue
        aligned = groups[(cfg, "aligned", ends)]
        both = [pair for pair in lines if pair in aligned]
        if not both:
            continue
        lin = [number(lines[pair].get("barrier")) for pair in both]
        ali = [number(aligned[pair].get("barrier")) for pair in both]
        shares = [
            1.0 - b / a if a is not None and b is not None and a > 0 else None
            for a, b in zip(lin, ali, strict=True)
        ]
        rows.append(
            {
                "config": cfg,
                "ends": ends,
                "n_pairs": len(both),
                "pairs": [f"{lines[pair]['a']}-{lines[pair]['b']}" for pair in both],
                "linear": lin,
                "aligned": ali,
                "shares": shares,
                "share": mean_ci(shares, confidence),
            }
        )
    return rows


def barrier_blocks(rows: list[Mapping[str, Any]]) -> list[Block]:
    """The table of :func:`path_barriers` (nothing without a pair of seeds)."""
    if not rows:
        return []
    cols = ["configuration", "kind", "ends", "pairs", *BARRIER_KEYS]
    table = [
        [str(r["config"]), str(r["kind"]), str(r["ends"]), str(r["n_pairs"])]
        + [stat_cell(r[k]) for k in BARRIER_KEYS]
        for r in rows
    ]
    return [
        ("h2", "Barriers over pairs of seeds"),
        (
            "p",
            "Each path kind's barriers over the pairs of runs of one configuration: mean "
            "[95% Student-t interval] over the pairs (barrier: train loss; accuracy barrier; "
            "test barrier: test loss, where stored).",
        ),
        ("table", cols, table),
    ]


def share_blocks(rows: list[Mapping[str, Any]]) -> list[Block]:
    """The table of :func:`matching_share` (nothing without a pair with both paths)."""
    if not rows:
        return []
    table = [
        [str(r["config"]), str(r["ends"]), str(r["n_pairs"])]
        + [stat_cell(mean_ci(r[k])) for k in ("linear", "aligned")]
        + [stat_cell(r["share"]), " / ".join(_fmt(x, 3) for x in r["shares"])]
        for r in rows
    ]
    cols = ["configuration", "ends", "pairs", "linear", "aligned", "share removed", "per pair"]
    return [
        ("h2", "Barrier removed by weight matching"),
        (
            "p",
            "For each pair of seeds with both a linear path and the line after weight "
            "matching (aligned): the share of the linear train-loss barrier removed, "
            "1 - aligned / linear, its mean [95% Student-t interval] over the pairs, and "
            "the barriers of the two paths over the same pairs.",
        ),
        ("table", cols, table),
    ]
