"""One ``to_record`` / ``from_record`` for result dataclasses whose fields are plain numbers,
strings, flags and NumPy arrays.

A frozen dataclass that inherits :class:`RecordMixin` and names its probe in ``_probe`` is
written by :meth:`landscape.store.Store.write_record` as its arrays (fields annotated
``np.ndarray``, left out when None) and attributes (every other field, plus ``probe``), and read
back with each attribute cast to its annotation (``float``, ``int``, ``str``, ``bool``, each
optionally ``| None``). Results with richer fields (tuples, nested results) write their own.

Examples:
    >>> @dataclass(frozen=True, eq=False)
    ... class Thing(RecordMixin):
    ...     _probe = "thing"
    ...     value: float
    ...     samples: np.ndarray
    >>> Thing.from_record(Thing(1.0, np.zeros(3)).to_record()).value
    1.0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

__all__ = ["Record", "RecordMixin", "check_record"]

@dataclasses.dataclass(frozen=True)
class Record:
    """A probe, surface or path result as stored: its arrays and its attributes."""

    name: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]


def check_record(record: Any, probe: str, where: str) -> tuple[Mapping, Mapping]:
    """``(arrays, attrs)`` of a stored probe result (a :class:`landscape.store.Record` or an
    ``(arrays, attrs)`` pair), after checking that it holds ``probe``; for ``from_record``."""
    arrays, attrs = (record if isinstance(record, tuple)
                     else (getattr(record, "arrays", None), getattr(record, "attrs", None)))
    if not isinstance(arrays, Mapping) or not isinstance(attrs, Mapping):
        raise TypeError(f"{where}: expected a landscape.store.Record or an (arrays, attrs) pair, "
                        f"got {type(record).__name__}")
    if attrs.get("probe") != probe:
        name = getattr(record, "name", None)
        which = f"record {name!r}" if name is not None else "the record"
        raise ValueError(f"{where}: {which} holds probe {attrs.get('probe')!r}, not {probe!r}")
    return arrays, attrs


_CAST = {"float": float, "int": int, "str": str, "bool": bool}


def _kind(annotation: Any) -> tuple[str, bool]:
    """``(base type name, optional)`` of a field's annotation (a string, as with
    ``from __future__ import annotations``)."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    parts = [p.strip() for p in str(text).split("|")]
    optional = "None" in parts
    base = next((p for p in parts if p != "None"), "")
    return base, optional


class RecordMixin:
    """``to_record`` and ``from_record`` from the dataclass fields (module docstring)."""

    _probe: ClassVar[str] = ""

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, attrs)`` for :meth:`landscape.store.Store.write_record`."""
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {"probe": self._probe}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if _kind(f.type)[0] == "np.ndarray":
                if value is not None:
                    arrays[f.name] = np.asarray(value)
            else:
                attrs[f.name] = value
        return arrays, attrs

    @classmethod
    def from_record(cls, record: Any) -> Any:
        """The result back from a :class:`landscape.store.Record` (or ``(arrays, attrs)``)."""
        where = f"{cls.__name__}.from_record"
        arrays, attrs = check_record(record, cls._probe, where)
        kw: dict[str, Any] = {}
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            base, optional = _kind(f.type)
            if base == "np.ndarray":
                if f.name in arrays:
                    kw[f.name] = np.asarray(arrays[f.name])
                elif not optional:
                    raise ValueError(f"{where}: the record lacks the array {f.name!r}")
                continue
            if f.name not in attrs:
                raise ValueError(f"{where}: the record lacks {f.name!r}")
            value = attrs[f.name]
            if value is None:
                if not optional:
                    raise ValueError(f"{where}: {f.name!r} is None in the record")
                kw[f.name] = None
            elif base in _CAST:
                kw[f.name] = _CAST[base](value)
            else:
                kw[f.name] = value
        return cls(**kw)
