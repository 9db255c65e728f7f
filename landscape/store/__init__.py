"""The landscape file: one HDF5 file holds a whole comparison (:mod:`landscape.store.file`).

Its :class:`Store` is made of parts: the runs (:mod:`landscape.store.runs`), the arrays of a
run (:mod:`landscape.store.arrays`), results such as probes and surfaces
(:mod:`landscape.store.records`) and the claims of writers (:mod:`landscape.store.claims`);
the attributes of its objects are plain values or JSON (:mod:`landscape.store.attrs`).

It is changed all at once or not at all through its rollback journal
(:mod:`landscape.store.journal`), its datasets carry checksums
(:mod:`landscape.store.checksum`; errors in :mod:`landscape.store.errors`) and it is
summarised in tables (:mod:`landscape.store.summary`).

Reading needs NumPy and h5py only; nothing here imports torch. Restoring a stored vector into
a model is :func:`landscape.train.checkpoints.load_params`.
"""

from landscape.store.file import (
    FORMAT,
    FORMAT_VERSION,
    Record,
    RunInfo,
    Store,
    StoreError,
)
from landscape.store.journal import FileBusyError, WriteFailed

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FileBusyError",
    "Record",
    "RunInfo",
    "Store",
    "StoreError",
    "WriteFailed",
]
