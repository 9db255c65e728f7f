"""Paths between solutions: the loss along straight lines and trained Bezier curves, with
their barriers (:mod:`~probes.paths.interpolation`), weight matching
(:mod:`~probes.paths.alignment`), the instability of forked training
(:mod:`~probes.paths.instability`), and the stored path results
(:mod:`~probes.paths.results`, NumPy only).

Submodules are imported on first use.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = ["Curve", "Path", "alignment", "instability", "interpolation", "results"]

__getattr__, __dir__ = attach(
    __name__, ["alignment", "instability", "interpolation", "results"],
    {"Curve": "results", "Path": "results"},
)
