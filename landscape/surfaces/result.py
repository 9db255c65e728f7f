"""A loss surface: the grids, the coordinates, the directions and the options that made them.

As computed by :func:`landscape.surfaces.grid.surface` and as stored in
``runs/<run>/surfaces/<name>``.

NumPy only (no torch), so that reading and plotting a file does not import torch.

Examples:
    >>> s = Surface.from_record(store.record("sgd", "surfaces", "random"))  # doctest: +SKIP
    >>> s.train_loss.shape, s.done.all()
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from landscape.engine.records import check_record

__all__ = ["BN_MODES", "METRICS", "Surface", "same_grid"]

BN_MODES = ("keep", "recalibrate")
"""What a surface does with BatchNorm statistics: keep the centre's or recalibrate at each point."""
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")
"""The grids a surface holds."""


@dataclass(frozen=True, eq=False)
class Surface:
    """A loss surface on a grid (see :mod:`landscape.surfaces.grid`).

    Attributes:
        x, y: coordinates along the first and second direction (``y`` None for 1-D).
        directions: (k, P) the directions (k = 1 or 2), flat over ``params``.
        grids: ``{"train_loss": ..., "train_accuracy": ..., "test_loss": ...,
            "test_accuracy": ...}`` of shape (len(x),) or (len(x), len(y)); NaN where not
            computed; accuracy grids absent for regression, test grids without test data.
        done: bool grid of the points computed.
        bn, mode, chunk, vmap: options. params: parameter names, in flat order. info: what the
            directions are (kind, seed, normalisation, ...), as given.
        n_points: points evaluated by this call. passes: passes over the data. seconds: wall
            time of this call.
    """

    x: np.ndarray
    y: np.ndarray | None
    directions: np.ndarray
    grids: dict[str, np.ndarray]
    done: np.ndarray
    bn: str
    mode: str
    chunk: int
    vmap: bool
    params: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    n_points: int = 0
    passes: float = 0.0
    seconds: float = 0.0

    def __getattr__(self, name: str) -> np.ndarray:
        grids = self.__dict__.get("grids", {})
        if name in grids:
            return grids[name]
        raise AttributeError(
            f"Surface has no attribute or grid {name!r} (grids: {', '.join(grids)})"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """The grid's shape: (len(x),) or (len(x), len(y))."""
        return self.done.shape

    def _options(self) -> dict[str, Any]:
        return {
            "bn": self.bn,
            "mode": self.mode,
            "chunk": self.chunk,
            "vmap": self.vmap,
            "params": list(self.params),
            "directions_info": self.info,
        }

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any], dict[str, tuple]]:
        """``(arrays, attrs, dims)`` for :meth:`landscape.store.Store.write_record`."""
        axes = ("x",) if self.y is None else ("x", "y")
        arrays = {"x": self.x, "directions": self.directions, "done": self.done, **self.grids}
        if self.y is not None:
            arrays["y"] = self.y
        attrs = {
            "probe": "surface",
            **self._options(),
            "n_points": self.n_points,
            "passes": float(self.passes),
            "seconds": float(self.seconds),
        }
        dims = {k: axes for k in (*self.grids, "done")}
        return arrays, attrs, dims

    @classmethod
    def from_record(cls, record: Any) -> Surface:
        """The surface from a :class:`landscape.store.Record` (possibly partly done)."""
        a, at = check_record(record, "surface", "Surface.from_record")
        return cls(
            x=np.asarray(a["x"]),
            y=np.asarray(a["y"]) if "y" in a else None,
            directions=np.asarray(a["directions"]),
            grids={k: np.asarray(a[k]) for k in METRICS if k in a},
            done=np.asarray(a["done"], dtype=bool),
            bn=at["bn"],
            mode=at["mode"],
            chunk=int(at["chunk"]),
            vmap=bool(at["vmap"]),
            params=tuple(at["params"]),
            info=dict(at.get("directions_info") or {}),
            n_points=int(at["n_points"]),
            passes=float(at["passes"]),
            seconds=float(at["seconds"]),
        )


def same_grid(a: Surface, b: Surface) -> bool:
    """Whether two surfaces have the same coordinates, directions, options and grids.

    For example one held in a file and one about to be computed, or two blocks of one surface.
    """
    return (
        np.array_equal(a.x, b.x)
        and (a.y is None) == (b.y is None)
        and (a.y is None or (b.y is not None and np.array_equal(a.y, b.y)))
        and a.directions.shape == b.directions.shape
        and np.array_equal(a.directions, b.directions)
        and a._options() == b._options()
        and set(a.grids) == set(b.grids)
    )
