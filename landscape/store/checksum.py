"""Checksums of the datasets of a landscape file, and one-line messages for a damaged file.

Every dataset the store writes is checked on read:

- a dataset that grows (trajectories, histories: chunked anyway, and read in parts) or holds
  :data:`SMALL` bytes or more, with at least one axis and a fixed-size type, is written with
  HDF5's ``fletcher32`` filter: each chunk carries a checksum that the HDF5 library verifies
  whenever it reads the chunk, in every HDF5 program;
- the others (small arrays, which chunking would make larger by an index block each; scalars
  and variable-length strings or arrays, which HDF5 cannot filter) carry a CRC-32 of their
  values in the attribute ``crc32``, which :func:`read` verifies.

A mismatch is :class:`~landscape.store.errors.StoreError` naming the file and the object; the
data are never returned. Datasets written before checksums were kept have neither and are
read as they are; :func:`unchecked` counts them (``landscape info`` says so).

:func:`damaged` turns the raw error text of the HDF5 library, about a damaged block, into one
line that names the file and what could not be read.
"""

from __future__ import annotations

import functools
import struct
import zlib
from collections.abc import Callable
from typing import Any

import h5py
import numpy as np

from landscape.store.errors import StoreError

__all__ = [
    "ATTR",
    "KEPT",
    "SMALL",
    "create",
    "damaged",
    "digest",
    "from_hdf5",
    "guard",
    "read",
    "refresh",
    "unchecked",
]

KEPT = "fletcher32 filter, else a crc32 attribute, on every dataset"
"""The root attribute ``checksums`` of a file whose datasets all carry a checksum."""

SMALL = 1 << 16
"""Fixed-size arrays below this many bytes, written once, carry ``crc32`` (no chunk index)."""

ATTR = "crc32"
"""The attribute that holds the CRC-32 of a dataset that cannot carry ``fletcher32``."""


def digest(values: Any) -> int:
    """The CRC-32 of a dataset's values: their bytes in little-endian order, strings as UTF-8.

    Variable-length items (strings, arrays) are each preceded by their length.
    """
    values = np.asarray(values)
    if values.dtype.kind != "O":
        return zlib.crc32(np.ascontiguousarray(values, values.dtype.newbyteorder("<")).tobytes())
    crc = 0
    for item in values.ravel():
        if isinstance(item, str):
            raw = item.encode()
        elif isinstance(item, bytes):
            raw = item
        else:
            arr = np.asarray(item)
            raw = np.ascontiguousarray(arr, arr.dtype.newbyteorder("<")).tobytes()
        crc = zlib.crc32(raw, zlib.crc32(struct.pack("<Q", len(raw)), crc))
    return crc


def create(
    group: h5py.Group,
    name: str,
    data: Any = None,
    *,
    shape: tuple[int, ...] | None = None,
    dtype: Any = None,
    **kw: Any,
) -> h5py.Dataset:
    """``group.create_dataset(name, shape, dtype, data, **kw)`` with a checksum.

    ``fletcher32`` for a dataset that grows (``maxshape``) or is large, where HDF5 can filter
    it (at least one axis, a fixed-size type), else the ``crc32`` attribute (:func:`refresh`
    keeps it up to date after changes).
    """
    if data is not None and dtype is None:
        data = np.asarray(data)
    ndim = len(shape) if shape is not None else np.ndim(data)
    kind = np.dtype(dtype if dtype is not None else data.dtype).kind
    large = "maxshape" in kw or (data is not None and np.asarray(data).nbytes >= SMALL)
    if ndim > 0 and kind != "O" and large:  # HDF5 filters chunks; vlen data live elsewhere
        return group.create_dataset(name, shape, dtype, data, fletcher32=True, **kw)
    ds = group.create_dataset(name, shape, dtype, data, **kw)
    if data is None:
        refresh(ds)
    else:  # the values as given are the values stored (same type): no need to read them back
        ds.attrs[ATTR] = np.int64(digest(data))
    return ds


def refresh(ds: h5py.Dataset) -> None:
    """Recompute the ``crc32`` of a dataset that carries one (after it was changed)."""
    if not ds.fletcher32:
        ds.attrs[ATTR] = np.int64(digest(ds[()]))


def read(path: str, ds: h5py.Dataset, selection: Any = (), *, required: bool = False) -> Any:
    """``ds[selection]``, checked: a checksum that does not match raises ``StoreError``.

    ``fletcher32`` is checked by HDF5 on every read; ``crc32`` when the whole dataset is read.
    ``path`` names the file in the message. ``required``: the file keeps checksums (its root
    attribute ``checksums``), so a dataset without one lost it to damage (a zeroed block
    reads as an empty header message to HDF5) and is refused.
    """
    stored = ds.attrs.get(ATTR)
    if stored is None and required and not ds.fletcher32:
        raise damaged(path, "its checksum is missing", ds.name)
    try:
        values = ds[selection]
    except (OSError, RuntimeError) as err:
        raise from_hdf5(path, err, ds.name) from None
    if stored is not None and selection == () and int(stored) != digest(values):
        raise _mismatch(path, ds.name)
    return values


def _mismatch(path: str, name: str) -> StoreError:
    return StoreError(
        f"{path}: {name} does not match its checksum (its data were damaged on disk); "
        "it is not used: restore the file from a copy, or recompute that result"
    )


def from_hdf5(path: str, err: BaseException, name: str | None = None) -> StoreError:
    """The one-line ``StoreError`` for an HDF5 error ``err`` while reading ``name`` of ``path``."""
    text = " ".join(str(err).split())
    if name is not None and ("fletcher32" in text.lower() or "filter" in text.lower()):
        return _mismatch(path, name)
    return damaged(path, text, name)


def damaged(path: str, text: str, name: str | None = None) -> StoreError:
    """``StoreError``: ``path`` is damaged where HDF5 could not read (``text``: HDF5's words)."""
    reason = text.split("(", 1)[1].rsplit(")", 1)[0] if "(" in text else text
    if reason.startswith("its "):
        return StoreError(
            f"{path} is damaged at {name}: {reason}; a damaged disk block, or a copy taken "
            "while it was written without its -journal file"
        )
    where = f" at {name}" if name else ""
    return StoreError(
        f"{path} is damaged{where}: the HDF5 library cannot read it ({reason}); a damaged "
        "disk block, or a copy taken while it was written without its -journal file"
    )


def _from_h5py(err: BaseException) -> bool:
    """Whether ``err`` was raised inside h5py (an HDF5 error), not by our own checks."""
    tb, last = err.__traceback__, None
    while tb is not None:
        last, tb = tb.tb_frame.f_code.co_filename, tb.tb_next
    return last is not None and "h5py" in last


def guard(method: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a method of an object with a ``path``: HDF5's errors become :func:`damaged`."""

    @functools.wraps(method)
    def guarded(self: Any, *args: Any, **kw: Any) -> Any:
        try:
            return method(self, *args, **kw)
        except (OSError, RuntimeError, KeyError) as err:
            if isinstance(err, StoreError) or not _from_h5py(err):
                raise
            text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
            raise damaged(self.path, str(text)) from None

    return guarded


def unchecked(h5: h5py.File) -> tuple[int, int]:
    """``(without, total)``: how many of the file's datasets carry no checksum, of how many."""
    counts = [0, 0]

    def visit(_name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset):
            counts[1] += 1
            if not obj.fletcher32 and ATTR not in obj.attrs:
                counts[0] += 1

    h5.visititems(visit)
    return counts[0], counts[1]
