"""Paths between solutions.

The loss along straight lines and trained Bezier curves, with their barriers
(:mod:`~probes.paths.interpolation`), weight matching (:mod:`~probes.paths.alignment`), the
instability of forked training (:mod:`~probes.paths.instability`), and the stored path results
(:mod:`~probes.paths.results`, NumPy only: :class:`Path`, :class:`Curve`, :class:`Instability`,
:class:`WeightMatching`).

Submodules are imported on first use.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "INTERPOLATION_KINDS",
    "Curve",
    "Instability",
    "Path",
    "WeightMatching",
    "alignment",
    "instability",
    "interpolation",
    "results",
]

__getattr__, __dir__ = attach(
    __name__,
    ["alignment", "instability", "interpolation", "results"],
    {
        name: "results"
        for name in ("INTERPOLATION_KINDS", "Curve", "Instability", "Path", "WeightMatching")
    },
)
