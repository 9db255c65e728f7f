"""Walking a path between two points: its ends checked and held, the profile along it.

The machinery of :func:`probes.paths.interpolation.linear` and
:func:`probes.paths.bezier.bezier`: the two ends (models or flat vectors) checked against one
architecture and turned into objectives and flat vectors, the buffers at each point
(interpolated, or recalibrated BatchNorm statistics), and the loss and accuracy at every point
of the path as a :class:`~probes.paths.results.Path` or :class:`~probes.paths.results.Curve`.
The policies (barriers, buffers) are described in :mod:`probes.paths.interpolation`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.batchnorm import has_batchnorm
from landscape.engine.batchnorm import recalibrate as _recalibrate
from landscape.engine.checks import _check_choice, _check_int
from landscape.engine.cost import Cost
from landscape.engine.objective import MODES, Objective
from probes.paths.results import Curve, Path

__all__: list[str] = []  # the internals of probes.paths.interpolation and probes.paths.bezier


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
