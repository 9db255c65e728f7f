"""The values of probe options in a sweep spec, checked before anything runs.

The probes check their options when they run, which in a sweep is after a run has trained;
:func:`check_value` refuses at once (``--dry-run`` included) the values of the keywords the
probes share that no probe accepts: counts below 1 (``k = -1``), numbers that are not finite
and positive (``rho``, ``tol``, ``eps``), flags that are not booleans, seeds out of range.
Other values are the probes' to check.
"""

from __future__ import annotations

import math
from typing import Any

from landscape.train.tables import invalid

__all__ = ["check_value"]

_COUNTS = (
    "k",
    "n_products",
    "n_vectors",
    "steps",
    "n_grid",
    "n_samples",
    "pac_bayes_samples",
    "m",
    "max_products",
    "batch_size",
    "block_size",
    "max_iter",
    "depth",
    "rank",
)
_POSITIVE = (
    "tol",
    "rho",
    "adaptive_rho",
    "eps",
    "target",
    "sigma_max",
    "tolerance",
    "width",
    "target_stderr",
)
_FLAGS = ("adaptive", "logit_normalize", "magnitude_aware", "vectors")


def check_value(key: str, value: Any, *at: str | int) -> None:
    """Refuse a value of a common probe keyword that the probe would refuse after training.

    Args:
        key: the keyword.
        value: its value in the spec.
        at: the keys from the validated table down to the keyword's table.

    Raises:
        PydanticCustomError: from :func:`~landscape.train.tables.invalid`, naming the key.
    """
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if key in _COUNTS and not (isinstance(value, int) and not isinstance(value, bool)):
        raise invalid(f"must be an integer >= 1, got {value!r}", *at, key, type_error=True)
    if key in _COUNTS and value < 1:
        raise invalid(f"must be an integer >= 1, got {value!r}", *at, key)
    if key == "restarts" and not (isinstance(value, int) and not isinstance(value, bool)):
        raise invalid(f"must be an integer >= 0, got {value!r}", *at, key, type_error=True)
    if key == "restarts" and value < 0:
        raise invalid(f"must be an integer >= 0, got {value!r}", *at, key)
    if key == "seed" and not (
        isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
    ):
        raise invalid(f"must be an integer from 0 to 2**63 - 1, got {value!r}", *at, key)
    if key in _POSITIVE and not number:
        raise invalid(f"must be a number > 0, got {value!r}", *at, key, type_error=True)
    if key in _POSITIVE and not (math.isfinite(value) and value > 0):
        raise invalid(f"must be a finite number > 0, got {value!r}", *at, key)
    if key in _FLAGS and not isinstance(value, bool):
        raise invalid(f"must be true or false, got {value!r}", *at, key, type_error=True)
