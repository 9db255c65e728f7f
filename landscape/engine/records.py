"""The record protocol of every result: ``to_record`` / ``from_record`` from the fields.

One mechanism for all, from the dataclass fields (NumPy and the standard library only: reading needs
no torch).

A frozen dataclass that inherits :class:`RecordMixin` and names its probe in ``_probe`` is
written by :meth:`landscape.store.Store.write_record` as its arrays and its attributes (plain
values or JSON), and read back with every field cast to its annotation. How a field is stored
follows from its annotation (a string, as under ``from __future__ import annotations``):

==================================  ===========================================================
annotation                          stored as
==================================  ===========================================================
``np.ndarray`` (``| None``)         the array ``<name>`` (left out when None)
``float``, ``int``, ``str``,        the attribute ``<name>``, cast back to the type
``bool`` (``| None``)
``Cost``                            the attribute ``<name>``: a JSON object of the counters
``tuple[...]``, ``list[...]``       a JSON list; tuples come back as (nested) tuples, elements
                                    that are dataclasses (``tuple[Fit | None, ...]``,
                                    ``tuple[Cost, ...]``) as JSON objects
``dict[...]``, ``dict``, ``Any``    a JSON object (plain values)
``dict[str, np.ndarray]``           the arrays ``<name>.<i>``; the keys, in order, as the
                                    attribute ``<name>``
``tuple[np.ndarray, ...]``          1-D arrays of different lengths: their concatenation
                                    ``<name>`` and their lengths ``<name>.counts``
``dict[str, Result]``               nested results (a :class:`RecordMixin` class): the arrays
                                    of the i-th as ``<name>.<i>.<array>``, the attributes of
                                    all as the attribute ``<name>`` (key -> attributes)
==================================  ===========================================================

Class-level settings (all optional): ``_probe`` (the ``probe`` attribute; ``"{field}"`` in it is
filled from the fields, e.g. ``"interpolation.{kind}"``), ``_accepts`` (the probes a class reads,
default ``(_probe,)``; a record of a subclass's probe reads as that subclass), ``_derived``
(properties written as attributes for readers of the file and recomputed on reading),
``_transient`` (fields not stored, read back as their default or None), ``_cost_aliases``
(how this class's records written before :class:`Cost` named their counters) and
``_upgrade`` (turns a record of an older layout into the current one).

**Records written before results had a** ``cost``: their counters are flat attributes
(``n_hvp``, ``passes``, ``seconds``, ``grad_evals``, ``loss_evals``, ``n_evals``);
:func:`legacy_cost` maps them into the :class:`Cost` in one place (:data:`LEGACY_COST`).

Examples:
    >>> @dataclass(frozen=True, eq=False)
    ... class Thing(RecordMixin):
    ...     _probe = "thing"
    ...     value: float
    ...     samples: np.ndarray
    ...     cost: Cost = Cost()
    >>> Thing.from_record(Thing(1.0, np.zeros(3)).to_record()).value
    1.0
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple

import numpy as np

from landscape.engine.cost import Cost

__all__ = ["LEGACY_COST", "Cost", "Record", "RecordMixin", "check_record", "legacy_cost"]


@dataclasses.dataclass(frozen=True)
class Record:
    """A probe, surface or path result as stored: its arrays and its attributes."""

    name: str
    arrays: dict[str, np.ndarray]
    attrs: dict[str, Any]


def _unpack(record: Any, where: str) -> tuple[Mapping, Mapping]:
    arrays, attrs = (
        record
        if isinstance(record, tuple)
        else (getattr(record, "arrays", None), getattr(record, "attrs", None))
    )
    if not isinstance(arrays, Mapping) or not isinstance(attrs, Mapping):
        raise TypeError(
            f"{where}: expected a landscape.store.Record or an (arrays, attrs) pair, "
            f"got {type(record).__name__}"
        )
    return arrays, attrs


def _refuse(record: Any, attrs: Mapping, probe: str, where: str) -> ValueError:
    name = getattr(record, "name", None)
    which = f"record {name!r}" if name is not None else "the record"
    return ValueError(f"{where}: {which} holds probe {attrs.get('probe')!r}, not {probe!r}")


def check_record(record: Any, probe: str, where: str) -> tuple[Mapping, Mapping]:
    """``(arrays, attrs)`` of a stored result, after checking that it holds ``probe``.

    The stored result is a :class:`landscape.store.Record` or an ``(arrays, attrs)`` pair.

    Args:
        record: the record.
        probe: the ``probe`` attribute it must hold.
        where: the caller, for the messages (e.g. ``"Surface.from_record"``).

    Returns:
        ``(arrays, attrs)``.
    """
    arrays, attrs = _unpack(record, where)
    if attrs.get("probe") != probe:
        raise _refuse(record, attrs, probe, where)
    return arrays, attrs


# ------------------------------------------------------------------------- legacy counters
LEGACY_COST = {
    "n_hvp": "hvp",
    "n_products": "hvp",
    "passes": "passes",
    "seconds": "seconds",
    "loss_evals": "loss_evals",
    "grad_evals": "grad_evals",
    "n_evals": "loss_evals",
}
"""Flat counter attributes of records written before :class:`Cost` -> its field. ``n_hvp`` of
a GGN or Fisher result (``curvature`` ``"ggn"`` or ``"fisher"``) goes to ``ggn_vp``."""


def legacy_cost(
    attrs: Mapping[str, Any],
    aliases: Mapping[str, str] | None = None,
    exclude: tuple[str, ...] = (),
) -> Cost:
    """The :class:`Cost` of a record written before results had one, from its flat counters.

    Args:
        attrs: the record's attributes.
        aliases: a class's own names of old counters (they override :data:`LEGACY_COST`).
        exclude: attributes that are fields of the result, not counters.

    Returns:
        The :class:`Cost` (zero for counters the record does not have).
    """
    counts: dict[str, Any] = {}
    for old, new in {**LEGACY_COST, **(aliases or {})}.items():
        value = attrs.get(old)
        if old in exclude or value is None or isinstance(value, (dict, list, str)):
            continue
        if old == "n_hvp" and attrs.get("curvature") in ("ggn", "fisher"):
            new = "ggn_vp"
        counts[new] = counts.get(new, 0) + value
    return Cost.of(counts)


# ------------------------------------------------------------------------- field plans
_CAST = {"float": float, "int": int, "str": str, "bool": bool}
_MISSING = dataclasses.MISSING


class _Field(NamedTuple):
    name: str
    kind: str  # array, scalar, cost, sequence, mapping, arrays, ragged, results, skip
    base: str  # the annotation without None
    optional: bool
    element: Any  # the dataclass of a sequence's elements or of nested results
    default: Any  # _MISSING, or a zero-argument function giving the default


def _split(text: str, sep: str) -> list[str]:
    """``text`` split at ``sep`` outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if ch == sep and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    return [*parts, text[start:].strip()]


def _strip_none(text: str) -> tuple[str, bool]:
    parts = _split(str(text), "|")
    rest = [p for p in parts if p != "None"]
    return " | ".join(rest), len(rest) < len(parts)


def _args(base: str) -> tuple[str, list[str]]:
    if "[" not in base:
        return base, []
    head, inner = base.split("[", 1)
    return head.strip(), _split(inner[:-1], ",")


def _resolve(cls: type, name: str) -> Any:
    """The class called ``name`` in the modules of ``cls`` and its bases, or None."""
    name, _ = _strip_none(name)
    if name == "Cost":
        return Cost
    for klass in cls.__mro__:
        found = vars(sys.modules.get(klass.__module__, object)).get(name)
        if isinstance(found, type):
            return found
    return None


def _kind(cls: type, f: dataclasses.Field) -> _Field:
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    base, optional = _strip_none(annotation)
    head, args = _args(base)
    element = None
    if f.name in getattr(cls, "_transient", ()):
        kind = "skip"
    elif base == "np.ndarray":
        kind = "array"
    elif base == "Cost":
        kind = "cost"
    elif base in _CAST:
        kind = "scalar"
    elif head in ("dict", "Mapping") and len(args) == 2 and args[1] == "np.ndarray":
        kind = "arrays"
    elif head in ("tuple", "list") and args and args[0] == "np.ndarray":
        kind = "ragged"
    elif (
        head in ("dict", "Mapping")
        and len(args) == 2
        and isinstance(element := _resolve(cls, args[1]), type)
        and issubclass(element, RecordMixin)
    ):
        kind = "results"
    elif head in ("tuple", "list"):
        kind = "sequence"
        element = _resolve(cls, args[0]) if args else None
        element = element if dataclasses.is_dataclass(element) else None
    else:
        kind, element = "mapping", None
    default = (
        _MISSING
        if f.default is _MISSING and f.default_factory is _MISSING
        else (lambda f=f: f.default)
        if f.default is not _MISSING
        else f.default_factory
    )
    return _Field(f.name, kind, head if kind == "sequence" else base, optional, element, default)


_PLANS: dict[type, list[_Field]] = {}


def _plan(cls: type) -> list[_Field]:
    if cls not in _PLANS:
        _PLANS[cls] = [_kind(cls, f) for f in dataclasses.fields(cls)]
    return _PLANS[cls]


def _plain(value: Any) -> Any:
    """``value`` as JSON-ready Python.

    Tuples as lists, NumPy as Python, dataclasses as objects.
    """
    if isinstance(value, Cost):
        return value.as_dict()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


# ------------------------------------------------------------------------- the mixin
class RecordMixin:
    """``to_record`` and ``from_record`` from the dataclass fields (module docstring)."""

    _probe: ClassVar[str] = ""
    _accepts: ClassVar[tuple[str, ...]] = ()
    _derived: ClassVar[tuple[str, ...]] = ()
    _transient: ClassVar[tuple[str, ...]] = ()
    _cost_aliases: ClassVar[Mapping[str, str]] = {}

    def to_record(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """``(arrays, attrs)`` for :meth:`landscape.store.Store.write_record`."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        probe = self._probe.format_map(values) if "{" in self._probe else self._probe
        arrays: dict[str, np.ndarray] = {}
        attrs: dict[str, Any] = {"probe": probe}
        for f in _plan(type(self)):
            value = values[f.name]
            if f.kind == "skip":
                continue
            if f.kind == "array":
                if value is not None:
                    arrays[f.name] = np.asarray(value)
            elif f.kind == "arrays":
                attrs[f.name] = None if value is None else [str(k) for k in value]
                for i, v in enumerate((value or {}).values()):
                    arrays[f"{f.name}.{i}"] = np.asarray(v)
            elif f.kind == "ragged":
                if value is not None:
                    parts = [np.asarray(v).reshape(-1) for v in value]
                    arrays[f.name] = np.concatenate(parts) if parts else np.zeros(0)
                    arrays[f"{f.name}.counts"] = np.array([len(p) for p in parts], np.int64)
            elif f.kind == "results":
                attrs[f.name] = None if value is None else {}
                for i, (key, result) in enumerate((value or {}).items()):
                    a, at = result.to_record()
                    arrays.update({f"{f.name}.{i}.{k}": v for k, v in a.items()})
                    attrs[f.name][str(key)] = at
            else:
                attrs[f.name] = _plain(value)
        for name in self._derived:
            attrs[name] = _plain(getattr(self, name))
        return arrays, attrs

    @classmethod
    def _probes(cls) -> tuple[str, ...]:
        return cls._accepts or (cls._probe,)

    @classmethod
    def _reader(cls, probe: Any) -> type[RecordMixin] | None:
        """The class (this one or a subclass) that reads a record of ``probe``."""
        if probe in cls._probes():
            return cls
        for sub in cls.__subclasses__():
            if (found := sub._reader(probe)) is not None:
                return found
        return None

    @classmethod
    def _upgrade(
        cls, arrays: dict[str, Any], attrs: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """A record of an older layout in the current one.

        Override where the layout changed; the counters are :func:`legacy_cost`'s.
        """
        return arrays, attrs

    @classmethod
    def from_record(cls, record: Any) -> Any:
        """The result back from a :class:`landscape.store.Record` (or ``(arrays, attrs)``).

        Raises:
            TypeError: something that is no record.
            ValueError: a record of another probe, or one that lacks a field.
        """
        where = f"{cls.__name__}.from_record"
        arrays, attrs = _unpack(record, where)
        target = cls._reader(attrs.get("probe"))
        if target is None:
            raise _refuse(record, attrs, cls._probes()[0], where)
        arrays, attrs = target._upgrade(dict(arrays), dict(attrs))
        names = tuple(f.name for f in _plan(target))
        kw = {f.name: _read(f, arrays, attrs, where, target, names) for f in _plan(target)}
        return target(**kw)


def _read(
    f: _Field, arrays: Mapping, attrs: Mapping, where: str, cls: Any, names: tuple[str, ...]
) -> Any:
    """The value of field ``f`` from a record."""
    if f.kind == "skip":
        return None if f.default is _MISSING else f.default()
    if f.kind == "cost":
        if attrs.get(f.name) is not None:
            return Cost.of(attrs[f.name])
        return legacy_cost(attrs, cls._cost_aliases, exclude=names)
    key = f"{f.name}.counts" if f.kind == "ragged" else f.name
    stored = arrays if f.kind in ("array", "ragged") else attrs
    if key not in stored:
        if f.optional and f.kind in ("array", "ragged"):
            return None
        if f.default is not _MISSING:
            return f.default()
        what = "the array " if f.kind in ("array", "ragged") else ""
        raise ValueError(f"{where}: the record lacks {what}{f.name!r}")
    value = stored[key]
    if value is None:
        if not f.optional:
            raise ValueError(f"{where}: {f.name!r} is None in the record")
        return None
    if f.kind == "array":
        return np.asarray(value)
    if f.kind == "scalar":
        return _CAST[f.base](value)
    if f.kind == "ragged":
        flat = np.asarray(arrays[f.name])
        return tuple(np.split(flat, np.cumsum(np.asarray(value))[:-1])) if len(value) else ()
    if f.kind == "arrays":
        return {k: np.asarray(arrays[f"{f.name}.{i}"]) for i, k in enumerate(value)}
    if f.kind == "results":
        out = {}
        for i, (k, at) in enumerate(dict(value).items()):
            prefix = f"{f.name}.{i}."
            mine = {n[len(prefix) :]: v for n, v in arrays.items() if n.startswith(prefix)}
            out[k] = f.element.from_record((mine, at))
        return out
    if f.kind == "sequence":
        if f.element is not None:
            make = Cost.of if f.element is Cost else (lambda d: f.element(**d))
            items = tuple(None if v is None else make(v) for v in value)
        else:
            items = _tuples(list(value))
        return list(items) if f.base == "list" else items
    return dict(value) if isinstance(value, Mapping) else value
