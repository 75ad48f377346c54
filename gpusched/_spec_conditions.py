"""Checking the conditions of conditional parameters (``when:``, see ``_spec_when``): each
condition's values against its parent, and conditions that can never hold together."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpusched._spec_check import Problems, as_text, at, describe, number, show_number
from gpusched.plugin_api import Param, ParamType, ParamValue, SearchSpace

__all__ = ["Condition", "allowed", "value_of", "values_index", "check_satisfiable"]

# Contradictions explained value by value: each explanation walks the parameter's ancestors,
# and a generated file can hold thousands of contradictions over thousands of ancestors.
_EXPLAINED = 10


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


def values_index(parent: Param) -> Mapping[ParamValue, ParamValue]:
    """A categorical or discrete parameter's values, found by what a condition writes for them:
    a categorical's by their text, a discrete's by number (``2.0`` finds ``2``; the parser
    keeps no two equal numbers). Built once per parent: one condition may list thousands of its
    values, and thousands of conditions may name it."""
    return {value: value for value in parent.values}


def allowed(
    p: Problems, cond: Condition, parent: Param,
    index: Mapping[ParamValue, ParamValue] | None = None,
) -> tuple[ParamValue, ...] | None:
    """The values ``cond`` lists (one, or a list meaning any of them), as the parent's values;
    ``index`` is the parent's :func:`values_index`, when the caller keeps one."""
    index = values_index(parent) if index is None else index
    many = isinstance(cond.values, list | tuple)
    raw = list(cond.values) if many else [cond.values]
    if not raw:
        p.add(cond.place, f"must list at least one value of {parent.name!r}")
        return None
    out: list[ParamValue] = []
    first: dict[ParamValue, int] = {}
    for k, item in enumerate(raw):
        place = at(cond.place, k) if many else cond.place
        value = value_of(p, place, item, parent, index)
        if value is None:
            continue
        if value in first:
            label = parent.name if cond.expect is None else "values"
            p.add(place, f"duplicate of {at(label, first[value])} ({describe(item)})")
            continue
        first[value] = k
        out.append(value)
    return tuple(out) if len(out) == len(raw) else None


def value_of(
    p: Problems, place: str, item: Any, parent: Param, index: Mapping[ParamValue, ParamValue]
) -> ParamValue | None:
    """``item`` as one of the values of ``parent`` (a categorical, discrete or integer
    parameter), in the parent's own spelling, or a problem saying which they are; ``index``
    is the parent's :func:`values_index`. Conditions and ``points_to_evaluate`` read values
    with it.

    A discrete parameter's values are numbers: text (``"1"``, quoted in YAML), a list or null
    is "must be a number", as for an integer or a double, not "'1' is not a value of 'd' (1,
    2.5, 4)", which lists the very value it refuses."""
    if parent.type is ParamType.CATEGORICAL:
        text = as_text(item)
        if text is not None and text in index:
            return text
    elif parent.type is ParamType.DISCRETE:
        if not isinstance(item, int | float):  # true/false are ints: "not a value", below
            number(p, place, item)
            return None
        if not isinstance(item, bool) and item in index:
            return index[item]  # the parent's own spelling: 2 for 2.0
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
    params = space.params
    place = {param.name: i for i, param in enumerate(params)}
    never = _never(params, place)
    explained = 0
    for i in sorted(never):
        param = params[i]
        # Report where the contradiction arises, not again at every descendant of it.
        if any(place[q] in never for q in param.when):
            continue
        if p.full:  # the message would not be listed: spare the walks that build it
            return
        if explained == _EXPLAINED:
            p.add(where.get(param.name, ""), f"can never hold: it and its parents ask one "
                                             f"parameter for values that have nothing in "
                                             f"common (the first {_EXPLAINED} such problems "
                                             f"say which)")
            continue
        explained += 1
        need = space.requirements(param)
        name = next(k for k, values in need.items() if not values)
        asked = _asked(params[place[name] + 1:], name)
        asks = [f"{_shown(param.when[name])} here"] if name in param.when else []
        asks += [f"{_shown(asked[q])} for {q!r} to be set" for q in param.when if q in asked]
        p.add(where.get(param.name, ""), f"can never hold: {name!r} would have to be "
                                         f"{' and '.join(asks)}")


def _never(params: Sequence[Param], place: Mapping[str, int]) -> set[int]:
    """The places of the parameters that can never be set.

    What a parameter needs of an ancestor ``a`` is what the children of ``a`` ask of it, all
    of those that are the parameter or its ancestors; it can never be set when that is nothing
    for some ``a``. Listing each parameter's requirements would take time and memory quadratic
    in a long chain of conditions (each parameter's are as long as the chain: 10,000 of them
    fit in an experiment file), so this goes parent by parent instead, with the parameters as
    bitsets: only a parent whose children ask for sets of values with nothing in common can
    leave a requirement empty, and the parameters it does that to lie below its children.
    """
    asks: dict[int, list[tuple[int, tuple[ParamValue, ...]]]] = {}
    for i, param in enumerate(params):
        for parent, values in param.when.items():
            asks.setdefault(place[parent], []).append((i, values))
    torn = [a for a in asks.values()
            if len(a) > 1 and not set.intersection(*(set(values) for _, values in a))]
    if not torn:  # the usual case: no two conditions on one parent exclude each other
        return set()
    below = [1 << i for i in range(len(params))]  # each parameter and its descendants
    for i in reversed(range(len(params))):
        for parent in params[i].when:
            below[place[parent]] |= below[i]
    never = 0
    for a in torn:
        never |= _emptied(a, below)
    return {i for i, bit in enumerate(reversed(f"{never:b}")) if bit == "1"}


def _emptied(asks: Sequence[tuple[int, tuple[ParamValue, ...]]], below: Sequence[int]) -> int:
    """The parameters (a bitset) that need nothing of one parent can give: ``asks`` lists its
    children with the values each asks of it, ``below`` what lies at or below each parameter.

    A parameter at or below some of the children needs of the parent what all of those ask,
    so it needs nothing when, for every value, one of them does not ask for it. Per value that
    is the union of what lies below the children that do not ask for it: runs of children
    between those that do, each run's union a few ORs of a segment tree. The work is about the
    number of values asked (times a logarithm), not the number of children times the values.
    """
    k = len(asks)
    # tree[k + j]: what lies below child j; tree[i] (0 < i < k): the union of tree[2i], tree[2i+1]
    tree = [0] * k + [below[child] for child, _ in asks]
    for i in reversed(range(1, k)):
        tree[i] = tree[2 * i] | tree[2 * i + 1]

    def union(lo: int, hi: int) -> int:
        """What lies below children ``lo`` to ``hi - 1``."""
        out = 0
        lo, hi = lo + k, hi + k
        while lo < hi:
            if lo & 1:
                out |= tree[lo]
                lo += 1
            if hi & 1:
                hi -= 1
                out |= tree[hi]
            lo, hi = lo // 2, hi // 2
        return out

    askers: dict[ParamValue, list[int]] = {}  # value → the children that ask for it, in order
    for j, (_, values) in enumerate(asks):
        for value in values:
            askers.setdefault(value, []).append(j)
    empty = union(0, k)
    for js in askers.values():
        refused, lo = 0, 0
        for j in js:
            refused |= union(lo, j)
            lo = j + 1
        empty &= refused | union(lo, k)
        if not empty:
            break
    return empty


def _asked(params: Sequence[Param], name: str) -> dict[str, tuple[ParamValue, ...]]:
    """``requirements(q)[name]`` for each ``q`` of ``params`` (those after ``name``) that has
    ``name`` as an ancestor, in one pass: the values from the same walk, in the same order."""
    asked: dict[str, tuple[ParamValue, ...]] = {}
    for param in params:
        need: tuple[ParamValue, ...] | None = None
        for parent, values in param.when.items():
            found = values if parent == name else asked.get(parent)
            if found is not None:
                # Parsed values are text or numbers, never booleans: `in` compares as
                # SearchSpace.requirements does.
                need = found if need is None else tuple(v for v in need if v in found)
        if need is not None:
            asked[param.name] = need
    return asked


def _shown(values: Sequence[ParamValue]) -> str:
    if len(values) == 1:
        return describe(values[0])
    return "one of " + ", ".join(describe(v) for v in values)
