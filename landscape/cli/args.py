"""Argument parsing shared by the subcommands of :mod:`landscape.cli`."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

__all__ = ["axis", "checkpoint", "data_table", "grid", "pairs", "run_and_checkpoint"]


def pairs(items: Sequence[str] | None, flag: str) -> dict:
    """``KEY=VALUE`` items of a repeated flag as a dict (``-`` in keys becomes ``_``).

    Values are read as TOML would read them, else kept as strings.

    Raises:
        ValueError: an item without ``=`` or without a key (the message names ``flag``).
    """
    from landscape.train.spec import parse_value

    out = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.replace("-", "_")] = parse_value(value)
    return out


def grid(text: str, flag: str) -> object:
    """``START:STOP:NUM`` as ``numpy.linspace(START, STOP, NUM)``.

    Raises:
        ValueError: another form, ``START >= STOP`` or ``NUM < 1`` (the message names ``flag``).
    """
    import numpy as np

    return np.linspace(*axis(text, flag))


def axis(text: str, flag: str) -> tuple[float, float, int]:
    """``START:STOP:NUM`` as ``(START, STOP, NUM)``, checked as :func:`grid` says."""
    import math

    parts = text.split(":")
    try:
        start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        raise ValueError(f"{flag} must be START:STOP:NUM (e.g. -1:1:21), got {text!r}") from None
    if len(parts) != 3 or num < 1 or not start < stop or not math.isfinite(stop - start):
        raise ValueError(
            f"{flag} must be START:STOP:NUM with finite START < STOP and NUM >= 1, got {text!r}"
        )
    return start, stop, num


def checkpoint(text: str) -> str | int:
    """``init``, ``final`` or a trajectory step (an int)."""
    return int(text) if text.isdigit() else text


def data_table(args: argparse.Namespace) -> dict | None:
    """The ``[data]`` table of --data and --data-arg, for runs that do not record theirs."""
    return {"name": args.data, **pairs(args.data_arg, "--data-arg")} if args.data else None


def run_and_checkpoint(text: str) -> tuple[str, str | int]:
    """``RUN[:CHECKPOINT]`` as ``(run, checkpoint)``; the checkpoint defaults to ``final``."""
    run, _, which = text.partition(":")
    return run, checkpoint(which or "final")
