"""Networks of vectors, signals and images: an MLP, a linear model, a 1-D CNN, a small ResNet.

References: He et al. 2016 (deep residual learning); Greydanus and Kobak 2024 (MNIST-1D).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from landscape.models.base import (
    ACTIVATIONS,
    ReferenceModel,
    _bool,
    _choice,
    _fail,
    _flat,
    _int,
    _ints,
)

__all__ = ["CNN1d", "Linear", "MLP", "ResNet"]


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
