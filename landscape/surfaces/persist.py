"""Persisting a surface as it is computed: ``runs/<run>/surfaces/<name>`` of a file.

The persisting part of :func:`landscape.surfaces.grid.surface`, which knows nothing of how the
points are computed: ``_SurfaceFile`` writes the empty surface or resumes the one the file
holds (checked to be the same grid), keeps the points done and writes them every
``flush_seconds`` in one short session, each committed whole, so that a killed process loses
at most the points since the last one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from landscape.store.file import Store
from landscape.surfaces.result import Surface, same_grid

if TYPE_CHECKING:
    from landscape.surfaces.compute import _Row

__all__: list[str] = []


class _SurfaceFile:
    """Where a surface goes as it is computed: ``runs/<run>/surfaces/<name>`` of a file.

    :meth:`open` writes the empty surface or resumes the one held; :meth:`add` keeps the points
    done and writes them every ``flush_seconds`` in one short session (readers get in
    between); :meth:`close` writes the rest. ``started``: when this call began (the stored
    time is that of the earlier calls plus this one's).
    """

    def __init__(
        self, path: Any, run: str, name: str, flush_seconds: float, started: float
    ) -> None:
        self.path, self.run, self.name = path, run, name
        self.flush_seconds, self.started = flush_seconds, started
        self.previous = 0.0  # seconds the stored surface took before this call
        self.pending: list[_Row] = []
        self.last = time.perf_counter()

    def open(self, fresh: Surface, replace: bool, extras: Mapping[str, Any] | None) -> Surface:
        """The surface to fill.

        Returns:
            ``fresh``, written empty (with ``extras``), or the one the file holds (checked to
            be the same grid; its time counts on).
        """
        with Store(self.path, "a", timeout=60) as s:
            if s.has_record(self.run, "surfaces", self.name) and not replace:
                held = Surface.from_record(s.record(self.run, "surfaces", self.name))
                if not same_grid(held, fresh):
                    raise ValueError(
                        f"surface: {self.path}: run {self.run!r} already holds a surface "
                        f"{self.name!r} made with other coordinates, directions or options; "
                        "pass replace=True (CLI: --replace) to start over, or another name"
                    )
                self.previous, self.last = held.seconds, time.perf_counter()
                return held
            arrays, attrs, dims = fresh.to_record()
            arrays.update(extras or {})
            s.write_record(self.run, "surfaces", self.name, arrays=arrays, attrs=attrs, dims=dims)
        self.previous, self.last = 0.0, time.perf_counter()
        return fresh

    def add(self, rows: list[_Row], result: Surface) -> None:
        """Keep ``rows`` (points of ``result`` just done); write what is kept if it is time."""
        self.pending.extend(rows)
        if time.perf_counter() - self.last >= self.flush_seconds:
            self._flush(result, self.previous + time.perf_counter() - self.started)
            self.pending, self.last = [], time.perf_counter()

    def close(self, result: Surface, seconds: float) -> None:
        """Write what is kept; ``seconds``: this call's time."""
        if self.pending:
            self._flush(result, self.previous + seconds)
            self.pending = []

    def _flush(self, result: Surface, seconds: float) -> None:
        points = [pt for pt, _ in self.pending]
        arrays: dict[str, list] = {"done": [True] * len(points)}
        for m in result.grids:
            arrays[m] = [row.get(m, np.nan) for _, row in self.pending]
        with Store(self.path, "a", timeout=60) as s:
            s.update_record(
                self.run,
                "surfaces",
                self.name,
                points=points,
                arrays=arrays,
                attrs={"n_points": int(result.done.sum()), "seconds": float(seconds)},
            )
