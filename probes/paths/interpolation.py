r"""The loss along paths between two points of parameter space, and the barrier on them.

- :func:`linear`: the straight line ``theta(alpha) = (1 - alpha) theta_a + alpha theta_b``
  between two models (Frankle et al. 2020: linear mode connectivity);
- the same from a stored run's initialisation to its solution (Goodfellow et al. 2015) is
  :func:`landscape.surfaces.stored.init_to_final` (probes read no files);
- :func:`bezier`: a quadratic Bezier curve ``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` whose bend
  ``c`` is trained so that the loss is low all along it (Garipov et al. 2018).

The **barrier** of a path is the largest excess of the loss over the chord of its ends,
``B = max_alpha L(alpha) - ((1 - alpha) L(0) + alpha L(1)) >= 0`` (zero for a convex profile);
the accuracy barrier is the largest drop of the accuracy below its chord. Both are computed
from the profile, so they round-trip with it.

**Buffers (BatchNorm).** With ``recalibrate=False`` the floating-point buffers of the two
models (BatchNorm running statistics) are interpolated with the same ``alpha`` (other buffers
come from the nearer end): the end points are exactly the two models, but in between the
statistics are not those of the network at ``theta(alpha)``, and the path looks worse than it
is (Jordan et al. 2023). ``recalibrate=True`` recomputes them at every point from the training
data (:func:`landscape.engine.batchnorm.recalibrate`, one more forward pass a point):
recommended for BatchNorm nets, the default of :func:`bezier` for them. An end given as a flat
vector has no buffers: the path keeps the model's. Models are never written to (points go
through :class:`landscape.Objective`, eval mode by default); train/eval flags are restored.

Examples:
    >>> p = linear(model_a, model_b, nn.CrossEntropyLoss(), (X, y), n=25, test=(Xt, yt))
    >>> p.alphas, p.loss, p.barrier, p.test_barrier
    >>> c = bezier(model_a, model_b, nn.CrossEntropyLoss(), (X, y), steps=2000)
    >>> arrays, attrs = c.to_record()          # Store.write_record(None, "paths", "ab", ...)

References:
    Goodfellow, Vinyals, Saxe, "Qualitatively characterizing neural network optimization
    problems", ICLR 2015. Garipov, Izmailov, Podoprikhin, Vetrov, Wilson, "Loss surfaces, mode
    connectivity, and fast ensembling of DNNs", NeurIPS 2018. Draxler, Veschgini, Salmhofer,
    Hamprecht, "Essentially no barriers in neural network energy landscape", ICML 2018.
    Frankle, Dziugaite, Roy, Carbin, "Linear mode connectivity and the lottery ticket
    hypothesis", ICML 2020. Jordan, Sedghi, Saukh, Entezari, Neyshabur, "REPAIR: REnormalizing
    permuted activations for interpolation repair", ICLR 2023.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import grad_and_value
from torch.utils._pytree import tree_map
from torch.utils.data import DataLoader

from landscape.engine.batches import Batches
from landscape.engine.batchnorm import batchnorm_layers, has_batchnorm
from landscape.engine.batchnorm import recalibrate as _recalibrate
from landscape.engine.checks import _check_choice, _check_int, _check_positive
from landscape.engine.context import evaluation
from landscape.engine.cost import Cost
from landscape.engine.objective import MODES, Objective
from landscape.engine.params import ParamFilter, to_numpy
from probes.paths.alignment import align, permute
from probes.paths.results import INTERPOLATION_KINDS, OPTIMIZERS, Curve, Path, WeightMatching

__all__ = [
    "INTERPOLATION_KINDS",
    "OPTIMIZERS",
    "Curve",
    "Path",
    "WeightMatching",
    "align",
    "bezier",
    "linear",
    "permute",
]


# ---------------------------------------------------------------------------- the ends
class _Ends(NamedTuple):
    obj: Objective
    test_obj: Objective | None
    theta_a: Tensor
    theta_b: Tensor
    buffers_a: dict[str, Tensor] | None  # None: a flat vector (the model's buffers are used)
    buffers_b: dict[str, Tensor] | None


def _differences(ref: nn.Module, other: nn.Module) -> list[str]:
    out = [] if type(ref) is type(other) else [f"{type(other).__name__} vs {type(ref).__name__}"]
    for what, a, b in (
        ("parameters", ref.named_parameters(), other.named_parameters()),
        ("buffers", ref.named_buffers(), other.named_buffers()),
    ):
        sa, sb = {k: tuple(v.shape) for k, v in a}, {k: tuple(v.shape) for k, v in b}
        if sa != sb:
            diff = sorted(k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k))
            out.append(
                f"{what} "
                + ", ".join(
                    f"{k}: {sb.get(k, 'missing')} vs {sa.get(k, 'missing')}" for k in diff[:4]
                )
            )
    return out


def _ends(
    where: str,
    model_a: Any,
    model_b: Any,
    loss_fn: Any,
    data: Any,
    test: Any,
    model: nn.Module | None,
    params: Any,
    mode: str,
    batch_size: int | None,
    check: bool,
) -> _Ends:
    _check_choice(where, "mode", mode, MODES)
    named = (("model_a", model_a), ("model_b", model_b))
    for name, end in named:
        if not isinstance(end, (nn.Module, Tensor)):
            raise TypeError(
                f"{where}: {name} must be an nn.Module or a flat parameter vector "
                f"(Tensor), got {type(end).__name__}"
            )
    if model is not None and not isinstance(model, nn.Module):
        raise TypeError(f"{where}: model must be an nn.Module, got {type(model).__name__}")
    template = next((m for m in (model, model_a, model_b) if isinstance(m, nn.Module)), None)
    if template is None:
        raise TypeError(
            f"{where}: both ends are flat vectors; give the architecture that "
            "evaluates them as model="
        )
    for name, end in named:
        if (
            isinstance(end, nn.Module)
            and end is not template
            and (d := _differences(template, end))
        ):
            raise ValueError(
                f"{where}: {name} must have the architecture of "
                f"{'model' if model is not None else 'model_a'} (same class, "
                f"parameter and buffer names and shapes), got: {'; '.join(d)}"
            )
    obj = Objective(
        template, loss_fn, data, params=params, mode=mode, batch_size=batch_size, check=check
    )
    test_obj = (
        None
        if test is None
        else Objective(
            template, loss_fn, test, params=params, mode=mode, batch_size=batch_size, check=check
        )
    )
    layout = obj.layout
    thetas: list[Tensor] = []
    buffers: list[dict[str, Tensor] | None] = []
    for name, end in named:
        module = isinstance(end, nn.Module)
        theta = layout.flatten(dict(end.named_parameters())) if module else end.detach()
        thetas.append(theta.to(layout.device))
        layout.check(thetas[-1], name)
        buffers.append(
            {k: b.detach().to(layout.device) for k, b in end.named_buffers()} if module else None
        )
    return _Ends(obj, test_obj, thetas[0], thetas[1], buffers[0], buffers[1])


def _buffers_at(ends: _Ends, w: float) -> dict[str, Tensor] | None:
    a, b = ends.buffers_a, ends.buffers_b
    if a is None or b is None:
        return None
    return {
        k: torch.lerp(a[k], b[k], w) if a[k].is_floating_point() else (a[k] if w < 0.5 else b[k])
        for k in a
    }


def _walk(
    kind: str,
    ends: _Ends,
    alphas: np.ndarray,
    points: Iterable[Tensor],
    recal: bool,
    start: float,
    extra_passes: float = 0.0,
    **more: Any,
) -> Path:
    """Evaluate the points; the result with its buffers policy and cost."""
    template = ends.obj.model
    recal = recal and has_batchnorm(template)
    cols: dict[str, list] = {"loss": [], "accuracy": [], "test_loss": [], "test_accuracy": []}
    for alpha, theta in zip(alphas, points, strict=True):
        bufs = _recalibrate(ends.obj, theta) if recal else _buffers_at(ends, float(alpha))
        for prefix, obj in (("", ends.obj), ("test_", ends.test_obj)):
            if obj is not None:
                m = obj.evaluate(theta, bufs)
                cols[prefix + "loss"].append(m.loss)
                cols[prefix + "accuracy"].append(m.accuracy)
    spent = (
        ends.obj.cost
        + (ends.test_obj.cost if ends.test_obj else Cost())
        + Cost(passes=(len(alphas) if recal else 0) + extra_passes)
    )

    def column(key: str) -> np.ndarray | None:
        v = cols[key]
        return np.asarray(v, dtype=np.float64) if v and None not in v else None

    buffers = (
        "recalibrated"
        if recal
        else "interpolated"
        if ends.buffers_a and ends.buffers_b is not None
        else "model"
        if any(True for _ in template.buffers())
        else "none"
    )
    return (Curve if kind == "bezier" else Path)(
        kind=kind,
        alphas=np.asarray(alphas, dtype=np.float64),
        loss=np.asarray(cols["loss"], dtype=np.float64),  # a float at every point
        accuracy=column("accuracy"),
        test_loss=column("test_loss"),
        test_accuracy=column("test_accuracy"),
        buffers=buffers,
        mode=ends.obj.mode,
        params=tuple(ends.obj.layout.names),
        cost=spent.with_seconds(time.perf_counter() - start),
        info={},
        **more,
    )


# ---------------------------------------------------------------------------- probes
def linear(
    model_a: nn.Module | Tensor,
    model_b: nn.Module | Tensor,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    n: int = 25,
    test: Any = None,
    recalibrate: bool = False,
    mode: str = "eval",
    params: ParamFilter | Iterable[str] | None = None,
    batch_size: int | None = None,
    model: nn.Module | None = None,
    check: bool = True,
) -> Path:
    """The loss along the straight line ``theta(alpha) = (1 - alpha) theta_a + alpha theta_b``.

    At ``n`` evenly spaced ``alpha`` in [0, 1] (``torch.lerp``: exact at both ends), over the whole
    of ``data`` (and ``test``); each point one pass, two with ``recalibrate``.

    Args:
        model_a: the start: a model, or a flat parameter vector of the layout of ``params``
            (evaluated with ``model``, else the end that is a model).
        model_b: the end: a model of the same architecture as ``model_a``, or a flat
            parameter vector as for ``model_a``.
        loss_fn: a loss returning the batch mean.
        data: tensors, a Dataset or a DataLoader.
        n: points (>= 2).
        test: test data evaluated at the same points, or None.
        recalibrate: recompute the BatchNorm statistics at every point from ``data`` (module
            docstring; needs ``mode="eval"``).
        mode: ``"eval"`` (default) or ``"train"``.
        params: the parameters interpolated (a filter or names; the others stay at the values
            of ``model``, else ``model_a``).
        batch_size: evaluation batch size.
        model: the architecture (default: ``model_a``, else ``model_b``).
        check: the objective's determinism check at construction.

    Returns:
        :class:`Path`: ``alphas``, ``loss``, ``accuracy``, ``barrier``, options and cost.

    Raises:
        TypeError: an end that is neither a module nor a tensor, two vectors without
            ``model``, an end of another dtype.
        ValueError: ``n < 2``, ends of different architectures or sizes, ``recalibrate`` in
            train mode, empty data, a loss that is not a finite scalar.

    Examples:
        >>> p = linear(model_a, model_b, nn.CrossEntropyLoss(), (X, y), recalibrate=True)
        >>> p.barrier, p.accuracy_barrier
    """
    start = time.perf_counter()
    n, recal = _check_path("linear", n, recalibrate, mode)
    ends = _ends(
        "linear", model_a, model_b, loss_fn, data, test, model, params, mode, batch_size, check
    )
    alphas = np.linspace(0.0, 1.0, n)
    points = (torch.lerp(ends.theta_a, ends.theta_b, float(a)) for a in alphas)
    return _walk("linear", ends, alphas, points, recal, start)


def _check_path(where: str, n: Any, recalibrate: Any, mode: str) -> tuple[int, bool]:
    n = _check_int(where, "n", n, 2)
    if not isinstance(recalibrate, bool):
        raise TypeError(f"{where}: recalibrate must be True or False, got {recalibrate!r}")
    if recalibrate and mode == "train":
        raise ValueError(
            f"{where}: recalibrate=True needs mode='eval' (in train mode "
            "BatchNorm normalises with batch statistics, not running ones)"
        )
    return n, recalibrate


def _minibatches(data: Any, size: int, obj: Objective, gen: torch.Generator) -> Iterator:
    """Minibatches of ``size`` for the bend.

    Random without replacement for tensors (a new permutation when fewer than ``size`` are left),
    the loader's own order otherwise.
    """
    layout = obj.layout
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        source = (
            obj.batches
            if isinstance(data, DataLoader)
            else Batches(data, device=layout.device, dtype=layout.dtype, batch_size=size)
        )
        while True:
            yield from ((b.inputs, b.targets) for b in source)
    full = Batches(
        data, device=layout.device, dtype=layout.dtype, batch_size=obj.n_examples
    ).first()
    count = obj.n_examples
    while True:
        perm = torch.randperm(count, generator=gen, device=layout.device)
        for i in range(0, count - size + 1, size):
            idx = perm[i : i + size]
            yield tree_map(lambda x, idx=idx: x[idx], full.inputs), full.targets[idx]


def _bezier(a: Tensor, c: Tensor, b: Tensor, t: Any) -> Tensor:
    """The quadratic Bezier curve with ends a, b and bend c at t in [0, 1]."""
    u = 1 - t
    return u * u * a + 2 * t * u * c + t * t * b


def bezier(
    model_a: nn.Module | Tensor,
    model_b: nn.Module | Tensor,
    loss_fn: Callable[[Any, Tensor], Tensor],
    data: Any,
    *,
    steps: int = 1000,
    lr: float = 1e-3,
    batch_size: int = 128,
    seed: int = 0,
    n: int = 25,
    test: Any = None,
    recalibrate: bool | None = None,
    optimizer: str = "adam",
    mode: str = "eval",
    params: ParamFilter | Iterable[str] | None = None,
    eval_batch_size: int | None = None,
    model: nn.Module | None = None,
    check: bool = True,
) -> Curve:
    """A quadratic Bezier curve between two minima, its bend trained for low loss along it.

    ``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` between ``a`` and ``b`` (fixed), the bend ``c``
    trained (Garipov et al. 2018).

    ``c`` starts at ``(a + b) / 2``. Each step draws one ``t ~ U(0, 1)`` and one minibatch,
    takes the gradient of the minibatch loss at ``phi(t)`` with respect to ``c`` (torch.func
    through ``functional_call``: any model) and updates ``c`` alone. The curve is then evaluated
    at ``n`` evenly spaced ``t`` as in :func:`linear`. BatchNorm layers normalise with batch
    statistics during training (as when the ends were trained; other modules run in ``mode``),
    and their statistics are recomputed at each evaluated point (``recalibrate=None`` does so
    when the model has BatchNorm; ``False`` interpolates the ends' statistics in ``t``).

    Args:
        model_a: as for :func:`linear`.
        model_b: as for :func:`linear`.
        loss_fn: as for :func:`linear`.
        data: as for :func:`linear`.
        steps: updates of the bend.
        lr: learning rate.
        batch_size: examples a step (tensor data: random, without replacement; a DataLoader:
            its own batches).
        seed: seeds the ``torch.Generator`` of ``t`` and the minibatches.
        n: as for :func:`linear`.
        test: as for :func:`linear`.
        recalibrate: recompute the BatchNorm statistics at each evaluated point (True), or
            interpolate the ends' statistics (False); None: True when the model has BatchNorm
            (and ``mode="eval"``).
        optimizer: ``"adam"`` or ``"sgd"`` (momentum 0.9).
        mode: as for :func:`linear`.
        params: as for :func:`linear`.
        eval_batch_size: batch size of the evaluations.
        model: as for :func:`linear`.
        check: as for :func:`linear`.

    Returns:
        :class:`Curve`: the profile and ``barrier``, the ``bend``, the loss history.

    Raises:
        ValueError: bad options, or as :func:`linear`; a training loss that is not finite.

    Examples:
        >>> c = bezier(model_a, model_b, nn.CrossEntropyLoss(), (X, y), steps=2000)
        >>> c.barrier, linear(model_a, model_b, nn.CrossEntropyLoss(), (X, y)).barrier
    """
    start = time.perf_counter()
    steps, size = (
        _check_int("bezier", "steps", steps, 1),
        _check_int("bezier", "batch_size", batch_size, 1),
    )
    lr, seed = _check_positive("bezier", "lr", lr), _check_int("bezier", "seed", seed)
    _check_choice("bezier", "optimizer", optimizer, OPTIMIZERS)
    n, _ = _check_path("bezier", n, recalibrate is not None and recalibrate, mode)
    ends = _ends(
        "bezier", model_a, model_b, loss_fn, data, test, model, params, mode, eval_batch_size, check
    )
    net, layout = ends.obj.model, ends.obj.layout
    recal = has_batchnorm(net) and mode == "eval" if recalibrate is None else recalibrate
    a, b, size = ends.theta_a, ends.theta_b, min(size, ends.obj.n_examples)
    layers = batchnorm_layers(net)
    own = dict(net.named_buffers())
    scratch = [
        f"{name}.{k}" if name else k
        for name, layer in layers.items()
        for k, _ in layer.named_buffers(recurse=False)
    ]

    def loss_at(c: Tensor, t: Tensor, inputs: Any, targets: Tensor) -> Tensor:
        buffers = {k: own[k].clone() for k in scratch}  # BatchNorm writes its statistics
        return loss_fn(ends.obj.outputs(_bezier(a, c, b, t), inputs, buffers), targets)

    step = grad_and_value(loss_at)
    c = torch.lerp(a, b, 0.5).clone()
    opt = (
        torch.optim.Adam([c], lr=lr)
        if optimizer == "adam"
        else torch.optim.SGD([c], lr=lr, momentum=0.9)
    )
    gen = torch.Generator(device=layout.device).manual_seed(seed)
    acc = torch.promote_types(layout.dtype, torch.float32)
    history, ts = torch.empty((2, steps), dtype=acc, device=layout.device)
    batches = _minibatches(data, size, ends.obj, gen)
    with evaluation(net, mode == "train"):
        for m in layers.values():
            m.training = True  # restored by evaluation()
        for i in range(steps):
            inputs, targets = next(batches)
            t = torch.rand((), generator=gen, device=layout.device, dtype=layout.dtype)
            g, value = step(c, t, inputs, targets)
            c.grad = g
            opt.step()
            history[i], ts[i] = value.detach(), t
    if not bool(torch.isfinite(history).all()) or not bool(torch.isfinite(c).all()):
        first = int((~torch.isfinite(history)).int().argmax())
        raise ValueError(
            f"bezier: the training loss of the bend is not finite (from step "
            f"{first}); expected finite values: lower lr (got {lr})"
        )
    c = c.detach()
    alphas = np.linspace(0.0, 1.0, n)
    points = (_bezier(a, c, b, t) for t in alphas.tolist())
    # _walk makes a Curve for kind "bezier", which its Path return type cannot say
    return cast(
        Curve,
        _walk(
            "bezier",
            ends,
            alphas,
            points,
            recal,
            start,
            extra_passes=steps * size / ends.obj.n_examples,
            bend=to_numpy(c),
            train_loss=history.to("cpu", torch.float64).numpy(),
            train_t=ts.to("cpu", torch.float64).numpy(),
            steps=steps,
            lr=lr,
            batch_size=size,
            seed=seed,
            optimizer=optimizer,
        ),
    )
