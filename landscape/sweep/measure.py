"""The measurement tables of a sweep spec as typed models, and the callbacks of ``[along]``.

The tables are ``[probes]``, ``[along]``, ``[surfaces.NAME]`` and ``[paths]`` (the format:
:mod:`landscape.sweep.spec`). Probe options are the keyword arguments of the probe functions,
checked against their signatures (by name; their values are the probes' to check); the other
tables are closed. Each model turns what it holds into what the sweep runs:
:meth:`ProbesTable.entries`, :meth:`AlongTable.entries`, :meth:`PathsTable.resolve`.
"""

from __future__ import annotations

import importlib
import inspect
import itertools
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    model_validator,
)

from landscape.surfaces.grid import check_size
from landscape.surfaces.stored import DIRECTIONS, PATH_KINDS
from landscape.sweep.limits import check_count
from landscape.sweep.option_values import check_value
from landscape.sweep.runs import PlannedRun, init_pairs
from landscape.train.tables import Name, OneOf, Table, fail, invalid
from probes.along import (
    max_margin_alignment,
    param_norms,
    preconditioned_sharpness,
    top_eigenvalues,
)

__all__ = [
    "PROBE_FUNCTIONS",
    "SHARPNESS",
    "AlongTable",
    "PathsTable",
    "ProbeOptions",
    "ProbesTable",
    "SharpnessEntry",
    "SurfaceTable",
    "Surfaces",
    "along_callback",
]

PROBE_FUNCTIONS = {
    "hessian": ("curvature.hessian", "eigenvalues", "hessian_eigenvalues"),
    "trace": ("curvature.hessian", "trace", "hessian_trace"),
    "density": ("curvature.hessian", "density", "hessian_density"),
    "measures": ("implicit_bias.suite", "measures", "measures"),
    "max_margin": ("implicit_bias.recovery", "margin_alignment", "max_margin_alignment"),
    "interpolators": ("implicit_bias.recovery", "interpolator_distances", "interpolator_distances"),
    "matrix_recovery": ("implicit_bias.recovery", "matrix_recovery", "matrix_recovery"),
    "class_means": ("curvature.class_means", "class_mean_overlap", "class_mean_overlap"),
    "nuclear_recovery": (
        "implicit_bias.nuclear_norm",
        "nuclear_norm_recovery",
        "nuclear_norm_recovery",
    ),
}
"""``[probes]`` kinds -> (the module under ``probes``, the function, the default stored name)."""
SHARPNESS = {
    "worst": "worst_case",
    "average": "average_case",
    "epsilon": "epsilon",
    "pac_bayes": "pac_bayes",
}
"""``[probes] sharpness`` kinds -> the function of :mod:`probes.sharpness`."""
# keywords the sweep passes itself, never from the spec
_RESERVED = ("model", "loss_fn", "data", "init", "params", "vectors", "v0", "check", "references")
_WHAT = "sweep spec"


def _function(module: str, name: str) -> Any:
    return getattr(importlib.import_module(f"probes.{module}"), name)


def _check_options(
    opts: Mapping[str, Any], fn: Any, extra: tuple[str, ...], *at: str | int
) -> None:
    """Check that every key of ``opts`` is in ``extra`` or a keyword of ``fn``.

    Keywords that the sweep passes itself (the model, the data, ...) do not count. The values
    of the common keywords (counts, positive numbers, flags, seeds) are checked too.
    """
    allowed = tuple(p for p in inspect.signature(fn).parameters if p not in _RESERVED) + extra
    for key in opts:
        if key not in allowed:
            raise invalid(f"unknown key; allowed: {', '.join(allowed)}", *at, key)
        check_value(key, opts[key], *at)


def _on_off(value: Any) -> Any:
    """``true``: the probe with its defaults; ``false``: not this probe."""
    return {} if value is True else None if value is False else value


class ProbeOptions(Table):
    """One probe: the keyword arguments of its function, and ``n`` and ``name``."""

    model_config = ConfigDict(extra="allow")
    n: int | None = Field(
        default=None, ge=1, description="first N training examples (default [probes] n, else all)"
    )
    name: Name | None = Field(default=None, description="the stored name (default: the kind's)")


SharpnessKind = Annotated[
    StrictStr,
    OneOf(tuple(SHARPNESS)),
    Field(description="worst_case, average_case, epsilon or pac_bayes (probes.sharpness)"),
]


class SharpnessEntry(ProbeOptions):
    """One sharpness probe: a kind and the keywords of its function in :mod:`probes.sharpness`.

    ``rho`` defaults to 0.05 for worst and average.
    """

    kind: SharpnessKind = "worst"

    @model_validator(mode="after")
    def _keywords(self) -> SharpnessEntry:
        _check_options(
            self.given(), _function("sharpness", SHARPNESS[self.kind]), ("n", "name", "kind")
        )
        return self


def _probe(kind: str) -> Any:
    module, fn, stored = PROBE_FUNCTIONS[kind]
    return Field(
        default=None,
        description=f"keywords of probes.{module}.{fn} (true: its defaults); "
        f"stored as probes/{stored}",
    )


Probe = Annotated[
    ProbeOptions | None, BeforeValidator(_on_off, json_schema_input_type=bool | ProbeOptions)
]


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, Mapping) else value


class ProbesTable(Table):
    """``[probes]``: measured at the end of each run, on its final parameters."""

    n: int | None = Field(
        default=None, ge=1, description="first N training examples, any probe (default all)"
    )
    hessian: Probe = _probe("hessian")
    trace: Probe = _probe("trace")
    density: Probe = _probe("density")
    measures: Probe = _probe("measures")
    max_margin: Probe = _probe("max_margin")
    interpolators: Probe = _probe("interpolators")
    matrix_recovery: Probe = _probe("matrix_recovery")
    class_means: Probe = _probe("class_means")
    nuclear_recovery: Probe = _probe("nuclear_recovery")
    sharpness: Annotated[
        list[Annotated[SharpnessEntry | None, BeforeValidator(_on_off)]],
        BeforeValidator(_listed, json_schema_input_type=SharpnessEntry | list[SharpnessEntry]),
    ] = Field(default_factory=list, description="a table or a list of them")

    @model_validator(mode="after")
    def _keywords(self) -> ProbesTable:
        for kind, (module, fn, _) in PROBE_FUNCTIONS.items():
            entry = getattr(self, kind)
            if entry is not None:
                _check_options(entry.given(), _function(module, fn), ("n", "name"), kind)
        return self

    def entries(self) -> dict[str, tuple[str, str, dict[str, Any]]]:
        """Stored name -> ``(module under probes, function, options)``, in the table's order.

        Raises:
            ValueError: two probes would be stored under one name.
        """
        out: dict[str, tuple[str, str, dict[str, Any]]] = {}
        for kind in self.given():
            if kind == "n":
                continue
            listed = self.sharpness if kind == "sharpness" else [getattr(self, kind)]
            for i, entry in enumerate(listed):
                if entry is None:
                    continue
                opts = entry.given()
                key = f"probes.{kind}" + (f"[{i}]" if kind == "sharpness" else "")
                if kind == "sharpness":
                    module, fn = "sharpness", SHARPNESS[entry.kind]
                    default = f"sharpness_{fn}" + (
                        "_adaptive"
                        if opts.get("adaptive") and entry.kind in ("worst", "average")
                        else ""
                    )
                    if entry.kind in ("worst", "average"):
                        opts.setdefault("rho", 0.05)
                    opts.pop("kind", None)
                else:
                    module, fn, default = PROBE_FUNCTIONS[kind]
                name = opts.pop("name", default)
                if name in out:
                    raise fail(
                        _WHAT, key, f"two probes are both stored as {name!r}; give one a name"
                    )
                if self.n is not None:
                    opts.setdefault("n", self.n)
                out[name] = (module, fn, opts)
        return out


class AlongOptions(Table):
    """A series measured during training."""

    every: int = Field(ge=1, description="steps between measurements")


class LambdaMaxAlong(AlongOptions):
    """``[along] lambda_max``: :func:`probes.along.top_eigenvalues`."""

    k: int | None = Field(default=None, ge=1, description="top eigenvalues (default 1)")
    n: int | None = Field(default=None, ge=1, description="first N training examples")
    tol: float | None = Field(default=None, ge=0, description="Lanczos tolerance")
    curvature: StrictStr | None = Field(
        default=None, description="the curvature matrix (default hessian)"
    )


class MaxMarginAlong(AlongOptions):
    """``[along] max_margin``: :func:`probes.along.max_margin_alignment` (linear classifiers)."""

    n: int | None = Field(default=None, ge=1, description="first N training examples")


class PreconditionedAlong(AlongOptions):
    """``[along] preconditioned_sharpness``: Adam's lambda_max(P^-1 H) (probes.along)."""

    k: int | None = Field(default=None, ge=1, description="top eigenvalues (default 1)")
    n: int | None = Field(default=None, ge=1, description="first N training examples")
    tol: float | None = Field(default=None, gt=0, description="Lanczos tolerance")


class AlongTable(Table):
    """``[along]``: series measured during training, the key the series' name.

    They are callbacks of :func:`landscape.train.fit`.
    """

    lambda_max: LambdaMaxAlong | None = None
    max_margin: MaxMarginAlong | None = None
    param_norm: AlongOptions | None = Field(
        default=None, description="probes.along.param_norms: ||theta||, weights, distance from init"
    )
    preconditioned_sharpness: PreconditionedAlong | None = None

    def entries(self) -> dict[str, dict[str, Any]]:
        """Series name -> its options as given, in the table's order."""
        return {
            name: getattr(self, name).given()
            for name in self.given()
            if getattr(self, name) is not None
        }


def along_callback(name: str, data: Any, opts: Mapping[str, Any]) -> Any:
    """The callback of the ``[along]`` entry ``name`` on the training data ``(x, y)``.

    Args:
        name: a key of :class:`AlongTable`.
        data: the training data ``(x, y)``; their first ``n`` examples if ``opts`` says so.
        opts: the entry's options, as :meth:`AlongTable.entries` gives them.
    """
    if name == "param_norm":
        return param_norms(opts["every"], name=name)
    x, y = data
    n = opts.get("n", len(y))
    if name == "max_margin":
        return max_margin_alignment((x[:n], y[:n]), opts["every"], name=name)
    if name == "preconditioned_sharpness":
        return preconditioned_sharpness(
            (x[:n], y[:n]),
            opts["every"],
            name=name,
            **{k: v for k, v in opts.items() if k in ("k", "tol")},
        )
    return top_eigenvalues(
        (x[:n], y[:n]),
        opts["every"],
        name=name,
        **{k: v for k, v in opts.items() if k in ("k", "tol", "curvature")},
    )


def _axis(value: Any) -> Any:
    if not (
        isinstance(value, list)
        and len(value) == 3
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        and isinstance(value[2], int)
        and value[2] >= 2
        and value[0] < value[1]
    ):
        raise invalid(
            f"must be [start, stop, num] with start < stop and an integer num >= 2, got {value!r}"
        )
    return value


Direction = Annotated[
    StrictStr,
    OneOf(DIRECTIONS),
    Field(description="how the directions are picked (landscape.surfaces.stored)"),
]
PathKind = Annotated[
    StrictStr,
    OneOf(PATH_KINDS),
    Field(description="linear, a trained bezier curve, or linear after weight matching"),
]
Axis = Annotated[
    list[float],
    PlainValidator(_axis, json_schema_input_type=list[float]),
    Field(description="[start, stop, num]"),
]


class SurfaceTable(Table):
    """``[surfaces.NAME]``: a 1-D or 2-D surface around each run's final point.

    The options are those of :func:`landscape.surfaces.stored.surface_of_run`.
    """

    directions: Direction = "random"
    x: Axis
    y: Axis | None = Field(default=None, description="[start, stop, num]; leave out for 1-D")
    n: int | None = Field(default=None, ge=1, description="first N training examples")
    seed: int | None = Field(default=None, ge=0, description="seed of random directions")
    normalization: StrictStr | None = None
    ignore: StrictStr | None = None
    bn: StrictStr | None = None
    test: StrictBool | None = Field(default=None, description="also the test data's surface")

    @model_validator(mode="after")
    def _size(self) -> SurfaceTable:
        shape = (int(self.x[2]),) if self.y is None else (int(self.x[2]), int(self.y[2]))
        try:
            check_size(shape, "the surface")
        except ValueError as err:
            raise invalid(str(err)) from None
        return self

    def options(self) -> dict[str, Any]:
        """The options as given, with ``directions`` (default random)."""
        return {**self.given(), "directions": self.directions}


def _surface_names(surfaces: dict[str, SurfaceTable]) -> dict[str, SurfaceTable]:
    for name in surfaces:
        if "/" in name:
            raise invalid("a surface name must not contain '/'", name)
    return surfaces


Surfaces = Annotated[dict[str, SurfaceTable], AfterValidator(_surface_names)]
"""``[surfaces]``: one table a surface, the table's name its name."""


def _between(value: Any) -> Any:
    if (
        value in ("all", "init")
        or value is False
        or (
            isinstance(value, list)
            and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(r, str) for r in p)
                for p in value
            )
        )
    ):
        return value
    raise invalid(f"got {value!r}; allowed: 'all', 'init', false, or a list of [run, run] pairs")


class PathsTable(Table):
    """``[paths]``: loss and accuracy along paths between parameter vectors.

    The options are those of :func:`landscape.surfaces.stored.path_between`.
    """

    init_to_final: StrictBool = Field(
        default=False, description="each run's own init -> final path"
    )
    between: Annotated[
        Any,
        PlainValidator(
            _between,
            json_schema_input_type=Literal["all", "init", False] | list[tuple[str, str]],
        ),
    ] = Field(
        default=False,
        description="'all' (every pair of runs), 'init' (each pair of runs that differ only in "
        "their init: random and random_labels), false, or [[run, run], ...]",
    )
    kind: Annotated[
        list[PathKind],
        BeforeValidator(
            lambda v: [v] if isinstance(v, str) else v,
            json_schema_input_type=PathKind | list[PathKind],
        ),
        Field(min_length=1),
    ] = Field(default=["linear"], description="path kinds")
    points: int | None = Field(default=None, ge=2, description="points along a path")
    n: int | None = Field(default=None, ge=1, description="first N training examples")
    steps: int | None = Field(default=None, ge=1, description="bezier: training steps of the bend")
    lr: float | None = Field(default=None, gt=0, description="bezier: learning rate")
    seed: int | None = Field(default=None, ge=0, description="bezier: seed")

    def resolve(self, planned: Sequence[PlannedRun]) -> dict[str, Any]:
        """What the sweep does: ``init_to_final``, ``between`` and ``path_options``.

        ``init_to_final`` are path kinds, ``between`` ``(run a, run b, kind)`` triples among
        the runs: every pair (``"all"``), the pairs that differ only in their init (``"init"``:
        :func:`~landscape.sweep.runs.init_pairs`, the random-init run first), or those given.

        Args:
            planned: the sweep's runs.

        Raises:
            ValueError: a pair names a run the sweep does not have, or the same run twice;
                ``"init"`` finds no pair.
        """
        runs = [r.name for r in planned]
        given = self.given()
        kind = given.get("kind", ["linear"])
        kinds = [kind] if isinstance(kind, str) else kind
        pairs: list[tuple[str, ...]]
        if self.between == "all":
            check_count(
                "paths",
                len(runs) * (len(runs) - 1) // 2 * len(kinds),
                "paths.between",
                f"'all' over {len(runs)} runs and {len(kinds)} kind(s)",
            )
            pairs = list(itertools.combinations(runs, 2))
        elif self.between == "init":
            pairs = list(init_pairs(planned))
            if not pairs:
                raise fail(
                    _WHAT,
                    "paths.between",
                    "'init' pairs runs that differ only in their init (random and "
                    "random_labels), and this sweep has none; e.g. add init = ['random', "
                    "'random_labels'] to [grid]",
                )
        else:
            pairs = [tuple(p) for p in self.between or []]
        for a, b in pairs:
            for r in (a, b):
                if r not in runs:
                    raise fail(_WHAT, "paths.between", f"no run {r!r}; runs: {', '.join(runs)}")
            if a == b:
                raise fail(
                    _WHAT,
                    "paths.between",
                    f"a pair of the same run {a!r}; use init_to_final for a run's own path",
                )
        return {
            "init_to_final": tuple(kinds) if self.init_to_final else (),
            "between": tuple((a, b, k) for a, b in pairs for k in kinds),
            "path_options": {
                k: v for k, v in given.items() if k not in ("kind", "init_to_final", "between")
            },
        }
