"""Paths between solutions.

The loss along straight lines and trained Bezier curves, with their barriers
(:mod:`~probes.paths.interpolation`, the curves' training in :mod:`~probes.paths.bezier`, the
walk along a path in :mod:`~probes.paths.walk`), weight matching
(:mod:`~probes.paths.alignment`; the permutation symmetry it searches in
:mod:`~probes.paths.permutations`), the instability of forked training
(:mod:`~probes.paths.instability`), and the stored path results (:mod:`~probes.paths.results`,
NumPy only: :class:`Path`, :class:`Curve`, :class:`Instability`, :class:`WeightMatching`).

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
    "bezier",
    "instability",
    "interpolation",
    "permutations",
    "results",
    "walk",
]

__getattr__, __dir__ = attach(
    __name__,
    ["alignment", "bezier", "instability", "interpolation", "permutations", "results", "walk"],
    {
        name: "results"
        for name in ("INTERPOLATION_KINDS", "Curve", "Instability", "Path", "WeightMatching")
    },
)
