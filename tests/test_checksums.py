"""Checksums of the landscape file's datasets, and damaged files named on one line.

A byte flipped inside a dataset's data on disk is refused by the store (a ``StoreError`` that
names the file and the object) and by the command (exit 2, one line); files written before
checksums are read as before and ``landscape info`` says they have none; a damaged block and
a copy taken mid-commit without its journal give one line that names the file, never HDF5's
raw error text.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store import checksum, journal, summary
from landscape.store.file import Store, StoreError

from .cli_runner import TINY_RUN, cli, copy_of, error_line, refused

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = [*TINY_RUN, "--steps", "6", "--quiet"]
DAMAGED = "a damaged disk block, or a copy taken while it was written without its -journal file"


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A file with run ``a``: trained, a trace probe and a record that holds a scalar."""
    path = tmp_path_factory.mktemp("sums") / "base.h5"
    assert main(["train", str(path), *TINY, "--run", "a"]) == 0
    assert main(["probe", str(path), "--run", "a", "trace", "--products", "5"]) == 0
    with Store(path, "a") as s:
        s.write_record(
            "a",
            "probes",
            "extra",
            arrays={"value": 12.6, "empty": np.zeros(0), "big": np.arange(9000.0)},
        )
    return path


@pytest.fixture()
def file(made, tmp_path, capsys):
    return copy_of(made, tmp_path, capsys)


def flip(path: Path, offset: int) -> None:
    """Flip one bit of the byte at ``offset`` of ``path``."""
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))


def data_offset(path: Path, name: str) -> int:
    """Where the data of dataset ``name`` begin in the file (its first chunk, or contiguous)."""
    with h5py.File(path, "r") as f:
        ds = f[name]
        if ds.chunks:
            return ds.id.get_chunk_info(0).byte_offset
        return ds.id.get_offset()


def mismatch(path: Path, name: str) -> str:
    return (
        f"{path}: {name} does not match its checksum (its data were damaged on disk); it is "
        "not used: restore the file from a copy, or recompute that result"
    )


def test_every_dataset_carries_a_checksum(made):
    with Store(made) as s:
        without, total = s.checksums()
        assert (without, total) == (0, total) and total > 15
        assert s.attrs["checksums"] == checksum.KEPT
    with h5py.File(made, "r") as f:
        # growing or large: HDF5's fletcher32 filter
        for name in ("trajectory", "history/train_loss", "probes/extra/big"):
            assert f["runs/a"][name].fletcher32, name
        # small, scalar, variable-length: crc32 of the values
        for name in ("final", "params/names", "params/shapes", "probes/extra/value"):
            ds = f["runs/a"][name]
            assert not ds.fletcher32 and int(ds.attrs["crc32"]) == checksum.digest(ds[()]), name
    assert "no checksums" not in summary.text(made)


@pytest.mark.parametrize(
    "name, read",
    [
        ("/runs/a/final", lambda s: s.params("a")),
        ("/runs/a/init", lambda s: s.params("a", "init")),
        ("/runs/a/trajectory", lambda s: s.trajectory("a")),
        ("/runs/a/history/train_loss", lambda s: s.history("a")),
        ("/runs/a/probes/extra/value", lambda s: s.record("a", "probes", "extra")),
        ("/runs/a/probes/extra/big", lambda s: s.record("a", "probes", "extra")),
    ],
)
def test_a_flipped_byte_in_a_dataset_is_refused(file, name, read):
    flip(file, data_offset(file, name) + 3)
    with Store(file) as s, pytest.raises(StoreError) as caught:
        read(s)
    assert str(caught.value) == mismatch(file, name)


def test_a_flipped_byte_in_a_parameter_name_is_refused(file, capsys):
    raw = file.read_bytes()
    with Store(file) as s:
        first = s.layout("a")[0][0]
    at = raw.index(first.encode())  # the names' bytes, in HDF5's global heap
    assert raw.count(first.encode()) == 1
    flip(file, at + 1)
    with Store(file) as s, pytest.raises(StoreError) as caught:
        s.layout("a")
    assert str(caught.value) == mismatch(file, "/runs/a/params/names")
    refused(["probe", file, "--run", "a", "trace"], capsys, mismatch(file, "/runs/a/params/names"))


def test_the_probe_refuses_damaged_final_parameters(file, capsys):
    """The damage of the found case: a bit of ``final`` flipped, the trace probe on it."""
    flip(file, data_offset(file, "/runs/a/final") + 100)
    line = refused(
        ["probe", file, "--run", "a", "trace", "--name", "again"],
        capsys,
        mismatch(file, "/runs/a/final"),
    )
    assert line == f"landscape: error: {mismatch(file, '/runs/a/final')}"


def test_files_without_checksums_read_as_before(tmp_path, monkeypatch, capsys):
    """As written before checksums were kept: plain datasets, no root ``checksums``."""
    path = tmp_path / "old.h5"

    def plain(group, name, data=None, *, shape=None, dtype=None, **kw):
        return group.create_dataset(name, shape, dtype, data, **kw)

    with monkeypatch.context() as m:
        m.setattr(checksum, "create", plain)
        m.setattr(checksum, "refresh", lambda ds: None)
        assert main(["train", str(path), *TINY, "--run", "a"]) == 0
    with h5py.File(path, "r+") as f:
        del f.attrs["checksums"]
        total = sum(1 for _ in _datasets(f))
    capsys.readouterr()
    with Store(path) as s:
        assert s.checksums() == (total, total)
        assert s.params("a").shape == (310,) and len(s.history("a")["train_loss"]) == 2
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"no checksums on {total} of {total} datasets" in out
    # new data written into it carry checksums; the old ones are still read as they are
    assert main(["train", str(path), *TINY, "--run", "b"]) == 0
    with Store(path) as s:
        assert s.checksums()[0] == total and s.params("b").shape == (310,)
    flip(path, data_offset(path, "/runs/a/final") + 3)  # undetectable in an old dataset
    flip(path, data_offset(path, "/runs/b/final") + 3)
    with Store(path) as s:
        assert s.params("a").shape == (310,)
        with pytest.raises(StoreError, match="/runs/b/final does not match its checksum"):
            s.params("b")


def _datasets(f: h5py.File):
    found: list[str] = []
    f.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) else None)
    return found


def test_a_dataset_that_lost_its_checksum_is_damaged(file):
    """A zeroed block reads as empty header messages: the filter's message is gone."""
    with h5py.File(file, "r+") as f:  # what such damage leaves: the same data, no checksum
        data = f["runs/a/init"][()]
        del f["runs/a/init"]
        f["runs/a"].create_dataset("init", data=data)
    with Store(file) as s, pytest.raises(StoreError) as caught:
        s.params("a", "init")
    assert str(caught.value) == (
        f"{file} is damaged at /runs/a/init: its checksum is missing; {DAMAGED}"
    )


def everything(path: Path) -> list:
    """All that run ``a`` of the file holds, read through the store."""
    with Store(path) as s:
        info = s.info("a")
        return [
            info.status,
            info.attrs,
            s.params("a"),
            s.params("a", "init"),
            s.layout("a"),
            s.history("a"),
            s.trajectory("a"),
            s.record("a", "probes", "extra").arrays,
            s.record("a", "probes", "hessian_trace").arrays,
            s.checksums(),
        ]


def _blocks(path: Path, signature: bytes) -> list[int]:
    raw, found, at = path.read_bytes(), [], 0
    while (at := raw.find(signature, at + 1)) > 0:
        found.append(at)
    return found


@pytest.mark.parametrize(
    "signature",
    [b"OHDR", b"OCHK", b"BTHD", b"BTLF", b"FRHP", b"FHDB", b"GCOL"],
    ids=lambda sig: sig.decode(),
)
def test_a_damaged_block_is_named_on_one_line(file, capsys, signature):
    """Every block of each kind of HDF5's metadata in turn, one byte damaged.

    Object headers and their continuations, B-tree headers and leaves, fractal heaps (names,
    attributes) carry HDF5's own metadata checksums (the file is written with HDF5 1.10's
    formats); the global heap (variable-length strings) does not, and is damaged in its
    header here.
    """
    raw = file.read_bytes()
    blocks = _blocks(file, signature)
    assert blocks
    for at in blocks:
        file.write_bytes(raw)
        flip(file, at + 9)
        with pytest.raises(StoreError) as caught:
            everything(file)
        line = str(caught.value)
        assert line.startswith(f"{file} is damaged: the HDF5 library cannot read it ("), line
        assert line.endswith(DAMAGED) and "\n" not in line
        if signature != b"GCOL":
            assert "(incorrect metadata checksum" in line, line
        if main(["info", str(file)]) != 0:  # info reads all but the data: as often as that
            assert capsys.readouterr().err == f"landscape: error: {line}\n"


def test_every_zeroed_page_is_named_or_harmless(file):
    """Each 4 KiB page zeroed in turn: the file reads as before, or one line names it."""
    raw = file.read_bytes()
    ref = everything(file)
    named = 0
    for start in range(0, len(raw), journal.PAGE):
        damaged = bytearray(raw)
        damaged[start : start + journal.PAGE] = bytes(len(damaged[start : start + journal.PAGE]))
        file.write_bytes(damaged)
        try:
            got = everything(file)
        except StoreError as err:
            assert str(file) in str(err) and "\n" not in str(err)
            named += 1
            continue
        np.testing.assert_equal(got, ref)
    assert named > 10


def test_a_copy_taken_mid_commit_without_its_journal(file, tmp_path, monkeypatch, capsys):
    """Copied while a writer applied its commit (half its pages): one line, never garbage."""
    copies: list[Path] = []

    def copy_at(point: str) -> None:
        if point == "half-applied":
            copies.append(tmp_path / f"copy{len(copies)}.h5")
            shutil.copyfile(file, copies[-1])

    monkeypatch.setattr(journal, "_crash_point", copy_at)
    assert main(["train", str(file), *TINY, "--run", "b"]) == 0
    capsys.readouterr()
    outcomes = []
    for copy in copies:
        status = main(["probe", str(copy), "--run", "b", "trace", "--products", "2"])
        err = capsys.readouterr().err
        if status == 0:
            outcomes.append("readable")
            continue
        lines = err.strip().splitlines()
        assert status == 2 and len(lines) == 1, err
        assert str(copy) in lines[0] and "Unable to" not in lines[0], lines[0]
        outcomes.append("named")
    assert "named" in outcomes


def test_a_damaged_file_in_a_subprocess(file):
    """The command's own process: no crash, no HDF5 error stack, one line."""
    flip(file, _blocks(file, b"OHDR")[0] + 9)
    done = cli("info", file)
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, f"{file} is damaged")
