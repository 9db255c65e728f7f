"""Tests of landscape.store.journal on its own (plain bytes, no h5py).

A JournaledFile against a bytearray model, commit and rollback, recovery of journals left behind,
crash windows, locks.
"""

from __future__ import annotations

import io
import os
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from landscape.store import journal
from landscape.store.journal import (
    PAGE,
    FileBusyError,
    JournaledFile,
    journal_path,
    lock_for_reading,
)

from .conftest import WAIT

REPO = Path(__file__).resolve().parents[1]


def _data(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def _read_all(jf: JournaledFile) -> bytes:
    jf.seek(0)
    return jf.read()


def test_writes_reads_and_seeks_before_and_after_commit(tmp_path):
    path = tmp_path / "f.bin"
    original = _data(3 * PAGE + 100)
    path.write_bytes(original)
    model = bytearray(original)
    jf = JournaledFile(path)
    try:
        assert (jf.size, jf.tell(), jf.dirty, jf.recovered) == (len(original), 0, False, False)
        assert os.path.exists(journal_path(path))  # a transaction is open
        assert jf.seekable() and jf.readable() and jf.writable()
        # inside, across a page boundary
        assert jf.seek(PAGE - 3) == PAGE - 3
        assert jf.write(b"ABCDEFG") == 7 and jf.tell() == PAGE + 4
        model[PAGE - 3 : PAGE + 4] = b"ABCDEFG"
        # straddling the original end, then beyond it with a hole
        jf.seek(-2, io.SEEK_END)
        jf.write(b"0123456789")
        model[len(original) - 2 :] = b"0123456789"
        jf.seek(len(model) + 5000)
        jf.write(b"tail")
        model += bytes(5000) + b"tail"
        assert jf.seek(0, io.SEEK_END) == jf.size == len(model)
        assert jf.seek(-4, io.SEEK_CUR) == len(model) - 4 and jf.read() == b"tail"
        assert jf.read() == b""  # at the end
        jf.seek(PAGE - 5)
        assert jf.read(10) == bytes(model[PAGE - 5 : PAGE + 5])  # sees the uncommitted write
        assert _read_all(jf) == model and jf.dirty
        with pytest.raises(OSError, match="negative seek position"):
            jf.seek(-1)
        # the original bytes on disk are untouched until commit
        assert path.read_bytes()[: len(original)] == original
        jf.commit()
        assert path.read_bytes() == model and not jf.dirty
        assert _read_all(jf) == model
    finally:
        jf.close()
    assert path.read_bytes() == model
    assert not os.path.exists(journal_path(path))


@pytest.mark.parametrize("how", ["rollback", "close"])
def test_rollback_and_close_restore_the_original_bytes(tmp_path, how):
    path = tmp_path / "f.bin"
    original = _data(2 * PAGE + 7)
    path.write_bytes(original)
    jf = JournaledFile(path)
    jf.seek(10)
    jf.write(b"x" * 3 * PAGE)  # over everything and beyond
    jf.truncate(PAGE // 2)
    jf.seek(5 * PAGE)
    jf.write(b"y")
    if how == "rollback":
        jf.rollback()
        assert jf.size == len(original) and _read_all(jf) == original and not jf.dirty
        jf.close()
    else:
        jf.close()
        assert jf.closed
        with pytest.raises(ValueError, match="is closed"):
            jf.write(b"z")
    assert path.read_bytes() == original
    assert not os.path.exists(journal_path(path))
    jf.close()  # twice is fine


def test_truncate_smaller_and_larger(tmp_path):
    path = tmp_path / "f.bin"
    original = _data(3 * PAGE)
    path.write_bytes(original)
    with JournaledFile(path) as jf:
        assert jf.truncate(PAGE + 10) == PAGE + 10 and jf.size == PAGE + 10
        assert _read_all(jf) == original[: PAGE + 10]
        jf.truncate(4 * PAGE)  # the cut bytes come back as zeros
        assert _read_all(jf) == original[: PAGE + 10] + bytes(3 * PAGE - 10)
        jf.seek(100)
        jf.truncate()  # at the position
        assert jf.size == 100
        jf.commit()
        assert path.read_bytes() == original[:100]
        jf.truncate(PAGE)
        jf.commit()
        assert path.read_bytes() == original[:100] + bytes(PAGE - 100)


def test_a_new_file_is_created_empty(tmp_path):
    path = tmp_path / "new.bin"
    jf = JournaledFile(path)
    assert jf.size == 0 and path.read_bytes() == b""
    jf.write(b"hello")
    jf.close()  # without commit: still empty
    assert path.read_bytes() == b""


def test_randomised_against_a_bytearray_model(tmp_path):
    path = tmp_path / "f.bin"
    rng = np.random.default_rng(20240611)
    committed = bytearray(_data(2 * PAGE + 123, seed=1))
    path.write_bytes(committed)
    model = bytearray(committed)
    jf = JournaledFile(path)
    pos = 0
    try:
        for step in range(400):
            op = rng.choice(
                ["write", "write", "write", "truncate", "read", "commit", "rollback"],
                p=[0.3, 0.2, 0.1, 0.15, 0.15, 0.07, 0.03],
            )
            if op == "write":
                pos = int(rng.integers(0, len(model) + 2 * PAGE))
                data = rng.bytes(int(rng.integers(0, 3 * PAGE)))
                jf.seek(pos)
                jf.write(data)
                if pos > len(model):
                    model += bytes(pos - len(model))
                model[pos : pos + len(data)] = data
            elif op == "truncate":
                size = int(rng.integers(0, len(model) + 2 * PAGE))
                jf.truncate(size)
                model = model[:size] + bytes(max(0, size - len(model)))
            elif op == "read":
                pos = int(rng.integers(0, len(model) + 10))
                n = int(rng.integers(0, 2 * PAGE))
                jf.seek(pos)
                assert jf.read(n) == model[pos : pos + n], step
            elif op == "commit":
                jf.commit()
                committed = bytearray(model)
                assert path.read_bytes() == committed, step
            else:
                jf.rollback()
                model = bytearray(committed)
            assert jf.size == len(model), step
            assert path.read_bytes()[: len(committed)] == committed, step  # never touched
            if step % 25 == 0:
                assert _read_all(jf) == model, step
    finally:
        jf.close()
    assert path.read_bytes() == committed


# ---------------------------------------------------------------------------- journals left behind
def _journal(size0: int, records: list[tuple[int, bytes]], trailer: bool = True) -> bytes:
    body = b"".join(struct.pack("<QI", off, len(old)) + old for off, old in records)
    out = b"landscape-journal-1\n" + struct.pack("<Q", size0) + body
    if trailer:
        out += b"landscape-journal-commit" + struct.pack("<QI", len(records), zlib.crc32(body))
    return out


def test_the_journal_format_is_as_documented():
    assert (
        journal._MAGIC == b"landscape-journal-1\n"
        and journal._COMMIT == b"landscape-journal-commit"
    )
    assert journal._HEADER.format == "<Q" and journal._RECORD.format == "<QI"
    assert journal._TRAILER.format == "<QI"


def _open_with_journaled_file(path):
    jf = JournaledFile(path)
    recovered = jf.recovered
    jf.close()
    return recovered


def _open_with_lock_for_reading(path):
    os.close(lock_for_reading(path, timeout=0))
    return True


OPENERS = [_open_with_journaled_file, _open_with_lock_for_reading]


@pytest.mark.parametrize("opener", OPENERS)
def test_a_complete_journal_is_rolled_back(tmp_path, opener):
    """A writer died after its journal was complete: the old pages and size come back."""
    path = tmp_path / "f.bin"
    original = _data(3 * PAGE + 100)
    damaged = bytearray(original)
    damaged[0:PAGE] = b"\xff" * PAGE  # half-applied new pages
    damaged[2 * PAGE : 2 * PAGE + 50] = b"\xee" * 50
    damaged += b"appended tail" * 500
    path.write_bytes(damaged)
    Path(journal_path(path)).write_bytes(
        _journal(len(original), [(0, original[:PAGE]), (2 * PAGE, original[2 * PAGE : 3 * PAGE])])
    )
    assert opener(path)
    assert path.read_bytes() == original
    assert not os.path.exists(journal_path(path))


@pytest.mark.parametrize("opener", OPENERS)
def test_a_journal_that_shrank_the_file_is_rolled_back(tmp_path, opener):
    path = tmp_path / "f.bin"
    original = _data(4 * PAGE)
    path.write_bytes(original[: PAGE // 2])  # the commit had cut it short
    records = [(k * PAGE, original[k * PAGE : (k + 1) * PAGE]) for k in range(4)]
    Path(journal_path(path)).write_bytes(_journal(len(original), records))
    opener(path)
    assert path.read_bytes() == original


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("cut", ["no trailer", "cut in a record", "bad crc", "header only"])
def test_an_unfinished_journal_only_cuts_off_the_tail(tmp_path, opener, cut):
    """Without a complete journal the old pages were never overwritten.

    Only the appended tail goes.
    """
    path = tmp_path / "f.bin"
    original = _data(2 * PAGE + 10)
    path.write_bytes(original + b"appended by the dead writer" * 100)
    j = _journal(len(original), [(0, original[:PAGE]), (PAGE, original[PAGE : 2 * PAGE])])
    j = {
        "no trailer": j[: j.index(b"landscape-journal-commit")],
        "cut in a record": j[:100],
        "bad crc": j[:-1] + bytes([j[-1] ^ 1]),
        "header only": _journal(len(original), [], trailer=False),
    }[cut]
    Path(journal_path(path)).write_bytes(j)
    opener(path)
    assert path.read_bytes() == original
    assert not os.path.exists(journal_path(path))


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("journal_bytes", [b"", b"garbage", b"landscape-journal-1\n\x01"])
def test_a_journal_without_a_valid_header_is_dropped(tmp_path, opener, journal_bytes):
    """A journal abandoned before its header was written: the file was not touched yet."""
    path = tmp_path / "f.bin"
    original = _data(PAGE + 10)
    path.write_bytes(original)
    Path(journal_path(path)).write_bytes(journal_bytes)
    opener(path)
    assert path.read_bytes() == original
    assert not os.path.exists(journal_path(path))


# ---------------------------------------------------------------------------- interrupted commits
_CHILD = """
import sys
from landscape.store.journal import JournaledFile
jf = JournaledFile(sys.argv[1])
for k in range(0, 5 * 4096, 4096):
    jf.seek(k + 7)
    jf.write(b"new" * 100)
jf.truncate(jf.size + 10000)
jf.seek(jf.size - 3)
jf.write(b"end")
jf.commit()
print("survived")
"""

POINTS = ["appended", "journal-written", "half-applied", "applied", "committed"]


@pytest.mark.parametrize("opener", OPENERS)
@pytest.mark.parametrize("point", POINTS)
def test_sigkill_inside_commit(tmp_path, point, opener):
    path = tmp_path / "f.bin"
    original = _data(5 * PAGE + 99)
    path.write_bytes(original)
    new = bytearray(original)
    for k in range(0, 5 * PAGE, PAGE):
        new[k + 7 : k + 307] = b"new" * 100
    new += bytes(10000 - 3) + b"end"
    env = {**os.environ, "PYTHONPATH": str(REPO), "LANDSCAPE_CRASH_AT": point}
    r = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=WAIT,
    )
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert os.path.exists(journal_path(path)) == (point != "committed")
    opener(path)
    assert path.read_bytes() == (new if point == "committed" else original)
    assert not os.path.exists(journal_path(path))


def _interrupt_at(monkeypatch, point):
    """Make the commit raise KeyboardInterrupt (as Ctrl-C would) at the crash point given."""

    def interrupt(name):
        if name == point:
            raise KeyboardInterrupt

    monkeypatch.setattr(journal, "_crash_point", interrupt)


@pytest.mark.parametrize("point", ["appended", "journal-written", "half-applied", "applied"])
def test_an_exception_inside_commit_then_close_restores_the_file(tmp_path, monkeypatch, point):
    """An exception between writing the journal and deleting it, then close().

    For example Ctrl-C or a full disk: the pages already written must be restored from the journal.
    """
    path = tmp_path / "f.bin"
    original = _data(4 * PAGE)
    path.write_bytes(original)

    _interrupt_at(monkeypatch, point)
    jf = JournaledFile(path)
    for k in range(4):
        jf.seek(k * PAGE)
        jf.write(b"changed")
    jf.seek(4 * PAGE)
    jf.write(b"appended")
    with pytest.raises(KeyboardInterrupt):
        jf.commit()
    jf.close()
    assert path.read_bytes() == original


@pytest.mark.parametrize("point", ["journal-written", "half-applied", "applied"])
def test_a_large_file_cut_short_and_rewritten_is_restored_after_an_interrupt(
    tmp_path, monkeypatch, point
):
    """Store(path, "w") on a big file cuts it to 0 and writes anew.

    The cut-off bytes are journaled in chunks (not held in memory) and come back if the commit is
    interrupted.
    """
    path = tmp_path / "f.bin"
    original = _data(3 * journal._CHUNK + 5 * PAGE + 17, seed=3)
    path.write_bytes(original)

    _interrupt_at(monkeypatch, point)
    jf = JournaledFile(path)
    jf.truncate(0)
    jf.seek(0)
    jf.write(b"new start")
    jf.seek(2 * journal._CHUNK + 3)  # inside the old size: the hole reads as zeros
    jf.write(b"middle")
    jf.seek(0)
    expected = bytearray(2 * journal._CHUNK + 9)
    expected[:9] = b"new start"
    expected[-6:] = b"middle"
    assert jf.read() == expected
    assert len(jf._pages) <= 3  # the cut did not load the old pages
    with pytest.raises(KeyboardInterrupt):
        jf.commit()
    jf.close()
    assert path.read_bytes() == original


def test_a_large_file_cut_short_and_rewritten_commits_exactly(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(_data(2 * journal._CHUNK + 123, seed=4))
    jf = JournaledFile(path)
    jf.truncate(0)
    jf.seek(journal._CHUNK + 1)
    jf.write(b"x" * (PAGE + 5))
    jf.commit()
    jf.close()
    want = bytes(journal._CHUNK + 1) + b"x" * (PAGE + 5)
    assert path.read_bytes() == want


# ---------------------------------------------------------------------------- locks
def test_locks_writer_exclusive_readers_shared(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    jf = JournaledFile(path)
    with pytest.raises(FileBusyError, match="is open in another process"):
        JournaledFile(path)
    with pytest.raises(FileBusyError, match=r"waited 0.1 s"):
        JournaledFile(path, timeout=0.1)
    with pytest.raises(FileBusyError, match="is being written"):
        lock_for_reading(path, timeout=0)
    jf.close()
    fd1 = lock_for_reading(path, timeout=0)
    fd2 = lock_for_reading(path, timeout=0)  # readers share
    with pytest.raises(FileBusyError):
        JournaledFile(path)
    os.close(fd1)
    with pytest.raises(FileBusyError):
        JournaledFile(path)
    os.close(fd2)
    JournaledFile(path).close()
    assert path.read_bytes() == b"abc"


def test_a_refused_open_never_closes_a_descriptor_it_no_longer_owns(tmp_path):
    # a JournaledFile refused the lock closed its descriptor but still counted as open, so its
    # later close() (the garbage collector's) closed the same number again: by then another
    # file's descriptor
    import gc

    from landscape.store.journal import FileBusyError, JournaledFile

    path = tmp_path / "f.bin"
    holder = JournaledFile(path)
    refused = None
    try:
        JournaledFile(path, timeout=0)
    except FileBusyError as err:
        refused = err
    assert refused is not None
    victim = os.open(tmp_path / "victim", os.O_RDWR | os.O_CREAT)
    try:
        del refused  # its traceback held the refused object; now the collector closes it
        gc.collect()
        os.fstat(victim)  # still open: nobody closed it behind our back
    finally:
        os.close(victim)
        holder.close()
