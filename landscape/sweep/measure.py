"""The measurement tables of a sweep spec, checked: ``[probes]``, ``[along]``,
``[surfaces.NAME]`` and ``[paths]`` (the format: :mod:`landscape.sweep`), and the argument
checks the whole spec shares."""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from typing import Any

__all__ = ["ALONG", "ALONG_OPTIONS", "PATH_OPTIONS", "PROBE_FUNCTIONS", "SHARPNESS",
           "SURFACE_OPTIONS", "along_callback"]

# [probes] kinds -> (the module under probes, the function, the default stored name)
PROBE_FUNCTIONS = {
    "hessian": ("curvature.hessian", "eigenvalues", "hessian_eigenvalues"),
    "trace": ("curvature.hessian", "trace", "hessian_trace"),
    "density": ("curvature.hessian", "density", "hessian_density"),
    "measures": ("implicit_bias.suite", "measures", "measures"),
    "max_margin": ("implicit_bias.recovery", "margin_alignment", "max_margin_alignment"),
    "interpolators": ("implicit_bias.recovery", "interpolator_distances",
                      "interpolator_distances"),
    "matrix_recovery": ("implicit_bias.recovery", "matrix_recovery", "matrix_recovery"),
}
SHARPNESS = {"worst": "worst_case", "average": "average_case", "epsilon": "epsilon",
             "pac_bayes": "pac_bayes"}
SURFACE_OPTIONS = ("directions", "x", "y", "n", "seed", "normalization", "ignore", "bn", "test")
PATH_OPTIONS = ("init_to_final", "between", "kind", "points", "n", "steps", "lr", "seed")
ALONG_OPTIONS = ("every", "k", "n", "tol", "curvature")
# [along] kinds (the key is the series' name) -> their options: lambda_max is
# probes.along.top_eigenvalues, max_margin probes.along.max_margin_alignment, param_norm
# probes.along.param_norms
ALONG = {"lambda_max": ALONG_OPTIONS, "max_margin": ("every", "n"), "param_norm": ("every",)}
# keywords the sweep passes itself, never from the spec
_RESERVED = ("model", "loss_fn", "data", "init", "params", "vectors", "v0", "check",
             "references")


def _fail(key: str, what: str, exc: type[Exception] = ValueError) -> Exception:
    return exc(f"sweep spec: {key}: {what}")


def _table(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(key, f"must be a table, got {value!r}", TypeError)
    return dict(value)


def _keys(key: str, table: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for k in table:
        if k not in allowed:
            raise _fail(f"{key}.{k}" if key else k,
                        f"unknown key; allowed: {', '.join(allowed)}")


def _int(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(key, f"must be an integer >= {low}, got {value!r}")
    return value


def _function(module: str, name: str) -> Any:
    import importlib

    return getattr(importlib.import_module(f"probes.{module}"), name)


def _options(key: str, value: Any, fn: Any, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    opts = _table(key, value) if value is not True else {}
    allowed = tuple(p for p in inspect.signature(fn).parameters if p not in _RESERVED) + extra
    _keys(key, opts, allowed)
    if "n" in opts and "n" in extra:
        _int(f"{key}.n", opts["n"])
    return opts


def _probes(value: Any) -> dict[str, tuple[str, str, dict[str, Any]]]:
    table = _table("probes", value)
    _keys("probes", table, ("n", *PROBE_FUNCTIONS, "sharpness"))
    n = table.pop("n", None)
    if n is not None:
        _int("probes.n", n)
    out: dict[str, tuple[str, str, dict[str, Any]]] = {}
    for kind, opts in table.items():
        entries = opts if kind == "sharpness" else [opts]
        if kind == "sharpness" and isinstance(opts, Mapping):
            entries = [opts]
        if not isinstance(entries, list):
            raise _fail(f"probes.{kind}", f"must be a list of tables, got {opts!r}", TypeError)
        for i, entry in enumerate(entries):
            key = f"probes.{kind}" + (f"[{i}]" if kind == "sharpness" else "")
            if entry is False:
                continue
            if kind == "sharpness":
                entry = _table(key, entry)
                which = entry.get("kind", "worst")
                if which not in SHARPNESS:
                    raise _fail(f"{key}.kind", f"got {which!r}; allowed: "
                                f"{', '.join(SHARPNESS)}")
                module, fn_name = "sharpness", SHARPNESS[which]
                default = f"sharpness_{fn_name}" + (
                    "_adaptive" if entry.get("adaptive") and which in ("worst", "average")
                    else "")
                if which in ("worst", "average"):
                    entry.setdefault("rho", 0.05)
            else:
                module, fn_name, default = PROBE_FUNCTIONS[kind]
            opts_ = _options(key, entry, _function(module, fn_name), ("n", "name", "kind"))
            name = opts_.pop("name", default)
            opts_.pop("kind", None)
            if not isinstance(name, str) or not name or "/" in name:
                raise _fail(f"{key}.name", f"must be a non-empty string without '/', got "
                            f"{name!r}")
            if name in out:
                raise _fail(key, f"two probes are both stored as {name!r}; give one a name")
            if n is not None:
                opts_.setdefault("n", n)
            out[name] = (module, fn_name, opts_)
    return out


def _along(value: Any) -> dict[str, dict[str, Any]]:
    table = _table("along", value)
    _keys("along", table, tuple(ALONG))
    out = {}
    for name, opts in table.items():
        opts = _table(f"along.{name}", opts)
        _keys(f"along.{name}", opts, ALONG[name])
        if "every" not in opts:
            raise _fail(f"along.{name}.every", "required: steps between measurements")
        _int(f"along.{name}.every", opts["every"])
        for k in ("k", "n"):
            if k in opts:
                _int(f"along.{name}.{k}", opts[k])
        out[name] = opts
    return out


def along_callback(name: str, data: Any, opts: Mapping[str, Any]) -> Any:
    """The callback of the ``[along]`` entry ``name`` (checked by :func:`_along`) on the
    training data ``(x, y)``, its first ``n`` examples if ``opts`` says so."""
    from probes.along import max_margin_alignment, param_norms, top_eigenvalues

    if name == "param_norm":
        return param_norms(opts["every"], name=name)
    x, y = data
    n = opts.get("n", len(y))
    if name == "max_margin":
        return max_margin_alignment((x[:n], y[:n]), opts["every"], name=name)
    return top_eigenvalues((x[:n], y[:n]), opts["every"], name=name,
                           **{k: v for k, v in opts.items() if k in ("k", "tol", "curvature")})


def _grid_axis(key: str, value: Any) -> list[float]:
    if not (isinstance(value, list) and len(value) == 3 and
            all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
            and isinstance(value[2], int) and value[2] >= 2 and value[0] < value[1]):
        raise _fail(key, f"must be [start, stop, num] with start < stop and an integer num "
                    f">= 2, got {value!r}")
    return value


def _surfaces(value: Any) -> dict[str, dict[str, Any]]:
    from landscape.surfaces.stored import DIRECTIONS

    table = _table("surfaces", value)
    out = {}
    for name, opts in table.items():
        key = f"surfaces.{name}"
        if "/" in name:
            raise _fail(key, "a surface name must not contain '/'")
        opts = _table(key, opts)
        _keys(key, opts, SURFACE_OPTIONS)
        opts.setdefault("directions", "random")
        if opts["directions"] not in DIRECTIONS:
            raise _fail(f"{key}.directions", f"got {opts['directions']!r}; allowed: "
                        f"{', '.join(DIRECTIONS)}")
        if "x" not in opts:
            raise _fail(f"{key}.x", "required: [start, stop, num]")
        for axis in ("x", "y"):
            if axis in opts:
                _grid_axis(f"{key}.{axis}", opts[axis])
        for k in ("n", "seed"):
            if k in opts:
                _int(f"{key}.{k}", opts[k], 1 if k == "n" else 0)
        out[name] = opts
    return out


def _paths(value: Any, names: list[str]) -> dict[str, Any]:
    table = _table("paths", value)
    _keys("paths", table, PATH_OPTIONS)
    from landscape.surfaces.stored import PATH_KINDS

    kinds = table.pop("kind", ["linear"])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    if not isinstance(kinds, list) or not kinds or any(k not in PATH_KINDS for k in kinds):
        raise _fail("paths.kind", f"got {kinds!r}; allowed: "
                    f"{', '.join(map(repr, PATH_KINDS))} or a list of them")
    init_to_final = table.pop("init_to_final", False)
    if not isinstance(init_to_final, bool):
        raise _fail("paths.init_to_final", f"must be true or false, got {init_to_final!r}",
                    TypeError)
    between = table.pop("between", [])
    if between == "all":
        pairs = list(itertools.combinations(names, 2))
    elif between is False:
        pairs = []
    elif isinstance(between, list) and all(isinstance(p, list) and len(p) == 2
                                           for p in between):
        pairs = [tuple(p) for p in between]
        for a, b in pairs:
            for r in (a, b):
                if r not in names:
                    raise _fail("paths.between", f"no run {r!r}; runs: {', '.join(names)}")
            if a == b:
                raise _fail("paths.between", f"a pair of the same run {a!r}; use "
                            "init_to_final for a run's own path")
    else:
        raise _fail("paths.between", f"got {between!r}; allowed: 'all', false, or a list of "
                    "[run, run] pairs")
    for k in ("points", "n", "steps"):
        if k in table:
            _int(f"paths.{k}", table[k], 2 if k == "points" else 1)
    if "lr" in table and (isinstance(table["lr"], bool) or
                          not isinstance(table["lr"], (int, float)) or table["lr"] <= 0):
        raise _fail("paths.lr", f"must be a positive number, got {table['lr']!r}")
    if "seed" in table:
        _int("paths.seed", table["seed"], 0)
    return {"init_to_final": tuple(kinds) if init_to_final else (),
            "between": tuple((a, b, k) for a, b in pairs for k in kinds),
            "path_options": table}
