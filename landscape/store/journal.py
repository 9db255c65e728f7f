"""A file that changes all at once or not at all: the rollback journal under the HDF5 store.

HDF5 is not crash-safe: a process killed while it writes can leave a file whose metadata
points at bytes that were never written, and then nothing in the file can be read. The store
therefore never lets the HDF5 library write into its file directly. It gives h5py a
:class:`JournaledFile`, a file object that

- writes everything that goes past the file's size at the start of the transaction straight
  to disk (a killed writer leaves that tail behind, and recovery cuts it off), and
- keeps every change to the bytes that were already there in memory until :meth:`commit`.

:meth:`JournaledFile.commit` makes the change durable in the order of a rollback journal (as
SQLite does): fsync the appended tail; write the *old* contents of every changed page to
``<file>-journal`` with a checksum, fsync; write the new pages into the file, fsync; delete the
journal. The deletion is the commit point. Whoever opens the file next and finds a journal
(a writer that died) restores the old pages and the old size before reading anything, so the
file reads back exactly as it was after the last commit, wherever the writer was killed.

**A write that fails** (a full disk, a quota, an I/O error) is never reported to the HDF5
library, which cannot recover from one (it prints errors while it frees objects and may crash).
The file object keeps the bytes it could not write in memory instead, so that HDF5 goes on
seeing a consistent file, and remembers the error: :meth:`JournaledFile.commit` raises it as
:class:`WriteFailed`, which names the file and the error, and nothing of the failed
transaction reaches the file (closing rolls it back; if even that cannot write, the journal
stays and the next opener rolls back).

Locking uses ``flock`` on the file itself, the lock that the HDF5 library takes: a writer
holds it exclusively, so a second writer, our own or any HDF5 program, gets a clear
:class:`FileBusyError` instead of a corrupt file; readers hold it shared. The lock is held on
a file whose inode never changes (no rename), so it means what it says.

This module does plain file I/O only; :mod:`landscape.store` owns h5py.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import fcntl
import io
import os
import signal
import struct
import time
import zlib

__all__ = ["FileBusyError", "JournaledFile", "WriteFailed", "journal_path", "lock_for_reading"]

PAGE = 4096
_MAGIC = b"landscape-journal-1\n"
_HEADER = struct.Struct("<Q")  # the file's size at the start of the transaction
_RECORD = struct.Struct("<QI")  # offset, length, then the old bytes
_COMMIT = b"landscape-journal-commit"
_TRAILER = struct.Struct("<QI")  # number of records, crc32 of all records


class FileBusyError(RuntimeError):
    """Another process holds the file (a writer, or a reader while we want to write)."""


class WriteFailed(OSError):
    """Writing the file (or its journal) failed: a full disk, a quota, an I/O error.

    ``str()`` is one line that names the file and the error. The file is as of its last
    commit.
    """

    def __init__(self, path: str, err: OSError) -> None:
        super().__init__(err.errno, err.strerror or str(err), path)
        hint = (
            ": free space and run again"
            if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
            else ""
        )
        self.message = (
            f"cannot write {path}: {err.strerror or err} (errno {err.errno}); the file "
            f"holds what was committed before{hint}"
        )

    def __str__(self) -> str:
        return self.message


def _pwrite(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    """Write all of ``data`` at ``offset`` (``os.pwrite`` may write part of it)."""
    view = memoryview(data).cast("B")
    while len(view):
        n = os.pwrite(fd, view, offset)
        if n <= 0:
            raise OSError(errno.EIO, "write returned no progress")
        view, offset = view[n:], offset + n


def journal_path(path: str | os.PathLike) -> str:
    """The journal that sits beside ``path`` while a transaction is open: ``<path>-journal``."""
    return os.fspath(path) + "-journal"


def _crash_point(name: str) -> None:
    """Test hook: ``LANDSCAPE_CRASH_AT=<name>`` kills this process with SIGKILL right here.

    Tests stop a writer inside each window of a commit with it.
    """
    if os.environ.get("LANDSCAPE_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(path: str) -> None:
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flock(fd: int, path: str, exclusive: bool, timeout: float) -> None:
    """Take the lock, retrying for up to ``timeout`` seconds; then :class:`FileBusyError`."""
    deadline = time.monotonic() + max(timeout, 0.0)
    op = (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB
    while True:
        try:
            fcntl.flock(fd, op)
            return
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EACCES):
                raise
            if time.monotonic() >= deadline:
                waited = f" (waited {timeout:g} s)" if timeout else ""
                if exclusive:
                    message = (
                        f"{path} is open in another process (a writer, or a reader "
                        f"that keeps it open){waited}; wait for it or close it"
                    )
                else:
                    message = f"{path} is being written by another process{waited}; try again"
                raise FileBusyError(message) from None
            time.sleep(0.02)


_CHUNK = 1 << 20


def _records(j: io.BufferedReader, fd: int | None) -> tuple[int, int] | None:
    """Walk the records after the header, in chunks; write each old range into ``fd`` if given.

    Returns (count, crc) of the records if a commit trailer follows them, else None.
    """
    count, crc = 0, 0
    while True:
        raw = j.read(_RECORD.size)
        if raw == _COMMIT[: _RECORD.size]:  # no record starts so (its offset would be ~7e18)
            if j.read(len(_COMMIT) - _RECORD.size) != _COMMIT[_RECORD.size :]:
                return None
            trailer = j.read(_TRAILER.size)
            if len(trailer) != _TRAILER.size:
                return None
            return (count, crc) if _TRAILER.unpack(trailer) == (count, crc) else None
        if len(raw) < _RECORD.size:
            return None
        off, n = _RECORD.unpack(raw)
        crc = zlib.crc32(raw, crc)
        done = 0
        while done < n:
            chunk = j.read(min(_CHUNK, n - done))
            if not chunk:
                return None
            crc = zlib.crc32(chunk, crc)
            if fd is not None:
                _pwrite(fd, chunk, off + done)
            done += len(chunk)
        count += 1


def _recover(fd: int, path: str) -> bool:
    """Roll back an interrupted transaction if ``path`` has a journal.

    The caller holds the exclusive lock. Returns whether there was a journal.
    """
    jpath = journal_path(path)
    try:
        j = open(jpath, "rb")  # noqa: SIM115 - closed below, before the unlink
    except FileNotFoundError:
        return False
    with j:
        magic = j.read(len(_MAGIC))
        header = j.read(_HEADER.size)
        if magic == _MAGIC and len(header) == _HEADER.size:
            (size0,) = _HEADER.unpack(header)
            # Only a complete journal (trailer and checksum) is applied; without one the old
            # bytes were never overwritten and cutting off the appended tail is all it takes.
            if _records(j, None) is not None:
                j.seek(len(_MAGIC) + _HEADER.size)
                _records(j, fd)
            os.ftruncate(fd, size0)
            os.fsync(fd)
    # A journal without a valid header was abandoned before the file was touched.
    os.unlink(jpath)
    _fsync_dir(path)
    return True


def lock_for_reading(path: str | os.PathLike, timeout: float = 10.0) -> int:
    """Open ``path`` read-only under a shared lock, first rolling back a dead writer's changes.

    Args:
        path: the file.
        timeout: seconds to wait for a writer that holds the file.

    Returns:
        The file descriptor that holds the lock (close it to release the lock).

    Raises:
        FileBusyError: a writer holds the file for longer than ``timeout``, or the file needs
            a recovery that this process may not write.
    """
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        _flock(fd, path, exclusive=False, timeout=timeout)
        # Under the shared lock no writer is alive, so a journal is a dead writer's: undo it
        # (under the exclusive lock), take the shared lock again and look once more, since
        # another writer may have come and died in between.
        while os.path.exists(journal_path(path)):
            try:
                wfd = os.open(path, os.O_RDWR)
            except PermissionError:
                raise FileBusyError(
                    f"{path} was left by an interrupted writer and must be "
                    "recovered: open it once for writing"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
                _flock(wfd, path, exclusive=True, timeout=timeout)
                try:
                    _recover(wfd, path)
                except OSError as err:  # the journal stays: the next opener rolls back
                    raise WriteFailed(path, err) from None
            finally:
                os.close(wfd)
            _flock(fd, path, exclusive=False, timeout=timeout)
        return fd
    except BaseException:
        os.close(fd)
        raise


class JournaledFile(io.RawIOBase):
    """A read-write file object for h5py whose changes become durable only at :meth:`commit`.

    Opening takes the exclusive lock (waiting up to ``timeout`` seconds, then
    :class:`FileBusyError`), rolls back what a killed writer left, and starts a transaction.
    :meth:`commit` ends it durably and starts the next; :meth:`rollback` (and :meth:`close`
    without a commit) forgets every change since the last commit.

    Args:
        path: the file; created (empty) if missing.
        timeout: seconds to wait for another writer or reader to let go.
    """

    def __init__(self, path: str | os.PathLike, *, timeout: float = 0.0) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        self._error: WriteFailed | None = None
        self._spill: dict[int, bytearray] = {}
        try:
            _flock(self._fd, self.path, exclusive=True, timeout=timeout)
            try:
                self.recovered = _recover(self._fd, self.path)
                self._begin()
            except FileBusyError:
                raise
            except OSError as err:
                with contextlib.suppress(OSError):  # a journal begun and not written
                    _recover(self._fd, self.path)
                raise WriteFailed(self.path, err) from None
        except BaseException:
            os.close(self._fd)
            # closed for good: a later close() (or the garbage collector's) must not roll back
            # or close this descriptor number again, which may belong to another file by then
            super().close()
            raise

    # ------------------------------------------------------------------ transaction
    def _begin(self) -> None:
        self._size0 = os.fstat(self._fd).st_size
        self._size = self._size0
        self._pages: dict[int, bytearray] = {}
        self._cut = self._size0  # bytes from here to _size0 were truncated away (read as 0)
        self._pos = 0
        with open(journal_path(self.path), "wb") as j:
            j.write(_MAGIC + _HEADER.pack(self._size0))
            j.flush()
            os.fsync(j.fileno())
        _fsync_dir(self.path)

    @property
    def error(self) -> WriteFailed | None:
        """The write that failed in this transaction (then it cannot commit), else None."""
        return self._error

    def _failed(self, err: OSError) -> WriteFailed:
        """Remember the first failed write of the transaction; later writes stay in memory."""
        if self._error is None:
            self._error = err if isinstance(err, WriteFailed) else WriteFailed(self.path, err)
        return self._error

    @property
    def size(self) -> int:
        """The file's size as the transaction sees it."""
        return self._size

    @property
    def dirty(self) -> bool:
        """Whether anything changed since the last commit."""
        return (
            self._size != self._size0
            or bool(self._pages)
            or (os.fstat(self._fd).st_size != self._size0)
        )

    def commit(self) -> None:
        """Make every change since the last commit durable, all at once.

        Raises:
            WriteFailed: a write of this transaction failed, or the commit's own writes fail;
                nothing of the transaction is kept (:meth:`rollback` or :meth:`close` next).
        """
        self._check_open()
        if self._error is not None:
            raise self._error
        try:
            self._commit()
        except OSError as err:
            raise self._failed(err) from None

    def _commit(self) -> None:
        os.fsync(self._fd)  # the appended tail first: nothing old may point at unwritten bytes
        _crash_point("appended")
        size0, cut, size = self._size0, self._cut, self._size
        # Pages wholly below the cut are journaled only if they changed; the cut-off range
        # [cut, size0) is journaled in full, in chunks, and rewritten (new pages, else zeros).
        changed = [
            i
            for i in sorted(self._pages)
            if i * PAGE >= cut
            or os.pread(self._fd, len(self._pages[i]), i * PAGE) != self._pages[i]
        ]
        if changed or cut < size0:
            count, crc = 0, 0
            with open(journal_path(self.path), "ab") as j:

                def record(off: int, old: bytes) -> None:
                    nonlocal count, crc
                    head = _RECORD.pack(off, len(old))
                    j.write(head)
                    j.write(old)
                    crc = zlib.crc32(old, zlib.crc32(head, crc))
                    count += 1

                for i in changed:
                    if i * PAGE < cut:
                        record(
                            i * PAGE,
                            os.pread(self._fd, min(len(self._pages[i]), cut - i * PAGE), i * PAGE),
                        )
                for off in range(cut, size0, _CHUNK):
                    record(off, os.pread(self._fd, min(_CHUNK, size0 - off), off))
                j.write(_COMMIT + _TRAILER.pack(count, crc))
                j.flush()
                os.fsync(j.fileno())
            _crash_point("journal-written")
            for k, i in enumerate(changed):
                _pwrite(self._fd, self._pages[i], i * PAGE)
                if k == len(changed) // 2:
                    _crash_point("half-applied")
            # cut-off bytes that no page rewrote read as zeros, as they did in the transaction
            zero_end, pos = min(size, size0), cut
            starts = [i * PAGE for i in changed]
            while pos < zero_end:
                k = bisect.bisect_right(starts, pos)
                if k and pos < starts[k - 1] + PAGE:  # inside a rewritten page
                    pos = starts[k - 1] + PAGE
                    continue
                stop = min(zero_end, pos + _CHUNK, starts[k] if k < len(starts) else zero_end)
                _pwrite(self._fd, bytes(stop - pos), pos)
                pos = stop
            if size < size0:
                os.ftruncate(self._fd, size)
            os.fsync(self._fd)
            _crash_point("applied")
        os.unlink(journal_path(self.path))
        _fsync_dir(self.path)
        _crash_point("committed")
        try:
            self._begin()
        except OSError as err:  # the commit stands; the next transaction cannot
            self._failed(err)

    def rollback(self) -> None:
        """Forget every change since the last commit.

        Also after a commit that failed half way: the journal's old pages are put back.
        """
        self._check_open()
        self._pages.clear()
        self._spill.clear()
        self._error = None
        try:
            _recover(self._fd, self.path)
            self._begin()
        except OSError as err:
            raise self._failed(err) from None

    def close(self) -> None:
        """Roll back what was not committed, release the lock and close.

        After a failed write, a rollback that cannot write either leaves the journal for the
        next opener (which rolls back) instead of raising again.
        """
        if self.closed:
            return
        try:
            self._pages.clear()
            self._spill.clear()
            try:
                _recover(self._fd, self.path)
            except OSError as err:
                if self._error is None:
                    raise WriteFailed(self.path, err) from None
        finally:
            os.close(self._fd)
            super().close()

    # ------------------------------------------------------------------ file object
    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"JournaledFile: {self.path} is closed")

    def readable(self) -> bool:
        """Always True (``io.RawIOBase``)."""
        return True

    def writable(self) -> bool:
        """Always True (``io.RawIOBase``)."""
        return True

    def seekable(self) -> bool:
        """Always True (``io.RawIOBase``)."""
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from ``whence``, as ``io.RawIOBase.seek``; may pass the end."""
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        """The current position."""
        return self._pos

    def _page(self, index: int) -> bytearray:
        page = self._pages.get(index)
        if page is None:
            start = index * PAGE
            length = min(PAGE, self._size0 - start)
            keep = max(0, min(length, self._cut - start))
            page = bytearray(os.pread(self._fd, keep, start)) + bytearray(length - keep)
            self._pages[index] = page
        return page

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        """Read the file as this transaction sees it into ``buffer``; returns the bytes read."""
        out = memoryview(buffer).cast("B")
        start = self._pos
        end = min(start + len(out), self._size)
        pos = start
        while pos < end:
            chunk: bytes | bytearray
            if pos < self._size0:
                index, within = divmod(pos, PAGE)
                stop = min(end, (index + 1) * PAGE, self._size0)
                page = self._pages.get(index)
                if page is not None:
                    chunk = page[within : within + stop - pos]
                elif pos >= self._cut:
                    chunk = bytes(stop - pos)
                else:
                    stop = min(stop, self._cut)
                    chunk = os.pread(self._fd, stop - pos, pos)
            elif self._spill:
                index, within = divmod(pos, PAGE)
                stop = min(end, (index + 1) * PAGE)
                page = self._spill.get(index)
                chunk = page[within : within + stop - pos] if page else self._disk(pos, stop)
            else:
                chunk = os.pread(self._fd, end - pos, pos)
                stop = pos + len(chunk)
                if stop == pos:  # a hole past the end of the disk file reads as zeros
                    chunk, stop = bytes(end - pos), end
            out[pos - start : stop - start] = chunk
            pos = stop
        self._pos = max(start, end)
        return max(end - start, 0)

    def _disk(self, start: int, stop: int) -> bytes:
        """The bytes ``[start, stop)`` on disk, zeros past its end."""
        chunk = os.pread(self._fd, stop - start, start)
        return chunk + bytes(stop - start - len(chunk))

    def _keep(self, view: memoryview, pos: int) -> None:
        """Keep bytes past the committed size that could not be written, in memory."""
        done = 0
        while done < len(view):
            index, within = divmod(pos + done, PAGE)
            page = self._spill.get(index)
            if page is None:
                page = self._spill[index] = bytearray(self._disk(index * PAGE, (index + 1) * PAGE))
            take = min(len(view) - done, PAGE - within)
            page[within : within + take] = view[done : done + take]
            done += take

    def write(self, data) -> int:  # noqa: ANN001 - any bytes-like object
        """Write ``data`` at the current position (old pages are kept for the journal).

        Never raises for a failed disk write (see :class:`WriteFailed`): :meth:`commit` does.
        """
        self._check_open()
        view = memoryview(data).cast("B")
        pos, n, done = self._pos, len(view), 0
        while done < n and pos + done < self._size0:
            at = pos + done
            index, within = divmod(at, PAGE)
            page = self._page(index)
            take = min(n - done, len(page) - within)
            page[within : within + take] = view[done : done + take]
            done += take
        if done < n and self._error is None:
            try:
                _pwrite(self._fd, view[done:], pos + done)
            except OSError as err:
                self._failed(err)
        if done < n and self._error is not None:
            self._keep(view[done:], pos + done)
        self._pos = pos + n
        self._size = max(self._size, self._pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        """Resize to ``size`` (default: the position); what is cut off is kept for the journal."""
        self._check_open()
        size = self._pos if size is None else size
        if size < self._size0:
            # What is cut off must come back if the transaction is undone: commit journals
            # the range [cut, original size) in chunks; until then it reads as zeros.
            for index, page in self._pages.items():
                start = index * PAGE
                if start + len(page) > size:
                    keep = max(size - start, 0)
                    page[keep:] = bytes(len(page) - keep)
            self._cut = min(self._cut, size)
        for index, page in self._spill.items():
            if (index + 1) * PAGE > size:
                keep = max(size - index * PAGE, 0)
                page[keep:] = bytes(len(page) - keep)
        if self._error is None:
            try:
                os.ftruncate(self._fd, max(size, self._size0))
            except OSError as err:
                self._failed(err)
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing is durable before :meth:`commit`; flushing is a no-op."""
