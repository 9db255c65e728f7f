"""Which results of a sweep's file were made with other settings than the sweep's spec asks.

Every result a sweep stores records the settings that made it (its ``settings`` attr, the rule
of :meth:`landscape.store.file.Store.same_settings`): a probe its kind and options
(:func:`probe_settings`), a surface its ``[surfaces.NAME]`` table (:func:`surface_settings`), a
path the options of :func:`landscape.surfaces.stored.path_between` (:func:`path_settings`), and
a run the ``[along]`` table it was trained with (``attrs["along"]``). A result held with other
settings than the spec now asks for is *stale*: :func:`landscape.sweep.jobs.plan` lists it as
changed (naming the first setting that differs) and :func:`clear_stale` removes it before the
sweep computes it again (a series along training is measured again by training the run again).
A result whose settings were not recorded (written before results recorded them) counts as
stale too, except a surface, whose settings are written after its last point: one without them
is checked by what it holds (coordinates, directions, BatchNorm mode, test grids) and kept
(resumed, if not finished) when these agree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from landscape.store.file import Store, delete_record
from landscape.sweep.spec import Sweep

__all__ = [
    "changed_along",
    "changed_record",
    "clear_stale",
    "differs",
    "path_settings",
    "probe_settings",
    "surface_settings",
]

_UNSET = "(not set)"


def differs(held: Any, asked: Mapping[str, Any]) -> str | None:
    """How the stored settings ``held`` differ from ``asked``, in words; None if they do not.

    Examples:
        >>> differs({"k": 3, "tol": 0.1}, {"k": 5, "tol": 0.1})
        'k is 3 there, 5 now'
        >>> differs(None, {"k": 5})
        'its settings were not recorded'
    """
    asked = json.loads(json.dumps(dict(asked)))
    if held == asked:
        return None
    if not isinstance(held, dict):
        return "its settings were not recorded"
    for key in sorted({*held, *asked}):
        a, b = held.get(key, _UNSET), asked.get(key, _UNSET)
        if a != b:
            return f"{key} is {a!r} there, {b!r} now".replace(repr(_UNSET), "not set")
    return "its settings differ"  # pragma: no cover - equal keys and values are equal dicts


def probe_settings(sweep: Sweep, name: str) -> dict[str, Any]:
    """The settings of the sweep's end-of-run probe ``name``: its function and options."""
    module, fn, opts = sweep.probes[name]
    return {"probe": f"{module}.{fn}", **opts}


def surface_settings(sweep: Sweep, name: str) -> dict[str, Any]:
    """The settings of the sweep's surface ``name``: its ``[surfaces.NAME]`` table."""
    return dict(sweep.surfaces[name])


def path_settings(sweep: Sweep, a: str, b: str, kind: str) -> dict[str, Any]:
    """The settings :func:`landscape.surfaces.stored.path_between` records for a sweep's path.

    ``a == b``: the run's init-to-final path; else the path between the final points.
    """
    o = sweep.path_options
    which_a = "init" if a == b else "final"
    out: dict[str, Any] = {
        "ends": {"from": {"run": a, "which": which_a}, "to": {"run": b, "which": "final"}},
        "kind": kind,
        "n": o.get("points", 25),
        "recalibrate": None,
        "test": True,
        "n_examples": o.get("n"),
        "data": None,
    }
    if kind == "bezier":
        out.update(steps=o.get("steps", 1000), lr=o.get("lr", 1e-3), seed=o.get("seed", 0))
    elif kind == "aligned":
        out["seed"] = o.get("seed", 0)
    return out


def changed_record(
    s: Store, run: str | None, kind: str, name: str, asked: Mapping[str, Any]
) -> str | None:
    """How a held result differs from ``asked`` (None: the same, or not held)."""
    if not s.has_record(run, kind, name):
        return None
    rec = s.record(run, kind, name)
    held = rec.attrs.get("settings")
    if held is None and kind == "surfaces":
        return _surface_differs(rec, asked)
    return differs(held, asked)


def _surface_differs(rec: Any, asked: Mapping[str, Any]) -> str | None:
    """How a surface without recorded settings differs from ``asked``, by what it holds.

    Its coordinates, directions (kind; seed, normalization and ignore of random ones), BatchNorm
    mode and test grids: a surface whose settings were not recorded yet (begun before results
    recorded them, or finished by a process killed before it wrote them) is kept when these
    agree.
    """
    for axis in ("x", "y"):
        want = np.linspace(*asked[axis]) if asked.get(axis) else None
        got = rec.arrays.get(axis)
        if want is None or got is None:
            if (want is None) != (got is None):
                return f"its {axis} coordinates differ"
        elif got.shape != want.shape or not np.allclose(got, want):
            return f"its {axis} coordinates differ"
    info = rec.attrs.get("directions_info") or {}
    kind = asked.get("directions", "random")
    want_info = {"kind": kind}
    if kind == "random":
        ignore = asked.get("ignore", "biasbn")
        want_info.update(
            seed=asked.get("seed", 0),
            normalization=asked.get("normalization", "filter"),
            ignore=None if ignore == "none" else ignore,
        )
    for key, value in want_info.items():
        if info.get(key) != value:
            return f"directions {key} is {info.get(key)!r} there, {value!r} now"
    if rec.attrs.get("bn", "keep") != asked.get("bn", "keep"):
        return f"bn is {rec.attrs.get('bn')!r} there, {asked.get('bn', 'keep')!r} now"
    if ("test_loss" in rec.arrays) != bool(asked.get("test", True)):
        return f"test is {'test_loss' in rec.arrays} there, {bool(asked.get('test', True))} now"
    return None


def changed_along(info: Any, along: Mapping[str, Mapping[str, Any]]) -> str | None:
    """How the ``[along]`` series a run holds were made otherwise than ``along`` asks.

    Args:
        info: the run's :class:`~landscape.store.file.RunInfo`.
        along: the sweep's ``[along]`` entries.

    Returns:
        ``probes/<name> (along training): <how>`` for the first series that differs, or None.
    """
    held = info.attrs.get("along")
    for name, opts in along.items():
        if name not in info.probes:
            continue
        why = differs(held.get(name) if isinstance(held, dict) else None, opts)
        if why:
            return f"probes/{name} (along training): {why}"
    return None


def clear_stale(file: str | os.PathLike, stale: Sequence[tuple[str | None, str]]) -> None:
    """Remove stale results from ``file`` in one commit, so that the sweep computes them again.

    Args:
        file: the sweep's file.
        stale: ``(run, what)`` pairs: ``what`` is ``"run"`` (the whole run, to be trained again),
            ``"probes/NAME"``, ``"surfaces/NAME"`` or ``"paths/NAME"`` of the run, or
            ``"compare/NAME"`` (``run`` None).
    """
    if not stale:
        return
    with Store(file, "a", timeout=60) as s:
        for run, what in stale:
            if what == "run":
                if run is not None and run in s:
                    s.delete_run(run)
                continue
            kind, _, name = what.partition("/")
            owner, kind = (None, "paths") if kind == "compare" else (run, kind)
            if (owner is None or owner in s) and s.has_record(owner, kind, name):
                delete_record(s, owner, kind, name)
