"""The ``params:`` list of an experiment file → validated :class:`~gpusched.plugin_api.Param`s.

Every spelling is read: ours (``name``, ``min``, ``scale: log``, ``values``), AI Platform's
ParameterSpec (``parameterName``, ``minValue``, ``scaleType: UNIT_LOG_SCALE``,
``discreteValues``) and Vertex AI's (``parameterId``, ``doubleValueSpec: {minValue, maxValue}``);
a problem's place uses the spelling the file used (``doubleValueSpec.minValue``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from gpusched._spec_check import (
    Problems,
    as_text,
    at,
    choice,
    describe,
    json_int,
    number,
    show_number,
    text,
    unknown_key,
    unusable_char,
    whole,
)
from gpusched._spec_when import CHILDREN, attach, expand
from gpusched.plugin_api import Param, ParamType, ParamValue, Scale

__all__ = ["PARAM_KEYS", "VALUE_SPECS", "TYPES", "SCALES", "PARAM_NAME", "check_params"]

PARAM_KEYS: Mapping[str, str] = {
    "name": "name", "parameterName": "name", "parameterId": "name",
    "type": "type",
    "min": "min", "minValue": "min",
    "max": "max", "maxValue": "max",
    "scale": "scale", "scaleType": "scale",
    "step": "step",
    "values": "values", "discreteValues": "values", "categoricalValues": "values",
    "when": "when", CHILDREN: CHILDREN,  # read by _spec_when
}  # fmt: skip
"""Every key a parameter may have, in any spelling → our spelling (Vertex's value specs,
``doubleValueSpec: {minValue, ...}``, are read apart: see :data:`VALUE_SPECS`)."""

_AIP_SPELLING = {"name": "parameterName", "min": "minValue", "max": "maxValue"}

VALUE_SPECS: Mapping[str, ParamType] = {
    "doubleValueSpec": ParamType.DOUBLE, "integerValueSpec": ParamType.INTEGER,
    "discreteValueSpec": ParamType.DISCRETE, "categoricalValueSpec": ParamType.CATEGORICAL,
}  # fmt: skip
"""Vertex AI's ParameterSpec keys, one a type: each holds that type's range or values."""

# A value spec's keys → ours; `defaultValue` is read and ignored, as Vertex's tuning jobs
# ignore it (only its Vizier service reads it, as a starting point).
_SPEC_KEYS = {"minValue": "min", "maxValue": "max", "values": "values", "defaultValue": None}
_RANGE_SPEC = ("minValue", "maxValue", "defaultValue")
_LIST_SPEC = ("values", "defaultValue")

TYPES: Mapping[str, ParamType] = {
    "double": ParamType.DOUBLE, "float": ParamType.DOUBLE,
    "integer": ParamType.INTEGER, "int": ParamType.INTEGER,
    "discrete": ParamType.DISCRETE,
    "categorical": ParamType.CATEGORICAL,
}  # fmt: skip
"""Parameter type words (matched ignoring case, so ``DOUBLE`` works) → type."""

SCALES: Mapping[str, Scale] = {
    "linear": Scale.LINEAR, "unit_linear_scale": Scale.LINEAR, "none": Scale.LINEAR,
    "scale_type_unspecified": Scale.LINEAR,
    "log": Scale.LOG, "unit_log_scale": Scale.LOG,
    "reverse_log": Scale.REVERSE_LOG, "unit_reverse_log_scale": Scale.REVERSE_LOG,
}  # fmt: skip
"""Scale words (matched ignoring case; AI Platform's ``NONE`` and Vertex's
``SCALE_TYPE_UNSPECIFIED`` are linear) → scale."""

PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
"""A parameter name: it becomes a ``--NAME=VALUE`` flag, so nothing a shell or parser trips on."""

_PARAM_INT_MAX = 2**53  # Param maps integers through floats, exact only up to 2**53

_Fields = dict[str, tuple[str, Any]]  # our key → (key as written, value); nulls left out


def check_params(p: Problems, place: str, raw: Any) -> tuple[Param, ...]:
    """Every parameter of ``raw`` that is valid; problems for the rest (and for duplicate names)."""
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a list of parameters (got {describe(raw)})")
        return ()
    if not raw:
        p.add(place, "must list at least one parameter")
        return ()
    items = expand(p, place, raw)  # AI Platform's nested conditional parameters flattened
    parsed: list[Param | None] = []
    first_place: dict[str, str] = {}
    for item in items:
        param = _param(p, item.place, item.raw)
        if param is not None and param.name in first_place:
            p.add(item.place, f"duplicate name {param.name!r} (also {first_place[param.name]})")
            param = None
        if param is not None:
            first_place[param.name] = item.place
        parsed.append(param)
    return attach(p, items, parsed)


def _fields(p: Problems, place: str, raw: Mapping[Any, Any]) -> _Fields:
    """``raw``'s keys in our spelling; unknown keys and settings given twice are problems."""
    fields: _Fields = {}
    for key, value in raw.items():
        if isinstance(key, str) and key in VALUE_SPECS:
            _value_spec(p, place, fields, key, value)
            continue
        ours = PARAM_KEYS.get(key) if isinstance(key, str) else None
        if ours is None:
            p.add(place, unknown_key(key, (*PARAM_KEYS, *VALUE_SPECS)))
        elif ours in fields:
            p.add(at(place, key), f"the same setting as {fields[ours][0]}: give it once")
        elif value is not None:
            fields[ours] = (key, value)
    return fields


def _value_spec(p: Problems, place: str, fields: _Fields, key: str, raw: Any) -> None:
    """Vertex's ``doubleValueSpec: {minValue, maxValue}`` (or another type's) into ``fields``:
    the type, written as the spec's key, and each value at its place within the spec
    (``doubleValueSpec.minValue``)."""
    if raw is None:
        return
    if "type" in fields:
        first = fields["type"][0]
        if first in VALUE_SPECS:
            p.add(place, f"give only one of {', '.join(VALUE_SPECS)} (got {first} and {key})")
        else:
            p.add(at(place, key), f"the same setting as {first}: give it once")
        return
    kind = VALUE_SPECS[key]
    known = _RANGE_SPEC if kind in (ParamType.DOUBLE, ParamType.INTEGER) else _LIST_SPEC
    if not isinstance(raw, Mapping):
        example = "{minValue: 0, maxValue: 1}" if known is _RANGE_SPEC else "{values: [...]}"
        p.add(at(place, key), f"must be a mapping such as {example} (got {describe(raw)})")
        return
    fields["type"] = (key, kind.value)
    for inner, value in raw.items():
        ours = _SPEC_KEYS.get(inner) if inner in known else None
        if inner not in known:
            p.add(at(place, key), unknown_key(inner, known))
        elif ours is not None and ours in fields:
            p.add(at(at(place, key), inner), f"the same setting as {fields[ours][0]}: give it"
                                             " once")
        elif ours is not None and value is not None:
            # An integerValueSpec's bounds are int64s: quoted in Vertex's JSON ("1").
            fields[ours] = (f"{key}.{inner}", json_int(value) if kind is ParamType.INTEGER
                            else value)


def _short(f: _Fields, key: str) -> str:
    """The key ``f`` read ``key`` from, less its value spec (``doubleValueSpec.minValue`` →
    ``minValue``): a message names it beside a sibling."""
    return f[key][0].rpartition(".")[2]


def _param(p: Problems, place: str, raw: Any) -> Param | None:
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping such as {{name: lr, type: double, ...}} "
                     f"(got {describe(raw)})")
        return None
    f = _fields(p, place, raw)
    # A missing key is named as this file would spell it: AI Platform's (or Vertex's) way if
    # it uses that.
    specs = [k for k in raw if isinstance(k, str) and k in VALUE_SPECS and raw[k] is not None]
    vertex = bool(specs) or "parameterId" in raw
    aip = vertex or CHILDREN in raw or any(PARAM_KEYS.get(k, k) != k for k in raw
                                           if isinstance(k, str))
    spelling: dict[str, str] = {}
    if aip:
        spelling = dict(_AIP_SPELLING, name="parameterId" if vertex else "parameterName")

    def where(key: str) -> str:
        return at(place, f[key][0] if key in f else spelling.get(key, key))

    name = None
    if "name" not in f:
        p.add(where("name"), "required")
    else:
        rule = "must start with a letter or _ and hold only letters, digits, _ . - (it is a flag)"
        name = text(p, where("name"), f["name"][1], pattern=PARAM_NAME, rule=rule)
    if "type" not in f:
        if vertex and not specs:
            p.add(place, f"required: one of {', '.join(VALUE_SPECS)} (the parameter's range or "
                         f"values)")
        elif not specs:  # a value spec that was refused has said why
            p.add(where("type"), "required: double, integer, discrete or categorical")
        return None
    kind = choice(p, where("type"), f["type"][1], TYPES, "double, integer, discrete, categorical")
    if kind is None:
        return None
    if (spec := f["type"][0]) in VALUE_SPECS:
        spelling.update(min=f"{spec}.minValue", max=f"{spec}.maxValue", values=f"{spec}.values")
    elif spelling:
        spelling["values"] = f"{kind}Values"
    scale: Scale | None = Scale.LINEAR
    if "scale" in f:
        scale = choice(p, where("scale"), f["scale"][1], SCALES, "linear, log, reverse_log")
    numeric = kind in (ParamType.DOUBLE, ParamType.INTEGER)
    for key in ("values",) if numeric else ("min", "max", "step"):
        if key in f:
            owners = "discrete and categorical" if numeric else "double and integer"
            p.add(where(key), f"only for {owners} parameters")
    if kind is ParamType.CATEGORICAL and scale not in (None, Scale.LINEAR):
        p.add(where("scale"), "only for double, integer and discrete parameters")
    if numeric:
        return _numeric(p, where, f, name=name, kind=kind, scale=scale)
    values = _values(p, where("values"), f, kind)
    if name is None or scale is None or values is None:
        return None
    return Param(name=name, type=kind, scale=scale, values=values)


def _numeric(
    p: Problems,
    where: Callable[[str], str],
    f: _Fields,
    *,
    name: str | None,
    kind: ParamType,
    scale: Scale | None,
) -> Param | None:
    """A ``double`` or ``integer``: bounds (min < max), log-scale floor, step."""
    integer = kind is ParamType.INTEGER
    low, high = (_bound(p, where, f, key, integer) for key in ("min", "max"))
    step = _step(p, where, f, integer)
    if low is None or high is None:
        return None
    if high <= low:
        shown = f"{show_number(high)} <= {show_number(low)}"
        p.add(where("max"), f"must be greater than {_short(f, 'min')} (got {shown})")
        return None
    if not math.isfinite(high - low):  # searchers scale the unit interval by the range
        p.add(where("max"), f"the range {_short(f, 'max')} - {_short(f, 'min')} is too wide "
                            f"for a float")
        return None
    if scale in (Scale.LOG, Scale.REVERSE_LOG):
        if integer and low < 1:
            p.add(where("min"), f"must be at least 1 for an integer parameter on a {scale} "
                                f"scale (got {show_number(low)})")
            return None
        if low <= 0:
            p.add(where("min"), f"must be greater than 0 on a {scale} scale "
                                f"(got {show_number(low)})")
            return None
    if step is not None and step > high - low:
        p.add(where("step"), f"must not be larger than the range {_short(f, 'max')} - "
                             f"{_short(f, 'min')} "
                             f"(got {show_number(step)} > {show_number(high - low)})")
        return None
    if name is None or scale is None:
        return None
    convert = int if integer else float
    return Param(name=name, type=kind, low=convert(low), high=convert(high), scale=scale,
                 step=None if step is None else convert(step))


def _bound(
    p: Problems, where: Callable[[str], str], f: _Fields, key: str, integer: bool
) -> int | float | None:
    if key not in f:
        p.add(where(key), f"required for {'an integer' if integer else 'a double'} parameter")
        return None
    if integer:
        return whole(p, where(key), f[key][1], low=-_PARAM_INT_MAX, high=_PARAM_INT_MAX,
                     what=" for an integer parameter")
    return number(p, where(key), f[key][1])


def _step(
    p: Problems, where: Callable[[str], str], f: _Fields, integer: bool
) -> int | float | None:
    if "step" not in f:
        return None
    if integer:
        return whole(p, where("step"), f["step"][1], low=1, high=_PARAM_INT_MAX,
                     what=" for an integer parameter")
    step = number(p, where("step"), f["step"][1])
    if step is not None and step <= 0:
        p.add(where("step"), f"must be greater than 0 (got {show_number(step)})")
        return None
    return step


_LIST_SPELLING = {"discreteValues": ParamType.DISCRETE, "categoricalValues": ParamType.CATEGORICAL}


def _values(
    p: Problems, place: str, f: _Fields, kind: ParamType
) -> tuple[ParamValue, ...] | None:
    """A ``discrete`` list (unique numbers, sorted) or ``categorical`` one (unique text, in the
    file's order; numbers and booleans become their text, as a trial receives them anyway)."""
    if "values" not in f:
        p.add(place, f"required for a {kind} parameter")
        return None
    written, raw = f["values"]
    meant = _LIST_SPELLING.get(written)
    if meant is not None and meant is not kind:
        p.add(place, f"{written} is for {meant} parameters, and this one is {kind}")
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a list (got {describe(raw)})")
        return None
    if not raw:
        p.add(place, "must list at least one value")
        return None
    seen: dict[ParamValue, int] = {}
    for index, item in enumerate(raw):
        value = _value(p, at(place, index), item, kind)
        if value is None:
            continue
        if value in seen:
            p.add(at(place, index), f"duplicate of {at(_short(f, 'values'), seen[value])} "
                                    f"({describe(item)})")
            continue
        seen[value] = index
    if len(seen) != len(raw):
        return None
    values = tuple(seen)
    return tuple(sorted(values, key=float)) if kind is ParamType.DISCRETE else values


def _value(p: Problems, place: str, item: Any, kind: ParamType) -> ParamValue | None:
    if kind is ParamType.DISCRETE:
        return number(p, place, item)
    value = as_text(item)
    if value is None:
        p.add(place, f"must be text or a number (got {describe(item)})")
    elif (problem := unusable_char(value)) is not None:
        p.add(place, problem)
        return None
    return value
