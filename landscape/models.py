"""Small reference models for experiments, sized for a CPU; probes never depend on them.

Plain ``nn.Module`` s built by name and keyword arguments, so that a sweep spec stored as JSON can
name them: ``build("mlp", in_features=40, num_classes=10, seed=0)``. Each model records how it was
built in ``model.spec`` (``{"name": ..., "kwargs": {...}}``, JSON-ready); ``build(**model.spec)``
rebuilds the same architecture. Add your own with ``MODELS["name"] = cls`` (any ``nn.Module``).
Every model is twice differentiable all the way through (attention is written out, not a fused
kernel): Hessians, HVPs, double backward and forward-mode AD all work.

References: He et al. 2016 (deep residual learning); Gunasekar et al. 2017 (implicit
regularization in matrix factorization); Arora et al. 2019 (deep matrix factorization);
Woodworth et al. 2020 (kernel and rich regimes); Greydanus and Kobak 2024 (MNIST-1D).
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

__all__ = [
    "ACTIVATIONS",
    "MODELS",
    "build",
    "ReferenceModel",
    "MLP",
    "Linear",
    "CNN1d",
    "ResNet",
    "DeepMatrixFactorization",
    "SymmetricFactorization",
    "DiagonalLinearNetwork",
    "TinyTransformer",
]

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
_INITS = ("identity", "orthogonal", "gaussian")


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


class MLP(ReferenceModel):
    """Fully connected network; inputs (N, in_features) or (N, ...), flattened.

    Args:
        in_features: input features.
        num_classes: outputs.
        width: units of each hidden layer.
        depth: number of hidden layers (0: a linear model).
        activation: a key of ``ACTIVATIONS`` ("relu", "tanh", "gelu", "sigmoid", ...).
        bias: whether the linear layers have biases.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        width: int = 100,
        depth: int = 2,
        activation: str = "relu",
        bias: bool = True,
    ) -> None:
        super().__init__()
        o = "MLP"
        self.in_features = _int(o, "in_features", in_features, 1)
        num_classes, width = _int(o, "num_classes", num_classes, 1), _int(o, "width", width, 1)
        depth, bias = _int(o, "depth", depth), _bool(o, "bias", bias)
        act = ACTIVATIONS[_choice(o, "activation", activation, list(ACTIVATIONS))]
        sizes, layers = [self.in_features] + [width] * depth, []
        for a, b in zip(sizes[:-1], sizes[1:], strict=True):
            layers += [nn.Linear(a, b, bias=bias), act()]
        self.layers = nn.Sequential(*layers, nn.Linear(sizes[-1], num_classes, bias=bias))

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (N, num_classes) of inputs (N, in_features) or (N, ...)."""
        return self.layers(_flat(x, self.in_features, "MLP"))


class Linear(ReferenceModel):
    """Linear / logistic model x W^T + b; inputs (N, ...) flattened; ``num_classes=1``: (N, 1).

    Args:
        in_features: input features.
        num_classes: outputs.
        bias: whether to learn an intercept.
    """

    def __init__(self, in_features: int, num_classes: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features = _int("Linear", "in_features", in_features, 1)
        num_classes = _int("Linear", "num_classes", num_classes, 1)
        self.linear = nn.Linear(self.in_features, num_classes, bias=_bool("Linear", "bias", bias))

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (N, num_classes) of inputs (N, in_features) or (N, ...)."""
        return self.linear(_flat(x, self.in_features, "Linear"))


class CNN1d(ReferenceModel):
    """1-D CNN for MNIST-1D: [Conv1d, BatchNorm (optional), ReLU] x depth, then a linear head.

    The defaults are the CNN of Greydanus and Kobak (2024; ``ConvBase`` in their code): 25
    channels, kernels 5, 3, 3, stride 2, padding 1, 5,210 parameters; about 94% test accuracy on
    MNIST-1D. Inputs (N, in_length) or (N, in_channels, in_length).

    Args:
        in_length: input length (40 for MNIST-1D).
        num_classes: outputs.
        channels: output channels, an int for every conv or a list (one a conv).
        depth: number of conv layers.
        kernel_size: an int for every conv, or a list (one a conv).
        stride: an int for every conv, or a list (one a conv).
        padding: an int for every conv, or a list (one a conv).
        batchnorm: BatchNorm1d after each conv (the convs then have no bias).
        in_channels: channels of the input.
    """

    def __init__(
        self,
        in_length: int = 40,
        num_classes: int = 10,
        channels: int | Sequence[int] = 25,
        depth: int = 3,
        kernel_size: int | Sequence[int] = (5, 3, 3),
        stride: int | Sequence[int] = 2,
        padding: int | Sequence[int] = 1,
        batchnorm: bool = False,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        o = "CNN1d"
        self.in_length = length = _int(o, "in_length", in_length, 1)
        self.in_channels = _int(o, "in_channels", in_channels, 1)
        num_classes, depth = _int(o, "num_classes", num_classes, 1), _int(o, "depth", depth, 1)
        chans = [self.in_channels] + _ints(o, "channels", channels, depth, 1)
        ks = _ints(o, "kernel_size", kernel_size, depth, 1)
        ss, ps = _ints(o, "stride", stride, depth, 1), _ints(o, "padding", padding, depth)
        bn, layers = _bool(o, "batchnorm", batchnorm), []
        for i in range(depth):
            length = (length + 2 * ps[i] - ks[i]) // ss[i] + 1
            if length < 1:
                _fail(
                    o,
                    "in_length",
                    f"long enough for the convs (nothing left after conv {i + 1})",
                    in_length,
                )
            layers += [
                nn.Conv1d(chans[i], chans[i + 1], ks[i], ss[i], ps[i], bias=not bn),
                nn.BatchNorm1d(chans[i + 1]) if bn else nn.Identity(),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(chans[-1] * length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (N, num_classes) of inputs (N, in_channels, in_length) or (N, in_length)."""
        c, n = self.in_channels, self.in_length
        if x.dim() == 2 and c == 1:
            x = x.unsqueeze(1)
        if x.dim() != 3 or tuple(x.shape[1:]) != (c, n):
            raise ValueError(
                f"CNN1d: inputs must have shape (N, {c}, {n})"
                f"{f' or (N, {n})' if c == 1 else ''}, got {tuple(x.shape)}"
            )
        return self.head(self.features(x).flatten(1))


class _Block(nn.Module):
    """Basic residual block (He et al. 2016): conv-BN-ReLU-conv-BN, (+ x), ReLU."""

    def __init__(self, width: int, dims: int, batchnorm: bool, skip: bool) -> None:
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dims == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.skip = skip
        self.conv1 = conv(width, width, 3, padding=1, bias=not batchnorm)
        self.bn1 = norm(width) if batchnorm else nn.Identity()
        self.conv2 = conv(width, width, 3, padding=1, bias=not batchnorm)
        self.bn2 = norm(width) if batchnorm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + x if self.skip else out)


class ResNet(ReferenceModel):
    """Small residual network with switchable skip connections and BatchNorm (He et al. 2016).

    A stem conv (kernel 3) to ``width`` channels, ``num_blocks`` basic blocks of constant width
    and stride 1, average pooling to ``pool_size`` per spatial dimension, a linear head. The skips
    are identities: ``skip`` changes the function, not the parameters.

    Args:
        num_classes: outputs.
        dims: 1 for signals (N, L) or (N, C, L), e.g. MNIST-1D; 2 for images (N, C, H, W),
            (N, H, W) or flattened square images (N, C*S*S), e.g. 8x8 digits as (N, 64).
        width: channels of every block.
        num_blocks: residual blocks.
        skip: identity skip connections (False: a plain deep CNN).
        batchnorm: BatchNorm after every conv (the convs then have no bias).
        pool_size: output size of the pooling before the head (1: global average pooling).
        in_channels: channels of the input.
    """

    def __init__(
        self,
        num_classes: int = 10,
        dims: int = 1,
        width: int = 16,
        num_blocks: int = 2,
        skip: bool = True,
        batchnorm: bool = True,
        pool_size: int = 4,
        in_channels: int = 1,
    ) -> None:
        super().__init__()
        o = "ResNet"
        num_classes, width = _int(o, "num_classes", num_classes, 1), _int(o, "width", width, 1)
        if _int(o, "dims", dims, 1) > 2:
            _fail(o, "dims", "1 or 2", dims)
        blocks, pool_size = _int(o, "num_blocks", num_blocks), _int(o, "pool_size", pool_size, 1)
        skip, bn = _bool(o, "skip", skip), _bool(o, "batchnorm", batchnorm)
        self.dims, self.in_channels = int(dims), _int(o, "in_channels", in_channels, 1)
        conv, norm, pool = (
            (nn.Conv1d, nn.BatchNorm1d, nn.AdaptiveAvgPool1d)
            if dims == 1
            else (nn.Conv2d, nn.BatchNorm2d, nn.AdaptiveAvgPool2d)
        )
        self.stem = nn.Sequential(
            conv(self.in_channels, width, 3, padding=1, bias=not bn),
            norm(width) if bn else nn.Identity(),
            nn.ReLU(),
        )
        self.blocks = nn.Sequential(*[_Block(width, self.dims, bn, skip) for _ in range(blocks)])
        self.pool = pool(pool_size)
        self.head = nn.Linear(width * pool_size**self.dims, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """Outputs (N, num_classes) of inputs of one of the shapes ``dims`` allows."""
        c, d = self.in_channels, self.dims
        if x.dim() == d + 1 and c == 1:
            x = x.unsqueeze(1)
        elif d == 2 and x.dim() == 2 and math.isqrt(x.shape[1] // c) ** 2 * c == x.shape[1]:
            side = math.isqrt(x.shape[1] // c)
            x = x.reshape(x.shape[0], c, side, side)
        if x.dim() != d + 2 or x.shape[1] != c:
            shape = "(N, C, L) or (N, L)" if d == 1 else "(N, C, H, W), (N, H, W) or (N, C*S*S)"
            raise ValueError(
                f"ResNet: inputs must have shape {shape} with C={c}, got {tuple(x.shape)}"
            )
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))


class _MatrixModel(ReferenceModel):
    """Shared forward of the factorisation models, given ``matrix()`` (n x n)."""

    n: int
    matrix: Callable[[], Tensor]

    def forward(self, x: Tensor) -> Tensor:
        """Vectors x (N, n): x @ M^T, shape (N, n); measurements A (N, n, n): <A_i, M>, (N,)."""
        n, m = self.n, self.matrix()
        if x.dim() == 2 and x.shape[1] == n:
            return x @ m.T
        if x.dim() == 3 and tuple(x.shape[1:]) == (n, n):
            return torch.einsum("kij,ij->k", x, m)
        raise ValueError(
            f"{type(self).__name__}: inputs must have shape (N, {n}) (vectors) or "
            f"(N, {n}, {n}) (measurement matrices), got {tuple(x.shape)}"
        )


def _factor(rows: int, cols: int, init: str, scale: float) -> nn.Parameter:
    w = torch.eye(rows, cols) if init == "identity" else torch.empty(rows, cols)
    if init == "orthogonal":
        nn.init.orthogonal_(w)
    elif init == "gaussian":
        nn.init.normal_(w, std=1.0 / math.sqrt(cols))
    return nn.Parameter(scale * w)


class DeepMatrixFactorization(_MatrixModel):
    """Deep matrix factorisation W = W_depth ... W_1 (Arora et al. 2019; Gunasekar et al. 2017).

    ``matrix()`` is the end-to-end n x n matrix; ``forward`` applies it to vectors (N, n) or
    measures it, <A_i, W>, for matrix sensing and completion with A of shape (N, n, n).

    Args:
        n: size of the end-to-end matrix.
        depth: number of factors.
        init_scale: alpha; each factor starts as alpha times an isometry.
        init: "identity" (alpha I: W = alpha^depth I), "orthogonal" (alpha times a random
            (semi-)orthogonal matrix) or "gaussian" (i.i.d. N(0, alpha^2 / fan_in) entries).
        rank: inner width (W_1 is rank x n, W_depth is n x rank); None for n.
    """

    def __init__(
        self,
        n: int,
        depth: int = 2,
        init_scale: float = 0.1,
        init: str = "identity",
        rank: int | None = None,
    ) -> None:
        super().__init__()
        o = "DeepMatrixFactorization"
        self.n, depth = _int(o, "n", n, 1), _int(o, "depth", depth, 1)
        scale, init = _float(o, "init_scale", init_scale), _choice(o, "init", init, _INITS)
        r = self.n if rank is None else _int(o, "rank", rank, 1)
        if rank is not None and depth == 1:
            _fail(o, "rank", "None when depth is 1", rank)
        sizes = [self.n] + [r] * (depth - 1) + [self.n]
        self.factors = nn.ParameterList(
            [_factor(b, a, init, scale) for a, b in zip(sizes[:-1], sizes[1:], strict=True)]
        )

    def matrix(self) -> Tensor:
        """The end-to-end matrix W_depth @ ... @ W_1."""
        return functools.reduce(lambda acc, w: w @ acc, list(self.factors))


class SymmetricFactorization(_MatrixModel):
    """Symmetric factorisation X = U U^T for PSD matrix sensing (Gunasekar et al. 2017).

    With ``init="identity"`` (U = alpha I), gradient descent on matrix sensing converges to the
    minimum nuclear-norm solution as alpha -> 0. ``forward`` as in ``DeepMatrixFactorization``.

    Args:
        n: size of X.
        init_scale: alpha.
        init: "identity", "orthogonal" or "gaussian", as in ``DeepMatrixFactorization``.
        rank: columns of U (None for n).
    """

    def __init__(
        self, n: int, init_scale: float = 0.1, init: str = "identity", rank: int | None = None
    ) -> None:
        super().__init__()
        o = "SymmetricFactorization"
        self.n, scale = _int(o, "n", n, 1), _float(o, "init_scale", init_scale)
        r = self.n if rank is None else _int(o, "rank", rank, 1)
        self.U = _factor(self.n, r, _choice(o, "init", init, _INITS), scale)

    def matrix(self) -> Tensor:
        """X = U @ U.T."""
        return self.U @ self.U.T


class DiagonalLinearNetwork(ReferenceModel):
    """Diagonal linear network beta = u^depth - v^depth; forward(x) = x @ beta, shape (N,).

    u = v = alpha at init, so beta = 0. Gradient flow on least squares goes to the minimum
    l1-norm interpolator as alpha -> 0 (rich regime) and to the minimum l2-norm one as
    alpha -> infinity (kernel regime) (Woodworth et al. 2020).

    Args:
        dim: input features.
        init_scale: alpha.
        depth: the power D (2 in their main results).
    """

    def __init__(self, dim: int, init_scale: float = 0.1, depth: int = 2) -> None:
        super().__init__()
        o = "DiagonalLinearNetwork"
        self.dim, self.depth = _int(o, "dim", dim, 1), _int(o, "depth", depth, 1)
        scale = _float(o, "init_scale", init_scale)
        self.u = nn.Parameter(torch.full((self.dim,), scale))
        self.v = nn.Parameter(torch.full((self.dim,), scale))

    def beta(self) -> Tensor:
        """The linear predictor u^depth - v^depth."""
        return self.u**self.depth - self.v**self.depth

    def forward(self, x: Tensor) -> Tensor:
        """``x @ beta``, shape (N,), of inputs (N, dim) or (N, ...)."""
        return _flat(x, self.dim, "DiagonalLinearNetwork") @ self.beta()


class _DecoderLayer(nn.Module):
    """Pre-norm decoder layer, causal attention written out (differentiable to any order)."""

    def __init__(self, d: int, heads: int, d_mlp: int, layernorm: bool, act: str) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d) if layernorm else nn.Identity()
        self.qkv, self.out = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d) if layernorm else nn.Identity()
        self.mlp = nn.Sequential(nn.Linear(d, d_mlp), ACTIVATIONS[act](), nn.Linear(d_mlp, d))

    def forward(self, h: Tensor, mask: Tensor) -> Tensor:
        n, t, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(n, t, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        att = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        h = h + self.out((att @ v).transpose(1, 2).reshape(n, t, d))
        return h + self.mlp(self.ln2(h))


class TinyTransformer(ReferenceModel):
    """Small decoder-only transformer: tokens (N, T), T <= context_length -> logits (N, classes).

    Returns the logits of the last position, as for modular arithmetic ("a b =" -> a op b).
    Attention is plain matrix products and a softmax, not a fused kernel, so double backward,
    ``torch.func.jvp`` and ``linearize`` work through it.

    Args:
        vocab_size: number of token ids.
        context_length: longest sequence (learned positions).
        d_model: width, a multiple of ``n_heads``.
        n_heads: attention heads.
        n_layers: decoder layers.
        d_mlp: hidden units of each MLP (None: 4 * d_model).
        layernorm: pre-norm LayerNorms and a final one.
        num_classes: outputs (None: vocab_size).
        activation: of the MLPs, a key of ``ACTIVATIONS``.
    """

    mask: Tensor  # the causal mask, a buffer

    def __init__(
        self,
        vocab_size: int,
        context_length: int,
        d_model: int = 64,
        n_heads: int = 4,
        n_layers: int = 1,
        d_mlp: int | None = None,
        layernorm: bool = True,
        num_classes: int | None = None,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        o = "TinyTransformer"
        self.vocab_size = _int(o, "vocab_size", vocab_size, 1)
        self.context_length = t = _int(o, "context_length", context_length, 1)
        d, heads = _int(o, "d_model", d_model, 1), _int(o, "n_heads", n_heads, 1)
        if d % heads:
            _fail(o, "d_model", f"a multiple of n_heads={heads}", d_model)
        n_layers, layernorm = _int(o, "n_layers", n_layers), _bool(o, "layernorm", layernorm)
        d_mlp = 4 * d if d_mlp is None else _int(o, "d_mlp", d_mlp, 1)
        classes = self.vocab_size if num_classes is None else _int(o, "num_classes", num_classes, 1)
        act = _choice(o, "activation", activation, list(ACTIVATIONS))
        self.embed, self.pos = nn.Embedding(self.vocab_size, d), nn.Embedding(t, d)
        self.layers = nn.ModuleList(
            [_DecoderLayer(d, heads, d_mlp, layernorm, act) for _ in range(n_layers)]
        )
        self.ln = nn.LayerNorm(d) if layernorm else nn.Identity()
        self.unembed = nn.Linear(d, classes)
        self.register_buffer("mask", torch.ones(t, t, dtype=torch.bool).tril(), persistent=False)

    def forward(self, tokens: Tensor) -> Tensor:
        """Logits (N, num_classes) at the last position of token ids (N, T)."""
        t = tokens.shape[-1] if tokens.dim() else 0
        if tokens.dim() != 2 or tokens.is_floating_point() or not 1 <= t <= self.context_length:
            raise ValueError(
                f"TinyTransformer: inputs must be integer token ids of shape (N, T) "
                f"with 1 <= T <= {self.context_length}, got {tuple(tokens.shape)} "
                f"{tokens.dtype}"
            )
        h = self.embed(tokens) + self.pos(torch.arange(t, device=tokens.device))
        for layer in self.layers:
            h = layer(h, self.mask[:t, :t])
        return self.unembed(self.ln(h[:, -1]))


MODELS: dict[str, type[nn.Module]] = {
    "mlp": MLP,
    "linear": Linear,
    "cnn1d": CNN1d,
    "resnet": ResNet,
    "deep_matrix_factorization": DeepMatrixFactorization,
    "symmetric_factorization": SymmetricFactorization,
    "diagonal_linear_network": DiagonalLinearNetwork,
    "tiny_transformer": TinyTransformer,
}
"""Model name -> class; ``build`` looks names up here. Add your own: ``MODELS["name"] = cls``."""
