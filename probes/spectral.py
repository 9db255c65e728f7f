r"""Spectral summaries of a curvature matrix from its products: trace and spectral density.

The curvature ``H`` (the Hessian of the mean loss, or the generalised Gauss-Newton matrix) is
a symmetric P x P matrix available only through products ``H v``
(:class:`probes.curvature.CurvatureOperator`). Both estimators here ask for products in blocks
``(k, P)``, one pass over the data per block, which costs much less per product than one
vector at a time.

**Trace.** Hutchinson (1989): for random ``g`` with ``E[g g^T] = I`` (Rademacher entries),
``E[g^T H g] = tr(H)``. With ``n`` probes the estimate is the mean of ``g_i^T H g_i`` and its
standard error the sample standard deviation over ``sqrt(n)``; the error falls as
``O(1/sqrt(n))``. Hutch++ (Meyer, Musco, Musco & Woodruff 2021) spends a third of the budget on
a sketch ``S`` (P x k, Rademacher), takes an orthonormal basis ``Q = qr(H S)`` of the dominant
range, computes ``tr(Q^T H Q)`` exactly (k more products), and runs Hutchinson on the deflated
remainder ``(I - QQ^T) H (I - QQ^T)`` with the last third:

    tr(H) = tr(Q^T H Q) + tr((I - QQ^T) H (I - QQ^T)).

Large outlying eigenvalues, typical of trained networks, land in ``Q`` and leave the stochastic
part with a small variance; on PSD matrices Hutch++ needs ``O(1/eps)`` products for relative
error ``eps`` instead of ``O(1/eps^2)``. Its standard error is that of the Hutchinson part (the
sketch part is exact given ``Q``).

**Spectral density.** Stochastic Lanczos quadrature (Golub & Meurant; Ubaru, Chen & Saad 2017;
Ghorbani, Krishnan & Xiao 2019; Papyan 2020). The spectral measure ``mu = (1/P) sum_i
delta(lambda_i)`` satisfies ``int f dmu = (1/P) tr f(H) = E[v^T f(H) v]`` for ``v`` uniform on
the unit sphere (a normalised Gaussian). ``m`` Lanczos steps from ``v`` give a tridiagonal
``T_m = U diag(theta) U^T``; the Gauss quadrature ``v^T f(H) v ~ sum_j U_{1j}^2 f(theta_j)`` is
exact for polynomials of degree ``< 2m``. Each start vector thus gives Ritz values ``theta``
(nodes) and weights ``U_{1j}^2`` (summing to 1); their average over the start vectors, broadened
by Gaussians of width ``sigma``, is the density. Its k-th moment estimates ``tr(H^k) / P``
without bias for ``k < 2m``, in particular ``mean = tr(H) / P`` and second moment
``= ||H||_F^2 / P``.

References:
    Hutchinson, M. F. (1989). A stochastic estimator of the trace of the influence matrix for
    Laplacian smoothing splines.
    Meyer, R. A., Musco, C., Musco, C., Woodruff, D. P. (2021). Hutch++: Optimal stochastic
    trace estimation. SOSA.
    Ubaru, S., Chen, J., Saad, Y. (2017). Fast estimation of tr(f(A)) via stochastic Lanczos
    quadrature. SIAM J. Matrix Anal. Appl.
    Ghorbani, B., Krishnan, S., Xiao, Y. (2019). An investigation into neural net optimization
    via Hessian eigenvalue density. ICML.
    Papyan, V. (2020). Traces of class/cross-class structure pervade deep learning spectra.
    JMLR.

Examples:
    >>> tr = trace(model, nn.CrossEntropyLoss(), (X, y))                # Hutch++, 100 products
    >>> tr.value, tr.stderr
    >>> tr = trace(model, loss_fn, loader, method="hutchinson", target_stderr=0.1)
    >>> esd = density(model, loss_fn, loader, n_vectors=5, steps=80)
    >>> esd.grid, esd.density, esd.moment(1) * esd.n_params           # ~ the trace
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor, nn

from landscape._checks import _check_choice
from landscape.params import ParamFilter

from .curvature import CURVATURES, CurvatureOperator, check_record, operator

__all__ = [
    "DEFAULT_PRODUCTS",
    "MAX_PRODUCTS",
    "METHODS",
    "Density",
    "Trace",
    "density",
    "estimate_density",
    "estimate_trace",
    "trace",
]

METHODS = ("hutchinson", "hutch++")
"""Trace estimators."""

DEFAULT_PRODUCTS = 100
"""Products a trace estimate spends when neither ``n_products`` nor ``target_stderr`` is given."""

MAX_PRODUCTS = 10_000
"""The most products a ``target_stderr`` run spends when ``n_products`` does not cap it."""

MIN_PROBES = 10
"""Hutchinson probes a ``target_stderr`` run draws before it may stop."""

DEFAULT_WIDTH_FRACTION = 0.01
"""Default broadening width of :func:`density`: this fraction of the span of the Ritz values."""


# ----------------------------------------------------------------------------- validation


def _int(name: str, value: Any, low: int, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{where}: {name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _positive(name: str, value: Any, where: str) -> float:
    if (isinstance(value, bool) or not isinstance(value, numbers.Real)
            or not math.isfinite(value) or value <= 0):
        raise ValueError(f"{where}: {name} must be a finite number > 0, got {value!r}")
    return float(value)


def _finite(x: Tensor, where: str) -> None:
    if not bool(torch.isfinite(x).all()):
        raise FloatingPointError(f"{where}: the curvature products are not finite (NaN or inf); "
                                 "check the loss and the parameters")


# ----------------------------------------------------------------------------- trace


@dataclass(frozen=True, eq=False)
class Trace:
    """A trace estimate.

    Attributes:
        value: the estimate of ``tr(H)``.
        stderr: its standard error (of the stochastic part; NaN with fewer than 2 probes).
        method: ``"hutchinson"`` or ``"hutch++"``.
        n_probes: Hutchinson probes in the stochastic part (``len(samples)``).
        sketch: columns of the Hutch++ sketch (0 for Hutchinson).
        n_hvp: curvature-vector products spent. passes: passes over the data. seconds: wall time.
        curvature: the curvature matrix (``"hessian"``, ``"ggn"``, ...). seed: the probes' seed.
        n_params: P, the size of the matrix.
        target_stderr: the requested standard error, or None.
        converged: False when ``target_stderr`` was not reached within the budget.
        samples: the per-probe estimates of the stochastic part: ``g^T H g`` (Hutchinson) or
            ``g^T (I-QQ^T) H (I-QQ^T) g`` (Hutch++, whose value adds ``tr(Q^T H Q)``).
    """

    value: float
    stderr: float
    method: str
    n_probes: int
    sketch: int
    n_hvp: int
    passes: float
    seconds: float
    curvature: str
    seed: int
    n_params: int
    target_stderr: float | None
    converged: bool
    samples: np.ndarray

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, attrs)`` for :meth:`landscape.store.Store.write_record`."""
        attrs = {k: getattr(self, k) for k in (
            "value", "stderr", "method", "n_probes", "sketch", "n_hvp", "passes", "seconds",
            "curvature", "seed", "n_params", "target_stderr", "converged")}
        return {"samples": np.asarray(self.samples)}, {"probe": "hessian.trace", **attrs}

    @classmethod
    def from_record(cls, record: Any) -> Trace:
        """The result back from a :class:`landscape.store.Record` (or ``(arrays, attrs)``)."""
        arrays, attrs = check_record(record, "hessian.trace", "Trace.from_record")
        return cls(value=float(attrs["value"]), stderr=float(attrs["stderr"]),
                   method=str(attrs["method"]), n_probes=int(attrs["n_probes"]),
                   sketch=int(attrs["sketch"]), n_hvp=int(attrs["n_hvp"]),
                   passes=float(attrs["passes"]), seconds=float(attrs["seconds"]),
                   curvature=str(attrs["curvature"]), seed=int(attrs["seed"]),
                   n_params=int(attrs["n_params"]),
                   target_stderr=(None if attrs["target_stderr"] is None
                                  else float(attrs["target_stderr"])),
                   converged=bool(attrs["converged"]),
                   samples=np.asarray(arrays["samples"], dtype=np.float64))


def _rademacher(k: int, p: int, gen: torch.Generator, op: Any) -> Tensor:
    bits = torch.randint(0, 2, (k, p), generator=gen, device=op.device)
    return (2 * bits - 1).to(op.dtype)


def _products(op: Any, v: Tensor, block: int) -> Tensor:
    """``H v`` for the rows of ``v`` in blocks of at most ``block`` rows, in float64."""
    out = [op.matvec(v[i:i + block]).to(torch.float64) for i in range(0, v.shape[0], block)]
    out = torch.cat(out) if out else v.new_zeros((0, v.shape[1]), dtype=torch.float64)
    _finite(out, "trace")
    return out


def _stderr(samples: list[Tensor]) -> float:
    s = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.float64)
    return float(s.std() / math.sqrt(s.numel())) if s.numel() >= 2 else math.nan


def estimate_trace(op: CurvatureOperator | Any, *, method: str = "hutch++",
                   n_products: int | None = None, target_stderr: float | None = None,
                   seed: int = 0, block_size: int = 16,
                   curvature: str = "hessian") -> Trace:
    """:func:`trace` on a ready operator (anything with ``matvec`` for (k, P) blocks, ``size``,
    ``device``, ``dtype``, ``n_products`` and ``passes``, e.g. a
    :class:`~probes.curvature.CurvatureOperator`). Arguments as for :func:`trace`."""
    _validate_trace(method, n_products, target_stderr, seed, block_size)
    n_products = None if n_products is None else int(n_products)
    target_stderr = None if target_stderr is None else float(target_stderr)
    seed, block = int(seed), int(block_size)

    start = time.perf_counter()
    hvp0, passes0 = op.n_products, op.passes
    p = int(op.size)
    gen = torch.Generator(device=op.device).manual_seed(seed)
    budget = (n_products if n_products is not None
              else MAX_PRODUCTS if target_stderr is not None else DEFAULT_PRODUCTS)

    exact, sketch, q = 0.0, 0, None
    if method == "hutch++":
        # A third of the budget for S, a third for Q^T H Q, the rest for the deflated part. With
        # target_stderr and no n_products the sketch is that of the default budget.
        third = (n_products if n_products is not None else DEFAULT_PRODUCTS) // 3
        sketch = min(third, p)
        hs = _products(op, _rademacher(sketch, p, gen, op), block)            # (k, P)
        q = torch.linalg.qr(hs.T, mode="reduced")[0].T.contiguous()           # (k, P), float64
        hq = _products(op, q.to(op.dtype), block)
        exact = float((q * hq).sum())
        budget -= 2 * sketch

    def draw(k: int) -> Tensor:
        g = _rademacher(k, p, gen, op).to(torch.float64)
        if q is not None:
            g = g - (g @ q.T) @ q                                         # (I - QQ^T) g
        hg = _products(op, g.to(op.dtype), block)
        return (g * hg).sum(1)

    samples: list[Tensor] = []
    n = 0
    converged = True
    if target_stderr is None:
        if budget > 0:
            samples.append(draw(budget))
            n = budget
    else:
        converged = False
        while n < budget:
            k = min(max(block, MIN_PROBES - n), budget - n)
            samples.append(draw(k))
            n += k
            err = _stderr(samples)
            if n >= MIN_PROBES and err <= target_stderr:
                converged = True
                break
    if sketch >= p:  # Q spans everything: the deflated part is zero, the value exact
        converged = True
    s = torch.cat(samples) if samples else torch.zeros(0, dtype=torch.float64)
    value = exact + (float(s.mean()) if n else 0.0)
    stderr = _stderr(samples) if n else (0.0 if sketch >= p else math.nan)
    return Trace(value=value, stderr=stderr, method=method, n_probes=n, sketch=sketch,
                 n_hvp=int(op.n_products - hvp0), passes=float(op.passes - passes0),
                 seconds=time.perf_counter() - start, curvature=curvature, seed=seed,
                 n_params=p, target_stderr=target_stderr, converged=converged,
                 samples=s.cpu().numpy())


def trace(model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor], data: Any, *,
          method: str = "hutch++", n_products: int | None = None,
          target_stderr: float | None = None, seed: int = 0, curvature: str = "hessian",
          params: ParamFilter | Iterable[str] | None = None, mode: str = "eval",
          batch_size: int | None = None, check: bool = True, block_size: int = 16) -> Trace:
    """The trace of the Hessian (or GGN) of the mean loss, by Hutchinson or Hutch++.

    ``tr(H) = E[g^T H g]`` for Rademacher ``g``; Hutch++ first removes the dominant range
    ``Q = qr(H S)`` and computes its part ``tr(Q^T H Q)`` exactly (see the module docstring).

    Budget:
        * ``n_products`` alone (default :data:`DEFAULT_PRODUCTS` = 100): exactly that many
          products. Hutch++ spends ``k = n_products // 3`` on the sketch (at most P), ``k`` on
          ``Q^T H Q`` and the rest on Hutchinson probes of the deflated matrix.
        * ``target_stderr`` (absolute): probes are added in blocks until the standard error is
          at most ``target_stderr`` (after at least :data:`MIN_PROBES` probes), spending at most
          ``n_products`` if given, else :data:`MAX_PRODUCTS` products; ``converged`` says
          whether the target was met. For Hutch++ the sketch is fixed first (``k = n_products
          // 3``, or 33 = 100 // 3 when ``n_products`` is not given) and only the deflated
          Hutchinson part adapts.

    Args:
        model, loss_fn, data: the model, a loss returning the batch mean, and the data (tensors,
            a Dataset or a DataLoader); the loss is the mean over all of ``data``.
        method: ``"hutch++"`` (default) or ``"hutchinson"``.
        n_products, target_stderr: the budget, above.
        seed: seeds the ``torch.Generator`` (on the operator's device) of every random probe.
        curvature: one of :data:`probes.curvature.CURVATURES` (``"hessian"``, ``"ggn"``, ...).
        params, mode, batch_size, check: passed to :func:`probes.curvature.operator`
            (the parameters the matrix is over; ``"eval"`` mode by default).
        block_size: probes per matrix product (one pass over the data each).

    Returns:
        :class:`Trace`: ``value``, ``stderr``, the per-probe ``samples`` and the cost.

    Raises:
        ValueError: an unknown method or curvature, a budget that is not a positive integer
            (at least 2 for Hutchinson, 4 for Hutch++), a target that is not > 0, a bad seed.

    Examples:
        >>> tr = trace(model, nn.CrossEntropyLoss(), (X, y), n_products=300)
        >>> print(f"{tr.value:.3g} +- {tr.stderr:.2g} ({tr.n_hvp} products)")
    """
    _check_choice("trace", "curvature", curvature, CURVATURES)
    _validate_trace(method, n_products, target_stderr, seed, block_size)  # before the operator
    start = time.perf_counter()
    op = operator(model, loss_fn, data, curvature=curvature, params=params, mode=mode,
                  batch_size=batch_size, check=check)
    out = estimate_trace(op, method=method, n_products=n_products, target_stderr=target_stderr,
                         seed=seed, block_size=block_size, curvature=curvature)
    return dataclasses.replace(out, seconds=time.perf_counter() - start, passes=float(op.passes))


def _validate_trace(method, n_products, target_stderr, seed, block_size) -> None:
    where = "trace"
    if method not in METHODS:
        raise ValueError(f"{where}: method must be one of {', '.join(map(repr, METHODS))}, got "
                         f"{method!r}")
    if n_products is not None:
        _int("n_products", n_products, 2 if method == "hutchinson" else 4, where)
    if target_stderr is not None:
        _positive("target_stderr", target_stderr, where)
    _int("seed", seed, 0, where)
    _int("block_size", block_size, 1, where)


# ----------------------------------------------------------------------------- density


@dataclass(frozen=True, eq=False)
class Density:
    """A spectral density estimate by stochastic Lanczos quadrature.

    Attributes:
        grid: (G,) points. density: (G,) the broadened density on ``grid``.
        nodes: (n_vectors, m) Ritz values of each start vector; a vector whose Krylov space
            became invariant after ``j < m`` steps has NaN nodes (and 0 weights) after ``j``.
        weights: (n_vectors, m) squared first components of the Ritz vectors (each row sums
            to 1).
        width: the Gaussian broadening sigma. steps: Lanczos steps asked (at most P).
        n_vectors: start vectors. n_hvp, passes, seconds: the cost. curvature, seed: options.
        n_params: P.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    width: float
    steps: int
    n_vectors: int
    n_hvp: int
    passes: float
    seconds: float
    curvature: str
    seed: int
    n_params: int

    def moment(self, k: int) -> float:
        """The k-th moment ``(1/n_vectors) sum_v sum_j w_vj theta_vj^k`` of the Ritz measure:
        an estimate of ``tr(H^k) / P`` (exact in expectation for ``k < 2 * steps``);
        ``moment(1) * n_params`` estimates the trace."""
        return float(self.moments(k).mean())

    def moments(self, k: int) -> np.ndarray:
        """The k-th moment of each start vector's quadrature, ``v^T H^k v`` (n_vectors,): their
        spread gives the standard error of :meth:`moment`."""
        k = _int("k", k, 0, "Density.moment")
        nodes = np.nan_to_num(self.nodes, nan=0.0)
        return (self.weights * nodes ** k).sum(axis=1)

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, attrs)`` for :meth:`landscape.store.Store.write_record`."""
        arrays = {k: np.asarray(getattr(self, k)) for k in ("grid", "density", "nodes",
                                                             "weights")}
        attrs = {k: getattr(self, k) for k in ("width", "steps", "n_vectors", "n_hvp", "passes",
                                               "seconds", "curvature", "seed", "n_params")}
        return arrays, {"probe": "hessian.density", **attrs}

    @classmethod
    def from_record(cls, record: Any) -> Density:
        """The result back from a :class:`landscape.store.Record` (or ``(arrays, attrs)``)."""
        arrays, attrs = check_record(record, "hessian.density", "Density.from_record")
        a = {k: np.asarray(arrays[k], dtype=np.float64) for k in ("grid", "density", "nodes",
                                                                   "weights")}
        return cls(**a, width=float(attrs["width"]), steps=int(attrs["steps"]),
                   n_vectors=int(attrs["n_vectors"]), n_hvp=int(attrs["n_hvp"]),
                   passes=float(attrs["passes"]), seconds=float(attrs["seconds"]),
                   curvature=str(attrs["curvature"]), seed=int(attrs["seed"]),
                   n_params=int(attrs["n_params"]))


def _validate_density(n_vectors, steps, width, grid, n_grid, seed) -> np.ndarray | None:
    where = "density"
    _int("n_vectors", n_vectors, 1, where)
    _int("steps", steps, 1, where)
    if width is not None:
        _positive("width", width, where)
    _int("n_grid", n_grid, 2, where)
    _int("seed", seed, 0, where)
    if grid is None:
        return None
    g = np.asarray(grid, dtype=np.float64) if not isinstance(grid, Tensor) else \
        grid.detach().cpu().double().numpy()
    if g.ndim != 1 or g.size < 2 or not np.isfinite(g).all() or not (np.diff(g) > 0).all():
        raise ValueError(f"{where}: grid must be a 1-D, finite, strictly increasing array of at "
                         f"least 2 points, got shape {g.shape}")
    return g


def _lanczos(op: Any, n_vectors: int, steps: int, gen: torch.Generator
             ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``steps`` Lanczos steps from each of ``n_vectors`` random unit vectors, the recurrences
    run together (one (active, P) product a step), with full reorthogonalisation in float64.
    Returns each vector's tridiagonal (alphas, betas)."""
    p = int(op.size)
    f64 = torch.float64
    v = torch.randn(n_vectors, p, generator=gen, device=op.device, dtype=f64)
    v = v / v.norm(dim=1, keepdim=True)
    basis = torch.zeros(n_vectors, steps, p, device=op.device, dtype=f64)
    alphas = torch.zeros(n_vectors, steps, dtype=f64)
    betas = torch.zeros(n_vectors, steps, dtype=f64)
    length = torch.full((n_vectors,), steps, dtype=torch.long)
    active = torch.arange(n_vectors, device=op.device)
    prev = torch.zeros_like(v)
    beta_prev = torch.zeros(n_vectors, device=op.device, dtype=f64)
    scale = torch.zeros(n_vectors, device=op.device, dtype=f64)
    tol = float(torch.finfo(op.dtype).eps) ** 0.75
    for j in range(steps):
        idx = active
        cur = v[idx]
        basis[idx, j] = cur
        w = op.matvec(cur.to(op.dtype)).to(f64)
        _finite(w, "density")
        a = (w * cur).sum(1)
        w = w - a[:, None] * cur - beta_prev[idx, None] * prev[idx]
        b_basis = basis[idx, : j + 1]                                    # (a, j+1, P)
        for _ in range(2):                                               # full reorthogonalisation
            w = w - torch.einsum("ajp,aj->ap", b_basis, torch.einsum("ajp,ap->aj", b_basis, w))
        b = w.norm(dim=1)
        alphas[idx.cpu(), j] = a.cpu()
        betas[idx.cpu(), j] = b.cpu()
        scale[idx] = torch.maximum(scale[idx], torch.maximum(a.abs(), b))
        if j == steps - 1:
            break
        done = b <= tol * scale[idx].clamp_min(torch.finfo(f64).tiny)
        for i in idx[done].tolist():
            length[i] = j + 1
        keep = ~done
        prev[idx] = cur
        beta_prev[idx] = b
        nxt = torch.zeros_like(w)
        nxt[keep] = w[keep] / b[keep, None]
        v[idx] = nxt
        active = idx[keep]
        if active.numel() == 0:
            break
    out_a, out_b = [], []
    for i in range(n_vectors):
        m = int(length[i])
        out_a.append(alphas[i, :m].numpy())
        out_b.append(betas[i, : m - 1].numpy())
    return out_a, out_b


def estimate_density(op: CurvatureOperator | Any, *, n_vectors: int = 5, steps: int = 80,
                     width: float | None = None, grid: Any = None, n_grid: int = 1000,
                     seed: int = 0, curvature: str = "hessian") -> Density:
    """:func:`density` on a ready operator (see :func:`estimate_trace`). Arguments as for
    :func:`density`."""
    user_grid = _validate_density(n_vectors, steps, width, grid, n_grid, seed)
    start = time.perf_counter()
    hvp0, passes0 = op.n_products, op.passes
    p = int(op.size)
    steps_run = min(int(steps), p)
    gen = torch.Generator(device=op.device).manual_seed(int(seed))
    alphas, betas = _lanczos(op, int(n_vectors), steps_run, gen)

    nodes = np.full((n_vectors, steps_run), np.nan)
    weights = np.zeros((n_vectors, steps_run))
    for i, (a, b) in enumerate(zip(alphas, betas, strict=True)):
        theta, u = eigh_tridiagonal(a, b)
        nodes[i, : a.size] = theta
        weights[i, : a.size] = u[0] ** 2

    lo, hi = float(np.nanmin(nodes)), float(np.nanmax(nodes))
    if width is None:
        span = hi - lo
        width = DEFAULT_WIDTH_FRACTION * (span if span > 0 else max(abs(hi), 1.0))
    sigma = float(width)
    if user_grid is None:
        xs = np.linspace(lo - 3 * sigma, hi + 3 * sigma, int(n_grid))
    else:
        xs = user_grid
    flat_n = np.nan_to_num(nodes, nan=0.0).reshape(-1)
    flat_w = weights.reshape(-1) / n_vectors
    keep = flat_w > 0
    z = (xs[:, None] - flat_n[None, keep]) / sigma
    dens = (np.exp(-0.5 * z ** 2) / (sigma * math.sqrt(2 * math.pi))) @ flat_w[keep]
    if user_grid is None:
        dens = dens / np.trapezoid(dens, xs)
    return Density(grid=xs, density=dens, nodes=nodes, weights=weights, width=sigma,
                   steps=steps_run, n_vectors=int(n_vectors),
                   n_hvp=int(op.n_products - hvp0), passes=float(op.passes - passes0),
                   seconds=time.perf_counter() - start, curvature=curvature, seed=int(seed),
                   n_params=p)


def density(model: nn.Module, loss_fn: Callable[[Any, Tensor], Tensor], data: Any, *,
            n_vectors: int = 5, steps: int = 80, width: float | None = None, grid: Any = None,
            n_grid: int = 1000, seed: int = 0, curvature: str = "hessian",
            params: ParamFilter | Iterable[str] | None = None, mode: str = "eval",
            batch_size: int | None = None, check: bool = True) -> Density:
    """The spectral density of the Hessian (or GGN) by stochastic Lanczos quadrature.

    From each of ``n_vectors`` random unit vectors (normalised Gaussians, from a generator
    seeded by ``seed`` on the operator's device), ``steps`` Lanczos steps with full
    reorthogonalisation in float64 (stopping early for a vector whose Krylov space becomes
    invariant); the recurrences run together, one ``(n_vectors, P)`` product per step. The
    tridiagonal's eigen-decomposition gives nodes (Ritz values) and weights (squared first
    components), averaged over the vectors and broadened by Gaussians of width ``sigma``.
    Memory: the Lanczos bases, ``n_vectors * steps * P`` float64 numbers on the device.

    Args:
        model, loss_fn, data: as for :func:`trace`.
        n_vectors: random start vectors (more: less variance).
        steps: Lanczos steps per vector (more: finer resolution; at most P are run).
        width: the broadening sigma; default :data:`DEFAULT_WIDTH_FRACTION` (1%) of the span of
            the nodes (1% of ``max(|node|, 1)`` when they all coincide).
        grid: points to evaluate the density at (1-D, increasing); the density is then the
            plain Gaussian mixture (it integrates to the mass inside ``grid``). By default
            ``n_grid`` points spanning ``[min node - 3 sigma, max node + 3 sigma]``, and the
            density is normalised to integrate to 1 by the trapezoid rule over them.
        n_grid: points of the default grid.
        seed, curvature, params, mode, batch_size, check: as for :func:`trace`.

    Returns:
        :class:`Density`: ``grid``, ``density``, ``nodes``, ``weights``, ``moment(k)``, cost.

    Raises:
        ValueError: an argument out of range (the message names it), an unknown curvature.

    Examples:
        >>> esd = density(model, nn.CrossEntropyLoss(), (X, y), n_vectors=5, steps=80)
        >>> plt.semilogy(esd.grid, esd.density)
    """
    _check_choice("density", "curvature", curvature, CURVATURES)
    _validate_density(n_vectors, steps, width, grid, n_grid, seed)
    start = time.perf_counter()
    op = operator(model, loss_fn, data, curvature=curvature, params=params, mode=mode,
                  batch_size=batch_size, check=check)
    out = estimate_density(op, n_vectors=n_vectors, steps=steps, width=width, grid=grid,
                           n_grid=n_grid, seed=seed, curvature=curvature)
    return dataclasses.replace(out, seconds=time.perf_counter() - start, passes=float(op.passes))

