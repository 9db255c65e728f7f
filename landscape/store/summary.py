"""A readable summary of a landscape file.

Its runs, their settings, status, final metrics and what each holds. Needs only NumPy and h5py.

Examples:
    >>> print(summary.text("cmp.h5"))                                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from landscape.store.file import RunInfo, Store

__all__ = ["rows", "text"]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _optimizer(opt: Any) -> str:
    if not isinstance(opt, dict):
        return "-"
    name = opt.get("name", "?")
    schedule = (opt.get("schedule") or {}).get("name", "constant")
    extra = ([] if schedule == "constant" else [schedule]) + (
        [f"warmup={opt['warmup']}"] if opt.get("warmup") else []
    )
    if name == "sam":
        inner = _optimizer(opt.get("base", {}))
        return " ".join(
            [
                f"sam(rho={opt.get('rho')}{', adaptive' if opt.get('adaptive') else ''}) + {inner}",
                *extra,
            ]
        )
    keys = [k for k in ("lr", "momentum", "weight_decay", "noise") if opt.get(k)]
    return " ".join([name, *(f"{k}={_fmt(opt[k], 3)}" for k in keys), *extra])


def rows(info: RunInfo) -> dict[str, str]:
    """One run as the columns of the table."""
    a = info.attrs
    final = a.get("final_metrics") or {}
    model = a.get("model") or {}
    holds = [f"{info.n_snapshots} snapshots", f"{info.n_history} history rows"]
    for kind in ("probes", "surfaces", "paths"):
        names = getattr(info, kind)
        if names:
            holds.append(f"{kind}: {', '.join(names)}")
    return {
        "run": info.name,
        "status": info.status,
        "model": model.get("name", a.get("source", "-")) if isinstance(model, dict) else "-",
        "optimizer": _optimizer(a.get("optimizer")),
        "batch": _fmt(a.get("batch_size")),
        "seed": _fmt(a.get("seed")),
        "steps": _fmt(a.get("steps")),
        "stop": _fmt(a.get("stop_reason")),
        "train loss": _fmt(final.get("train_loss")),
        "train acc": _fmt(final.get("train_acc")),
        "test loss": _fmt(final.get("test_loss")),
        "test acc": _fmt(final.get("test_acc")),
        "params": str(info.n_params),
        "holds": "; ".join(holds),
    }


def _table(records: list[dict[str, str]]) -> str:
    cols = list(records[0])
    width = {c: max(len(c), *(len(r[c]) for r in records)) for c in cols}
    line = lambda r: "  ".join(r[c].ljust(width[c]) for c in cols).rstrip()  # noqa: E731
    return "\n".join(
        [line({c: c for c in cols}), line({c: "-" * width[c] for c in cols}), *map(line, records)]
    )


def text(path: str | os.PathLike, run: str | None = None) -> str:
    """The summary of ``path``: a header and a table of runs.

    Args:
        path: the landscape file.
        run: a run whose settings are shown in full as well.

    Returns:
        The text, lines joined by newlines.
    """
    with Store(path) as s:
        attrs = s.attrs
        runs = [s.info(r) for r in s.runs()]
        compare = s.compares()
        detail = s.info(run) if run is not None else None
        writer = s.writer()
        unchecked, n_datasets = s.checksums()
    size = os.path.getsize(path)
    out = [
        f"{os.fspath(path)}: landscape file, format_version {attrs.get('format_version')}, "
        f"{size / 1e6:.2f} MB, created {attrs.get('created', '?')} by "
        f"{attrs.get('created_by', '?')} (torch {attrs.get('torch_version', '?')})"
    ]
    if unchecked:
        out.append(
            f"no checksums on {unchecked} of {n_datasets} datasets (written before landscape "
            "kept checksums): they are read as they are, damage to them goes unnoticed"
        )
    if writer is not None:
        out.append(
            f"being written by {writer.get('what')} (process {writer.get('pid')} on "
            f"{writer.get('host')}, since {writer.get('since')}): what follows is its "
            "last commit"
        )
    if runs:
        out += ["", f"{len(runs)} run(s):", _table([rows(i) for i in runs])]
    else:
        out += ["", "no runs yet"]
    if compare:
        out += ["", f"compare: {', '.join(compare)}"]
    if detail is not None:
        settings = {k: v for k, v in detail.attrs.items() if k != "spec"}
        out += [
            "",
            f"run {detail.name!r} ({detail.status}):",
            json.dumps(settings, indent=2, sort_keys=True, default=str),
        ]
    return "\n".join(out)
