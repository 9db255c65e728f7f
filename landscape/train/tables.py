"""Tables of a spec as typed models (pydantic), with the project's one-line errors.

A spec (:mod:`landscape.train.schema` for a run, :mod:`landscape.sweep.spec` for a sweep) is
TOML tables; each is a :class:`Table`, a pydantic model whose fields are its keys. Unknown keys
are errors that name the allowed ones, values are strict, and a validator that finds a rule
broken raises :func:`invalid` with the problem and where it is.

Errors are one line, ``"<what>: <dotted key>: <problem>"``, e.g. ``sweep spec:
probes.hessian.kk: unknown key; allowed: k, which, ...`` or ``run spec: train.batch_size: must
be an integer >= 1, got 0``: a ``TypeError`` for a value of the wrong type, a ``ValueError``
otherwise. :func:`validate` validates and raises that (:func:`one_line` makes it of any
:class:`pydantic.ValidationError`); :func:`fail` makes one for a rule checked outside the
models. :func:`json_schema` is a model's schema as TOML sees it, for the documentation.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, TypeVar, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PrivateAttr,
    StrictStr,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import PydanticCustomError, core_schema

__all__ = [
    "Name",
    "OneOf",
    "Table",
    "dotted",
    "fail",
    "invalid",
    "json_schema",
    "named",
    "one_line",
    "validate",
]


T = TypeVar("T", bound="Table")


class Table(BaseModel):
    """A TOML table of a spec: its keys are the model's fields.

    A key that is not a field is an error that names the allowed ones (the hint of
    ``unknown_key_hints`` instead, where a subclass gives one), unless the table is open
    (``extra="allow"``: options of a function named in it, checked against the function's
    signature by a validator). Values are strict (no ``true`` for 1, no ``"3"`` for 3).
    :meth:`given` is the table as it came, keys in their order.
    """

    model_config = ConfigDict(extra="forbid", strict=True)
    unknown_key_hints: ClassVar[dict[str, str]] = {}
    _given: dict[str, Any] = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _known_keys(cls, value: Any, handler: Any) -> Any:
        if isinstance(value, Mapping) and cls.model_config.get("extra") == "forbid":
            for key in value:
                if key not in cls.model_fields:
                    hint = cls.unknown_key_hints.get(
                        key, f"unknown key; allowed: {', '.join(cls.model_fields)}"
                    )
                    raise invalid(hint, key)
        out = handler(value)
        if isinstance(value, Mapping):
            out._given = dict(value)
        return out

    def given(self) -> dict[str, Any]:
        """The table as it came (a shallow copy): the keys given, in their order, raw values."""
        return dict(self._given)


def invalid(problem: str, *at: str | int, type_error: bool = False) -> PydanticCustomError:
    """The error a validator raises: ``problem`` at the keys ``at`` below its table.

    Args:
        problem: the message after the key (one line, saying what came and what is allowed),
            e.g. ``"unknown key; allowed: a, b"``.
        at: keys (and list indices) from the validated table down to the bad value.
        type_error: a value of the wrong type (:func:`one_line` raises a ``TypeError``).
    """
    kind = "spec_type" if type_error else "spec_value"
    return PydanticCustomError(kind, "{problem}", {"problem": problem, "at": at})


@dataclass(frozen=True)
class OneOf:
    """Metadata of a string type: the value must be one of ``choices`` (kept in a registry).

    ``Annotated[str, OneOf(("a", "b"))]``: the JSON schema lists the choices as an enum; the
    error says ``got 'x'; allowed: a, b``.
    """

    choices: tuple[str, ...]

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(self, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        return {**handler(schema), "enum": list(self.choices)}

    def _check(self, value: str) -> str:
        if value not in self.choices:
            raise invalid(f"got {value!r}; allowed: {', '.join(self.choices)}")
        return value


def named(value: str) -> str:
    """``value`` if it can be part of a path in the file: not empty, without '/'.

    The ``AfterValidator`` of :data:`Name`.
    """
    if not value or "/" in value:
        raise invalid(f"must be a non-empty string without '/', got {value!r}")
    return value


Name = Annotated[StrictStr, AfterValidator(named), Field(json_schema_extra={"pattern": "^[^/]+$"})]
"""A name that becomes part of a path in the file (a run's, a probe's): no '/', not empty."""


def dotted(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """A key path as messages write it: ``probes.sharpness[0].rho``, ``grid.'train.seed'``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + (repr(part) if "." in part or not part else part)
    return out


def fail(what: str, key: str, problem: str, exc: type[Exception] = ValueError) -> Exception:
    """The one-line error ``"<what>: <key>: <problem>"``, for rules checked outside the models.

    Args:
        what: the message's start (``"sweep spec"``).
        key: the key, dotted as :func:`dotted` writes it (empty: none).
        problem: what came and what is allowed.
        exc: the exception's class.
    """
    return exc(f"{what}: {key}: {problem}" if key else f"{what}: {problem}")


_TYPES = {
    "int_type": "an integer",
    "int_from_float": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "a string",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "list_type": "an array (a list)",
    "tuple_type": "an array (a list)",
}
_BOUNDS = (
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "too_short",
    "too_long",
)
_NOUNS = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a string",
    list: "an array (a list)",
    dict: "a table",
}


def one_line(
    err: ValidationError, what: str, model: type[BaseModel] | None = None
) -> ValueError | TypeError:
    """The first problem of a :class:`pydantic.ValidationError` as one line.

    The line is ``"<what>: <dotted key>: <problem>"``, the problem saying what came and what
    is allowed (``must be an integer >= 1, got 0``).

    Args:
        err: what validating a :class:`Table` raised.
        what: the message's start, e.g. ``"run spec"``, ``"sweep spec: run 'sgd'"``.
        model: the model validated (its fields say what a key must be, or what a missing key
            is).

    Returns:
        A ``TypeError`` for a value of the wrong type, else a ``ValueError``.
    """
    e = err.errors(include_url=False)[0]
    kind, ctx, value = e["type"], e.get("ctx") or {}, e.get("input")
    loc = tuple(e["loc"])
    field = _field(model, loc) if model is not None else None
    if kind in ("spec_value", "spec_type"):
        loc, problem = loc + tuple(ctx.get("at", ())), str(ctx["problem"])
    elif kind == "finite_number":
        problem = f"must be a finite number, got {value!r}"
    elif kind in _TYPES or kind in _BOUNDS:
        problem = f"must be {_expected(field, _TYPES.get(kind))}, got {value!r}"
    elif kind == "literal_error":
        problem = f"got {value!r}; allowed: {ctx.get('expected')}"
    elif kind == "missing":
        problem = "required" + (f": {field.description}" if field and field.description else "")
    elif kind == "extra_forbidden":
        problem = "unknown key"
    else:
        problem = f"{e['msg']}, got {value!r}"
    exc = TypeError if kind in _TYPES or kind == "spec_type" else ValueError
    return exc(f"{what}: {dotted(loc)}: {problem}" if loc else f"{what}: {problem}")


def _strip(tp: Any) -> Any:
    """``tp`` without ``Annotated`` and ``| None``."""
    while True:
        origin = typing.get_origin(tp)
        if origin is Annotated:
            tp = typing.get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp


def _field(model: Any, loc: tuple[Any, ...]) -> Any:
    """The pydantic field at ``loc`` below ``model``.

    None where the path leaves the models or ends below a field (in its list or table).
    """
    tp, field = model, None
    for part in loc:
        tp = _strip(tp)
        origin = typing.get_origin(tp)
        if origin is list and isinstance(part, int):
            tp, field = typing.get_args(tp)[0], None
        elif origin is dict:
            tp, field = typing.get_args(tp)[1], None
        elif (
            origin is None
            and isinstance(tp, type)
            and issubclass(tp, BaseModel)
            and part in tp.model_fields
        ):
            field = tp.model_fields[part]
            tp = field.annotation
        else:
            return None
    return field


def _number(v: Any) -> Any:
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _expected(field: Any, noun: str | None) -> str:
    """What a field's values must be, as messages say it: ``a number in (0, 1]``.

    ``noun`` (from the error) where the field does not tell.
    """
    if field is not None:
        tp = _strip(field.annotation)
        noun = _NOUNS.get(typing.get_origin(tp) or tp, noun)
    low = high = None
    for m in field.metadata if field is not None else ():
        for attr, sign in (("ge", ">="), ("gt", ">")):
            if getattr(m, attr, None) is not None:
                low = (sign, _number(getattr(m, attr)))
        for attr, sign in (("le", "<="), ("lt", "<")):
            if getattr(m, attr, None) is not None:
                high = (sign, _number(getattr(m, attr)))
    if low and high:
        bounds = (
            f" in {'[' if low[0] == '>=' else '('}{low[1]}, "
            f"{high[1]}{']' if high[0] == '<=' else ')'}"
        )
    elif low or high:
        bounds = " {} {}".format(*(low or high or ()))
    else:
        bounds = ""
    return f"{noun or 'a value'}{bounds}"


def validate(model: type[T], value: Any, what: str, **context: Any) -> T:
    """``model`` validated from ``value``, any problem raised as :func:`one_line` says.

    Args:
        model: a :class:`Table`.
        value: the table (a mapping as TOML gives it).
        what: the start of an error message (``"sweep spec"``).
        context: the validators' context, e.g. ``complete=True``.

    Raises:
        ValueError, TypeError: the first problem, in one line (:func:`one_line`).
    """
    try:
        return model.model_validate(value, context=context)
    except ValidationError as err:
        raise one_line(err, what, model) from None


class _TomlSchema(GenerateJsonSchema):
    """JSON schemas of TOML tables.

    TOML has no null, so an optional key (``X | None = None``) is one that may be left out, of
    type X, with no default shown.
    """

    def nullable_schema(self, schema: Any) -> Any:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: Any) -> Any:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            del out["default"]
        return out


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a spec's model as TOML sees it (no nulls), for its documentation."""
    return model.model_json_schema(schema_generator=_TomlSchema)
