"""landscape: measure and compare the minima that optimizers choose.

The layers, bottom to top (imports only go down; ``tests/test_layers.py`` holds it):

- :mod:`landscape.engine`: :class:`Objective` (the empirical risk of any torch model as a
  function of a flat parameter vector, with exact gradients and Hessian-vector products),
  parameter layouts, batches, evaluation contexts, metrics, losses, the determinism check,
  BatchNorm recalibration, pointwise evaluation, the record protocol of results;
- :mod:`landscape.data` (built-in offline datasets and adapters), :mod:`landscape.models`
  (small reference models), :mod:`landscape.store` (the HDF5 file format; NumPy and h5py only);
- :mod:`landscape.train`: optimizers, the training loop, recording, resume, checkpoints, run
  specs;
- the package :mod:`probes` (curvature, sharpness, implicit bias, paths);
- :mod:`landscape.surfaces`, :mod:`landscape.report`, :mod:`landscape.plot`;
- :mod:`landscape.sweep`, then :mod:`landscape.cli`.

Names are imported on first use, so that reading a file (:mod:`landscape.store`,
:mod:`landscape.report`, :mod:`landscape.plot`) needs only NumPy, h5py and matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from landscape.engine.lazy import attach

__version__ = "0.1.0"

_SUBMODULES = (
    "cli",
    "data",
    "engine",
    "models",
    "plot",
    "report",
    "store",
    "surfaces",
    "sweep",
    "train",
)
_NAMES = {
    "Cost": "landscape.engine.cost",
    "DeterminismError": "landscape.engine.determinism",
    "Metrics": "landscape.engine.metrics",
    "Objective": "landscape.engine.objective",
    "ParamLayout": "landscape.engine.params",
    "no_bias_norm": "landscape.engine.params",
    "only": "landscape.engine.params",
    "Store": "landscape.store.file",
    "load_params": "landscape.train.checkpoints",
    "optimizer_spec": "landscape.train.optim",
    "TrainConfig": "landscape.train.config",
    "TrainResult": "landscape.train.fit",
    "fit": "landscape.train.fit",
}

__all__ = [
    "Cost",
    "DeterminismError",
    "Metrics",
    "Objective",
    "ParamLayout",
    "Store",
    "TrainConfig",
    "TrainResult",
    "__version__",
    "cli",
    "data",
    "engine",
    "fit",
    "load_params",
    "models",
    "no_bias_norm",
    "only",
    "optimizer_spec",
    "plot",
    "report",
    "store",
    "surfaces",
    "sweep",
    "train",
]

__getattr__, __dir__ = attach(__name__, _SUBMODULES, _NAMES)

if TYPE_CHECKING:
    from landscape.engine.cost import Cost
    from landscape.engine.determinism import DeterminismError
    from landscape.engine.metrics import Metrics
    from landscape.engine.objective import Objective
    from landscape.engine.params import ParamLayout, no_bias_norm, only
    from landscape.store.file import Store
    from landscape.train.checkpoints import load_params
    from landscape.train.config import TrainConfig
    from landscape.train.fit import TrainResult, fit
    from landscape.train.optim import optimizer_spec
