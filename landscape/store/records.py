"""Results in a landscape file: probes, surfaces and paths of a run, or ``/compare``.

A result is a group of arrays with attributes (its options, cost and ``settings``), under
``/runs/<run>/<kind>/<name>/`` or ``/compare/<name>/``; read back it is a
:class:`~landscape.engine.records.Record`. :meth:`~landscape.store.file.Store.same_settings`
is the one rule by which a result held in the file is kept, computed again, or refused.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from landscape.engine.records import Record
from landscape.store import checksum
from landscape.store.attrs import _check_name, _read_attrs, _write_attrs
from landscape.store.errors import StoreError
from landscape.store.runs import _Runs

if TYPE_CHECKING:
    from landscape.store.file import Store

__all__ = ["delete_record"]

RECORD_KINDS = ("probes", "surfaces", "paths")


class _Records(_Runs):
    """The results of a :class:`~landscape.store.file.Store`."""

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


def delete_record(store: Store, run: str | None, kind: str, name: str) -> None:
    """Remove the result ``name`` (``runs/<run>/<kind>/<name>``, or ``/compare/<name>``).

    Part of the store's session: nothing is kept before :meth:`Store.commit`.

    Raises:
        StoreError: the file holds no such result.
    """
    store._writable()
    group = store._record_group(run, kind, name)
    del group.parent[name]
