"""Results of the path probes: :class:`Path` (the loss along a path, its barriers) and
:class:`Curve` (a trained Bezier curve), and how they round-trip through the store.

The barrier of a path is the largest excess of the loss over the chord of its ends,
``B = max_alpha L(alpha) - ((1 - alpha) L(0) + alpha L(1)) >= 0``; the accuracy barrier is
the largest drop of the accuracy below its chord. Both are computed from the profile, so they
round-trip with it. See :mod:`probes.paths.interpolation` for the probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from landscape.engine.records import check_record

__all__ = ["KINDS", "OPTIMIZERS", "Curve", "Path"]

KINDS = ("linear", "init_to_final", "bezier")  # a record's probe: "interpolation.<kind>"
OPTIMIZERS = ("adam", "sgd")  # of the Bezier bend; SGD with momentum 0.9


def _barrier(alphas: np.ndarray, values: np.ndarray, sign: float = 1.0) -> tuple[float, float]:
    chord = (1 - alphas) * values[0] + alphas * values[-1]
    excess = sign * (values - chord)
    i = int(np.argmax(excess))
    return float(excess[i]), float(alphas[i])


# ---------------------------------------------------------------------------- results
_ARRAYS = ("alphas", "loss", "accuracy", "test_loss", "test_accuracy")
_CURVE = {"steps": int, "lr": float, "batch_size": int, "seed": int, "optimizer": str}


@dataclass(frozen=True, eq=False)
class Path:
    """Loss and accuracy along a path between two points.

    Attributes:
        kind: one of :data:`KINDS`.
        alphas: (n,) positions from 0 (the first end) to 1 (the second); ``t`` on a curve.
        loss, accuracy: (n,) mean loss and accuracy over the data at each point; accuracy is
            None where the targets are not classes (regression).
        test_loss, test_accuracy: the same on the test data, or None.
        buffers: ``"recalibrated"``, ``"interpolated"``, ``"model"`` (the model's own,
            constant) or ``"none"`` (the model has none): see the module docstring.
        mode: ``"eval"`` or ``"train"``. params: names of the interpolated parameters.
        n_evals: evaluations (points times datasets). passes: passes over the data (checks,
            recalibrations and training included). seconds: wall time.
        info: JSON-able context (e.g. the file and run of :func:`init_to_final`).
    """

    kind: str
    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    buffers: str
    mode: str
    params: tuple[str, ...]
    n_evals: int
    passes: float
    seconds: float
    info: dict

    @property
    def barrier(self) -> float:
        """``max_alpha L(alpha) - ((1-alpha) L(0) + alpha L(1))``, >= 0."""
        return _barrier(self.alphas, self.loss)[0]

    @property
    def barrier_alpha(self) -> float:
        """Where the barrier is (the first such alpha)."""
        return _barrier(self.alphas, self.loss)[1]

    def _barrier_of(self, key: str, sign: float) -> float | None:
        values = getattr(self, key)
        return None if values is None else _barrier(self.alphas, values, sign)[0]

    accuracy_barrier = property(lambda self: self._barrier_of("accuracy", -1),
                                doc="The largest drop of the accuracy below its chord.")
    test_barrier = property(lambda self: self._barrier_of("test_loss", 1),
                            doc="The barrier of the test loss (None without test data).")
    test_accuracy_barrier = property(lambda self: self._barrier_of("test_accuracy", -1),
                                     doc="The accuracy barrier on the test data.")

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, attrs)`` for :meth:`landscape.store.Store.write_record`; the barriers are
        attributes for readers of the file (recomputed from the profile on reading)."""
        arrays = {k: np.asarray(getattr(self, k), dtype=np.float64) for k in _ARRAYS
                  if getattr(self, k) is not None}
        attrs = {"probe": f"interpolation.{self.kind}", "kind": self.kind,
                 "buffers": self.buffers, "mode": self.mode, "params": list(self.params),
                 "n_evals": int(self.n_evals), "passes": float(self.passes),
                 "seconds": float(self.seconds), "info": dict(self.info),
                 **{k: getattr(self, k) for k in ("barrier", "barrier_alpha", "accuracy_barrier",
                                                   "test_barrier", "test_accuracy_barrier")}}
        if isinstance(self, Curve):
            arrays.update(bend=np.asarray(self.bend), train_loss=np.asarray(self.train_loss),
                          train_t=np.asarray(self.train_t))
            attrs.update({k: getattr(self, k) for k in _CURVE})
        return arrays, attrs

    @classmethod
    def from_record(cls, record: Any) -> Path:
        """The result back from a :class:`landscape.store.Record` or ``(arrays, attrs)``; a
        Bezier record gives a :class:`Curve`."""
        attrs = (record[1] if isinstance(record, tuple) and len(record) == 2
                 else getattr(record, "attrs", None))
        probe = attrs.get("probe") if isinstance(attrs, Mapping) else None
        kinds = [f"interpolation.{k}" for k in (("bezier",) if cls is Curve else KINDS)]
        arrays, attrs = check_record(record, probe if probe in kinds else kinds[0],
                                     f"{cls.__name__}.from_record")
        curve = attrs["probe"] == "interpolation.bezier"
        f64 = {k: np.asarray(v, dtype=np.float64) for k, v in arrays.items() if k != "bend"}
        fields = {k: f64.get(k) for k in _ARRAYS}
        fields.update(kind=str(attrs["kind"]), buffers=str(attrs["buffers"]),
                      mode=str(attrs["mode"]), params=tuple(attrs["params"]),
                      n_evals=int(attrs["n_evals"]), passes=float(attrs["passes"]),
                      seconds=float(attrs["seconds"]), info=dict(attrs.get("info") or {}))
        if curve:
            fields.update(bend=np.asarray(arrays["bend"]), train_loss=f64["train_loss"],
                          train_t=f64["train_t"], **{k: t(attrs[k]) for k, t in _CURVE.items()})
        return (Curve if curve else Path)(**fields)


@dataclass(frozen=True, eq=False)
class Curve(Path):
    """A trained quadratic Bezier curve (:func:`bezier`): a :class:`Path` over ``t``, the bend
    and its training.

    Attributes:
        bend: (P,) the trained bend ``c`` (flat, the layout of ``params``).
        train_loss, train_t: (steps,) the minibatch loss at ``phi(t)`` and the ``t`` of each
            step. steps, lr, batch_size, seed, optimizer: the training options.
    """

    bend: np.ndarray
    train_loss: np.ndarray
    train_t: np.ndarray
    steps: int
    lr: float
    batch_size: int
    seed: int
    optimizer: str
