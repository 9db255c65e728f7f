"""Results of the path probes (NumPy only: reading them needs no torch).

:class:`Path` (the loss along a path, its barriers), :class:`Curve` (a trained Bezier curve),
:class:`Instability` (the barriers between forks of one run) and :class:`WeightMatching` (the
permutations that align two networks).

The barrier of a path is the largest excess of the loss over the chord of its ends,
``B = max_alpha L(alpha) - ((1 - alpha) L(0) + alpha L(1)) >= 0``; the accuracy barrier is
the largest drop of the accuracy below its chord. Both are computed from the profile, so they
round-trip with it (and are written as attributes for readers of the file). See
:mod:`probes.paths.interpolation` for the probes. Each result carries its ``cost``
(:class:`~landscape.engine.cost.Cost`); records go through
:class:`~landscape.engine.records.RecordMixin`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from landscape.engine.cost import Cost
from landscape.engine.records import RecordMixin

__all__ = ["INTERPOLATION_KINDS", "OPTIMIZERS", "Curve", "Instability", "Path", "WeightMatching"]

INTERPOLATION_KINDS = ("linear", "init_to_final", "bezier")
"""The kinds of :class:`Path`; a record's probe is ``"interpolation.<kind>"``."""
OPTIMIZERS = ("adam", "sgd")  # of the Bezier bend; SGD with momentum 0.9
"""The optimizers that may train a Bezier curve's bend (SGD with momentum 0.9)."""
_BARRIERS = (
    "barrier",
    "barrier_alpha",
    "accuracy_barrier",
    "test_barrier",
    "test_accuracy_barrier",
)


def _barrier(alphas: np.ndarray, values: np.ndarray, sign: float = 1.0) -> tuple[float, float]:
    chord = (1 - alphas) * values[0] + alphas * values[-1]
    excess = sign * (values - chord)
    i = int(np.argmax(excess))
    return float(excess[i]), float(alphas[i])


@dataclass(frozen=True, eq=False)
class Path(RecordMixin):
    """Loss and accuracy along a path between two points.

    Attributes:
        kind: one of :data:`INTERPOLATION_KINDS`.
        alphas: (n,) positions from 0 (the first end) to 1 (the second); ``t`` on a curve.
        loss, accuracy: (n,) mean loss and accuracy over the data at each point; accuracy is
            None where the targets are not classes (regression).
        test_loss, test_accuracy: the same on the test data, or None.
        buffers: ``"recalibrated"``, ``"interpolated"``, ``"model"`` (the model's own,
            constant) or ``"none"`` (the model has none).
        mode: ``"eval"`` or ``"train"``. params: names of the interpolated parameters.
        cost: evaluations of the loss (``loss_evals``: points times datasets, with the checks),
            passes over the data (checks, recalibrations and training included), wall time.
        info: JSON-able context (e.g. the file and run of a path between stored runs).
    """

    _probe = "interpolation.{kind}"
    _accepts: ClassVar[tuple[str, ...]] = ("interpolation.linear", "interpolation.init_to_final")
    _derived = _BARRIERS

    kind: str
    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    buffers: str
    mode: str
    params: tuple[str, ...]
    cost: Cost
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

    accuracy_barrier = property(
        lambda self: self._barrier_of("accuracy", -1),
        doc="The largest drop of the accuracy below its chord.",
    )
    test_barrier = property(
        lambda self: self._barrier_of("test_loss", 1),
        doc="The barrier of the test loss (None without test data).",
    )
    test_accuracy_barrier = property(
        lambda self: self._barrier_of("test_accuracy", -1),
        doc="The accuracy barrier on the test data.",
    )


@dataclass(frozen=True, eq=False)
class Curve(Path):
    """A trained quadratic Bezier curve (:func:`probes.paths.interpolation.bezier`).

    A :class:`Path` over ``t``, the bend and its training.

    Attributes:
        bend: (P,) the trained bend ``c`` (flat, the layout of ``params``).
        train_loss, train_t: (steps,) the minibatch loss at ``phi(t)`` and the ``t`` of each
            step. steps, lr, batch_size, seed, optimizer: the training options.
    """

    _accepts = ("interpolation.bezier",)

    bend: np.ndarray
    train_loss: np.ndarray
    train_t: np.ndarray
    steps: int
    lr: float
    batch_size: int
    seed: int
    optimizer: str


@dataclass(frozen=True, eq=False)
class Instability(RecordMixin):
    """The barriers between pairs of runs forked at steps ``ks``.

    See :func:`probes.paths.instability.instability`.

    Attributes:
        ks: (K,) the fork steps, increasing.
        alphas: (n,) the points of every path. loss, accuracy, test_loss, test_accuracy:
            (K, n) the profile of the path at each k (None where missing), from the end of the
            fork with ``seeds[0]`` (alpha 0) to that with ``seeds[1]``.
        buffers, mode, params: those of the paths. path_costs: the cost of each path.
        seeds: the data-order seeds of the two forks. seed: the trunk's (``config.seed``).
        end: the step both forks train to. config: the config as a dict. n: points a path.
        recalibrate: BatchNorm statistics recomputed along the paths.
        steps: updates trained in all (trunk and forks). cost: the paths' evaluations and
            passes, the wall time of the whole probe (training included).
    """

    _probe = "instability"
    _derived = ("barriers", "accuracy_barriers", "test_barriers", "test_accuracy_barriers")

    ks: np.ndarray
    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray | None
    test_loss: np.ndarray | None
    test_accuracy: np.ndarray | None
    buffers: str
    mode: str
    params: tuple[str, ...]
    path_costs: tuple[Cost, ...]
    seeds: tuple[int, int]
    seed: int
    end: int
    config: dict
    n: int
    recalibrate: bool
    steps: int
    cost: Cost

    @property
    def paths(self) -> tuple[Path, ...]:
        """One linear :class:`Path` a k."""

        def row(values: np.ndarray | None, i: int) -> np.ndarray | None:
            return None if values is None else values[i]

        return tuple(
            Path(
                kind="linear",
                alphas=self.alphas,
                loss=self.loss[i],
                accuracy=row(self.accuracy, i),
                test_loss=row(self.test_loss, i),
                test_accuracy=row(self.test_accuracy, i),
                buffers=self.buffers,
                mode=self.mode,
                params=self.params,
                cost=self.path_costs[i] if i < len(self.path_costs) else Cost(),
                info={},
            )
            for i in range(len(self.ks))
        )

    def _each(self, name: str) -> np.ndarray | None:
        values = [getattr(p, name) for p in self.paths]
        return None if any(v is None for v in values) else np.asarray(values, dtype=np.float64)

    barriers = property(
        lambda self: self._each("barrier"), doc="(K,) the training-loss barrier at each k."
    )
    accuracy_barriers = property(
        lambda self: self._each("accuracy_barrier"),
        doc="(K,) the training-accuracy (error) barrier, or None.",
    )
    test_barriers = property(
        lambda self: self._each("test_barrier"),
        doc="(K,) the test-loss barrier, or None without test data.",
    )
    test_accuracy_barriers = property(
        lambda self: self._each("test_accuracy_barrier"),
        doc="(K,) the test-accuracy barrier, or None.",
    )

    @classmethod
    def of(cls, paths: tuple[Path, ...], **options: Any) -> Instability:
        """The result from its paths (all over the same ``alphas``) and the other fields.

        Args:
            paths: one linear :class:`Path` a fork step.
            **options: ``ks``, ``seeds``, ``seed``, ``end``, ``config``, ``n``,
                ``recalibrate``, ``steps``, ``cost``.

        Returns:
            The :class:`Instability`.
        """

        def stacked(key: str) -> np.ndarray | None:
            values = [getattr(p, key) for p in paths]
            return None if any(v is None for v in values) else np.stack(values)

        first = paths[0]
        return cls(
            alphas=first.alphas,
            loss=np.stack([p.loss for p in paths]),
            accuracy=stacked("accuracy"),
            test_loss=stacked("test_loss"),
            test_accuracy=stacked("test_accuracy"),
            buffers=first.buffers,
            mode=first.mode,
            params=tuple(first.params),
            path_costs=tuple(p.cost for p in paths),
            **options,
        )

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Records written before the record protocol.

        Per-path counters as lists ``path_n_evals``, ``path_passes``, ``path_seconds``.
        """
        if "path_costs" not in attrs and "path_passes" in attrs:
            old = zip(
                attrs.get("path_n_evals") or [0] * len(attrs["path_passes"]),
                attrs["path_passes"],
                attrs["path_seconds"],
                strict=True,
            )
            attrs = {
                **attrs,
                "path_costs": [{"loss_evals": e, "passes": p, "seconds": s} for e, p, s in old],
            }
        return arrays, attrs


@dataclass(frozen=True, eq=False)
class WeightMatching(RecordMixin):
    """What :func:`probes.paths.alignment.align` found.

    Attributes:
        model: the aligned model (a new ``torch.nn.Module``: ``model_b`` permuted), or None
            when read back from a record (rebuild it with ``permute(model_b, perms)``).
        perms: hidden layer name -> permutation (int64): unit ``i`` of the aligned layer is
            unit ``perms[name][i]`` of ``model_b``'s.
        iterations: coordinate-descent sweeps over the layers. converged: the last sweep
            improved no layer (False: stopped by ``max_iter``).
        objective_before, objective_after: the matching objective ``J`` at the identity and
            at ``perms``. objective: ``J`` at the start and after each sweep (non-decreasing).
        matched: the state-dict names whose inner products form ``J``.
        max_iter, seed: the options. cost: the wall time.
    """

    _probe = "interpolation.align"
    _transient = ("model",)

    model: Any
    perms: dict[str, np.ndarray]
    iterations: int
    converged: bool
    objective_before: float
    objective_after: float
    objective: np.ndarray
    matched: tuple[str, ...]
    max_iter: int
    seed: int
    cost: Cost

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Records written before the record protocol.

        ``perm_<i>`` and the names as ``layers``.
        """
        if "perms" in attrs or "layers" not in attrs:
            return arrays, attrs
        moved = {(f"perms.{k[5:]}" if k.startswith("perm_") else k): v for k, v in arrays.items()}
        return moved, {**attrs, "perms": list(attrs["layers"])}
