"""Priming the C allocator for repeated CPU evaluation of the same model.

A probe or a surface evaluates one model again and again, allocating and freeing the same
activations (megabytes each) at every point. With glibc's default, adaptive settings, blocks
above the ``mmap`` threshold are mapped and unmapped, and the top of the heap is returned to
the system once more than twice that threshold is free: on the CPU the same pages are then
faulted in again at every forward pass (measured on a small MLP over 4000 examples: about
750 page faults and up to 2x the time a point, depending on the order in which earlier
tensors happened to be freed).

:func:`prime` allocates and frees one block of :data:`PRIME_BYTES` once per process. glibc
raises its thresholds when it frees a mapped block of that size (to 16 MiB for mapping, 32 MiB
for trimming), exactly as it does after any program frees such a tensor, so that activations
up to 16 MiB are then reused from the heap. Nothing else changes: explicit settings
(``MALLOC_MMAP_THRESHOLD_``, ``mallopt``) switch glibc's adaptation off and are kept, and with
other allocators it is one allocation and one free. Called by :class:`landscape.Objective` for
models on the CPU.
"""

from __future__ import annotations

import torch

__all__ = ["PRIME_BYTES", "prime"]

PRIME_BYTES = 16 * 2**20  # at most glibc's largest adaptive threshold (32 MiB on 64-bit)
"""Bytes of the allocation that :func:`prime` makes and frees once."""
_primed = False


def prime() -> None:
    """Allocate and free one block of :data:`PRIME_BYTES` on the CPU, once per process."""
    global _primed
    if not _primed:
        _primed = True
        block = torch.empty(PRIME_BYTES, dtype=torch.uint8)
        del block
