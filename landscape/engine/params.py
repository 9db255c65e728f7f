"""Flat parameter vectors and the named tensors of a model.

A probe sees a model's parameters as one flat vector ``theta``. :class:`ParamLayout` records
which parameters are in it (names, shapes, dtypes, offsets) so that a flat vector can be
split back into named tensors, restored into a model, or stored and read back later.

Only parameters with ``requires_grad=True`` are included, each once (tied weights appear
under the first name that :meth:`torch.nn.Module.named_parameters` gives them). A filter
selects a subset; the predefined :func:`no_bias_norm` leaves out biases and the parameters of
normalisation layers, as in Li et al. 2018 ("ignore biasbn").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["ParamFilter", "ParamLayout", "no_bias_norm", "only", "select", "to_numpy"]

ParamFilter = Callable[[str, nn.Parameter, nn.Module], bool]
"""Decides per parameter: ``filter(name, parameter, owning_module) -> keep``."""

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)
if hasattr(nn, "RMSNorm"):
    _NORM_TYPES = (*_NORM_TYPES, nn.RMSNorm)


def no_bias_norm(name: str, param: nn.Parameter, module: nn.Module) -> bool:
    """Filter that keeps weights only: drops biases and normalisation layers' parameters.

    Biases are the parameters named ``*bias``; the normalisation layers are BatchNorm,
    LayerNorm, GroupNorm, LocalResponseNorm and RMSNorm.

    Args:
        name: the parameter's name in the model.
        param: the parameter.
        module: the module that owns it.

    Returns:
        Whether to keep the parameter.
    """
    if isinstance(module, _NORM_TYPES):
        return False
    return not name.rsplit(".", 1)[-1].startswith("bias")


def only(*prefixes: str) -> ParamFilter:
    """Filter that keeps the parameters whose name equals one of ``prefixes`` or lies below it.

    ``only("0", "fc.weight")`` keeps ``0.weight``, ``0.bias`` and ``fc.weight``.

    Args:
        *prefixes: parameter or module names.

    Returns:
        A :data:`ParamFilter`.

    Raises:
        TypeError: no prefix, or one that is not a string.
    """
    if not prefixes or not all(isinstance(p, str) for p in prefixes):
        raise TypeError(
            f"only: expected one or more parameter-name prefixes (str), got {prefixes!r}"
        )

    def keep(name: str, param: nn.Parameter, module: nn.Module) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return keep


def to_numpy(t: Tensor) -> np.ndarray:
    """A CPU NumPy copy of a tensor, for storing.

    bfloat16 (which NumPy lacks) becomes float32, exactly.

    Args:
        t: any tensor.

    Returns:
        The copy.
    """
    t = t.detach()
    return (t.float() if t.dtype == torch.bfloat16 else t).to("cpu", copy=True).numpy()


def _owner(model: nn.Module, name: str) -> nn.Module:
    owner = model
    for part in name.split(".")[:-1]:
        owner = getattr(owner, part)
    return owner


def select(
    model: nn.Module, params: ParamFilter | Iterable[str] | None = None
) -> dict[str, nn.Parameter]:
    """The trainable parameters of ``model`` chosen by ``params``, in registration order.

    Args:
        model: the model.
        params: a :data:`ParamFilter`, a collection of parameter names, or None for all.

    Returns:
        ``{name: parameter}``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module`` or ``params`` has the wrong type.
        ValueError: unknown names, or nothing selected.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected model to be a torch.nn.Module, got {type(model).__name__}")
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if not trainable:
        raise ValueError(
            f"model {type(model).__name__} has no trainable parameters "
            "(none with requires_grad=True); expected at least one"
        )
    if params is None:
        chosen = trainable
    elif callable(params):
        chosen = {n: p for n, p in trainable.items() if params(n, p, _owner(model, n))}
    elif isinstance(params, str):
        raise TypeError(
            f"params must be a filter function or a collection of names, got the string "
            f"{params!r}; use params=[{params!r}]"
        )
    elif isinstance(params, Iterable):
        names = list(params)
        unknown = [n for n in names if n not in trainable]
        if unknown:
            raise ValueError(
                f"unknown or frozen parameter names {unknown}; trainable parameters are "
                f"{list(trainable)}"
            )
        chosen = {n: trainable[n] for n in trainable if n in set(names)}
    else:
        raise TypeError(
            "params must be None, a filter f(name, param, module) -> bool or a collection of "
            f"names, got {type(params).__name__}"
        )
    if not chosen:
        raise ValueError(f"the parameter filter selected none of {list(trainable)}")
    return chosen


@dataclass(frozen=True)
class ParamLayout:
    """Where each named parameter lives in a flat vector.

    Attributes:
        names: parameter names, in the order of the flat vector.
        shapes: their shapes.
        dtype: the common floating dtype of the flat vector.
        device: the device of the parameters.
    """

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtype: torch.dtype
    device: torch.device

    @classmethod
    def of(cls, params: Mapping[str, Tensor]) -> ParamLayout:
        """The layout of named tensors (all of one floating dtype and one device)."""
        dtypes = {p.dtype for p in params.values()}
        devices = {p.device for p in params.values()}
        if len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise TypeError(
                "expected the selected parameters to share one floating dtype, got "
                + ", ".join(f"{n}: {p.dtype}" for n, p in params.items())
            )
        if len(devices) != 1:
            raise ValueError(
                "expected the selected parameters on one device, got "
                + ", ".join(f"{n}: {p.device}" for n, p in params.items())
            )
        return cls(
            names=tuple(params),
            shapes=tuple(tuple(p.shape) for p in params.values()),
            dtype=dtypes.pop(),
            device=devices.pop(),
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """Number of entries of each parameter."""
        return tuple(int(torch.Size(s).numel()) for s in self.shapes)

    @property
    def numel(self) -> int:
        """Length P of the flat vector."""
        return sum(self.sizes)

    @property
    def offsets(self) -> dict[str, tuple[int, int]]:
        """``name -> (start, stop)`` of each parameter in the flat vector."""
        out, start = {}, 0
        for name, size in zip(self.names, self.sizes, strict=True):
            out[name] = (start, start + size)
            start += size
        return out

    def flatten(self, tensors: Mapping[str, Tensor]) -> Tensor:
        """Concatenate named tensors (detached) into a flat vector in layout order."""
        missing = [n for n in self.names if n not in tensors]
        if missing:
            raise ValueError(f"flatten: missing tensors for {missing}")
        return torch.cat([tensors[n].detach().reshape(-1) for n in self.names])

    def unflatten(self, theta: Tensor) -> dict[str, Tensor]:
        """Split a flat vector into named views with the recorded shapes (differentiable)."""
        self.check(theta)
        parts = theta.split(self.sizes)
        return {n: t.view(s) for n, t, s in zip(self.names, parts, self.shapes, strict=True)}

    def check(self, theta: Tensor, what: str = "theta") -> None:
        """Raise a clear error unless ``theta`` is a flat vector of this layout."""
        if not isinstance(theta, Tensor):
            raise TypeError(f"expected {what} to be a torch.Tensor, got {type(theta).__name__}")
        if theta.ndim != 1 or theta.shape[0] != self.numel:
            raise ValueError(
                f"expected {what} of shape ({self.numel},) (the selected parameters, flat), "
                f"got shape {tuple(theta.shape)}"
            )
        if theta.dtype != self.dtype:
            raise TypeError(
                f"expected {what} of dtype {self.dtype} (the model's), got {theta.dtype}; "
                f"convert it with .to({self.dtype})"
            )
        if theta.device != self.device:
            raise ValueError(
                f"expected {what} on device {self.device} (the model's), got {theta.device}"
            )

    def check_block(self, vectors: Tensor, what: str = "V") -> None:
        """Raise a clear error unless ``vectors`` is a (k, P) block of this layout."""
        if not isinstance(vectors, Tensor):
            raise TypeError(f"expected {what} to be a torch.Tensor, got {type(vectors).__name__}")
        if vectors.ndim != 2 or vectors.shape[1] != self.numel or vectors.shape[0] == 0:
            raise ValueError(
                f"expected {what} of shape (k, {self.numel}) with k >= 1, got "
                f"{tuple(vectors.shape)}"
            )
        self.check(vectors[0], what)

    def check_vectors(self, v: Tensor, what: str = "v") -> None:
        """Raise a clear error unless ``v`` is one vector (P,) or a block (k, P)."""
        if isinstance(v, Tensor) and v.ndim == 2:
            self.check_block(v, what)
        else:
            self.check(v, what)

    def describe(self) -> dict:
        """A JSON-able description (names, shapes, dtype) for the file format."""
        return {
            "names": list(self.names),
            "shapes": [list(s) for s in self.shapes],
            "dtype": str(self.dtype).removeprefix("torch."),
        }
