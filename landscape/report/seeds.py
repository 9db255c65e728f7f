"""The seeds behind each configuration's means: every metric's value per seed.

The report averages the runs of a configuration over their seeds; :func:`seed_blocks` lists
the values behind each mean (``"4 / 2 / 2"``, in the order of the seeds column), and
:func:`seeds_csv` writes them a line a run and metric (``per_seed.csv``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from typing import Any

from landscape.report.contrasts import TOP_LEVEL, metric_names, seed_values
from landscape.report.history_metrics import ordered_details
from landscape.report.render import MISSING, _fmt

__all__ = ["PER_TABLE", "seed_blocks", "seeds_csv"]

PER_TABLE = 6
"""Metrics a table of per-seed values (the tables stay readable)."""

Block = tuple[Any, ...]


def _ordered(doc: Mapping[str, Any]) -> list[tuple[str, list[tuple[Any, str, dict[str, Any]]]]]:
    values = seed_values(doc)
    return [
        (str(c["config"]), values[str(c["config"])])
        for c in doc["configs"]
        if str(c["config"]) in values
    ]


def _in_order(doc: Mapping[str, Any], names: list[str]) -> list[str]:
    """The top-level metrics, the values along training (their report order), the measures."""
    along = {k for r in doc["runs"] if r["included"] for k in r.get("milestones") or {}}
    top = [m for m in names if m in TOP_LEVEL]
    return (
        top
        + ordered_details(along & set(names))
        + [m for m in names if m not in along and m not in TOP_LEVEL]
    )


def _rises_text(rows: list[tuple[str, list[tuple[Any, str, dict[str, Any]]]]]) -> str:
    """How many included runs have a training loss that rose (``loss_rises`` > 0)."""
    counts = [
        v["loss_rises"] for _, runs in rows for *_, v in runs if v.get("loss_rises") is not None
    ]
    if not counts:
        return ""
    up = sum(c > 0 for c in counts)
    return (
        f" The training loss rose at least once (loss_rises > 0, non-monotone) in {up} of "
        f"the {len(counts)} included runs that have loss_rises."
    )


def seed_blocks(doc: Mapping[str, Any]) -> list[Block]:
    """Tables of each configuration's per-seed values, in the layout of its means."""
    rows = _ordered(doc)
    if not rows:
        return []
    names = [
        m
        for m in _in_order(doc, metric_names(doc))
        if any(v[m] is not None for _, runs in rows for *_, v in runs)
    ]
    out: list[Block] = [
        ("h2", "Seeds behind the means"),
        (
            "p",
            "Each configuration's included runs, one value a seed in the order of the seeds "
            "column (the numbers behind the means and intervals above; per_seed.csv has them "
            "a line a run). The values along training (step_train_acc_1, ..., "
            "lambda_max/thr late median, ...) are defined under Configurations."
            + _rises_text(rows),
        ),
    ]
    for i in range(0, len(names), PER_TABLE):
        part = names[i : i + PER_TABLE]
        table = [
            [config, " / ".join(_fmt(s) for s, _, _ in runs)]
            + [" / ".join(_fmt(v[m], 4) for *_, v in runs) if runs else MISSING for m in part]
            for config, runs in rows
        ]
        out.append(("table", ["config", "seeds", *part], table))
    return out


def seeds_csv(doc: Mapping[str, Any]) -> str:
    """``per_seed.csv``: config, seed, run, metric, value (full precision; empty if missing)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["config", "seed", "run", "metric", "value"])
    names = metric_names(doc)
    for config, runs in _ordered(doc):
        for seed, run, values in runs:
            for m in names:
                v = values[m]
                w.writerow(
                    [config, "" if seed is None else seed, run, m, "" if v is None else repr(v)]
                )
    return buf.getvalue()
