"""The reference models' common ground: the registry, ``build``, the base class, checks.

:func:`build` makes a model of :data:`MODELS` from its name and keyword arguments;
:class:`ReferenceModel` records those arguments so that ``build(**model.spec)`` rebuilds it.
:data:`MODELS` is filled by :mod:`landscape.models` with the reference models of
:mod:`~landscape.models.networks`, :mod:`~landscape.models.factorizations` and
:mod:`~landscape.models.transformer`. The checks give every model one message format.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "MODELS", "ReferenceModel", "build"]

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
    "elu": nn.ELU,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "identity": nn.Identity,
}
"""The activation modules of the reference models, by name."""

MODELS: dict[str, type[nn.Module]] = {}
"""Model name -> class; ``build`` looks names up here. Add your own: ``MODELS["name"] = cls``.

Filled by :mod:`landscape.models` (``mlp``, ``linear``, ``cnn1d``, ``resnet``,
``deep_matrix_factorization``, ``symmetric_factorization``, ``diagonal_linear_network``,
``tiny_transformer``).
"""


# Validation: one message format, "Owner: name must be <what>, got <value>"; TypeError for a
# wrong type, ValueError for a wrong value.
def _fail(owner: str, name: str, what: str, value: Any, exc: type[Exception] = ValueError):
    raise exc(f"{owner}: {name} must be {what}, got {value!r}")


def _int(owner: str, name: str, value: Any, low: int = 0) -> int:
    what = {0: "a non-negative int", 1: "a positive int"}.get(low, f"an int >= {low}")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        _fail(owner, name, what, value, TypeError)
    if value < low:
        _fail(owner, name, what, value)
    return int(value)


def _ints(owner: str, name: str, value: Any, count: int, low: int = 0) -> list[int]:
    """An int (used ``count`` times) or a sequence of exactly ``count`` ints."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != count:
            _fail(owner, name, f"an int or a sequence of {count} ints", value)
        return [_int(owner, f"{name}[{i}]", v, low) for i, v in enumerate(value)]
    return [_int(owner, name, value, low)] * count


def _float(owner: str, name: str, value: Any) -> float:
    what = "a positive finite float"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(owner, name, what, value, TypeError)
    if not (math.isfinite(value) and value > 0):
        _fail(owner, name, what, value)
    return float(value)


def _bool(owner: str, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        _fail(owner, name, "a bool", value, TypeError)
    return value


def _choice(owner: str, name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        _fail(owner, name, "one of " + ", ".join(map(repr, choices)), value)
    return value


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral | numbers.Real):
        return int(value) if isinstance(value, numbers.Integral) else float(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    raise TypeError(f"model spec: keyword values must be JSON-serialisable, got {value!r}")


def build(
    name: str, kwargs: dict[str, Any] | None = None, *, seed: int | None = None, **kw: Any
) -> nn.Module:
    """Build the model ``MODELS[name]`` from keyword arguments.

    Args:
        name: a key of ``MODELS``.
        kwargs: keyword arguments as a dict (so that ``build(**model.spec)`` works), merged with
            ``**kw``.
        seed: if given, the model is initialised after ``torch.manual_seed(seed)`` inside
            ``torch.random.fork_rng()``: reproducible, and the global RNG state is untouched. The
            seed is not part of ``model.spec``: record it beside the spec.
        **kw: keyword arguments of the model given directly.

    Returns:
        The model, with its ``spec``.

    Raises:
        ValueError: an unknown name (the message lists the known ones) or a bad value.
        TypeError: an unexpected or missing keyword argument, or a value of the wrong type.

    Example:
        >>> model = build("cnn1d", seed=0)
        >>> same = build(**model.spec, seed=0)   # same architecture and parameters
    """
    if name not in MODELS:
        raise ValueError(f"build: unknown model {name!r}; known models: {', '.join(MODELS)}")
    cls, kwargs = MODELS[name], dict(kwargs or {})
    if overlap := sorted(set(kwargs) & set(kw)):
        raise TypeError(f"build({name!r}): {overlap[0]!r} given both in kwargs and as a keyword")
    kwargs.update(kw)
    params = {
        k: p
        for k, p in inspect.signature(cls).parameters.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    }
    takes = f"{cls.__name__} takes {', '.join(params)}"
    if bad := [k for k in kwargs if k not in params]:
        raise TypeError(f"build({name!r}): unexpected keyword argument {bad[0]!r}; {takes}")
    if missing := [k for k, p in params.items() if p.default is p.empty and k not in kwargs]:
        raise TypeError(f"build({name!r}): missing keyword argument {missing[0]!r}; {takes}")
    if seed is None:
        model = cls(**kwargs)
    else:
        seed = _int("build", "seed", seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = cls(**kwargs)
    if not isinstance(model, ReferenceModel) and not hasattr(model, "spec"):
        # nn.Module types its attributes as tensors and modules; ``spec`` is a plain dict
        setattr(model, "spec", {"name": name, "kwargs": _jsonable(kwargs)})  # noqa: B010
    return model


class ReferenceModel(nn.Module):
    """Base class: records the arguments of ``__init__`` (defaults filled in) for ``spec``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: ReferenceModel, *args: Any, **kw: Any) -> None:
            init(self, *args, **kw)
            bound = signature.bind(self, *args, **kw)  # the outermost __init__ writes last
            bound.apply_defaults()
            self._spec_kwargs = _jsonable(dict(list(bound.arguments.items())[1:]))

        setattr(cls, "__init__", recording_init)  # noqa: B010 (mypy refuses to assign methods)

    @property
    def spec(self) -> dict[str, Any]:
        """``{"name": ..., "kwargs": {...}}``, JSON-serialisable; ``build(**spec)`` rebuilds."""
        name = next((k for k, c in MODELS.items() if c is type(self)), type(self).__name__)
        return {"name": name, "kwargs": _jsonable(self._spec_kwargs)}


def _flat(x: Tensor, features: int, owner: str) -> Tensor:
    if x.dim() < 2 or x.shape[1:].numel() != features:
        raise ValueError(
            f"{owner}: inputs must have shape (N, {features}) or (N, ...) with "
            f"{features} features per example, got {tuple(x.shape)}"
        )
    return x.flatten(1)
