"""The HDF5 file that holds a whole comparison (format v1); only this package uses h5py.

Layout::

    /                      attrs: format="landscape", format_version=1, created_by, torch_version,
                           checksums
    /runs/<run>/           attrs: status, optimizer, seed, model, data, settings, ... (JSON)
        params/names, params/shapes    restore flat vectors into named tensors
        init, final                    flat parameter vectors (P,)
        trajectory, trajectory_step    (T, P) and (T,), chunked and extendable
        history/<metric>               (S,) extendable: step, epoch, train_loss, test_acc, ...
        probes/<probe>/                arrays + attrs (options, cost); series along training
        surfaces/<name>/, paths/<name>/
    /compare/<name>/       results that involve several runs

Metadata are plain attributes or JSON strings (an object's ``json_attrs`` attribute lists
which of its attributes are JSON; :mod:`landscape.store.attrs`); nothing is pickled. Reading
needs only NumPy and h5py.

**Parts.** :class:`Store` opens, checks, commits and closes the file; what it does with the
runs (:mod:`landscape.store.runs`), the arrays of a run (:mod:`landscape.store.arrays`),
results (:mod:`landscape.store.records`) and claims (:mod:`landscape.store.claims`) is written
in those modules, as classes that :class:`Store` inherits.

**Checksums** (:mod:`landscape.store.checksum`). Every dataset carries one: HDF5's
``fletcher32`` filter on large and growing ones, a ``crc32`` attribute on the rest; reading
verifies it and a mismatch is a :class:`StoreError` that names the file and the object. The
file is written with HDF5 1.10's formats, whose object headers, B-trees and heaps carry HDF5's
own checksums: a damaged block is one line naming the file, never HDF5's error text. Files
written before checksums (no root ``checksums`` attribute) are read as they are.

**A failed write** (a full disk) never reaches the HDF5 library: the journal keeps the bytes
in memory and the next store call or commit raises
:class:`~landscape.store.journal.WriteFailed` (one line: the file and the error); the file
stays as of its last commit.

**Crash safety.** Every change goes through a :class:`~landscape.store.journal.JournaledFile`:
a writer killed at any moment leaves the file as it was at its last commit (the next opener
rolls back the rest). A run is created with ``status="running"`` and the writer's host and
pid; it becomes ``"complete"`` in the same commit as its last data. Readers report a run whose
writer is gone as ``"incomplete"``; writers redo it.

**Locking.** A writer holds the file exclusively for as long as its :class:`Store` is open;
a second writer gets :class:`~landscape.store.journal.FileBusyError`. Keep write sessions short
(the trainer opens one per commit) so that readers get in between. A reader that will take a
while opens a ``snapshot``: a private copy made under the shared lock, which it then reads
without holding the file.

**Claims** (:mod:`landscape.store.claims`). A writer that works on the file across many write
sessions (a sweep) claims it: :meth:`Store.claim` records the writer (host, pid, what) at the
file's root, and every other process that opens the file to write is refused with
:class:`FileBusyError` while that process lives; a claim whose process is gone is ignored (it
was killed), and :meth:`Store.release` ends it.

Examples:
    >>> with Store("cmp.h5", "a") as s:
    ...     s.create_run("sgd", names=["w"], shapes=[(3,)], init=np.zeros(3), attrs={"seed": 0})
    ...     s.set_final("sgd", np.ones(3), status="complete")
    >>> with Store("cmp.h5") as s:
    ...     s.params("sgd", "final")
    array([1., 1., 1.])
"""

from __future__ import annotations

import os
import tempfile
import weakref
from typing import Any

import h5py
import numpy as np

from landscape.engine.records import Record
from landscape.store import checksum
from landscape.store.arrays import _RunArrays
from landscape.store.attrs import _now, _read_attrs, _version, _write_attrs
from landscape.store.checksum import guard
from landscape.store.claims import _Claims
from landscape.store.errors import StoreError
from landscape.store.journal import FileBusyError, JournaledFile, WriteFailed, lock_for_reading
from landscape.store.records import _Records, delete_record
from landscape.store.runs import RunInfo, _Runs, swap_run

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "FileBusyError",
    "Record",
    "RunInfo",
    "Store",
    "StoreError",
    "WriteFailed",
    "delete_record",
    "swap_run",
]

FORMAT = "landscape"
"""The root attribute ``format`` of every landscape file."""
FORMAT_VERSION = 1
"""The version of the layout that this module writes and reads."""


def _copy_locked(fd: int) -> Any:
    """A private, unnamed copy of the file open at ``fd`` (whose lock the caller holds)."""
    copy = tempfile.TemporaryFile()
    offset = 0
    while chunk := os.pread(fd, 1 << 22, offset):
        copy.write(chunk)
        offset += len(chunk)
    copy.seek(0)
    return copy


class Store(_Records, _RunArrays, _Runs, _Claims):
    """An open landscape file.

    Args:
        path: the ``.h5`` file.
        mode: ``"r"`` read only (the default); ``"a"`` read and write, created if missing;
            ``"w"`` a new empty file (an existing landscape file is replaced; a file that is
            not ours is refused).
        timeout: seconds to wait for another process that holds the file (a writer, or a
            reader when we write) before :class:`FileBusyError`. Default: 10 s to read, 0 s
            to write (a second writer is told at once).
        snapshot: (reading) read a private copy of the file, taken under the shared lock,
            which is released at once: a reader that takes long never holds up a writer.
        take_over: (writing) ignore a claim (:meth:`claim`) that cannot be checked, made by
            a process on another host.

    Raises:
        StoreError: not an HDF5 file, not a landscape file, an unknown ``format_version``,
            or a truncated file.
        FileNotFoundError: reading a file that does not exist.
        FileBusyError: another process holds the file.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        mode: str = "r",
        *,
        timeout: float | None = None,
        snapshot: bool = False,
        take_over: bool = False,
    ) -> None:
        if mode not in ("r", "a", "w"):
            raise ValueError(f"Store: mode must be 'r', 'a' or 'w', got {mode!r}")
        self.path, self.mode = os.fspath(path), mode
        self._jf: JournaledFile | None = None
        self._fd: int | None = None
        self._h5: h5py.File | None = None
        self._copy: Any = None
        self._checked = False  # the file keeps checksums: a dataset without one is damaged
        if mode == "r":
            if not os.path.exists(self.path):
                raise FileNotFoundError(f"{self.path} does not exist")
            self._fd = lock_for_reading(self.path, 10.0 if timeout is None else timeout)
            # a Store dropped without close() must not keep the lock (and lock writers out)
            self._release = weakref.finalize(self, os.close, self._fd)
            try:
                if os.fstat(self._fd).st_size == 0:
                    raise StoreError(
                        f"{self.path} is empty: not a landscape file (a writer "
                        "may have been stopped before its first commit)"
                    )
                if snapshot:
                    self._copy = _copy_locked(self._fd)
                    self._release()  # the copy is ours: let writers in
                    self._fd = None
                    self._h5 = self._open_h5(self._copy, "r")
                else:
                    self._h5 = self._open_h5(self.path, "r", locking=False)
                self._check_format()
            except BaseException:
                self.close()
                raise
            return
        self._jf = JournaledFile(self.path, timeout=0.0 if timeout is None else timeout)
        try:
            if self._jf.size == 0 or mode == "w":
                if mode == "w" and self._jf.size:
                    self._h5 = self._open_h5(self._jf, "r")
                    self._check_format()  # never replace a file that is not ours
                    self._check_claim(take_over)
                    self._h5.close()
                self._jf.truncate(0)
                self._h5 = self._open_h5(self._jf, "w")
                _write_attrs(
                    self._h5,
                    {
                        "format": FORMAT,
                        "format_version": FORMAT_VERSION,
                        "created_by": f"landscape {_version('landscape')}",
                        "torch_version": _version("torch"),
                        "created": _now(),
                        "checksums": checksum.KEPT,
                    },
                )
                self._checked = True
                self._h5.create_group("runs", track_order=True)
                self._h5.create_group("compare")
            else:
                self._h5 = self._open_h5(self._jf, "r+")
                self._check_format()
                self._check_claim(take_over)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ opening and closing
    def _open_h5(self, target: Any, mode: str, **kw: Any) -> h5py.File:
        if mode != "r":  # HDF5 1.10's object headers, B-trees and heaps carry checksums
            kw.setdefault("libver", ("v110", "latest"))
        try:
            return h5py.File(target, mode, **kw)
        except OSError as err:
            text = str(err)
            if "truncated file" in text:
                size = os.path.getsize(self.path)
                raise StoreError(
                    f"{self.path} is truncated ({size} bytes, less than HDF5 "
                    "expects): it was cut short and cannot be trusted"
                ) from None
            if "signature" in text or "not an hdf5" in text.lower():
                raise StoreError(
                    f"{self.path} is not an HDF5 file, so not a landscape file"
                ) from None
            raise StoreError(f"{self.path} cannot be read as HDF5: {text}") from None

    def _check_format(self) -> None:
        attrs = _read_attrs(self._h5)
        if attrs.get("format") != FORMAT:
            raise StoreError(
                f"{self.path} is an HDF5 file but not a landscape file (no "
                f"format='{FORMAT}' attribute at its root)"
            )
        if "format_version" not in attrs:
            raise StoreError(
                f"{self.path} has no format_version attribute at its root (expected "
                f"{FORMAT_VERSION}): the file is damaged"
            )
        version = attrs["format_version"]
        shown = version.tolist() if isinstance(version, np.ndarray) else version
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise StoreError(
                f"{self.path} has format_version {shown!r} at its root, expected the "
                f"integer {FORMAT_VERSION}: the file is damaged"
            )
        if version > FORMAT_VERSION:
            raise StoreError(
                f"{self.path} has format_version {version}; this landscape "
                f"({_version('landscape')}) reads format_version {FORMAT_VERSION} "
                "only: upgrade landscape"
            )
        if version != FORMAT_VERSION:
            raise StoreError(
                f"{self.path} has format_version {version}, older than the "
                f"{FORMAT_VERSION} this landscape ({_version('landscape')}) reads"
            )
        self._checked = "checksums" in self._file.attrs
        for group in ("runs", "compare"):
            if group not in self._file:
                raise StoreError(f"{self.path} is damaged: no /{group} group")

    def commit(self) -> None:
        """Make everything written so far durable (writers only); the file stays open."""
        jf = self._writable()
        self._file.close()
        jf.commit()
        self._h5 = self._open_h5(jf, "r+")

    def close(self, commit: bool = True) -> None:
        """Close; a writer commits first unless ``commit=False`` (then nothing is kept)."""
        try:
            if self._h5 is not None and self._h5.id.valid:
                self._h5.close()
            if self._jf is not None and commit and not self._jf.closed:
                self._jf.commit()
        finally:
            self._h5 = None
            if self._jf is not None:
                self._jf.close()
                self._jf = None
            if self._fd is not None:
                self._release()
                self._fd = None
            if self._copy is not None:
                self._copy.close()
                self._copy = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self.close(commit=exc_type is None)

    @property
    def _file(self) -> h5py.File:
        """The open HDF5 file."""
        if self._h5 is None:
            raise ValueError(f"Store: {self.path} is closed")
        return self._h5

    def _writable(self) -> JournaledFile:
        """The journal of a store open for writing (an error for a closed or read-only one)."""
        if self._h5 is None:
            raise ValueError(f"Store: {self.path} is closed")
        if self._jf is None:
            raise ValueError(f"Store: {self.path} was opened read-only; open it with mode='a'")
        if self._jf.error is not None:  # a write failed: nothing more can be committed
            raise self._jf.error
        return self._jf

    def _read(self, ds: h5py.Dataset, selection: Any = ()) -> Any:
        """``ds[selection]``, its checksum verified (:mod:`landscape.store.checksum`)."""
        return checksum.read(self.path, ds, selection, required=self._checked)

    def checksums(self) -> tuple[int, int]:
        """``(without, total)``: datasets that carry no checksum (written before checksums)."""
        return checksum.unchecked(self._file)

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes (format, format_version, created_by, ...)."""
        return _read_attrs(self._file)


# The HDF5 library's own words about a damaged block become one line naming the file, in the
# methods that the Store has from its parts (claims, runs, arrays, records) too.
_members: dict[str, Any] = {}
for _part in reversed(Store.__mro__[:-1]):
    _members.update(vars(_part))
for _name, _member in _members.items():
    if isinstance(_member, property) and _member.fget and not _name.startswith("_"):
        setattr(Store, _name, property(guard(_member.fget), doc=_member.__doc__))
    elif callable(_member) and (not _name.startswith("_") or _name in ("__init__", "__contains__")):
        setattr(Store, _name, guard(_member))
