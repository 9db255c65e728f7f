"""The barriers of the stored paths, summarised per configuration over its pairs of seeds.

Each stored path whose two ends are different runs of one configuration (runs that differ
only in their seed, :mod:`landscape.report.read`) is one pair. For each configuration, path
kind (``"linear"``, ``"aligned"``: the line after weight matching, ``"bezier"``, ...) and ends
(``final`` to ``final`` usually), :func:`path_barriers` gives the mean and Student-t interval
(:func:`landscape.report.study.mean_ci`) over the pairs of the train-loss barrier, the
accuracy barrier and the test-loss barrier (where stored); :func:`barrier_blocks` is its table.

Examples:
    >>> rows = path_barriers(runs, paths)                               # doctest: +SKIP
    >>> rows[0]["kind"], rows[0]["barrier"]["mean"], rows[0]["n_pairs"]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from landscape.report.render_study import stat_cell
from landscape.report.study import mean_ci

__all__ = ["BARRIER_KEYS", "barrier_blocks", "path_barriers"]

BARRIER_KEYS = ("barrier", "accuracy barrier", "test barrier")
"""The barriers of a path that are summarised over pairs (train loss, accuracy, test loss)."""

Block = tuple[Any, ...]


def _ends(p: Mapping[str, Any]) -> str:
    a, b = str(p["a_which"]), str(p["b_which"])
    return a if a == b else f"{a} -> {b}"


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
    config = {str(r["run"]): str(r["config"]) for r in runs}
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    seen: set[tuple[str, str, str, frozenset[str]]] = set()
    for p in paths:
        a, b = str(p["a"]), str(p["b"])
        if a == b or a not in config or config[a] != config.get(b):
            continue
        key = (config[a], str(p["kind"]), _ends(p))
        pair = (*key, frozenset((a, b)))
        if pair in seen:
            continue
        seen.add(pair)
        groups.setdefault(key, []).append(p)
    rows = []
    for (cfg, kind, ends), members in sorted(groups.items()):
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
