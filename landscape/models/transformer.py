"""A small decoder-only transformer, its attention written out: differentiable to any order.

For modular arithmetic and grokking (Power et al. 2022; Nanda et al. 2023).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from landscape.models.base import ACTIVATIONS, ReferenceModel, _bool, _choice, _fail, _int

__all__ = ["TinyTransformer"]


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
