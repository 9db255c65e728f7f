"""Models of the implicit-bias literature: matrix factorisations and diagonal linear networks.

Deep and symmetric matrix factorisations (Arora et al. 2019; Gunasekar et al. 2017) for matrix
sensing and completion, and the diagonal linear network of the kernel and rich regimes
(Woodworth et al. 2020).

References: Gunasekar et al. 2017 (implicit regularization in matrix factorization); Arora et
al. 2019 (deep matrix factorization); Woodworth et al. 2020 (kernel and rich regimes).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from landscape.models.base import ReferenceModel, _choice, _fail, _flat, _float, _int

__all__ = ["DeepMatrixFactorization", "DiagonalLinearNetwork", "SymmetricFactorization"]

_INITS = ("identity", "orthogonal", "gaussian")


class _MatrixModel(ReferenceModel):
    """Shared forward of the factorisation models, given ``matrix()`` (n x n)."""

    n: int
    matrix: Callable[[], Tensor]

    def forward(self, x: Tensor) -> Tensor:
        """Vectors x (N, n): x @ M^T, shape (N, n); measurements A (N, n, n): <A_i, M>, (N,)."""
        n, m = self.n, self.matrix()
        if x.dim() == 2 and x.shape[1] == n:
            return x @ m.T
        if x.dim() == 3 and tuple(x.shape[1:]) == (n, n):
            return torch.einsum("kij,ij->k", x, m)
        raise ValueError(
            f"{type(self).__name__}: inputs must have shape (N, {n}) (vectors) or "
            f"(N, {n}, {n}) (measurement matrices), got {tuple(x.shape)}"
        )


def _factor(rows: int, cols: int, init: str, scale: float) -> nn.Parameter:
    w = torch.eye(rows, cols) if init == "identity" else torch.empty(rows, cols)
    if init == "orthogonal":
        nn.init.orthogonal_(w)
    elif init == "gaussian":
        nn.init.normal_(w, std=1.0 / math.sqrt(cols))
    return nn.Parameter(scale * w)


class DeepMatrixFactorization(_MatrixModel):
    """Deep matrix factorisation W = W_depth ... W_1 (Arora et al. 2019; Gunasekar et al. 2017).

    ``matrix()`` is the end-to-end n x n matrix; ``forward`` applies it to vectors (N, n) or
    measures it, <A_i, W>, for matrix sensing and completion with A of shape (N, n, n).

    Args:
        n: size of the end-to-end matrix.
        depth: number of factors.
        init_scale: alpha; each factor starts as alpha times an isometry.
        init: "identity" (alpha I: W = alpha^depth I), "orthogonal" (alpha times a random
            (semi-)orthogonal matrix) or "gaussian" (i.i.d. N(0, alpha^2 / fan_in) entries).
        rank: inner width (W_1 is rank x n, W_depth is n x rank); None for n.
    """

    def __init__(
        self,
        n: int,
        depth: int = 2,
        init_scale: float = 0.1,
        init: str = "identity",
        rank: int | None = None,
    ) -> None:
        super().__init__()
        o = "DeepMatrixFactorization"
        self.n, depth = _int(o, "n", n, 1), _int(o, "depth", depth, 1)
        scale, init = _float(o, "init_scale", init_scale), _choice(o, "init", init, _INITS)
        r = self.n if rank is None else _int(o, "rank", rank, 1)
        if rank is not None and depth == 1:
            _fail(o, "rank", "None when depth is 1", rank)
        sizes = [self.n] + [r] * (depth - 1) + [self.n]
        self.factors = nn.ParameterList(
            [_factor(b, a, init, scale) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def matrix(self) -> Tensor:
        """The end-to-end matrix W_depth @ ... @ W_1."""
        return functools.reduce(lambda acc, w: w @ acc, list(self.factors))


class SymmetricFactorization(_MatrixModel):
    """Symmetric factorisation X = U U^T for PSD matrix sensing (Gunasekar et al. 2017).

    With ``init="identity"`` (U = alpha I), gradient descent on matrix sensing converges to the
    minimum nuclear-norm solution as alpha -> 0. ``forward`` as in ``DeepMatrixFactorization``.

    Args:
        n: size of X.
        init_scale: alpha.
        init: "identity", "orthogonal" or "gaussian", as in ``DeepMatrixFactorization``.
        rank: columns of U (None for n).
    """

    def __init__(
        self, n: int, init_scale: float = 0.1, init: str = "identity", rank: int | None = None
    ) -> None:
        super().__init__()
        o = "SymmetricFactorization"
        self.n, scale = _int(o, "n", n, 1), _float(o, "init_scale", init_scale)
        r = self.n if rank is None else _int(o, "rank", rank, 1)
        self.U = _factor(self.n, r, _choice(o, "init", init, _INITS), scale)

    def matrix(self) -> Tensor:
        """X = U @ U.T."""
        return self.U @ self.U.T


class DiagonalLinearNetwork(ReferenceModel):
    """Diagonal linear network beta = u^depth - v^depth; forward(x) = x @ beta, shape (N,).

    u = v = alpha at init, so beta = 0. Gradient flow on least squares goes to the minimum
    l1-norm interpolator as alpha -> 0 (rich regime) and to the minimum l2-norm one as
    alpha -> infinity (kernel regime) (Woodworth et al. 2020).

    Args:
        dim: input features.
        init_scale: alpha.
        depth: the power D (2 in their main results).
    """

    def __init__(self, dim: int, init_scale: float = 0.1, depth: int = 2) -> None:
        super().__init__()
        o = "DiagonalLinearNetwork"
        self.dim, self.depth = _int(o, "dim", dim, 1), _int(o, "depth", depth, 1)
        scale = _float(o, "init_scale", init_scale)
        self.u = nn.Parameter(torch.full((self.dim,), scale))
        self.v = nn.Parameter(torch.full((self.dim,), scale))

    def beta(self) -> Tensor:
        """The linear predictor u^depth - v^depth."""
        return self.u**self.depth - self.v**self.depth

    def forward(self, x: Tensor) -> Tensor:
        """``x @ beta``, shape (N,), of inputs (N, dim) or (N, ...)."""
        return _flat(x, self.dim, "DiagonalLinearNetwork") @ self.beta()
