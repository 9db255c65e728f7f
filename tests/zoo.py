"""Small models for the engine's tests, written here (not taken from landscape.models).

So that the engine is checked on arbitrary modules: BatchNorm, residuals, buffers, frozen and tied
parameters, attention.
"""

from __future__ import annotations

import torch
from torch import nn


class Residual(nn.Module):
    def __init__(self, d: int = 6, classes: int = 3) -> None:
        super().__init__()
        self.inp = nn.Linear(4, d)
        self.block = nn.Sequential(nn.Linear(d, d), nn.Tanh(), nn.Linear(d, d))
        self.out = nn.Linear(d, classes)

    def forward(self, x):
        h = torch.tanh(self.inp(x))
        return self.out(h + self.block(h))


class BufferedFrozen(nn.Module):
    """A model with a non-trainable parameter and buffers that enter the output."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 5)
        self.frozen = nn.Parameter(torch.randn(5), requires_grad=False)
        self.register_buffer("scale", torch.rand(5) + 0.5)
        self.register_buffer("shift", torch.randn(5))
        self.head = nn.Linear(5, 3)

    def forward(self, x):
        return self.head(torch.sin(self.lin(x) * self.scale + self.shift + self.frozen))


class Tied(nn.Module):
    """An autoencoder-like classifier whose decoder reuses the encoder's weight."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(4, 6)
        self.dec = nn.Linear(6, 4)
        self.dec.weight = nn.Parameter(torch.randn(4, 6) * 0.3)
        self.enc.weight = self.dec.weight  # tied: enc.weight is dec.weight (shape 4x6 used as W^T)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.tanh(x @ self.enc.weight + self.enc.bias)
        return self.head(torch.tanh(self.dec(h)))


class CNNBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, 3, 3, padding=1),
            nn.BatchNorm1d(3),
            nn.Tanh(),
            nn.Conv1d(3, 2, 3, stride=2),
            nn.BatchNorm1d(2),
            nn.Softplus(),
            nn.Flatten(),
        )
        self.head = nn.Linear(2 * 3, 3)

    def forward(self, x):
        return self.head(self.body(x.unsqueeze(1)))


class Attention(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Linear(2, 4)
        self.layer = nn.TransformerEncoderLayer(4, 2, 6, dropout=0.0, batch_first=True)
        self.out = nn.Linear(4, 3)

    def forward(self, x):
        return self.out(self.layer(self.emb(x.view(x.shape[0], 4, 2))).mean(1))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 7), nn.Tanh(), nn.Linear(7, 6), nn.GELU(), nn.Linear(6, 3))


def cnn_bn() -> nn.Module:
    model = CNNBN()
    with torch.no_grad():  # running statistics that differ from the batch's
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model


MODELS = {
    "mlp": (mlp, 8),
    "cnn_bn": (cnn_bn, 8),
    "residual": (Residual, 4),
    "buffered_frozen": (BufferedFrozen, 4),
    "tied": (Tied, 4),
    "attention": (Attention, 8),
}


def make(name: str, n: int = 20, seed: int = 0, dtype=torch.float64):
    """A model of the zoo in ``dtype`` with a classification dataset of n examples."""
    factory, features = MODELS[name]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = factory().to(dtype)
    x = torch.randn(n, features, generator=gen, dtype=dtype)
    y = torch.randint(0, 3, (n,), generator=gen)
    return model, x, y
