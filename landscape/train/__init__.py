"""Training: how a run is trained and what is recorded of it.

- :mod:`~landscape.train.optim`: the optimizer registry and specs (their hyperparameters
  checked by :mod:`~landscape.train.hyper`); :mod:`~landscape.train.schedules`: learning-rate
  schedules; :mod:`~landscape.train.sam`: sharpness-aware minimisation around any base
  optimizer; :mod:`~landscape.train.sign_descent`: sign descent;
- :mod:`~landscape.train.config`: :class:`TrainConfig`, validated up front, JSON-ready;
- :mod:`~landscape.train.fit`: :func:`fit`, the training loop, into a file or not;
- :mod:`~landscape.train.recording`: callbacks and the buffer of rows written at each flush;
- :mod:`~landscape.train.resume`: the full training state to continue or fork from;
- :mod:`~landscape.train.checkpoints`: models trained elsewhere, stored vectors back into models;
  :mod:`~landscape.train.pretrained`: Hugging Face ``save_pretrained`` folders as runs;
- :mod:`~landscape.train.spec`: a run described as data (TOML, flags), built into objects;
  :mod:`~landscape.train.schema`: what the data may hold, as typed models.
"""

from landscape.train.checkpoints import load_params
from landscape.train.config import DEFAULT_EPOCHS_BETWEEN_RECORDS, TrainConfig
from landscape.train.fit import TrainResult, fit, total_steps
from landscape.train.optim import OPTIMIZERS, SCHEDULES, optimizer_spec
from landscape.train.recording import Callback, TrainState, callback
from landscape.train.resume import Checkpoint

__all__ = [
    "DEFAULT_EPOCHS_BETWEEN_RECORDS",
    "OPTIMIZERS",
    "SCHEDULES",
    "Callback",
    "Checkpoint",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "callback",
    "fit",
    "load_params",
    "optimizer_spec",
    "total_steps",
]
