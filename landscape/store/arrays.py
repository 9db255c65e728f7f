"""The arrays of a run: its parameter layout and vectors, buffers, trajectory and series.

``init`` and ``final`` are flat parameter vectors (P,) that ``params/names`` and
``params/shapes`` restore into named tensors; the trajectory (T, P) and the series (a run's
``history``, a probe recorded along training) are chunked and grow by appending rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from landscape.store import checksum
from landscape.store.attrs import _check_name, _now
from landscape.store.errors import StoreError
from landscape.store.runs import _Runs

__all__: list[str] = []


class _RunArrays(_Runs):
    """The arrays of the runs of a :class:`~landscape.store.file.Store`."""

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
