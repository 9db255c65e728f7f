"""landscape: measure and compare the minima that optimizers choose.

The engine: :class:`Objective` (the empirical risk of any torch model as a function of a
flat parameter vector, with exact gradients and Hessian-vector products), parameter layouts
(:mod:`landscape.params`), batches (:mod:`landscape.batches`), built-in data
(:mod:`landscape.data`), reference models (:mod:`landscape.models`), optimizers
(:mod:`landscape.optim`), training into a file (:mod:`landscape.train`) and the file format
(:mod:`landscape.store`).

Names are imported on first use, so that reading a file (:mod:`landscape.store`) needs only
NumPy and h5py, not torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "allocator", "batches", "batchnorm", "checkpoints", "context", "data", "datasets",
    "determinism", "directions", "hvp", "journal", "losses", "metrics", "models", "optim",
    "params", "plot", "pointwise", "ranking", "recording", "records", "report", "resume",
    "runspec", "sam", "split", "store", "stored", "summary", "surface", "sweep", "sweep_exec",
    "sweep_init", "sweep_measure", "train", "trainconfig", "trajectories",
)
_NAMES = {
    "Cost": "objective", "DeterminismError": "determinism", "Metrics": "metrics",
    "Objective": "objective", "ParamLayout": "params", "no_bias_norm": "params",
    "only": "params", "Store": "store", "load_params": "store", "optimizer_spec": "optim",
    "TrainConfig": "trainconfig", "TrainResult": "train", "fit": "train",
}

__all__ = sorted([*_SUBMODULES, *_NAMES, "__version__"])


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _NAMES:
        return getattr(importlib.import_module(f".{_NAMES[name]}", __name__), name)
    raise AttributeError(f"module 'landscape' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
