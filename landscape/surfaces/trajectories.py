"""Trajectories in parameter space (Li et al. 2018, section 7).

The principal plane of a recorded trajectory and the coordinates of points in a plane.

Examples:
    >>> with Store("cmp.h5") as s:
    ...     steps, traj = s.trajectory("sgd")
    ...     plane = pca(traj, s.params("sgd", "final"), k=2)
    >>> xy = project(traj, plane.center, plane)          # (T, 2), for a plot over a surface
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from landscape.engine.checks import _check_int
from landscape.surfaces.directions import Directions
from landscape.surfaces.normalization import _as_flat, _float64

__all__ = ["pca", "project"]


def pca(trajectory: Tensor | np.ndarray, center: Tensor | np.ndarray, k: int = 2) -> Directions:
    """Principal directions of a trajectory around a centre (Li et al. 2018).

    The rows ``theta_i - center`` (checkpoints minus, usually, the final point) form M (T, P);
    its top-k right singular vectors (float64 SVD, 8 T P bytes; largest component positive)
    are the directions, ``s_j^2 / sum s^2`` the fraction of the checkpoints' squared distance
    to the centre each explains. The rows' mean is *not* subtracted: the plane must pass
    through the centre, the plot's origin, and the uncentred SVD gives the k-plane through the
    centre closest to the checkpoints (Eckart-Young); a PCA that subtracts the mean (as
    scikit-learn's does) fits a plane through the checkpoints' mean instead.

    Args:
        trajectory: (T, P) checkpoints.
        center: (P,), e.g. the final point.
        k: directions.

    Returns:
        :class:`Directions` of kind ``"pca"`` (orthonormal rows) with ``explained_variance``,
        in the centre's dtype and device (arrays: the CPU).

    Raises:
        ValueError, TypeError: k < 1; a trajectory or centre of the wrong shape or not finite;
            a trajectory that spans fewer than k directions around the centre.

    Examples:
        >>> with Store("cmp.h5") as s:
        ...     plane = pca(s.trajectory("sgd")[1], s.params("sgd", "final"), k=2)
    """
    fn = "pca"
    k = _check_int(fn, "k", k, 1)
    c = _as_flat(center, None, fn, "center")
    m = _float64(_as_flat(trajectory, c.numel(), fn, "trajectory", rows=True)) - _float64(c)
    _, s, vt = np.linalg.svd(m, full_matrices=False)
    rank = int(np.sum(s > s[0] * max(m.shape) * np.finfo(np.float64).eps)) if s[0] > 0 else 0
    if k > rank:
        raise ValueError(
            f"{fn}: k must be at most the number of directions the trajectory "
            f"spans around the centre ({rank}, from {len(m)} checkpoints), got {k}"
        )
    vt = vt[:k] * np.sign(vt[np.arange(k), np.argmax(np.abs(vt[:k]), axis=1)])[:, None]
    return Directions(
        vectors=torch.from_numpy(vt.copy()).to(c.device, c.dtype),
        kind="pca",
        center=c.clone(),
        explained_variance=s[:k] ** 2 / np.sum(s**2),
        options={"n_points": len(m)},
    )


def project(
    points: Tensor | np.ndarray,
    center: Tensor | np.ndarray,
    directions: Directions | Tensor | np.ndarray,
) -> np.ndarray:
    """Coordinates of points in the plane of ``directions`` through ``center``.

    Least squares ``min_c ||center + c @ D - x||`` for each point x (float64 NumPy), so the
    directions need be neither orthogonal nor of unit norm; for orthonormal directions the
    coordinates are the inner products ``(x - center) @ D.T``.

    Args:
        points: (T, P) or (P,).
        center: (P,).
        directions: :class:`Directions` or (k, P).

    Returns:
        float64 array (T, k), or (k,) for one point.

    Raises:
        ValueError, TypeError: shapes that do not match; linearly dependent directions.

    Examples:
        >>> xy = project(trajectory, plane.center, plane)  # (T, 2) for a trajectory plot
    """
    fn = "project"
    if isinstance(directions, Directions):
        directions = directions.vectors
    c = _as_flat(center, None, fn, "center")
    dm = _float64(_as_flat(directions, c.numel(), fn, "directions", rows=True))
    single = getattr(points, "ndim", None) == 1
    x = _as_flat(points.reshape(1, -1) if single else points, c.numel(), fn, "points", rows=True)
    coords, _, rank, _ = np.linalg.lstsq(dm.T, (_float64(x) - _float64(c)).T, rcond=None)
    if rank < len(dm):
        raise ValueError(
            f"{fn}: expected linearly independent directions, got {len(dm)} of rank {rank}"
        )
    return coords.T[0] if single else coords.T
