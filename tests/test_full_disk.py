"""A full disk (or any failed write) while ``landscape`` writes: one line, nothing lost.

At any write (the journal's header and records, the HDF5 data appended to the file, the pages
written at a commit, an fsync, a figure) a failed write must end the command with exit status
2 and exactly one line on stderr that names the file and the error (no traceback, no
``Exception ignored`` from h5py, no crash), leave the landscape file as of its last commit, and
a rerun once there is space must finish the work (with the same result as a run never
interrupted).

Two kinds of full disk: a real one (a 1 MiB tmpfs, mounted when the tests may mount; the
command runs in a subprocess) and an injected one (every write through the store's journal
draws on a byte budget; past it, ``ENOSPC``). Run as a script, this file is the injected disk
around the command: ``python tests/test_full_disk.py BUDGET -- LANDSCAPE-ARGS...``.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from landscape.cli.main import main
from landscape.store import claims as store_claims
from landscape.store import journal
from landscape.store.file import Store
from landscape.store.journal import PAGE, JournaledFile, WriteFailed, journal_path

from .cli_runner import REPO, TINY_RUN, cli, error_line

pytestmark = pytest.mark.usefixtures("one_thread")

HERE = Path(__file__).resolve()
TINY = [*TINY_RUN, "--steps", "6", "--quiet"]
SPEC = """
name = "tiny"
[base]
model = {name = "mlp", width = 8}
data = {name = "gaussians", n_train = 64, n_test = 64}
train = {epochs = 3, batch_size = 16, seed = 0, snapshot_every = 4}
[grid]
optimizer = [{name = "sgd", lr = 0.1}, {name = "adam", lr = 0.01}]
[probes]
hessian = {k = 2}
[surfaces.r]
x = [-1.0, 1.0, 3]
y = [-1.0, 1.0, 3]
[paths]
init_to_final = true
"""
NO_SPACE = os.strerror(errno.ENOSPC)


# ------------------------------------------------------------------------------ the disks
class Disk:
    """A disk that holds ``budget`` more bytes (None: any), then answers ``ENOSPC``.

    Every write of the store goes through it: ``os.pwrite`` of the journal module (the HDF5
    data, the pages of a commit, a rollback) and the writes to the journal file. ``fsync``
    fails with ``EIO`` from its ``fail_fsync``-th call on, if given.
    """

    def __init__(self, budget: int | None = None, fail_fsync: int | None = None) -> None:
        self.left, self.written, self.fsyncs, self.fail_fsync = budget, 0, 0, fail_fsync

    def take(self, n: int) -> int:
        if self.left is None:
            self.written += n
            return n
        if self.left <= 0:
            raise OSError(errno.ENOSPC, NO_SPACE)
        n = min(n, self.left)  # a write that does not fit is cut short, as on a real disk
        self.left -= n
        self.written += n
        return n

    def pwrite(self, fd: int, data, offset: int) -> int:  # noqa: ANN001
        view = memoryview(data).cast("B")
        return os.pwrite(fd, view[: self.take(len(view))], offset)

    def fsync(self, fd: int) -> None:
        self.fsyncs += 1
        if self.fail_fsync is not None and self.fsyncs >= self.fail_fsync:
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        os.fsync(fd)

    def open(self, path, mode="r", *args, **kw):  # noqa: ANN001, ANN201
        f = open(path, mode, *args, **kw)  # noqa: SIM115 - handed to the caller
        if "r" in mode and "+" not in mode:
            return f
        disk = self

        class Limited:
            def write(self, data) -> int:  # noqa: ANN001
                n = len(data)
                if disk.take(n) < n:
                    raise OSError(errno.ENOSPC, NO_SPACE)
                return f.write(data)

            def __getattr__(self, name: str):  # noqa: ANN204
                return getattr(f, name)

            def __enter__(self):  # noqa: ANN204
                return self

            def __exit__(self, *exc) -> None:  # noqa: ANN002
                f.close()

        return Limited()

    def install(self, m: pytest.MonkeyPatch | None) -> None:
        """Put this disk under the journal (for good without ``m``)."""
        fake_os = types.ModuleType("os")
        fake_os.__dict__.update(vars(os))
        fake_os.pwrite = self.pwrite
        fake_os.fsync = self.fsync
        for name, value in (("os", fake_os), ("open", self.open)):
            if m is None:
                setattr(journal, name, value)
            else:
                m.setattr(journal, name, value, raising=False)


def _figure_disk_full(m: pytest.MonkeyPatch) -> None:
    import matplotlib.figure  # noqa: PLC0415 - only where a figure is drawn

    def savefig(self, fname, *args, **kw) -> None:  # noqa: ANN001, ANN002, ANN003
        raise OSError(errno.ENOSPC, NO_SPACE, os.fspath(fname))

    m.setattr(matplotlib.figure.Figure, "savefig", savefig)


@pytest.fixture()
def tmpfs(tmp_path):
    """A 1 MiB tmpfs (skipped where this process may not mount)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip()}): the injected disk tests")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, free: int) -> Path:
    """Fill the file system of ``where`` up to ``free`` bytes; returns the filler file."""
    filler = where / "filler"
    with open(filler, "wb") as f:
        while True:
            st = os.statvfs(where)
            room = st.f_bavail * st.f_frsize - free
            if room <= 0:
                break
            try:
                f.write(bytes(min(room, 1 << 16)))
                f.flush()
            except OSError:
                break
    return filler


# ------------------------------------------------------------------------------ checks
def committed_copies(monkeypatch, where: Path) -> list[bytes]:
    """The file's bytes after each commit (of any JournaledFile), from now on."""
    copies: list[bytes] = []
    commit = JournaledFile.commit

    def commit_and_copy(self: JournaledFile) -> None:
        commit(self)
        copies.append(Path(self.path).read_bytes())

    monkeypatch.setattr(JournaledFile, "commit", commit_and_copy)
    return copies


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A file with one complete run ``a``, and ``ref.h5``: that and run ``b``, undisturbed."""
    d = tmp_path_factory.mktemp("full")
    path, ref = d / "base.h5", d / "ref.h5"
    assert main(["train", str(path), *TINY, "--run", "a"]) == 0
    shutil.copyfile(path, ref)
    assert main(["train", str(ref), *TINY, "--run", "b", "--lr", "0.2"]) == 0
    return path, ref


def finished_as(path: Path, ref: Path, run: str) -> None:
    """``run`` of ``path`` is complete and holds what the undisturbed ``ref`` holds."""
    with Store(path) as s, Store(ref) as r:
        assert s.info(run).status == "complete"
        np.testing.assert_array_equal(s.params(run, "final"), r.params(run, "final"))
        np.testing.assert_array_equal(s.history(run)["train_loss"], r.history(run)["train_loss"])
        assert s.info("a").status == "complete"


# ------------------------------------------------------------------------------ the journal
def test_a_failed_write_is_kept_in_memory_and_raised_at_commit(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    original = np.random.default_rng(0).bytes(2 * PAGE + 10)
    path.write_bytes(original)
    disk = Disk(budget=PAGE // 2)
    jf = JournaledFile(path)
    disk.install(monkeypatch)
    tail = np.random.default_rng(1).bytes(3 * PAGE)
    jf.seek(0, os.SEEK_END)
    assert jf.write(tail) == len(tail)  # half a page fits, the rest is kept in memory
    jf.seek(5)
    jf.write(b"inside")
    assert isinstance(jf.error, WriteFailed)
    jf.seek(0)
    assert jf.read() == original[:5] + b"inside" + original[11:] + tail  # HDF5 sees it all
    with pytest.raises(WriteFailed) as caught:
        jf.commit()
    assert str(caught.value) == (
        f"cannot write {path}: {NO_SPACE} (errno {errno.ENOSPC}); the file holds what "
        "was committed before: free space and run again"
    )
    jf.close()
    assert path.read_bytes() == original and not os.path.exists(journal_path(path))


def test_short_writes_are_completed(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(PAGE))
    real = os.pwrite
    fake_os = types.ModuleType("os")
    fake_os.__dict__.update(vars(os))
    fake_os.pwrite = lambda fd, data, off: real(fd, memoryview(data)[:7], off)  # 7 at a time
    monkeypatch.setattr(journal, "os", fake_os)
    data = np.random.default_rng(2).bytes(3 * PAGE + 5)
    with JournaledFile(path) as jf:
        jf.seek(100)
        jf.write(data)
        jf.commit()
    assert path.read_bytes() == bytes(100) + data


# ------------------------------------------------------------------------------ injected
def _budgets(base) -> dict[str, Disk]:
    path, _ = base
    probe = Disk()
    scratch = path.with_name("probe.h5")
    shutil.copyfile(path, scratch)
    with pytest.MonkeyPatch.context() as m:
        probe.install(m)
        assert main(["train", str(scratch), *TINY, "--run", "b", "--lr", "0.2"]) == 0
    total = probe.written
    return {
        "journal header": Disk(budget=0),
        "a quarter in": Disk(budget=total // 4),
        "half way": Disk(budget=total // 2),
        "in the last commit": Disk(budget=total - PAGE),
        "fsync": Disk(fail_fsync=probe.fsyncs // 2),
    }


@pytest.fixture(scope="module")
def budgets(base):
    return _budgets(base)


@pytest.mark.parametrize(
    "where", ["journal header", "a quarter in", "half way", "in the last commit", "fsync"]
)
def test_train_on_a_full_disk(base, budgets, where, tmp_path, monkeypatch, capsys):
    path = tmp_path / "f.h5"
    shutil.copyfile(base[0], path)
    before = path.read_bytes()
    copies = committed_copies(monkeypatch, path)
    disk = budgets[where]
    with monkeypatch.context() as m:
        disk.install(m)
        status = main(["train", str(path), *TINY, "--run", "b", "--lr", "0.2"])
    err = capsys.readouterr().err
    assert status == 2
    error = os.strerror(errno.EIO) if where == "fsync" else NO_SPACE
    error_line(err, f"cannot write {path}: {error}", "the file holds what was committed before")
    with Store(path) as s:  # (a rollback that could not write either is done here)
        assert s.info("a").status == "complete"
        done = "b" in s and s.info("b").status == "complete"  # failed after its last commit
    assert path.read_bytes() == (copies[-1] if copies else before)
    assert not os.path.exists(journal_path(path))
    # space again: the rerun (a new process: the run's writer is gone) finishes the run
    monkeypatch.setattr(store_claims, "_alive", lambda host, pid: False)
    if not done:
        assert main(["train", str(path), *TINY, "--run", "b", "--lr", "0.2"]) == 0
    finished_as(path, base[1], "b")


def test_a_sweep_on_a_full_disk_stops_then_resumes(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    path, ref = tmp_path / "s.h5", tmp_path / "ref.h5"
    assert main(["sweep", str(spec), "--out", str(ref), "--quiet", "--no-report"]) == 0
    copies = committed_copies(monkeypatch, path)
    with monkeypatch.context() as m:
        Disk(budget=ref.stat().st_size // 2).install(m)
        status = main(["sweep", str(spec), "--out", str(path), "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert status == 2
    error_line(err, f"cannot write {path}: {NO_SPACE}")
    with Store(path) as s:  # the first opener rolls back what the full disk kept it from
        for run in s.runs():
            if s.info(run).status == "complete":
                assert s.params(run).shape == s.params(run, "init").shape
    assert copies and path.read_bytes() == copies[-1]
    monkeypatch.setattr(store_claims, "_alive", lambda host, pid: False)
    assert main(["sweep", str(spec), "--out", str(path), "--quiet", "--no-report"]) == 0
    with Store(path) as s, Store(ref) as r:
        assert s.runs() == r.runs()
        for run in r.runs():
            assert s.info(run).status == "complete"
            np.testing.assert_array_equal(s.params(run), r.params(run))
            assert s.info(run).surfaces == r.info(run).surfaces
            assert s.info(run).probes == r.info(run).probes


def test_a_report_whose_figures_cannot_be_written_fails(base, tmp_path, monkeypatch, capsys):
    out = tmp_path / "rep"
    with monkeypatch.context() as m:
        _figure_disk_full(m)
        status = main(["report", str(base[1]), "--out", str(out)])
    err = capsys.readouterr().err
    assert status == 2
    error_line(err, str(out / "figures"), f"{NO_SPACE} (errno {errno.ENOSPC})")
    assert not (out / "report.md").exists()
    assert main(["report", str(base[1]), "--out", str(out)]) == 0
    assert (out / "report.md").exists() and any((out / "figures").iterdir())


def _mountable(where: Path) -> bool:
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(where)], capture_output=True
    )
    subprocess.run(["umount", str(where)], capture_output=True, check=False)
    return done.returncode == 0


def test_an_injected_full_disk_in_a_subprocess(base, tmp_path):
    """The command's own process: no crash, no h5py message at exit, one line.

    Where a tmpfs can be mounted, the tests on a real full disk below do this.
    """
    if _mountable(tmp_path / "probe"):
        pytest.skip("a tmpfs can be mounted here: the real full disk's tests run instead")
    path = tmp_path / "f.h5"
    shutil.copyfile(base[0], path)
    done = subprocess.run(
        [sys.executable, str(HERE), "40000", "--", "train", str(path), *TINY, "--run", "b"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, f"cannot write {path}: {NO_SPACE}")
    with Store(path) as s:
        assert s.info("a").status == "complete"


# ------------------------------------------------------------------------------ a real disk
def test_train_on_a_full_tmpfs(base, tmpfs):
    path = tmpfs / "f.h5"
    shutil.copyfile(base[0], path)
    filler = fill(tmpfs, 64 << 10)
    done = cli("train", path, *TINY, "--run", "b", "--lr", "0.2")
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, f"cannot write {path}: {NO_SPACE}")
    with Store(path) as s:
        assert s.info("a").status == "complete"
        assert "b" not in s or s.info("b").status != "complete"
    filler.unlink()  # space again: the rerun (the failed writer is gone) finishes the run
    assert main(["train", str(path), *TINY, "--run", "b", "--lr", "0.2"]) == 0
    finished_as(path, base[1], "b")


def test_sweep_and_report_on_a_full_tmpfs(base, tmpfs, tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(SPEC)
    path = tmpfs / "s.h5"
    filler = fill(tmpfs, 160 << 10)
    done = cli("sweep", spec, "--out", path, "--quiet", "--no-report")
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, f"cannot write {path}: {NO_SPACE}")
    filler.unlink()
    assert main(["sweep", str(spec), "--out", str(path), "--quiet", "--no-report"]) == 0
    with Store(path) as s:
        assert all(s.info(run).status == "complete" for run in s.runs())
    # the report onto the full disk fails (its figures, its pages), then succeeds
    filler = fill(tmpfs, 0)
    done = cli("report", base[1], "--out", tmpfs / "rep")
    assert done.returncode == 2, done.stderr
    error_line(done.stderr, str(tmpfs / "rep"), NO_SPACE)
    filler.unlink()
    subprocess.run(["mount", "-o", "remount,size=16m", str(tmpfs)], check=True)
    assert main(["report", str(base[1]), "--out", str(tmpfs / "rep")]) == 0
    assert (tmpfs / "rep" / "report.md").exists()


if __name__ == "__main__":
    split = sys.argv.index("--")
    Disk(budget=int(sys.argv[1])).install(None)
    sys.exit(main(sys.argv[split + 1 :]))
