"""landscape: measure and compare the minima that optimizers choose.

The engine: :class:`Objective` (the empirical risk of any torch model as a function of a
flat parameter vector, with exact gradients and Hessian-vector products), parameter layouts
(:mod:`landscape.params`), batches (:mod:`landscape.batches`), built-in data
(:mod:`landscape.data`) and reference models (:mod:`landscape.models`).
"""

from . import batches, context, data, datasets, determinism, hvp, metrics, models, params, split
from .determinism import DeterminismError
from .metrics import Metrics
from .objective import Cost, Objective
from .params import ParamLayout, no_bias_norm, only

__version__ = "0.1.0"

__all__ = [
    "Cost",
    "DeterminismError",
    "Metrics",
    "Objective",
    "ParamLayout",
    "__version__",
    "batches",
    "context",
    "data",
    "determinism",
    "datasets",
    "hvp",
    "metrics",
    "models",
    "no_bias_norm",
    "only",
    "params",
    "split",
]
