"""Conditional parameters in an experiment file: ``when:`` and AI Platform's spelling of it.

Ours: a parameter carries ``when: {optimizer: sgd}`` (or ``{optimizer: [sgd, rmsprop]}``, any
of them; several parents must all hold). AI Platform's (Vertex AI's ``StudySpec``) nests the
children inside the parent::

    - parameterName: optimizer
      type: CATEGORICAL
      categoricalValues: [sgd, adam]
      conditionalParameterSpecs:
        - parameterSpec: {parameterName: momentum, type: DOUBLE, minValue: 0, maxValue: 0.99}
          parentCategoricalValues: {values: [sgd]}

:func:`expand` flattens the nesting (a child right after its parent, depth first) and reads the
raw conditions; once the parameters are parsed, :func:`attach` checks each condition against its
parent (with ``_spec_conditions``) and sets :attr:`Param.when`. The rules, and why a parent
must come first, are in docs/experiment-file.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpusched._spec_check import (
    Problems,
    at,
    describe,
    did_you_mean,
    json_int,
    key_text,
    unknown_key,
)
from gpusched._spec_conditions import Condition, allowed, check_satisfiable, values_index
from gpusched.plugin_api import Param, ParamType, ParamValue, SearchSpace

__all__ = ["Item", "expand", "attach", "CHILDREN", "PARENT_VALUES"]

CHILDREN = "conditionalParameterSpecs"
"""AI Platform's key for the parameters that depend on this one."""

PARENT_VALUES: Mapping[str, ParamType] = {
    "parentCategoricalValues": ParamType.CATEGORICAL,
    "parentDiscreteValues": ParamType.DISCRETE,
    "parentIntValues": ParamType.INTEGER,
}
"""A ConditionalParameterSpec's keys for the parent's values → the parent type each is for."""

_MAX_DEPTH = 32  # nesting of conditionalParameterSpecs; deeper is a YAML anchor loop
_MAX_PARAMS = 10_000  # anchors can also make a nesting tree huge without any loop
# Values listed over all parameters (theirs and their conditions'): more than a file of
# MAX_FILE_BYTES can write out, so only YAML anchors that repeat a long list reach it, and
# the checks below would take each parameter's copy value by value.
_MAX_VALUES = 1_000_000
_MAX_GUESSES = 20  # "did you mean" for unknown parents: each compares with every name
_EXAMPLE = "e.g. {optimizer: sgd} or {optimizer: [sgd, rmsprop]}"


@dataclass(frozen=True)
class Item:
    """One parameter mapping as written, after flattening, with its raw conditions;
    ``where`` is the place of its conditions as a whole."""

    place: str
    raw: Any
    where: str = ""
    conditions: tuple[Condition, ...] = field(default=())


def _name_of(raw: Any) -> str | None:
    """A parameter mapping's name as written, in any spelling, if it is text."""
    if not isinstance(raw, Mapping):
        return None
    name = next((raw[key] for key in ("name", "parameterName", "parameterId") if key in raw),
                None)
    return name if isinstance(name, str) and name else None


def expand(p: Problems, place: str, raw: Sequence[Any]) -> list[Item]:
    """The parameters of the list ``raw`` with their AI Platform children flattened in, each
    with the conditions it is written with (its own ``when`` and, for a child, its parent's)."""
    out: list[Item] = []
    values = [0]  # listed so far, see _MAX_VALUES

    def visit(item_place: str, item: Any, inherited: tuple[Condition, ...], where: str,
              depth: int) -> None:
        if len(out) == _MAX_PARAMS:
            p.add(place, f"more than {_MAX_PARAMS:,} parameters (or a YAML anchor that "
                         f"refers to itself)")
        if len(out) >= _MAX_PARAMS or values[0] > _MAX_VALUES:
            return
        values[0] += _size(item) + sum(_size(cond.values) for cond in inherited)
        if values[0] > _MAX_VALUES:
            p.add(item_place, f"the parameters list more than {_MAX_VALUES:,} values (YAML "
                              f"anchors that repeat a long list?)")
            return
        if depth > _MAX_DEPTH:
            p.add(item_place, "is nested too deeply (or refers to itself)")
            return
        own = _when(p, at(item_place, "when"), item) if isinstance(item, Mapping) else ()
        where = at(item_place, "when") if own or not where else where
        out.append(Item(item_place, item, where, (*inherited, *own)))
        children = item.get(CHILDREN) if isinstance(item, Mapping) else None
        if children is None:
            return
        children_place = at(item_place, CHILDREN)
        if not isinstance(children, list | tuple):
            p.add(children_place, f"must be a list of {{parameterSpec: ..., "
                                  f"parentCategoricalValues: ...}} (got {describe(children)})")
            return
        for j, child in enumerate(children):
            child_place = at(children_place, j)
            read = _child(p, child_place, child, _name_of(item))
            if read is not None:
                visit(at(child_place, "parameterSpec"), read[0], (read[1],), child_place,
                      depth + 1)

    for index, item in enumerate(raw):
        visit(at(place, index), item, (), "", 0)
    return out


def _size(raw: Any) -> int:
    """About how many values a parameter mapping (or a condition's values) holds: the items of
    its lists and of its mappings' lists (its nested children are counted as they are met)."""
    if isinstance(raw, list | tuple):
        return len(raw)
    if not isinstance(raw, Mapping):
        return 1
    size = 0
    for key, value in raw.items():
        if isinstance(value, Mapping) and key != CHILDREN:
            size += sum(len(v) if isinstance(v, list | tuple) else 1 for v in value.values())
        elif isinstance(value, list | tuple) and key != CHILDREN:
            size += len(value)
        else:
            size += 1
    return size


def _when(p: Problems, place: str, item: Mapping[Any, Any]) -> tuple[Condition, ...]:
    """The conditions of a ``when:`` mapping (none when it is absent or null)."""
    raw = item.get("when")
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping of earlier parameters to their values, {_EXAMPLE} "
                     f"(got {describe(raw)})")
        return ()
    if not raw:
        p.add(place, f"must name at least one parameter, {_EXAMPLE} (leave `when` out for a "
                     f"parameter that is always set)")
        return ()
    out = []
    for key, values in raw.items():
        name = key_text(p, place, key)
        if name is not None:
            out.append(Condition(at(place, name), name, values))
    return tuple(out)


def _child(
    p: Problems, place: str, raw: Any, parent: str | None
) -> tuple[Any, Condition] | None:
    """A ConditionalParameterSpec → (its parameterSpec, its condition on ``parent``)."""
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping {{parameterSpec: ..., parentCategoricalValues: "
                     f"{{values: [...]}}}} (got {describe(raw)})")
        return None
    known = ("parameterSpec", *PARENT_VALUES)
    for key in raw:
        if key not in known:
            p.add(place, unknown_key(key, known))
    given = [key for key in PARENT_VALUES if raw.get(key) is not None]
    spec = raw.get("parameterSpec")
    if spec is None:
        p.add(at(place, "parameterSpec"), "required: the conditional parameter")
    if not given:
        p.add(place, f"required: one of {', '.join(PARENT_VALUES)} (the parent's values that "
                     f"enable this parameter)")
    elif len(given) > 1:
        p.add(place, f"give only one of {', '.join(PARENT_VALUES)} (got {' and '.join(given)})")
    if spec is None or len(given) != 1:
        return None
    key = given[0]
    wrapper = raw[key]
    if not isinstance(wrapper, Mapping) or "values" not in wrapper:
        p.add(at(place, key), f"must be a mapping {{values: [...]}} (got {describe(wrapper)})")
        return None
    for extra in wrapper:
        if extra != "values":
            p.add(at(place, key), unknown_key(extra, ("values",)))
    values = wrapper["values"]
    if key == "parentIntValues" and isinstance(values, list | tuple):
        values = [json_int(v) for v in values]  # int64s: quoted in the APIs' JSON ("3")
    condition = Condition(at(at(place, key), "values"), parent, values, key, PARENT_VALUES[key])
    return spec, condition


def attach(p: Problems, items: Sequence[Item], parsed: Sequence[Param | None]
           ) -> tuple[Param, ...]:
    """The parsed parameters (``None`` for one that was refused) with their conditions checked
    and set; a parameter with a bad condition is left out (its problem is listed)."""
    index_of = {param.name: i for i, param in enumerate(parsed) if param is not None}
    written = {name for item in items if (name := _name_of(item.raw)) is not None}
    indexes: dict[str, Mapping[ParamValue, ParamValue]] = {}  # see values_index
    guesses = [_MAX_GUESSES]

    def hint(name: str) -> str:
        """`` (did you mean ...?)`` for the first few unknown parents: each guess compares the
        name with every parameter's, too slow for a generated file with thousands of each."""
        if p.full or not guesses[0]:
            return ""
        guesses[0] -= 1
        return did_you_mean(name, index_of)

    out: list[Param] = []
    for i, (item, param) in enumerate(zip(items, parsed, strict=True)):
        # A refused parameter's conditions are checked all the same: every problem is listed,
        # a wrong parent*Values beside a bad minValue too.
        name = _name_of(item.raw) if param is None else param.name
        when: dict[str, tuple[ParamValue, ...]] = {}
        fine = param is not None
        for cond in item.conditions:
            if cond.parent in when:
                p.add(cond.place, f"a second condition on {cond.parent!r}: give it once (a "
                                  f"list of values means any of them)")
                fine = False
                continue
            parent = _parent(p, cond, name, i=i, index_of=index_of, parsed=parsed,
                             written=written, hint=hint)
            if parent is not None and parent.name not in indexes:
                indexes[parent.name] = values_index(parent)
            values = None if parent is None else allowed(p, cond, parent, indexes[parent.name])
            if parent is None or values is None:
                fine = False
                continue
            when[parent.name] = values
        if fine and param is not None:
            out.append(dataclasses.replace(param, when=when) if when else param)
    kept = {param.name for param in out}
    # A child of a parameter left out is left out too: the file is refused anyway, and the
    # search space below must only name parents it holds.
    accepted: list[Param] = []
    for param in out:
        if all(parent in kept for parent in param.when):
            accepted.append(param)
        else:
            kept.discard(param.name)
    where = {name: item.where for item in items if (name := _name_of(item.raw)) is not None}
    check_satisfiable(p, where, SearchSpace(tuple(accepted)))
    return tuple(accepted)


def _parent(
    p: Problems, cond: Condition, child: str | None, *, i: int, index_of: Mapping[str, int],
    parsed: Sequence[Param | None], written: set[str], hint: Callable[[str], str],
) -> Param | None:
    """The parameter ``cond`` names, if the parameter named ``child`` (None: it has no valid
    name) may be conditioned on it (else a problem, or silence when the parent itself was
    refused with a problem of its own)."""
    name = cond.parent
    if name is None:  # an AI Platform parent without a valid name: said at the parent
        return None
    if name == child:
        p.add(cond.place, "a parameter cannot depend on itself")
        return None
    if name not in index_of:
        if name not in written:
            p.add(cond.place, f"no parameter named {name!r}{hint(name)}")
        return None
    j = index_of[name]
    parent = parsed[j]
    assert parent is not None
    if j > i:
        p.add(cond.place, f"{name!r} comes after this parameter: a condition can only name a "
                          f"parameter listed before it (move {name!r} up)")
        return None
    if parent.type is ParamType.DOUBLE:
        p.add(cond.place, f"{name!r} is a double, which cannot be conditioned on (a value "
                          f"equal to the one written would almost never be drawn): make it "
                          f"discrete, categorical or integer")
        return None
    if cond.expect is not None and cond.expect is not parent.type:
        right = next(k for k, t in PARENT_VALUES.items() if t is parent.type)
        p.add(cond.place, f"{cond.key} is for {_a(cond.expect)} parent, and {name!r} is "
                          f"{parent.type}: write {right}")
        return None
    return parent


def _a(kind: ParamType) -> str:
    return f"an {kind}" if kind is ParamType.INTEGER else f"a {kind}"
