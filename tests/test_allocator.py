"""The C allocator helpers: priming keeps activations' pages, releasing hands free ones back."""

from __future__ import annotations

import ctypes
import os

import pytest
import torch

from landscape.engine import allocator

GLIBC = getattr(ctypes.CDLL(None), "malloc_trim", None) is not None
TUNED = any(k.startswith("MALLOC_") for k in os.environ)  # fixed thresholds: no holes kept


def _resident_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not GLIBC or TUNED, reason="glibc with its adaptive thresholds")
def test_release_returns_the_holes_that_freed_tensors_leave_in_the_heap():
    allocator.prime()  # tensors of 1 MiB now come from the heap, not from their own mappings
    blocks = [torch.ones(2**18) for _ in range(256)]  # 256 MiB, every page touched
    kept = blocks[1::2]  # every other block stays: the freed ones are holes, not the heap's top
    del blocks
    before = _resident_mb()
    assert allocator.release() is True
    after = _resident_mb()
    assert before - after > 64, (before, after)  # most of the 128 MiB of holes went back
    assert all(float(b[0]) == 1.0 for b in kept)  # live tensors untouched
    del kept


def test_release_without_glibc_does_nothing(monkeypatch):
    monkeypatch.setattr(allocator, "_trim", None)
    assert allocator.release() is False
