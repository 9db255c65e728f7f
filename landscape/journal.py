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

Locking uses ``flock`` on the file itself, the lock that the HDF5 library takes: a writer
holds it exclusively, so a second writer, our own or any HDF5 program, gets a clear
:class:`FileBusyError` instead of a corrupt file; readers hold it shared. The lock is held on
a file whose inode never changes (no rename), so it means what it says.

This module does plain file I/O only; :mod:`landscape.store` owns h5py.
"""

from __future__ import annotations

import errno
import fcntl
import io
import os
import signal
import struct
import time
import zlib

__all__ = ["FileBusyError", "JournaledFile", "journal_path", "lock_for_reading"]

PAGE = 4096
_MAGIC = b"landscape-journal-1\n"
_HEADER = struct.Struct("<Q")  # the file's size at the start of the transaction
_RECORD = struct.Struct("<QI")  # offset, length, then the old bytes
_COMMIT = b"landscape-journal-commit"
_TRAILER = struct.Struct("<QI")  # number of records, crc32 of all records


class FileBusyError(RuntimeError):
    """Another process holds the file (a writer, or a reader while we want to write)."""


def journal_path(path: str | os.PathLike) -> str:
    """The journal that sits beside ``path`` while a transaction is open: ``<path>-journal``."""
    return os.fspath(path) + "-journal"


def _crash_point(name: str) -> None:
    """Test hook: ``LANDSCAPE_CRASH_AT=<name>`` kills this process with SIGKILL right here, so
    that tests can stop a writer inside each window of a commit."""
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
                what = "written by another process" if exclusive else "being written"
                hint = "; wait for it to finish" + (f" (waited {timeout:g} s)" if timeout else "")
                if exclusive:
                    hint += ", or close the other program that has it open"
                raise FileBusyError(f"{path} is {what}{hint}") from None
            time.sleep(0.02)


def _recover(fd: int, path: str) -> bool:
    """Roll back an interrupted transaction if ``path`` has a journal; the caller holds the
    exclusive lock. Returns whether there was anything to undo."""
    jpath = journal_path(path)
    try:
        with open(jpath, "rb") as j:
            raw = j.read()
    except FileNotFoundError:
        return False
    head = len(_MAGIC) + _HEADER.size
    if raw[: len(_MAGIC)] == _MAGIC and len(raw) >= head:
        (size0,) = _HEADER.unpack_from(raw, len(_MAGIC))
        records, pos = [], head
        while pos + _RECORD.size <= len(raw) and raw[pos:pos + len(_COMMIT)] != _COMMIT:
            off, n = _RECORD.unpack_from(raw, pos)
            records.append((off, raw[pos + _RECORD.size:pos + _RECORD.size + n]))
            pos += _RECORD.size + n
        trailer = raw[pos + len(_COMMIT):pos + len(_COMMIT) + _TRAILER.size]
        complete = raw[pos:pos + len(_COMMIT)] == _COMMIT and len(trailer) == _TRAILER.size
        if complete:
            count, crc = _TRAILER.unpack(trailer)
            complete = count == len(records) and crc == zlib.crc32(raw[head:pos])
        # Without a complete journal the old pages were never overwritten: cutting off the
        # appended tail is all that is needed.
        if complete:
            for off, old in records:
                os.pwrite(fd, old, off)
        os.ftruncate(fd, size0)
        os.fsync(fd)
    # A journal without a valid header was abandoned before the file was touched.
    os.unlink(jpath)
    _fsync_dir(path)
    return True


def lock_for_reading(path: str | os.PathLike, timeout: float = 10.0) -> int:
    """Open ``path`` read-only under a shared lock, rolling back a dead writer's transaction
    first; returns the file descriptor that holds the lock (close it to release)."""
    path = os.fspath(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        _flock(fd, path, exclusive=False, timeout=timeout)
        if os.path.exists(journal_path(path)):
            # A writer died mid-transaction (a live one would hold the lock): undo it.
            try:
                wfd = os.open(path, os.O_RDWR)
            except PermissionError:
                raise FileBusyError(f"{path} was left by an interrupted writer and must be "
                                    "recovered: open it once for writing") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
                _flock(wfd, path, exclusive=True, timeout=timeout)
                _recover(wfd, path)
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
        try:
            _flock(self._fd, self.path, exclusive=True, timeout=timeout)
            self.recovered = _recover(self._fd, self.path)
            self._begin()
        except BaseException:
            os.close(self._fd)
            raise

    # ------------------------------------------------------------------ transaction
    def _begin(self) -> None:
        self._size0 = os.fstat(self._fd).st_size
        self._size = self._size0
        self._pages: dict[int, bytearray] = {}
        self._pos = 0
        with open(journal_path(self.path), "wb") as j:
            j.write(_MAGIC + _HEADER.pack(self._size0))
            j.flush()
            os.fsync(j.fileno())
        _fsync_dir(self.path)

    @property
    def size(self) -> int:
        """The file's size as the transaction sees it."""
        return self._size

    @property
    def dirty(self) -> bool:
        """Whether anything changed since the last commit."""
        return self._size != self._size0 or bool(self._pages) or (
            os.fstat(self._fd).st_size != self._size0)

    def commit(self) -> None:
        """Make every change since the last commit durable, all at once."""
        self._check_open()
        os.fsync(self._fd)  # the appended tail first: nothing old may point at unwritten bytes
        _crash_point("appended")
        changed = []
        for index in sorted(self._pages):
            new, off = self._pages[index], index * PAGE
            old = os.pread(self._fd, len(new), off)
            if old != new:
                changed.append((off, old, new))
        if changed or self._size < self._size0:
            body = b"".join(_RECORD.pack(off, len(old)) + old for off, old, _ in changed)
            with open(journal_path(self.path), "ab") as j:
                j.write(body + _COMMIT + _TRAILER.pack(len(changed), zlib.crc32(body)))
                j.flush()
                os.fsync(j.fileno())
            _crash_point("journal-written")
            for k, (off, _, new) in enumerate(changed):
                os.pwrite(self._fd, new, off)
                if k == len(changed) // 2:
                    _crash_point("half-applied")
            if self._size < self._size0:
                os.ftruncate(self._fd, self._size)
            os.fsync(self._fd)
            _crash_point("applied")
        os.unlink(journal_path(self.path))
        _fsync_dir(self.path)
        _crash_point("committed")
        self._begin()

    def rollback(self) -> None:
        """Forget every change since the last commit (also after a commit that failed half
        way: the journal's old pages are put back)."""
        self._check_open()
        self._pages.clear()
        _recover(self._fd, self.path)
        self._begin()

    def close(self) -> None:
        """Roll back what was not committed, release the lock and close."""
        if self.closed:
            return
        try:
            self._pages.clear()
            _recover(self._fd, self.path)
        finally:
            os.close(self._fd)
            super().close()

    # ------------------------------------------------------------------ file object
    def _check_open(self) -> None:
        if self.closed:
            raise ValueError(f"JournaledFile: {self.path} is closed")

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base + offset}")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def _page(self, index: int) -> bytearray:
        page = self._pages.get(index)
        if page is None:
            start = index * PAGE
            page = bytearray(os.pread(self._fd, min(PAGE, self._size0 - start), start))
            self._pages[index] = page
        return page

    def readinto(self, buffer) -> int:  # noqa: ANN001 - any writable buffer
        out = memoryview(buffer).cast("B")
        start = self._pos
        end = min(start + len(out), self._size)
        pos = start
        while pos < end:
            if pos < self._size0:
                index, within = divmod(pos, PAGE)
                stop = min(end, (index + 1) * PAGE, self._size0)
                page = self._pages.get(index)
                chunk = (page[within:within + stop - pos] if page is not None
                         else os.pread(self._fd, stop - pos, pos))
            else:
                chunk = os.pread(self._fd, end - pos, pos)
                stop = pos + len(chunk)
                if stop == pos:  # a hole past the end of the disk file reads as zeros
                    chunk, stop = bytes(end - pos), end
            out[pos - start:stop - start] = chunk
            pos = stop
        self._pos = max(start, end)
        return max(end - start, 0)

    def write(self, data) -> int:  # noqa: ANN001 - any bytes-like object
        self._check_open()
        view = memoryview(data).cast("B")
        pos, n, done = self._pos, len(view), 0
        while done < n and pos + done < self._size0:
            at = pos + done
            index, within = divmod(at, PAGE)
            page = self._page(index)
            take = min(n - done, len(page) - within)
            page[within:within + take] = view[done:done + take]
            done += take
        if done < n:
            os.pwrite(self._fd, view[done:], pos + done)
        self._pos = pos + n
        self._size = max(self._size, self._pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        self._check_open()
        size = self._pos if size is None else size
        if size < self._size0:
            # The bytes cut off must come back if the transaction is undone: they are kept
            # as changed pages (zeros, as a later extension would read them).
            for index in range(size // PAGE, (self._size0 + PAGE - 1) // PAGE):
                page, start = self._page(index), index * PAGE
                cut = max(size - start, 0)
                page[cut:] = bytes(len(page) - cut)
        os.ftruncate(self._fd, max(size, self._size0))
        self._size = size
        return size

    def flush(self) -> None:
        """Nothing is durable before :meth:`commit`; flushing is a no-op."""
