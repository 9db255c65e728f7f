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

:func:`release` does the opposite once a burst of short-lived tensors is over: it hands the
heap's free pages back to the system (glibc's ``malloc_trim``). Building the graph that
Hessian-vector products reuse is such a burst: on an HF GPT-2 of 3.7M parameters it frees
about 150 MB of activations and backward temporaries that glibc keeps resident, in holes of
the heap that the Lanczos basis, mapped on its own, can never reuse; released, they no longer
add to the peak (``benchmarks/hessian_vs_peers.py --only gpt2``). Pages that later
allocations need again are faulted back in once. Without glibc it does nothing.
"""

from __future__ import annotations

import ctypes

import torch

__all__ = ["PRIME_BYTES", "prime", "release"]

PRIME_BYTES = 16 * 2**20  # at most glibc's largest adaptive threshold (32 MiB on 64-bit)
"""Bytes of the allocation that :func:`prime` makes and frees once."""
_primed = False
_trim = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc only


def prime() -> None:
    """Allocate and free one block of :data:`PRIME_BYTES` on the CPU, once per process."""
    global _primed
    if not _primed:
        _primed = True
        block = torch.empty(PRIME_BYTES, dtype=torch.uint8)
        del block


def release() -> bool:
    """Return the C heap's free pages to the system; whether it could (glibc only).

    ``malloc_trim(0)``: every free page of the heap, not only its top, is given back, so what
    short-lived tensors left behind stops counting towards the process's resident size.
    """
    if _trim is None:
        return False
    _trim(0)
    return True
