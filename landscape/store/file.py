"""The HDF5 file that holds a whole comparison (format v1); the only module that uses h5py.

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
which of its attributes are JSON); nothing is pickled. Reading needs only NumPy and h5py.

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

**Claims.** A writer that works on the file across many write sessions (a sweep) claims it:
:meth:`Store.claim` records the writer (host, pid, what) at the file's root, and every other
process that opens the file to write is refused with :class:`FileBusyError` while that
process lives; a claim whose process is gone is ignored (it was killed), and
:meth:`Store.release` ends it.

Examples:
    >>> with Store("cmp.h5", "a") as s:
    ...     s.create_run("sgd", names=["w"], shapes=[(3,)], init=np.zeros(3), attrs={"seed": 0})
    ...     s.set_final("sgd", np.ones(3), status="complete")
    >>> with Store("cmp.h5") as s:
    ...     s.params("sgd", "final")
    array([1., 1., 1.])
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import h5py
import numpy as np

from landscape.engine.records import Record
from landscape.store import checksum
from landscape.store.checksum import guard
from landscape.store.errors import StoreError
from landscape.store.journal import FileBusyError, JournaledFile, WriteFailed, lock_for_reading

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

FORMAT = "landscape"
"""The root attribute ``format`` of every landscape file."""
FORMAT_VERSION = 1
"""The version of the layout that this module writes and reads."""
RECORD_KINDS = ("probes", "surfaces", "paths")
STATUSES = ("running", "complete", "failed")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_name(what: str, name: Any) -> str:
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        raise ValueError(f"store: {what} name must be a non-empty string without '/', got {name!r}")
    return name


def _write_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    json_keys = set(json.loads(obj.attrs.get("json_attrs", "[]")))
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (dict, list, tuple)):
            try:
                obj.attrs[key] = json.dumps(value, allow_nan=True)
            except TypeError as err:
                raise TypeError(
                    f"store: attribute {key!r} must be JSON-serialisable ({err})"
                ) from None
            json_keys.add(key)
        elif isinstance(value, (bool, int, float, str)):
            obj.attrs[key] = value
            json_keys.discard(key)
        else:
            raise TypeError(
                f"store: attribute {key!r} must be a number, string, bool, None, "
                f"list or dict, got {type(value).__name__}"
            )
    obj.attrs["json_attrs"] = json.dumps(sorted(json_keys))


def _json(obj: h5py.HLObject, key: str, text: Any) -> Any:
    """The JSON attribute ``key`` of ``obj``; damage is named (file, object, attribute)."""
    try:
        return json.loads(text)
    except (ValueError, TypeError) as err:  # JSONDecodeError, or bytes that are not UTF-8
        raise StoreError(
            f"{obj.file.filename}: attribute {key!r} of {obj.name} is not the JSON that was "
            f"written ({err}): the file is damaged"
        ) from None


def _read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    json_keys = set(_json(obj, "json_attrs", obj.attrs.get("json_attrs", "[]")))
    out = {}
    for key, value in obj.attrs.items():
        if key == "json_attrs":
            continue
        if key in json_keys:
            value = _json(obj, key, value)
        elif isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, bytes):
            value = value.decode()
        out[key] = value
    return out


def _copy_locked(fd: int) -> Any:
    """A private, unnamed copy of the file open at ``fd`` (whose lock the caller holds)."""
    copy = tempfile.TemporaryFile()
    offset = 0
    while chunk := os.pread(fd, 1 << 22, offset):
        copy.write(chunk)
        offset += len(chunk)
    copy.seek(0)
    return copy


def _started(pid: int) -> str | None:
    """When process ``pid`` started, to tell it from a later process that got the same pid.

    The boot id and the start time in clock ticks, from /proc; None where /proc has no answer.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        with open(f"/proc/{int(pid)}/stat") as f:
            ticks = f.read().rsplit(")", 1)[1].split()[19]  # field 22, after the name
    except (OSError, IndexError, ValueError):
        return None
    return f"{boot}:{ticks}"


def _claim_alive(held: Mapping[str, Any]) -> bool | None:
    """Whether the process of a claim still runs; None when it runs on another host.

    A pid reused by another process does not count.
    """
    alive = _alive(held.get("host"), held.get("pid"))
    if alive and held.get("started") and _started(int(held["pid"])) != held["started"]:
        return False
    return alive


def _alive(host: str | None, pid: int | None) -> bool | None:
    """Whether the writer process still runs; None when it runs on another host."""
    if host != socket.gethostname() or pid is None:
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunInfo:
    """What a run holds, read from its attributes and the shapes of its datasets.

    ``status`` is ``"complete"``, ``"failed"``, ``"running"`` (its writer still runs, or runs
    on another host) or ``"incomplete"`` (its writer is gone: the run cannot be trusted).
    """

    name: str
    status: str
    attrs: dict[str, Any]
    n_params: int
    n_snapshots: int
    n_history: int
    history: tuple[str, ...] = ()
    probes: tuple[str, ...] = ()
    surfaces: tuple[str, ...] = ()
    paths: tuple[str, ...] = ()
    has_final: bool = False


class Store:
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

    # ------------------------------------------------------------------ claims
    def _check_claim(self, take_over: bool) -> None:
        held = self.claimed()
        if (
            held is None
            or held.get("pid") == os.getpid()
            and held.get("host") == socket.gethostname()
        ):
            return
        alive = _claim_alive(held)
        if alive is False or (alive is None and take_over):
            return
        where = "this host" if alive else f"host {held.get('host')}"
        hint = (
            "wait for it to finish, or stop it"
            if alive
            else "if that process is gone, take the file over (landscape sweep --take-over)"
        )
        raise FileBusyError(
            f"{self.path} is being written by {held.get('what', 'a writer')} "
            f"(process {held.get('pid')} on {where}, since "
            f"{held.get('since')}); {hint}"
        )

    def claimed(self) -> dict[str, Any] | None:
        """The claim on the file (:meth:`claim`), live or left by a killed writer, or None."""
        held = _read_attrs(self._file).get("writer")
        return held if isinstance(held, dict) else None

    def writer(self) -> dict[str, Any] | None:
        """The claim of a writer that still runs (or runs on another host), else None."""
        held = self.claimed()
        if held is None or _claim_alive(held) is False:
            return None
        return held

    def claim(self, what: str) -> str:
        """Claim the file for this process until :meth:`release` (or its death).

        Other processes that open the file to write are refused while the claim holds.

        Args:
            what: names the writer in their message (e.g. ``"landscape sweep quick"``).

        Returns:
            The claim's token, for :meth:`release`.

        Raises:
            FileBusyError: another live process is writing one of the file's runs.
        """
        self._writable()
        for run in self.runs():  # a run another live process is writing (landscape train)
            info = self.info(run)
            pid = info.attrs.get("writer_pid")
            if (
                info.status == "running"
                and pid != os.getpid()
                and _alive(info.attrs.get("writer_host"), pid) is not False
            ):
                raise FileBusyError(
                    f"{self.path}: run {run!r} is being written by process "
                    f"{pid} on {info.attrs.get('writer_host')}; wait for it "
                    "to finish, or stop it"
                )
        token = uuid.uuid4().hex
        _write_attrs(
            self._file,
            {
                "writer": {
                    "what": str(what),
                    "host": socket.gethostname(),
                    "pid": os.getpid(),
                    "started": _started(os.getpid()),
                    "since": _now(),
                    "token": token,
                }
            },
        )
        return token

    def release(self, token: str) -> None:
        """End this process's claim ``token``.

        A claim another writer has taken since is left alone.
        """
        self._writable()
        held = self.claimed()
        if held is not None and held.get("token") == token:
            h5 = self._file
            del h5.attrs["writer"]
            keys = set(json.loads(h5.attrs.get("json_attrs", "[]"))) - {"writer"}
            h5.attrs["json_attrs"] = json.dumps(sorted(keys))

    # ------------------------------------------------------------------ runs
    def runs(self) -> list[str]:
        """Names of the runs, in creation order."""
        return list(self._file["runs"])

    def _run(self, run: str) -> h5py.Group:
        runs = self._file["runs"]
        if run not in runs:
            known = ", ".join(self.runs()) or "none"
            raise StoreError(f"{self.path}: no run {run!r}; runs: {known}")
        return runs[run]

    def __contains__(self, run: str) -> bool:
        return run in self._file["runs"]

    def info(self, run: str) -> RunInfo:
        """What ``run`` holds, with its status as a reader should take it."""
        g = self._run(run)
        attrs = _read_attrs(g)
        if self._checked and "status" not in attrs:  # every run has one: lost to damage
            raise checksum.damaged(self.path, "its attributes are missing", g.name)
        status = attrs.get("status", "running")
        if (
            status == "running"
            and _alive(attrs.get("writer_host"), attrs.get("writer_pid")) is False
        ):
            status = "incomplete"
        names = lambda key: tuple(g[key]) if key in g else ()  # noqa: E731
        hist = g.get("history")
        return RunInfo(
            name=run,
            status=status,
            attrs=attrs,
            n_params=int(g["init"].shape[0]),
            n_snapshots=int(g["trajectory"].shape[0]) if "trajectory" in g else 0,
            n_history=int(hist["step"].shape[0]) if hist is not None and "step" in hist else 0,
            history=names("history"),
            probes=names("probes"),
            surfaces=names("surfaces"),
            paths=names("paths"),
            has_final="final" in g,
        )

    def create_run(
        self,
        run: str,
        *,
        names: Sequence[str],
        shapes: Sequence[Sequence[int]],
        init: np.ndarray,
        attrs: Mapping[str, Any] | None = None,
        replace: bool = False,
    ) -> str:
        """Start a run: its parameter layout, initial parameters and settings.

        The run gets ``status="running"``, the writer's host and pid and a fresh
        ``writer_token``, which is returned: a writer that adds to the run later checks with
        :meth:`check_writer` that the run is still its own. An existing run is an error unless
        ``replace=True``, except one whose writer is gone (``"incomplete"``) or that
        ``"failed"``: that one is redone. A run whose writer still runs on this host (another
        process) is never replaced.
        """
        self._writable()
        _check_name("run", run)
        h5 = self._file
        if run in h5["runs"]:
            info = self.info(run)
            pid = info.attrs.get("writer_pid")
            live = (
                info.status == "running"
                and pid != os.getpid()
                and _alive(info.attrs.get("writer_host"), pid) is True
            )
            if live or (info.status in ("complete", "running") and not replace):
                why = (
                    f"is being written by process {pid} on this host"
                    if live
                    else "is complete"
                    if info.status == "complete"
                    else "is being written by a process on another host "
                    f"({info.attrs.get('writer_host')})"
                )
                hint = (
                    "stop that process first" if live else "choose another run name or replace it"
                )
                raise StoreError(f"{self.path}: run {run!r} {why}; {hint}")
            self.delete_run(run)
        token = uuid.uuid4().hex
        init = np.asarray(init)
        shapes = [tuple(int(d) for d in s) for s in shapes]
        if (
            len(names) != len(shapes)
            or init.ndim != 1
            or init.shape[0] != sum(int(np.prod(s)) for s in shapes)
        ):
            raise ValueError(
                f"create_run: {len(names)} names, {len(shapes)} shapes and init of "
                f"shape {init.shape} do not agree"
            )
        g = h5["runs"].create_group(run)
        try:
            _write_attrs(
                g,
                {
                    "status": "running",
                    "created": _now(),
                    "writer_host": socket.gethostname(),
                    "writer_pid": os.getpid(),
                    "writer_token": token,
                    **(attrs or {}),
                },
            )
            p = g.create_group("params")
            checksum.create(p, "names", data=np.array(list(names), dtype=h5py.string_dtype()))
            sh = checksum.create(p, "shapes", shape=(len(shapes),), dtype=h5py.vlen_dtype(np.int64))
            for i, s in enumerate(shapes):
                sh[i] = np.array(s, dtype=np.int64)
            checksum.refresh(sh)
            checksum.create(g, "init", data=init)
        except BaseException:
            del h5["runs"][run]
            raise
        return token

    def check_writer(self, run: str, token: str) -> None:
        """Raise :class:`StoreError` unless ``run`` is still the one created with ``token``.

        :meth:`create_run` gave the token; another process may have replaced or deleted the
        run since.
        """
        runs = self._file["runs"]
        if run not in runs or runs[run].attrs.get("writer_token") != token:
            raise StoreError(
                f"{self.path}: run {run!r} was replaced or deleted by another "
                "writer; this one stops without touching it"
            )

    def delete_run(self, run: str) -> None:
        """Remove a run and everything it holds."""
        self._writable()
        self._run(run)
        del self._file["runs"][run]

    def set_attrs(self, run: str, attrs: Mapping[str, Any]) -> None:
        """Add or change attributes of a run (e.g. ``status``, ``final_metrics``)."""
        self._writable()
        if "status" in attrs and attrs["status"] not in STATUSES:
            raise ValueError(
                f"store: status must be one of {', '.join(STATUSES)}, got {attrs['status']!r}"
            )
        _write_attrs(self._run(run), attrs)

    def set_final(
        self,
        run: str,
        theta: np.ndarray,
        *,
        status: str | None = None,
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Store the final parameters; with ``status="complete"`` the run is done.

        The status is set in the same commit as the data, so a complete run always has them.
        """
        g = self._run(run)
        self._writable()
        theta = np.asarray(theta)
        if theta.shape != g["init"].shape:
            raise ValueError(
                f"set_final: expected {g['init'].shape[0]} parameters, got shape {theta.shape}"
            )
        if "final" in g:
            del g["final"]
        checksum.create(g, "final", data=theta.astype(g["init"].dtype, copy=False))
        self.set_attrs(
            run,
            {
                **(attrs or {}),
                **({"status": status} if status else {}),
                **({"finished": _now()} if status == "complete" else {}),
            },
        )

    def set_buffers(self, run: str, which: str, buffers: Mapping[str, np.ndarray]) -> None:
        """Store the model's buffers (e.g. BatchNorm statistics) at ``"init"`` or ``"final"``.

        Eval-mode probes then see the statistics the run ended with.
        """
        g = self._run(run)
        self._writable()
        if which not in ("init", "final"):
            raise ValueError(f"set_buffers: which must be 'init' or 'final', got {which!r}")
        base = g.require_group("buffers")
        if which in base:
            del base[which]
        b = base.create_group(which)
        for i, (name, value) in enumerate(buffers.items()):
            ds = checksum.create(b, str(i), data=np.asarray(value))
            ds.attrs["name"] = name

    def buffers(self, run: str, which: str = "final") -> dict[str, np.ndarray]:
        """The buffers stored by :meth:`set_buffers` (empty if none), by name."""
        g = self._run(run)
        if "buffers" not in g or which not in g["buffers"]:
            return {}
        b = g["buffers"][which]
        return {b[k].attrs["name"]: self._read(b[k]) for k in sorted(b, key=int)}

    # ------------------------------------------------------------------ parameters
    def layout(self, run: str) -> tuple[list[str], list[tuple[int, ...]]]:
        """Names and shapes of the parameters in the flat vectors of ``run``."""
        p = self._run(run)["params"]
        return (
            [n.decode() if isinstance(n, bytes) else n for n in self._read(p["names"])],
            [tuple(int(d) for d in s) for s in self._read(p["shapes"])],
        )

    def params(self, run: str, which: str | int = "final") -> np.ndarray:
        """A flat parameter vector: ``"init"``, ``"final"``, or the snapshot at step ``which``."""
        g = self._run(run)
        if isinstance(which, str):
            if which not in ("init", "final"):
                raise ValueError(f"params: which must be 'init', 'final' or a step, got {which!r}")
            if which not in g:
                raise StoreError(
                    f"{self.path}: run {run!r} has no final parameters (status "
                    f"{self.info(run).status})"
                )
            return self._read(g[which])
        steps = self.trajectory_steps(run)
        hits = np.flatnonzero(steps == int(which))
        if not len(hits):
            raise StoreError(
                f"{self.path}: run {run!r} has no snapshot at step {which}; "
                f"snapshots: {_summary(steps)}"
            )
        return self._read(g["trajectory"], int(hits[0]))

    def append_trajectory(self, run: str, steps: Sequence[int], rows: np.ndarray) -> None:
        """Append snapshots (one row a step) to the run's trajectory."""
        g = self._run(run)
        self._writable()
        rows = np.asarray(rows)
        step_array = np.asarray(steps, dtype=np.int64)
        n_params = g["init"].shape[0]
        if rows.ndim != 2 or rows.shape[1] != n_params or len(rows) != len(step_array):
            raise ValueError(
                f"append_trajectory: expected {len(step_array)} rows of {n_params} "
                f"parameters, got shape {rows.shape}"
            )
        if "trajectory" not in g:
            itemsize = g["init"].dtype.itemsize
            chunk_rows = max(1, min(64, (1 << 18) // max(1, n_params * itemsize)))
            checksum.create(
                g,
                "trajectory",
                shape=(0, n_params),
                maxshape=(None, n_params),
                dtype=g["init"].dtype,
                chunks=(chunk_rows, n_params),
            )
            checksum.create(
                g, "trajectory_step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(1024,)
            )
        _extend(g["trajectory"], rows)
        _extend(g["trajectory_step"], step_array)

    def trajectory_steps(self, run: str) -> np.ndarray:
        """The steps of the trajectory's snapshots, (T,) (empty without a trajectory)."""
        g = self._run(run)
        if "trajectory_step" not in g:
            return np.zeros(0, np.int64)
        return self._read(g["trajectory_step"])

    def trajectory(self, run: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, snapshots)``: (T,) and (T, P)."""
        g = self._run(run)
        if "trajectory" not in g:
            return np.zeros(0, np.int64), np.zeros((0, g["init"].shape[0]), g["init"].dtype)
        return self._read(g["trajectory_step"]), self._read(g["trajectory"])

    # ------------------------------------------------------------------ series
    def append_series(self, run: str, group: str, rows: Mapping[str, Sequence[float]]) -> None:
        """Append rows to a series of equal-length columns: ``"history"`` or ``"probes/<name>"``.

        ``"probes/<name>"`` is a probe recorded along training. Columns must all be given, the
        same ones each time.
        """
        g = self._run(run)
        self._writable()
        cols = {k: np.asarray(v) for k, v in rows.items()}
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(
                f"append_series: columns of {group} have different lengths {sorted(lengths)}"
            )
        for key in cols:
            _check_name("column", key)
        existing = set(g[group]) if group in g else set()
        if existing and existing != set(cols):
            raise ValueError(
                f"append_series: {group} has columns {sorted(existing)}, got {sorted(cols)}"
            )
        s = g.require_group(group)
        for key, values in cols.items():
            if key not in s:
                # integer columns only for the step: a column that starts with integers
                # (0) and goes on with floats must not truncate them
                dtype = np.int64 if key == "step" and values.dtype.kind in "iub" else np.float64
                checksum.create(
                    s,
                    key,
                    shape=(0,) + values.shape[1:],
                    maxshape=(None,) + values.shape[1:],
                    dtype=dtype,
                    chunks=True,
                )
            _extend(s[key], values)

    def series(self, run: str, group: str = "history") -> dict[str, np.ndarray]:
        """All columns of a series, e.g. ``store.series(run)["train_loss"]``."""
        g = self._run(run)
        if group not in g:
            return {}
        return {k: self._read(v) for k, v in g[group].items() if isinstance(v, h5py.Dataset)}

    def history(self, run: str) -> dict[str, np.ndarray]:
        """The run's history: ``step``, ``epoch``, ``train_loss``, ... as arrays."""
        return self.series(run, "history")

    # ------------------------------------------------------------------ probes, surfaces, paths
    def _parent(self, run: str | None, kind: str) -> h5py.Group:
        if run is None:
            return self._file["compare"]
        if kind not in RECORD_KINDS:
            raise ValueError(f"store: kind must be one of {', '.join(RECORD_KINDS)}, got {kind!r}")
        return self._run(run)

    def write_record(
        self,
        run: str | None,
        kind: str,
        name: str,
        *,
        arrays: Mapping[str, Any],
        attrs: Mapping[str, Any] | None = None,
        replace: bool = True,
        dims: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        """Write a result: ``/runs/<run>/<kind>/<name>/``, or ``/compare/<name>/`` if no ``run``.

        ``kind`` is one of probes, surfaces, paths. ``dims`` names, for an array, the 1-D
        arrays of the record that label its axes (e.g. ``{"loss": ("x", "y")}``): those become
        HDF5 dimension scales attached to its axes, so that generic HDF5 tools show the
        coordinates.
        """
        parent = self._parent(run, kind)
        self._writable()
        _check_name(kind, name)
        base = parent if run is None else parent.require_group(kind)
        for key, axes in (dims or {}).items():
            shape = np.shape(arrays[key]) if key in arrays else None
            scales = [np.shape(arrays[a]) if a in arrays else None for a in axes]
            if (
                shape is None
                or len(axes) != len(shape)
                or any(sc is None or sc != (n,) for sc, n in zip(scales, shape, strict=False))
            ):
                raise ValueError(
                    f"store: dims[{key!r}] must name one 1-D array of the record "
                    f"per axis of {key!r}, of matching lengths; got {tuple(axes)} "
                    f"for shape {shape}"
                )
        if name in base:
            if not replace:
                raise StoreError(f"{self.path}: {base.name}/{name} exists")
            del base[name]
        g = base.create_group(name)
        for key, value in arrays.items():
            checksum.create(g, _check_name("array", key), data=np.asarray(value))
        for key, axes in (dims or {}).items():
            for axis, scale in enumerate(axes):
                if not g[scale].is_scale:
                    g[scale].make_scale(scale)
                g[key].dims[axis].attach_scale(g[scale])
        _write_attrs(g, attrs or {})

    def update_record(
        self,
        run: str | None,
        kind: str,
        name: str,
        *,
        points: Sequence[tuple[int, ...]],
        arrays: Mapping[str, Sequence[Any]],
        attrs: Mapping[str, Any] | None = None,
    ) -> None:
        """Fill entries of the arrays of a written record, in place.

        ``arrays[key][i]`` goes to ``key[points[i]]`` (e.g. the values of a surface at grid
        points as they are computed), and ``attrs`` are updated. Nothing is kept before
        :meth:`commit`.
        """
        self._writable()
        g = self._record_group(run, kind, name)
        for key, values in arrays.items():
            if key not in g or not isinstance(g[key], h5py.Dataset):
                raise StoreError(f"{self.path}: {g.name} has no array {key!r}")
            if len(values) != len(points):
                raise ValueError(
                    f"store: {len(points)} points but {len(values)} values for {key!r}"
                )
            ds = g[key]
            for point, value in zip(points, values, strict=True):
                if len(point) != ds.ndim or any(
                    not 0 <= i < n for i, n in zip(point, ds.shape, strict=True)
                ):
                    raise ValueError(
                        f"store: point {tuple(point)} is outside {key!r} of shape {ds.shape}"
                    )
                ds[tuple(int(i) for i in point)] = value
            checksum.refresh(ds)
        if attrs:
            _write_attrs(g, attrs)

    def _record_group(self, run: str | None, kind: str, name: str) -> h5py.Group:
        parent = self._parent(run, kind)
        base = parent if run is None else parent.get(kind, {})
        if name not in base:
            where = "/compare" if run is None else f"run {run!r}"
            known = ", ".join(base) or "none"
            raise StoreError(
                f"{self.path}: {where} has no {kind[:-1] if run else 'result'} "
                f"{name!r}; it has: {known}"
            )
        return base[name]

    def same_settings(
        self,
        run: str | None,
        kind: str,
        name: str,
        options: Mapping[str, Any],
        *,
        replace: bool = False,
    ) -> bool:
        """Whether the result ``name`` is held with these settings (its ``settings`` attr).

        The one rule of stored results (as for surfaces): a result under a name the file does
        not hold, or any with ``replace``, is to be computed (False); one held with the same
        settings is kept as it is (True); one held with other settings (or none recorded,
        written before settings were) is refused.

        Args:
            run: the run, or None for ``/compare``.
            kind: probes, surfaces or paths.
            name: the result's name.
            options: the settings the result would be made with (JSON values).
            replace: compute it again whatever the file holds.

        Returns:
            True when the file holds the result with the same settings.

        Raises:
            StoreError: a result of that name with other settings, and no ``replace`` (the
                message names the file, the result and the first setting that differs).
        """
        if replace or not self.has_record(run, kind, name):
            return False
        where = f"compare/{name}" if run is None else f"runs/{run}/{kind}/{name}"
        held = _read_attrs(self._record_group(run, kind, name)).get("settings")
        asked = json.loads(json.dumps(dict(options), allow_nan=True))
        if held == asked:
            return True
        if not isinstance(held, dict):
            differs = "its settings were not recorded"
        else:
            key = next(k for k in sorted({*held, *asked}) if held.get(k) != asked.get(k))
            differs = f"{key} is {held.get(key)!r} there, {asked.get(key)!r} now"
        raise StoreError(
            f"{self.path}: {where} exists with other settings ({differs}); pass replace=True "
            "(CLI: --replace) to overwrite it, or choose another name"
        )

    def has_record(self, run: str | None, kind: str, name: str) -> bool:
        """Whether a result of that name exists."""
        parent = self._parent(run, kind)
        base = parent if run is None else parent.get(kind, {})
        return name in base

    def record(self, run: str | None, kind: str, name: str) -> Record:
        """Read a result written by :meth:`write_record` (or a series under probes)."""
        g = self._record_group(run, kind, name)
        return Record(
            name,
            {k: self._read(v) for k, v in g.items() if isinstance(v, h5py.Dataset)},
            _read_attrs(g),
        )

    def compares(self) -> list[str]:
        """Names of the results under ``/compare``."""
        return list(self._file["compare"])


# The HDF5 library's own words about a damaged block become one line naming the file.
for _name, _member in list(vars(Store).items()):
    if isinstance(_member, property) and _member.fget and not _name.startswith("_"):
        setattr(Store, _name, property(guard(_member.fget), doc=_member.__doc__))
    elif callable(_member) and (not _name.startswith("_") or _name in ("__init__", "__contains__")):
        setattr(Store, _name, guard(_member))


def _extend(ds: h5py.Dataset, values: np.ndarray) -> None:
    values = np.asarray(values)
    if not np.can_cast(values.dtype, ds.dtype, "same_kind"):
        raise ValueError(
            f"store: {ds.name} holds {ds.dtype}, cannot append {values.dtype} "
            "values without losing them"
        )
    if values.shape[1:] != ds.shape[1:]:
        raise ValueError(
            f"store: {ds.name} holds rows of shape {ds.shape[1:]}, got {values.shape[1:]}"
        )
    n = ds.shape[0]
    ds.resize(n + len(values), axis=0)
    ds[n:] = values


def _summary(steps: np.ndarray) -> str:
    if not len(steps):
        return "none"
    return f"{len(steps)} from step {steps[0]} to {steps[-1]}"


def delete_record(store: Store, run: str | None, kind: str, name: str) -> None:
    """Remove the result ``name`` (``runs/<run>/<kind>/<name>``, or ``/compare/<name>``).

    Part of the store's session: nothing is kept before :meth:`Store.commit`.

    Raises:
        StoreError: the file holds no such result.
    """
    store._writable()
    group = store._record_group(run, kind, name)
    del group.parent[name]


def swap_run(store: Store, new: str, run: str) -> None:
    """Put the run ``new`` in the place of ``run`` (removed if held) under the name ``run``.

    In one session, so in one commit: a process killed at any point leaves the file with the
    old ``run`` and ``new`` beside it, or with ``new`` as ``run``, never without both.

    Raises:
        StoreError: the file holds no run ``new``.
    """
    store._writable()
    _check_name("run", run)
    store._run(new)
    runs = store._file["runs"]
    if run in runs:
        del runs[run]
    runs.move(new, run)
