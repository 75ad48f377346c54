"""Checking the conditions of conditional parameters (``when:``, see ``_spec_when``): each
condition's values against its parent, and conditions that can never hold together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusched._spec_check import Problems, as_text, at, describe, number, show_number
from gpusched.plugin_api import Param, ParamType, ParamValue, SearchSpace

__all__ = ["Condition", "allowed", "check_satisfiable"]


@dataclass(frozen=True)
class Condition:
    """One condition as written: the parent's name (None when the parent has no valid name),
    the values (a scalar or a list) and where they are; ``expect`` is the parent type an AI
    Platform key (``key``) is for."""

    place: str
    parent: str | None
    values: Any
    key: str = "when"
    expect: ParamType | None = None


def allowed(p: Problems, cond: Condition, parent: Param) -> tuple[ParamValue, ...] | None:
    """The values ``cond`` lists (one, or a list meaning any of them), as the parent's values."""
    many = isinstance(cond.values, list | tuple)
    raw = list(cond.values) if many else [cond.values]
    if not raw:
        p.add(cond.place, f"must list at least one value of {parent.name!r}")
        return None
    out: list[ParamValue] = []
    first: dict[ParamValue, int] = {}
    for k, item in enumerate(raw):
        place = at(cond.place, k) if many else cond.place
        value = _value(p, place, item, parent)
        if value is None:
            continue
        if value in first:
            label = parent.name if cond.expect is None else "values"
            p.add(place, f"duplicate of {at(label, first[value])} ({describe(item)})")
            continue
        first[value] = k
        out.append(value)
    return tuple(out) if len(out) == len(raw) else None


def _value(p: Problems, place: str, item: Any, parent: Param) -> ParamValue | None:
    """``item`` as one of ``parent``'s possible values, or a problem saying which they are."""
    if parent.type is ParamType.CATEGORICAL:
        text = as_text(item)
        if text is not None and text in parent.values:
            return text
    elif parent.type is ParamType.DISCRETE:
        if not isinstance(item, bool) and isinstance(item, int | float):
            for value in parent.values:
                if value == item:
                    return value  # the parent's own spelling: 2 for 2.0
    else:
        return _integer(p, place, item, parent)
    shown = ", ".join(describe(v) for v in parent.values[:12])
    more = ", ..." if len(parent.values) > 12 else ""
    p.add(place, f"{describe(item)} is not a value of {parent.name!r} ({shown}{more})")
    return None


def _integer(p: Problems, place: str, item: Any, parent: Param) -> int | None:
    """A whole number that an ``integer`` parent can take: in its range, on its step."""
    value = number(p, place, item)
    if value is None:
        return None
    assert parent.low is not None and parent.high is not None
    low, high = int(parent.low), int(parent.high)
    if isinstance(value, float) and not value.is_integer():
        p.add(place, f"must be a whole number: {parent.name!r} is an integer "
                     f"(got {describe(item)})")
        return None
    if not low <= value <= high:
        p.add(place, f"{show_number(value)} is outside the range of {parent.name!r} "
                     f"({show_number(low)}..{show_number(high)})")
        return None
    whole = int(value)
    if parent.step is not None and (whole - low) % int(parent.step):
        p.add(place, f"{whole} is not on the step of {parent.name!r} ({show_number(low)}, "
                     f"{show_number(low + int(parent.step))}, ...)")
        return None
    return whole


def check_satisfiable(p: Problems, where: Mapping[str, str], space: SearchSpace) -> None:
    """A parameter whose conditions contradict its parents' can never be set: a problem.

    Conditions only ever restrict parameters to sets of values, so the conditions of a
    parameter and of all its ancestors can hold together exactly when, for every ancestor,
    the sets they ask of it overlap (:meth:`SearchSpace.requirements`). ``where`` gives each
    parameter's place for its conditions.
    """
    needs = {param.name: space.requirements(param) for param in space}
    for param in space:
        empty = [name for name, values in needs[param.name].items() if not values]
        # Report where the contradiction arises, not again at every descendant of it.
        if not empty or any(not all(needs[q].values()) for q in param.when):
            continue
        name = empty[0]
        asks = [f"{_shown(param.when[name])} here"] if name in param.when else []
        asks += [f"{_shown(needs[q][name])} for {q!r} to be set"
                 for q in param.when if name in needs[q]]
        p.add(where.get(param.name, ""), f"can never hold: {name!r} would have to be "
                                         f"{' and '.join(asks)}")


def _shown(values: Sequence[ParamValue]) -> str:
    if len(values) == 1:
        return describe(values[0])
    return "one of " + ", ".join(describe(v) for v in values)
