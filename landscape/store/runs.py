"""The runs of a landscape file: creating, describing, deleting and swapping them.

A run is created with ``status="running"`` and its writer's host, pid and token
(:mod:`landscape.store.claims`); it becomes ``"complete"`` in the same commit as its last
data. :class:`RunInfo` says what a run holds and its status as a reader should take it.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from landscape.store import checksum, claims
from landscape.store.attrs import _check_name, _now, _read_attrs, _write_attrs
from landscape.store.claims import _Claims
from landscape.store.errors import StoreError

if TYPE_CHECKING:
    from landscape.store.file import Store

__all__ = ["RunInfo", "swap_run"]

STATUSES = ("running", "complete", "failed")


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


class _Runs(_Claims):
    """The runs of a :class:`~landscape.store.file.Store`; its arrays and results build on them.

    A run records its writer, whose liveness is :mod:`landscape.store.claims`'s, as are the
    claims on the file.
    """

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
            and claims._alive(attrs.get("writer_host"), attrs.get("writer_pid")) is False
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
                and claims._alive(info.attrs.get("writer_host"), pid) is True
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
