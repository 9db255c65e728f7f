r"""The permutation symmetry of a chain network: its hidden units, and permuting them.

Permuting the hidden units of a network (the rows of one layer, the matching columns of the
next, every per-unit parameter and statistic between) leaves its function unchanged.
:func:`hidden_units` lists the permutable hidden layers of a model, :func:`permute` applies
permutations to a copy of it; :func:`probes.paths.alignment.align` (weight matching) chooses
them and re-exports both.

The structure (conservatively): the leaf modules, in registration order, are taken as a chain
of Linear / Conv{1,2,3}d (``groups=1``) layers, BatchNorm{1,2,3}d on the current units, and
modules that act on each unit (channel) separately: activations, dropout, pooling, softmax,
``nn.Flatten(1)``. A Linear after a conv reads the flattened ``(N, C, *spatial)`` output, so the
conv's channel permutation becomes a block permutation of its input features. The root's
``forward`` is trusted to call its children in that order (flattening between a conv and a
Linear); every other module with children must be an ``nn.Sequential``. Where ``torch.fx``
traces the model, its graph is checked too: a forward that combines tensors (a residual sum,
attention, concatenation), slices them or calls a layer twice is refused. Anything else
(another container, a parameter outside a layer, an unknown module) raises a ``ValueError``
that names it.

Examples:
    >>> hidden_units(model)               # {"layers.0": 64, "layers.2": 64}
    >>> same = permute(model, {"layers.0": p0, "layers.2": p2})   # the same function
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["hidden_units", "permute"]

_WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_UNITWISE = (  # act on each unit / channel separately: commute with permutations of them
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.ELU,
    nn.SELU,
    nn.CELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Softplus,
    nn.Softsign,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Tanhshrink,
    nn.LogSigmoid,
    nn.Identity,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveAvgPool3d,
    nn.AdaptiveMaxPool1d,
    nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d,
    nn.Softmax,
    nn.LogSoftmax,
)
_SHAPE_OPS = {"size", "dim", "numel", "getattr"}  # fx ops that give shapes, not tensors
_FUNCTIONS = {  # unit-wise functions a traced forward may apply; view/reshape: the flatten
    "relu",
    "relu_",
    "relu6",
    "leaky_relu",
    "elu",
    "selu",
    "celu",
    "gelu",
    "silu",
    "mish",
    "sigmoid",
    "tanh",
    "softplus",
    "dropout",
    "flatten",
    "view",
    "reshape",
    "contiguous",
    "max_pool1d",
    "max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "softmax",
    "log_softmax",
}


@dataclass(frozen=True)
class _Term:
    """One tensor of the state dict and how it enters the matching.

    Its view for matching, which axis holds which hidden layer (an index into the layers), and
    whether it enters the objective.
    """

    name: str
    view: tuple[int, ...]
    axes: dict[int, int]
    matched: bool


# ---------------------------------------------------------------------------- structure
def _refuse(fn: str, name: str, module: nn.Module, why: str) -> None:
    where = f"{name!r} ({type(module).__name__})" if name else f"the root {type(module).__name__}"
    raise ValueError(
        f"{fn}: {where} {why}; align supports chains of Linear/Conv layers, "
        "BatchNorm, unit-wise activations, pooling and a flatten (see "
        "probes.paths.alignment)"
    )


def _leaves(fn: str, model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The leaf modules in registration order, after checking the containers."""
    seen: dict[int, str] = {}
    leaves, outside = [], None
    for name, m in model.named_modules(remove_duplicate=False):
        if id(m) in seen:
            _refuse(fn, name, m, f"is the module {seen[id(m)]!r} used twice (shared weights)")
        seen[id(m)] = name
        children = list(m.children())
        if children and m is not model and type(m) is not nn.Sequential:
            _refuse(
                fn,
                name,
                m,
                "is a container other than nn.Sequential (its forward may "
                "add skip connections or mix units)",
            )
        own = list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False))
        if children and own and outside is None:
            outside = (name, m, own[0][0])
        if not children:
            leaves.append((name, m))
    if outside is not None:
        _refuse(fn, outside[0], outside[1], f"holds {outside[2]!r} outside any layer")
    return leaves


def _fx_check(fn: str, model: nn.Module, leaves: list[tuple[str, nn.Module]]) -> None:
    """Refuse a model whose ``torch.fx`` graph is not a chain of leaves.

    Where ``torch.fx`` traces the model (a throwaway copy), refuse a graph that is not the chain of
    leaves, once each, with unit-wise functions and reshapes (the flatten) between; an untraceable
    model (shape checks in ``forward``) rests on the module walk alone.
    """
    try:
        graph = torch.fx.symbolic_trace(copy.deepcopy(model)).graph
    except Exception:  # noqa: BLE001 - any tracing failure means: not traceable
        return
    owner = type(model).__name__
    tensors: set[torch.fx.Node] = set()
    called = []
    for node in graph.nodes:
        inputs = [n for n in node.all_input_nodes if n in tensors]
        if node.op in ("placeholder", "get_attr", "call_module"):
            tensors.add(node)
            called += [node.target] if node.op == "call_module" else []
        elif node.op in ("call_function", "call_method") and inputs:
            what = getattr(node.target, "__name__", str(node.target))
            if what in _SHAPE_OPS:
                continue
            if len(inputs) > 1:
                raise ValueError(
                    f"{fn}: the forward of {owner} combines {len(inputs)} tensors "
                    f"in {what!r} (a skip connection, attention, concatenation or "
                    "a layer called functionally); align supports chains only"
                )
            if what not in _FUNCTIONS:
                raise ValueError(
                    f"{fn}: the forward of {owner} applies {what!r} between its "
                    f"layers; align allows only {', '.join(sorted(_FUNCTIONS))}"
                )
            tensors.add(node)
    order = [n for n, _ in leaves]
    if called != order:
        raise ValueError(
            f"{fn}: the forward of {owner} calls its layers as {called}, not once "
            f"each in registration order {order}"
        )


def _structure(
    fn: str, model: nn.Module, what: str = "model"
) -> tuple[list[tuple[str, int]], list[_Term]]:
    """The hidden layers (name, units) of a chain model and the permuted tensors."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: {what} must be a torch.nn.Module, got {type(model).__name__}")
    leaves = _leaves(fn, model)
    for name, m in leaves:
        if isinstance(m, nn.modules.conv._ConvNd) and (m.groups != 1 or m.transposed):
            _refuse(fn, name, m, "is a grouped or transposed convolution")
        if not isinstance(m, (*_WEIGHTS, *_NORMS, *_UNITWISE, nn.Flatten)):
            _refuse(fn, name, m, "is not a layer that align knows how to permute")
        if isinstance(m, nn.Flatten) and m.start_dim != 1:
            _refuse(fn, name, m, f"flattens from dim {m.start_dim}, not 1")
    _fx_check(fn, model, leaves)
    last = max((i for i, (_, m) in enumerate(leaves) if isinstance(m, _WEIGHTS)), default=-1)
    layers: list[tuple[str, int]] = []
    terms: list[_Term] = []
    cur, conv_out, flat = None, False, False  # current hidden layer; after a conv; flattened
    for i, (name, m) in enumerate(leaves):
        key = f"{name}." if name else ""
        if isinstance(m, _WEIGHTS):
            is_conv, w = not isinstance(m, nn.Linear), tuple(m.weight.shape)
            n_out, n_in = w[:2]
            if is_conv and flat:
                _refuse(fn, name, m, "is a convolution after a Linear layer or a flatten")
            axes: dict[int, int] = {}
            if cur is not None:
                units = layers[cur][1]
                if not is_conv and conv_out:
                    if n_in % units:
                        _refuse(
                            fn,
                            name,
                            m,
                            f"has {n_in} input features, not a multiple of "
                            f"the {units} channels of {layers[cur][0]!r}",
                        )
                    w = (n_out, units, n_in // units)
                elif n_in != units:
                    _refuse(
                        fn, name, m, f"has {n_in} inputs, but {layers[cur][0]!r} has {units} units"
                    )
                axes[1] = cur
            cur = None
            if i < last:
                layers.append((name, n_out))
                cur = axes[0] = len(layers) - 1
            terms.append(_Term(key + "weight", w, axes, True))
            if m.bias is not None:
                terms.append(
                    _Term(key + "bias", (n_out,), {0: cur} if cur is not None else {}, True)
                )
            conv_out, flat = is_conv, not is_conv
        elif isinstance(m, nn.Flatten):
            flat = True
        elif isinstance(m, _NORMS) and cur is not None:
            if m.num_features != layers[cur][1]:
                _refuse(
                    fn,
                    name,
                    m,
                    f"normalises {m.num_features} features, but "
                    f"{layers[cur][0]!r} has {layers[cur][1]} units",
                )
            for attr, matched in (
                ("weight", True),
                ("bias", True),
                ("running_mean", False),
                ("running_var", False),
            ):
                if getattr(m, attr, None) is not None:
                    terms.append(_Term(key + attr, (m.num_features,), {0: cur}, matched))
    return layers, terms


def hidden_units(model: nn.Module) -> dict[str, int]:
    """The permutable hidden layers of ``model``: name -> number of units (channels).

    In forward order; the keys of :attr:`~probes.paths.results.WeightMatching.perms`.

    Raises:
        ValueError: an architecture :func:`~probes.paths.alignment.align` does not support
            (the message names it).
    """
    return dict(_structure("hidden_units", model)[0])


# ---------------------------------------------------------------------------- permuting
def _take(x: Any, perms: list[Any], term: _Term, skip: int | None = None) -> Any:
    """``x`` (a tensor or array of the term's view) with each hidden axis permuted."""
    for axis, layer in term.axes.items():
        if layer != skip:
            x = (
                x.index_select(axis, perms[layer])
                if isinstance(x, torch.Tensor)
                else np.take(x, perms[layer], axis=axis)
            )
    return x


def _apply(model: nn.Module, terms: list[_Term], perms: list[np.ndarray]) -> nn.Module:
    state = model.state_dict()
    new = dict(state)
    on: dict[torch.device, list[torch.Tensor]] = {}  # the permutations, once per device
    for term in terms:
        t = state[term.name]
        idx = on.setdefault(
            t.device, [torch.as_tensor(p, dtype=torch.long, device=t.device) for p in perms]
        )
        new[term.name] = _take(t.detach().reshape(term.view), idx, term).reshape(t.shape)
    out = copy.deepcopy(model)
    out.load_state_dict(new)
    return out


def permute(model: nn.Module, perms: dict[str, Any]) -> nn.Module:
    """A new model: ``model`` with the units of each hidden layer permuted by ``perms``.

    Parameters and buffers, BatchNorm running statistics included; the same function.

    Args:
        model: a chain model as :func:`~probes.paths.alignment.align` accepts; never modified.
        perms: hidden layer name -> permutation, as in
            :attr:`~probes.paths.results.WeightMatching.perms` (unit ``i`` of the new layer is
            unit ``perm[i]`` of ``model``'s); every hidden layer once.

    Returns:
        A deep copy of ``model`` with permuted parameters and buffers.

    Raises:
        ValueError: an unsupported architecture, names that are not the hidden layers, or an
            array that is not a permutation of the layer's units.

    Examples:
        >>> same = permute(model_b, WeightMatching.from_record(record).perms)
    """
    fn = "permute"
    layers, terms = _structure(fn, model)
    if not isinstance(perms, dict) or set(perms) != {n for n, _ in layers}:
        got = list(perms) if isinstance(perms, dict) else perms
        raise ValueError(
            f"{fn}: perms must be a dict with one permutation per hidden layer "
            f"{[n for n, _ in layers]}, got {got!r}"
        )
    out = []
    for name, units in layers:
        p = np.asarray(perms[name])
        if p.shape != (units,) or not np.array_equal(np.sort(p), np.arange(units)):
            raise ValueError(
                f"{fn}: perms[{name!r}] must be a permutation of 0..{units - 1}, "
                f"got shape {p.shape}"
            )
        out.append(p.astype(np.int64))
    return _apply(model, terms, out)
