r"""Directions rescaled to the weights (Li et al. 2018) or orthogonalised; flat vectors checked.

**Normalisation** (Li et al. 2018) by :func:`normalize`, parameter by parameter, ``w`` being
the parameter's values at the point ``theta``:

- ``"filter"``: for a weight of ndim >= 2, each slice along dim 0 (a conv filter, a row of a
  linear weight) is rescaled to the norm of the same slice of ``w``:
  ``d_i <- d_i ||w_i|| / ||d_i||`` (Frobenius norms).
- ``"layer"``: each parameter tensor as a whole, ``d <- d ||w|| / ||d||``. ``"none"``: as is.

Parameters of ndim <= 1 (biases, BatchNorm/LayerNorm weights and biases, scalars): with
``ignore="biasbn"`` (default) they are zero in the direction, whatever the normalisation; with
``ignore=None`` they are rescaled as one filter (whole-tensor norm) under ``"filter"`` and
``"layer"`` (Li et al.'s code sets them to ``w`` instead). A slice whose direction or weights
are zero stays zero. To keep parameters out of the flat vector altogether (fixed), select with
``params=``, e.g. :func:`landscape.engine.params.no_bias_norm`, which also drops normalisation
weights of ndim >= 2.

:func:`normalize` and :func:`orthogonalize` are re-exported by
:mod:`landscape.surfaces.directions`, whose directions they rescale.

Examples:
    >>> d = normalize(theta_b - theta_a, theta_a, layout, "filter", ignore=None)
    >>> d2 = orthogonalize(dirs.vectors[1], dirs.vectors[0])

References:
    H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the loss landscape of
    neural nets", NeurIPS 2018.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from landscape.engine.checks import _check_choice
from landscape.engine.params import ParamLayout

__all__ = ["IGNORE", "NORMALIZATIONS", "normalize", "orthogonalize"]

NORMALIZATIONS = ("filter", "layer", "none")
"""How :func:`normalize` rescales a direction (see the module docstring)."""
IGNORE = ("biasbn", None)
"""``"biasbn"``: parameters of ndim <= 1 are zero in the direction; None: they are kept."""


# ---------------------------------------------------------------------------- helpers
def _as_flat(x: Any, p: int | None, fn: str, what: str, rows: bool = False) -> Tensor:
    """``x`` (a tensor or array) as a tensor (P,) or, with ``rows``, (T, P); clear errors."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, Tensor):
        raise TypeError(
            f"{fn}: {what} must be a torch.Tensor or numpy array, got {type(x).__name__}"
        )
    if (
        x.ndim != (2 if rows else 1)
        or (p is not None and x.shape[-1] != p)
        or x.numel() == 0
        or not x.is_floating_point()
    ):
        want = ("(T, P) array" if rows else "(P,) array") + (f" with P={p}" if p else "")
        raise ValueError(
            f"{fn}: {what} must be a floating {want} (P the number of "
            f"parameters), got {tuple(x.shape)} {x.dtype}"
        )
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{fn}: {what} must be finite, got NaN or inf")
    return x.detach()


def _nonzero(d: Tensor, fn: str, hint: str) -> Tensor:
    zero = ~(d != 0).any(dim=-1)
    if bool(zero.any()):
        rows = torch.nonzero(zero).flatten().tolist() if d.ndim == 2 else [0]
        raise ValueError(
            f"{fn}: the direction is zero (rows {rows}); expected a nonzero direction: {hint}"
        )
    return d


def _float64(x: Tensor) -> np.ndarray:
    return x.detach().to("cpu", torch.float64).numpy()


# ---------------------------------------------------------------------------- rescaling
def normalize(
    direction: Tensor,
    theta: Tensor,
    layout: ParamLayout,
    normalization: str = "filter",
    ignore: str | None = "biasbn",
) -> Tensor:
    """``direction`` rescaled to the weights ``theta``, parameter by parameter (a new tensor).

    Args:
        direction: (P,) or (k, P) (rows normalised on their own) in the layout's dtype and
            device: a random draw, a difference of two points, an eigenvector, ...
        theta: (P,) the point whose weights set the scale.
        layout: the layout of both.
        normalization: see the module docstring.
        ignore: see the module docstring.

    Returns:
        A tensor of the shape, dtype and device of ``direction`` (norms in >= float32).

    Raises:
        ValueError, TypeError: an unknown option; a vector of the wrong shape, dtype or
            device; a direction that is zero after normalisation.

    Examples:
        >>> d = normalize(theta_b - theta_a, theta_a, layout, "filter", ignore=None)
    """
    fn = "normalize"
    _check_choice(fn, "normalization", normalization, NORMALIZATIONS)
    _check_choice(fn, "ignore", ignore, IGNORE)
    if not isinstance(layout, ParamLayout):
        raise TypeError(f"{fn}: layout must be a ParamLayout, got {type(layout).__name__}")
    layout.check_vectors(direction, "direction")
    layout.check(theta, "theta")
    d = direction.detach().reshape(-1, layout.numel)
    acc = torch.promote_types(d.dtype, torch.float32)
    pieces = []
    for shape, (start, stop) in zip(layout.shapes, layout.offsets.values(), strict=True):
        dp, wp = d[:, start:stop].to(acc), theta.detach()[start:stop].to(acc)
        if len(shape) <= 1 and ignore == "biasbn":
            pieces.append(torch.zeros_like(dp))
        elif normalization == "none" or stop == start:
            pieces.append(dp)
        else:
            n = shape[0] if normalization == "filter" and len(shape) >= 2 else 1
            dv, wv = dp.reshape(len(d), n, -1), wp.reshape(1, n, -1)
            dn, wn = dv.norm(dim=2, keepdim=True), wv.norm(dim=2, keepdim=True)
            scale = torch.where(dn > 0, wn / dn.clamp_min(torch.finfo(acc).tiny), 0.0)
            pieces.append((dv * scale).reshape(len(d), -1))
    out = torch.cat(pieces, dim=1).to(d.dtype)
    _nonzero(
        out,
        fn,
        "every parameter is ignored or has zero weights; try ignore=None or normalization='none'",
    )
    return out.reshape(direction.shape)


def orthogonalize(d: Tensor, *others: Tensor) -> Tensor:
    """``d`` minus its orthogonal projection onto the span of ``others`` (a new tensor).

    The projection onto an orthonormal basis of the span (from an SVD: the others need be
    neither orthogonal nor independent) is applied twice, which leaves the result orthogonal
    to them to rounding. It is *not* rescaled nor normalised again: its filter norms differ
    from d's by the removed component only (small for random directions in high dimension,
    nearly orthogonal already); call :func:`normalize` again where exact filter norms matter
    more than exact orthogonality.

    Args:
        d: (P,) tensor.
        *others: (P,) or (m, P) tensors of d's dtype and device.

    Returns:
        (P,) tensor of d's dtype and device; ``others @ result`` is zero to rounding.

    Raises:
        ValueError, TypeError: no others, wrong shapes or dtypes, a zero vector among the
            others, d in their span (nothing orthogonal is left).

    Examples:
        >>> d2 = orthogonalize(dirs.vectors[1], dirs.vectors[0])
    """
    fn = "orthogonalize"
    d = _as_flat(d, None, fn, "d")
    if not others:
        raise ValueError(f"{fn}: expected at least one vector to orthogonalise against")
    rows = [o.reshape(1, -1) if isinstance(o, Tensor) and o.ndim == 1 else o for o in others]
    block = torch.cat([_as_flat(o, d.numel(), fn, "others", rows=True) for o in rows])
    if block.dtype != d.dtype or block.device != d.device:
        raise TypeError(
            f"{fn}: others must have d's dtype {d.dtype} and device {d.device}, "
            f"got {block.dtype} on {block.device}"
        )
    _nonzero(block, fn, "each of the others must be nonzero")
    acc = torch.promote_types(d.dtype, torch.float32)
    _, s, vh = torch.linalg.svd(block.to(acc), full_matrices=False)
    basis = vh[s > s[0] * max(block.shape) * torch.finfo(acc).eps]
    r = d.to(acc)
    for _ in range(2):
        r = r - basis.T @ (basis @ r)
    if float(r.norm()) <= 100 * torch.finfo(acc).eps * float(d.to(acc).norm()):
        raise ValueError(
            f"{fn}: d lies in the span of the others (or is zero): nothing orthogonal is left"
        )
    return r.to(d.dtype)
