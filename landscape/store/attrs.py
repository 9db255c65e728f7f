"""Attributes of the file's objects: plain values, or JSON strings that the object lists.

An object's ``json_attrs`` attribute names which of its attributes are JSON strings (lists,
dicts, None); numbers, strings and bools are plain HDF5 attributes; nothing is pickled. JSON
that does not parse is a :class:`~landscape.store.errors.StoreError` naming the file, the
object and the attribute. With them, the rule for the names of runs, results and arrays, and
the time and package versions that the store writes into attributes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from typing import Any

import h5py
import numpy as np

from landscape.store.errors import StoreError

__all__: list[str] = []


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
