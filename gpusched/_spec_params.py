"""The ``params:`` list of an experiment file → validated :class:`~gpusched.plugin_api.Param`s.

Both spellings are read: ours (``name``, ``min``, ``scale: log``, ``values``) and AI Platform's
ParameterSpec (``parameterName``, ``minValue``, ``scaleType: UNIT_LOG_SCALE``,
``discreteValues``); a problem's place uses the spelling the file used.
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
    number,
    show_number,
    text,
    unknown_key,
    unusable_char,
    whole,
)
from gpusched._spec_when import CHILDREN, attach, expand
from gpusched.plugin_api import Param, ParamType, ParamValue, Scale

__all__ = ["PARAM_KEYS", "TYPES", "SCALES", "PARAM_NAME", "check_params"]

PARAM_KEYS: Mapping[str, str] = {
    "name": "name", "parameterName": "name",
    "type": "type",
    "min": "min", "minValue": "min",
    "max": "max", "maxValue": "max",
    "scale": "scale", "scaleType": "scale",
    "step": "step",
    "values": "values", "discreteValues": "values", "categoricalValues": "values",
    "when": "when", CHILDREN: CHILDREN,  # read by _spec_when
}  # fmt: skip
"""Every key a parameter may have, in either spelling → our spelling."""

_AIP_SPELLING = {"name": "parameterName", "min": "minValue", "max": "maxValue"}

TYPES: Mapping[str, ParamType] = {
    "double": ParamType.DOUBLE, "float": ParamType.DOUBLE,
    "integer": ParamType.INTEGER, "int": ParamType.INTEGER,
    "discrete": ParamType.DISCRETE,
    "categorical": ParamType.CATEGORICAL,
}  # fmt: skip
"""Parameter type words (matched ignoring case, so ``DOUBLE`` works) → type."""

SCALES: Mapping[str, Scale] = {
    "linear": Scale.LINEAR, "unit_linear_scale": Scale.LINEAR, "none": Scale.LINEAR,
    "log": Scale.LOG, "unit_log_scale": Scale.LOG,
    "reverse_log": Scale.REVERSE_LOG, "unit_reverse_log_scale": Scale.REVERSE_LOG,
}  # fmt: skip
"""Scale words (matched ignoring case; AI Platform's ``NONE`` is linear) → scale."""

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
        ours = PARAM_KEYS.get(key) if isinstance(key, str) else None
        if ours is None:
            p.add(place, unknown_key(key, PARAM_KEYS))
        elif ours in fields:
            p.add(at(place, key), f"the same setting as {fields[ours][0]}: give it once")
        elif value is not None:
            fields[ours] = (key, value)
    return fields


def _param(p: Problems, place: str, raw: Any) -> Param | None:
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping such as {{name: lr, type: double, ...}} "
                     f"(got {describe(raw)})")
        return None
    f = _fields(p, place, raw)
    # A missing key is named as this file would spell it: AI Platform's way if it uses that.
    aip = CHILDREN in raw or any(PARAM_KEYS.get(k, k) != k for k in raw if isinstance(k, str))
    spelling = dict(_AIP_SPELLING) if aip else {}

    def where(key: str) -> str:
        return at(place, f[key][0] if key in f else spelling.get(key, key))

    name = None
    if "name" not in f:
        p.add(where("name"), "required")
    else:
        rule = "must start with a letter or _ and hold only letters, digits, _ . - (it is a flag)"
        name = text(p, where("name"), f["name"][1], pattern=PARAM_NAME, rule=rule)
    if "type" not in f:
        p.add(where("type"), "required: double, integer, discrete or categorical")
        return None
    kind = choice(p, where("type"), f["type"][1], TYPES, "double, integer, discrete, categorical")
    if kind is None:
        return None
    if spelling:
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
        p.add(where("max"), f"must be greater than {f['min'][0]} (got {shown})")
        return None
    if not math.isfinite(high - low):  # searchers scale the unit interval by the range
        p.add(where("max"), f"the range {f['max'][0]} - {f['min'][0]} is too wide for a float")
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
        p.add(where("step"), f"must not be larger than the range {f['max'][0]} - {f['min'][0]} "
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
            p.add(at(place, index), f"duplicate of {at(written, seen[value])} ({describe(item)})")
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
