"""Claims on a landscape file, and whether the process that wrote something still runs.

A writer that works on the file across many write sessions (a sweep) claims it:
:meth:`~landscape.store.file.Store.claim` records the writer (host, pid, what) at the file's
root, and every other process that opens the file to write is refused with
:class:`~landscape.store.journal.FileBusyError` while that process lives; a claim whose
process is gone is ignored (it was killed), and :meth:`~landscape.store.file.Store.release`
ends it. A run records its writer too (``writer_host``, ``writer_pid``, ``writer_token``): a
reader takes a run whose writer is gone as ``"incomplete"``, and a writer checks that the run
is still its own.

A process is alive when it runs on this host (a pid that another process took since does not
count); on another host it cannot be checked (None).
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from landscape.store.attrs import _now, _read_attrs, _write_attrs
from landscape.store.errors import StoreError
from landscape.store.journal import FileBusyError

if TYPE_CHECKING:
    import h5py

    from landscape.store.journal import JournaledFile
    from landscape.store.runs import RunInfo

__all__: list[str] = []


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


class _Claims:
    """The claims of a :class:`~landscape.store.file.Store` and its check of a run's writer.

    The first of the Store's parts (claims, runs, arrays, records): it declares, for the type
    checker, what they use of the Store and of the runs.
    """

    if TYPE_CHECKING:  # the Store's, for all its parts
        path: str
        """The landscape file."""
        _checked: bool

        @property
        def _file(self) -> h5py.File: ...
        def _writable(self) -> JournaledFile: ...
        def _read(self, ds: h5py.Dataset, selection: Any = ()) -> Any: ...

        # the runs' (landscape.store.runs)
        def runs(self) -> list[str]: ...
        def info(self, run: str) -> RunInfo: ...

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
