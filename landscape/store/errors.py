"""The error of a landscape file that cannot be read or cannot answer a request."""

from __future__ import annotations

__all__ = ["StoreError"]


class StoreError(ValueError):
    """A file that is not a (readable) landscape file, or a request the file cannot answer."""
