"""Helpers shared by the implicit-bias probes: a model's weight matrices and its initialisation.

The weight matrices are the "layers"; the probes are :mod:`probes.implicit_bias.norms`,
:mod:`probes.implicit_bias.margins` and :mod:`probes.implicit_bias.weight_spectra`.

A *layer* is a selected trainable parameter with ``ndim >= 2``, seen as the matrix
``W.reshape(W.shape[0], -1)``: a ``Linear`` weight as it is (out, in), a convolution kernel
(out, in, k...) as (out, in * prod(k)). Biases and other vectors (normalisation scales) are no
layers; they count in whole-vector norms only. Private to the probes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from torch import Tensor, nn

from landscape.engine.params import ParamFilter, select

__all__: list[str] = []


def selected(
    where: str, model: Any, params: ParamFilter | Iterable[str] | None
) -> dict[str, Tensor]:
    """The selected trainable parameters of ``model``, detached, with ``where`` in errors."""
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"{where}: expected model to be a torch.nn.Module, got {type(model).__name__}"
        )
    try:
        chosen = select(model, params)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{where}: {exc}") from None
    floating = {n: p for n, p in chosen.items() if p.is_floating_point()}
    if len(floating) != len(chosen):
        raise TypeError(
            f"{where}: expected floating-point parameters, got "
            + ", ".join(f"{n}: {p.dtype}" for n, p in chosen.items())
        )
    return {n: p.detach() for n, p in chosen.items()}


def matrices(where: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The layers among named tensors: those with ``ndim >= 2``, reshaped to (out, rest)."""
    out = {n: t.reshape(t.shape[0], -1) for n, t in tensors.items() if t.ndim >= 2}
    if not out:
        shapes = ", ".join(f"{n}: {tuple(t.shape)}" for n, t in tensors.items())
        raise ValueError(
            f"{where}: expected at least one layer (a selected parameter with "
            f"ndim >= 2), got only {shapes}"
        )
    return out


def resolve_init(
    where: str, model: nn.Module, init: Any, chosen: Mapping[str, Tensor]
) -> dict[str, Tensor]:
    """The initial values of the ``chosen`` parameters, on their device and dtype.

    ``init`` is a model with the same parameter names, a state dict (name -> tensor), or a
    flat vector: either of the selected parameters (in their order) or of all trainable
    parameters of ``model`` (the layout a run stores as ``init``).
    """
    if isinstance(init, nn.Module):
        source: Mapping[str, Any] = dict(init.named_parameters())
    elif isinstance(init, Mapping):
        source = init
    elif isinstance(init, Tensor):
        if init.ndim != 1:
            raise ValueError(f"{where}: a flat init must be 1-D, got shape {tuple(init.shape)}")
        everything = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for layout in (chosen, everything):
            if init.numel() == sum(t.numel() for t in layout.values()):
                parts = init.detach().split([t.numel() for t in layout.values()])
                source = {
                    n: v.view(t.shape) for (n, t), v in zip(layout.items(), parts, strict=True)
                }
                break
        else:
            n_sel = sum(t.numel() for t in chosen.values())
            n_all = sum(t.numel() for t in everything.values())
            other = "" if n_all == n_sel else f" or {n_all} (all trainable parameters)"
            raise ValueError(
                f"{where}: a flat init must have {n_sel} entries (the selected "
                f"parameters){other}, got {init.numel()}"
            )
    else:
        raise TypeError(
            f"{where}: init must be a model, a state dict or a flat tensor, got "
            f"{type(init).__name__}"
        )
    missing = [n for n in chosen if n not in source]
    if missing:
        raise ValueError(
            f"{where}: init has no parameter {missing[0]!r} (missing: "
            f"{', '.join(missing[:5])}); expected the model's parameter names"
        )
    out = {}
    for name, t in chosen.items():
        value = source[name]
        if not isinstance(value, Tensor) or tuple(value.shape) != tuple(t.shape):
            got = tuple(value.shape) if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"{where}: init[{name!r}] must have shape {tuple(t.shape)}, got {got}")
        out[name] = value.detach().to(device=t.device, dtype=t.dtype)
    return out


def split(flat: np.ndarray, counts: Iterable[int]) -> tuple[np.ndarray, ...]:
    """Cut a concatenation back into its pieces of the given lengths."""
    counts = [int(c) for c in counts]
    edges = np.cumsum([0, *counts])
    return tuple(np.asarray(flat[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True))


def none_or(kind: type, value: Any) -> Any:
    return None if value is None else kind(value)
