"""Landscapes around solutions.

Loss surfaces on 1-D and 2-D grids (:mod:`~landscape.surfaces.grid`, which hands the points to
:mod:`~landscape.surfaces.compute` and the file to :mod:`~landscape.surfaces.persist`, its size
checked by :mod:`~landscape.surfaces.limits`; the result, :class:`Surface`, in
:mod:`~landscape.surfaces.result`, NumPy only), the directions they span
(:mod:`~landscape.surfaces.directions`: random filter-normalised, Hessian, differences;
:mod:`~landscape.surfaces.normalization`: their normalisation to the weights), the
principal plane of a recorded trajectory (:mod:`~landscape.surfaces.trajectories`), and
surfaces and paths of runs stored in a file (:mod:`~landscape.surfaces.stored`).

Names are imported on first use: :class:`Surface` needs no torch.
"""

from __future__ import annotations

from landscape.engine.lazy import attach

__all__ = [
    "Directions",
    "Surface",
    "compute",
    "directions",
    "grid",
    "limits",
    "normalization",
    "path_between",
    "persist",
    "result",
    "stored",
    "surface",
    "surface_of_run",
    "trajectories",
]

__getattr__, __dir__ = attach(
    __name__,
    [
        "compute",
        "directions",
        "grid",
        "limits",
        "normalization",
        "persist",
        "result",
        "stored",
        "trajectories",
    ],
    {
        "Directions": "directions",
        "Surface": "result",
        "surface": "grid",
        "path_between": "stored",
        "surface_of_run": "stored",
    },
)
