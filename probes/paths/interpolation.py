r"""The loss along paths between two points of parameter space, and the barrier on them.

- :func:`linear`: the straight line ``theta(alpha) = (1 - alpha) theta_a + alpha theta_b``
  between two models (Frankle et al. 2020: linear mode connectivity);
- the same from a stored run's initialisation to its solution (Goodfellow et al. 2015) is
  :func:`landscape.surfaces.stored.init_to_final` (probes read no files);
- :func:`bezier`: a quadratic Bezier curve ``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` whose bend
  ``c`` is trained so that the loss is low all along it (Garipov et al. 2018;
  :mod:`probes.paths.bezier`, re-exported here, as are :func:`align` and :func:`permute` of
  weight matching).

Both walk their path with :mod:`probes.paths.walk` (the ends, the buffers, the profile).

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
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from landscape.engine.params import ParamFilter
from probes.paths.alignment import align, permute
from probes.paths.bezier import bezier
from probes.paths.results import INTERPOLATION_KINDS, OPTIMIZERS, Curve, Path, WeightMatching
from probes.paths.walk import _check_path, _ends, _walk

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
