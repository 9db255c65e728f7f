r"""Directions in parameter space: random, Hessian, PCA of a trajectory, differences.

A direction is a flat vector over a :class:`~landscape.engine.params.ParamLayout` (the model's
trainable parameters, or those ``params=`` selects, as in :class:`landscape.Objective`), on
the model's device and dtype. :class:`Directions` holds k of them, a (k, P) block, with what
made them, and stores them (:meth:`~Directions.to_record`).

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

Examples:
    >>> dirs = random(model, k=2, seed=0)                 # filter-normalised, biasbn ignored
    >>> plane = trajectories.pca(trajectory, final, k=2)  # landscape.surfaces.trajectories

References:
    H. Li, Z. Xu, G. Taylor, C. Studer, T. Goldstein, "Visualizing the loss landscape of
    neural nets", NeurIPS 2018.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.params import ParamFilter, ParamLayout, select, to_numpy
from landscape.engine.records import check_record
from landscape.store.file import Store
from probes.curvature.hessian import eigenvalues

__all__ = [
    "DIRECTION_KINDS",
    "IGNORE",
    "NORMALIZATIONS",
    "Directions",
    "difference",
    "hessian",
    "normalize",
    "orthogonalize",
    "random",
    "stored_difference",
]

NORMALIZATIONS = ("filter", "layer", "none")
"""How :func:`normalize` rescales a direction (see the module docstring)."""
IGNORE = ("biasbn", None)
"""``"biasbn"``: parameters of ndim <= 1 are zero in the direction; None: they are kept."""
DIRECTION_KINDS = ("random", "hessian", "pca", "difference", "custom")
"""What made a :class:`Directions`."""


@dataclass(frozen=True, eq=False)
class Directions:
    """A set of k directions in parameter space and what made them.

    Attributes:
        vectors: (k, P) tensor, one direction a row. kind: one of :data:`DIRECTION_KINDS`.
        params, shapes: names and shapes of the parameters in the flat vector (empty when
            unknown, e.g. for a PCA of bare arrays).
        center: (P,) the point the directions belong to (the model's parameters for random
            and Hessian directions, the centre of a PCA, ``a`` of a difference), or None.
        normalization, ignore, seed: the options of :func:`random` / :func:`normalize`.
        explained_variance: for PCA, the fraction of the checkpoints' squared distance to the
            centre along each direction. eigenvalues: for Hessian directions, each one's.
        options: other JSON-able options (the eigenvalue probe's, the runs compared, ...).
    """

    vectors: Tensor
    kind: str
    params: tuple[str, ...] = ()
    shapes: tuple[tuple[int, ...], ...] = ()
    center: Tensor | None = None
    normalization: str = "none"
    ignore: str | None = None
    seed: int | None = None
    explained_variance: np.ndarray | None = None
    eigenvalues: np.ndarray | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        v, fn = self.vectors, "Directions"
        if not isinstance(v, Tensor) or v.ndim != 2 or 0 in v.shape:
            got = tuple(v.shape) if isinstance(v, Tensor) else type(v).__name__
            raise ValueError(f"{fn}: vectors must be a (k, P) tensor with k, P >= 1, got {got}")
        _check_choice(fn, "kind", self.kind, DIRECTION_KINDS)
        if self.center is not None:
            _as_flat(self.center, v.shape[1], fn, "center")
        if self.shapes and (n := sum(int(np.prod(s)) for s in self.shapes)) != v.shape[1]:
            raise ValueError(
                f"{fn}: shapes {list(self.shapes)} hold {n} numbers, expected "
                f"P={v.shape[1]} (the vectors')"
            )

    @property
    def k(self) -> int:
        """Number of directions."""
        return int(self.vectors.shape[0])

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Directions:
        """The same directions (and centre) on another device or dtype."""
        c = None if self.center is None else self.center.to(device, dtype)
        return replace(self, vectors=self.vectors.to(device, dtype), center=c)

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Arrays and attributes for :meth:`landscape.store.Store.write_record`."""
        arrays = {"vectors": to_numpy(self.vectors)}
        for key in ("center", "explained_variance", "eigenvalues"):
            value = getattr(self, key)
            if value is not None:
                arrays[key] = to_numpy(value) if isinstance(value, Tensor) else value
        attrs = {
            "probe": "directions",
            "kind": self.kind,
            "k": self.k,
            "params": list(self.params),
            "shapes": [list(s) for s in self.shapes],
            "normalization": self.normalization,
            "ignore": self.ignore,
            "seed": self.seed,
            "options": dict(self.options),
        }
        return arrays, attrs

    @classmethod
    def from_record(
        cls, record: Any, device: torch.device | str | None = None, dtype: torch.dtype | None = None
    ) -> Directions:
        """The directions written by :meth:`to_record`.

        From a :class:`landscape.store.Record` or an ``(arrays, attrs)`` pair; tensors on
        ``device``/``dtype`` (default: the CPU and the stored dtype; bfloat16 was stored as
        float32).
        """
        a, at = check_record(record, "directions", "Directions.from_record")

        def tensor(key: str) -> Tensor | None:
            return torch.from_numpy(np.array(a[key])).to(device, dtype) if key in a else None

        def array(key: str) -> np.ndarray | None:
            return np.asarray(a[key]) if key in a else None

        vectors = tensor("vectors")
        if vectors is None:
            raise ValueError("Directions.from_record: the record holds no vectors")
        return cls(
            vectors=vectors,
            center=tensor("center"),
            explained_variance=array("explained_variance"),
            eigenvalues=array("eigenvalues"),
            kind=at["kind"],
            params=tuple(at["params"]),
            shapes=tuple(tuple(int(i) for i in s) for s in at["shapes"]),
            normalization=at["normalization"],
            ignore=at["ignore"],
            seed=None if at.get("seed") is None else int(at["seed"]),
            options=dict(at.get("options") or {}),
        )


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


# ---------------------------------------------------------------------------- random
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


def random(
    model: nn.Module,
    *,
    k: int = 2,
    seed: int = 0,
    normalization: str = "filter",
    ignore: str | None = "biasbn",
    params: ParamFilter | Iterable[str] | None = None,
) -> Directions:
    """K seeded Gaussian directions normalised to the model's weights (Li et al. 2018).

    All k come from one CPU ``torch.Generator`` seeded with ``seed`` (never the global RNG),
    drawn in the model's dtype and then moved to its device: the same seed and dtype give the
    same directions on every device, so that surfaces computed on a GPU and on a CPU are
    comparable point for point. Each row then goes through :func:`normalize` at the model's
    parameters. The model is only read.

    Args:
        model: any ``nn.Module``.
        k: number of directions.
        seed: int >= 0.
        normalization: see :func:`normalize`.
        ignore: see :func:`normalize`.
        params: the parameters spanned (a filter, names; None: all trainable).

    Returns:
        :class:`Directions` of kind ``"random"``, centred at the model's parameters.

    Raises:
        ValueError, TypeError: k < 1, a bad seed or option, no (selected) trainable
            parameters, every selected parameter ignored.

    Examples:
        >>> dirs = random(model, k=2, seed=1, normalization="filter", ignore="biasbn")
    """
    fn = "random"
    k, seed = _check_int(fn, "k", k, 1), _check_int(fn, "seed", seed, 0)
    _check_choice(fn, "normalization", normalization, NORMALIZATIONS)
    _check_choice(fn, "ignore", ignore, IGNORE)
    chosen = select(model, params)
    layout = ParamLayout.of(chosen)
    theta = layout.flatten(chosen).clone()
    gen = torch.Generator().manual_seed(seed)
    draw = torch.randn((k, layout.numel), generator=gen, dtype=layout.dtype).to(layout.device)
    return Directions(
        vectors=normalize(draw, theta, layout, normalization, ignore),
        kind="random",
        params=layout.names,
        shapes=layout.shapes,
        center=theta,
        normalization=normalization,
        ignore=ignore,
        seed=seed,
    )


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


# ---------------------------------------------------------------------------- differences
def difference(
    a: nn.Module | Tensor | np.ndarray,
    b: nn.Module | Tensor | np.ndarray,
    *,
    params: ParamFilter | Iterable[str] | None = None,
) -> Directions:
    """The direction from ``a`` to ``b``, ``theta_b - theta_a``, not normalised.

    Args:
        a: a model, or a flat vector (a tensor or an array).
        b: a model with the same parameters (names, shapes) as ``a``, or a flat vector of its
            length.
        params: for models, the parameters compared.

    Returns:
        :class:`Directions` of kind ``"difference"``, one row, centred at ``a``, in a's dtype
        and device (arrays become CPU tensors).

    Raises:
        ValueError, TypeError: a model and a vector; different parameters or lengths; a = b.

    Examples:
        >>> path = difference(model_init, model_final)
    """
    fn = "difference"
    if isinstance(a, nn.Module) != isinstance(b, nn.Module):
        raise TypeError(
            f"{fn}: expected two models or two flat vectors, got "
            f"{type(a).__name__} and {type(b).__name__}"
        )
    names: tuple[str, ...] = ()
    shapes: tuple[tuple[int, ...], ...] = ()
    if isinstance(a, nn.Module) and isinstance(b, nn.Module):  # both or neither (above)
        pa, pb = select(a, params), select(b, params)
        la, lb = ParamLayout.of(pa), ParamLayout.of(pb)
        if (la.names, la.shapes) != (lb.names, lb.shapes):
            sa, sb = (dict(zip(lo.names, lo.shapes, strict=True)) for lo in (la, lb))
            diff = [n for n in {**sa, **sb} if sa.get(n) != sb.get(n)]
            raise ValueError(
                f"{fn}: expected models with the same parameters (names, shapes); "
                f"they differ in {diff[:6]}"
            )
        ta, tb = la.flatten(pa).clone(), lb.flatten(pb)
        names, shapes = la.names, la.shapes
    else:
        ta = _as_flat(a, None, fn, "a").clone()
        tb = _as_flat(b, ta.numel(), fn, "b")
    d = _nonzero((tb.to(ta.device, ta.dtype) - ta).reshape(1, -1), fn, "a and b are the same point")
    return Directions(vectors=d, kind="difference", params=names, shapes=shapes, center=ta)


def stored_difference(
    file: Any,
    run_a: str,
    run_b: str | None = None,
    *,
    which_a: str | int = "final",
    which_b: str | int = "final",
) -> Directions:
    """:func:`difference` of two flat vectors of a landscape file.

    From ``(run_a, which_a)`` to ``(run_b, which_b)``, as CPU tensors of the stored dtype (move them
    with :meth:`Directions.to`), with the runs' parameter names and shapes, the runs in ``options``.

    Args:
        file: a path or an open :class:`landscape.store.Store`.
        run_a: the first run.
        run_b: the second run (defaults to ``run_a``).
        which_a: ``"init"``, ``"final"`` or a trajectory step of ``run_a``.
        which_b: ``"init"``, ``"final"`` or a trajectory step of ``run_b``.

    Raises:
        ValueError: runs with different parameters; equal points; what the store raises.

    Examples:
        >>> init_to_final = stored_difference("cmp.h5", "sgd", which_a="init")
        >>> sgd_to_adam = stored_difference("cmp.h5", "sgd", "adam")
    """
    run_b = run_a if run_b is None else run_b
    store = file if isinstance(file, Store) else Store(file)
    try:
        (na, sa), (nb, sb) = store.layout(run_a), store.layout(run_b)
        if (na, sa) != (nb, sb):
            raise ValueError(
                f"stored_difference: expected runs with the same parameters, "
                f"{run_a!r} and {run_b!r} differ (names or shapes)"
            )
        ta, tb = store.params(run_a, which_a), store.params(run_b, which_b)
    finally:
        if store is not file:
            store.close()
    out = difference(torch.from_numpy(ta), torch.from_numpy(tb))
    wa, wb = (w if isinstance(w, str) else int(w) for w in (which_a, which_b))
    return replace(
        out,
        params=tuple(na),
        shapes=tuple(sa),
        options={"run_a": run_a, "which_a": wa, "run_b": run_b, "which_b": wb},
    )


# ---------------------------------------------------------------------------- Hessian
def hessian(
    model: nn.Module,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    k: int = 2,
    **options: Any,
) -> Directions:
    """The top-k eigenvectors of the Hessian of the mean loss (unit vectors) as directions.

    By :func:`probes.curvature.hessian.eigenvalues` with ``vectors=True``; ``options`` go to it
    (``which``, ``tol``, ``curvature``, ``params``, ``mode``, ``seed``, ...). Rows come most
    wanted first: descending eigenvalue for ``which="largest"`` (default) and ``"both"``,
    ascending for ``"smallest"``, descending ``|lambda|`` for ``"magnitude"``. Not
    normalised to the weights (:func:`normalize` does that). The model is only read.

    Returns:
        :class:`Directions` of kind ``"hessian"`` in the model's dtype and device, centred at
        its parameters, with ``eigenvalues`` and the probe's options (``converged``: every
        pair met ``tol``).

    Raises:
        ValueError, TypeError: ``vectors`` or ``blocks`` among the options; what the probe
            refuses (k < 1, an unknown option, ...).

    Examples:
        >>> top = hessian(model, nn.CrossEntropyLoss(), (X, y), k=2)  # top.eigenvalues
    """
    bad = sorted({"vectors", "blocks"} & set(options))
    if bad:
        raise ValueError(
            f"hessian: {', '.join(bad)} cannot be passed (vectors are always "
            "computed, over all selected parameters at once)"
        )
    result = eigenvalues(model, loss_fn, data, k=k, vectors=True, **options)
    values = result.values
    key = {"smallest": values, "magnitude": -np.abs(values)}.get(result.which, -values)
    order = np.argsort(key, kind="stable")
    chosen = select(model, options.get("params"))
    layout = ParamLayout.of(chosen)
    vectors = torch.from_numpy(np.ascontiguousarray(result.vectors[order]))
    probe = {
        "which": result.which,
        "tol": result.tol,
        "curvature": result.curvature,
        "mode": result.mode,
        "converged": bool(result.all_converged),
        "cost": result.cost.as_dict(),
    }
    return Directions(
        vectors=vectors.to(layout.device, layout.dtype),
        kind="hessian",
        params=layout.names,
        shapes=layout.shapes,
        center=layout.flatten(chosen).clone(),
        eigenvalues=values[order],
        options=probe,
    )
