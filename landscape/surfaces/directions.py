r"""Directions in parameter space: random, Hessian, PCA of a trajectory, differences.

A direction is a flat vector over a :class:`~landscape.engine.params.ParamLayout` (the model's
trainable parameters, or those ``params=`` selects, as in :class:`landscape.Objective`), on
the model's device and dtype. :class:`Directions` holds k of them, a (k, P) block, with what
made them, and stores them (:meth:`~Directions.to_record`).

Each direction that :func:`random` makes is normalised to the weights by :func:`normalize`
(filter-wise, Li et al. 2018; the options are in :mod:`landscape.surfaces.normalization`, which
also holds :func:`orthogonalize`; both are re-exported here).

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
from landscape.surfaces.normalization import (
    IGNORE,
    NORMALIZATIONS,
    _as_flat,
    _nonzero,
    normalize,
    orthogonalize,
)
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


# ---------------------------------------------------------------------------- random
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
