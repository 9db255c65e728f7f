"""The conditions under which the engine evaluates a model.

:func:`evaluation` sets every module's train/eval flag for one call and restores each flag
afterwards (also when the call raises), and selects kernels that support the derivatives the
engine takes:

- scaled-dot-product attention on its math kernel, and the fused ``nn.MultiheadAttention`` /
  ``nn.TransformerEncoderLayer`` fast path off: the fused kernels support neither forward-mode
  AD nor double backward;
- cuDNN off for models with recurrent layers: cuDNN's RNN kernels have no double backward and
  refuse a backward pass in eval mode;
- inference mode off, so that a caller's ``torch.inference_mode()`` does not break gradients.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

__all__ = ["evaluation", "synchronize"]


@contextlib.contextmanager
def _mha_fastpath_off() -> Iterator[None]:
    mha = getattr(torch.backends, "mha", None)
    if mha is None or not hasattr(mha, "set_fastpath_enabled"):
        yield
        return
    before = mha.get_fastpath_enabled()
    mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        mha.set_fastpath_enabled(before)


@contextlib.contextmanager
def evaluation(model: nn.Module, train: bool) -> Iterator[None]:
    """Evaluate ``model`` in train (``True``) or eval mode with derivative-safe kernels."""
    flags = [(m, m.training) for m in model.modules()]
    recurrent = any(isinstance(m, nn.RNNBase) for m in model.modules())
    model.train(train)
    try:
        with contextlib.ExitStack() as stack:
            grad = torch.is_grad_enabled()
            stack.enter_context(torch.inference_mode(False))  # which turns gradients on
            stack.enter_context(torch.set_grad_enabled(grad))  # as the caller had them
            stack.enter_context(torch.nn.attention.sdpa_kernel(torch.nn.attention.SDPBackend.MATH))
            stack.enter_context(_mha_fastpath_off())
            if recurrent:
                stack.enter_context(torch.backends.cudnn.flags(enabled=False))
            yield
    finally:
        for module, flag in flags:
            module.training = flag


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (for timings); a no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
