"""``points_to_evaluate:``: parameter sets an experiment's first trials take, before the search
plugin's own suggestions (Ray Tune's ``points_to_evaluate``, Optuna's ``enqueue_trial``).

Each point is checked here, against the parsed parameters: every name must be a parameter,
every value one that parameter can take, and a point must give a value to every parameter that
is active under it, and to no other (the search fills nothing in). docs/experiment-file.md has
the rules; the scheduler hands the points out (``ExperimentRun.next_point``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from gpusched._spec_check import (
    Problems,
    at,
    describe,
    did_you_mean,
    number,
    show_number,
)
from gpusched._spec_conditions import value_of, values_index
from gpusched.plugin_api import Param, ParamType, ParamValue, SearchSpace

__all__ = ["Point", "check_points"]

Point = Mapping[str, ParamValue]
"""One checked point: the active parameters' values, in the order of ``params``."""

# Points times parameters, plus every key written: the work of checking them. A file of at most
# 1 MiB writes far fewer; only YAML anchors that repeat a long list or mapping reach it.
_MAX_WORK = 1_000_000
_MAX_GUESSES = 20  # "did you mean" for unknown names: each compares with every parameter's
_EXAMPLE = "e.g. [{lr: 0.01, optimizer: adam}]"


def check_points(
    p: Problems, place: str, raw: Any, space: SearchSpace | None, *, max_trials: int | None,
) -> tuple[Point, ...]:
    """The points of ``raw`` that are valid, each as the values a trial receives; a problem for
    each one that is not. ``space`` None: the parameters were refused, and only the shape of
    the list is checked (their problems are listed; a point's would be guesses)."""
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a list of points, each a mapping of parameter names to values, "
                     f"{_EXAMPLE} (got {describe(raw)})")
        return ()
    if max_trials is not None and len(raw) > max_trials:
        p.add(place, f"lists {len(raw)} points, more than max_trials ({max_trials}): each point "
                     f"is a trial; raise max_trials or list fewer points")
    work = sum(len(item) if isinstance(item, Mapping) else 1 for item in raw)
    if work + len(raw) * len(space or ()) > _MAX_WORK:
        p.add(place, f"is too large to check ({len(raw):,} points; YAML anchors that repeat a "
                     f"long list?)")
        return ()
    reader = _Reader(p, space)
    points = [reader.point(at(place, i), item) for i, item in enumerate(raw)]
    return tuple(point for point in points if point is not None)


class _Reader:
    """Checks points against one search space, sharing the work between them: the parameters
    by name, the value lookups of the listed ones, and the "did you mean" budget."""

    def __init__(self, p: Problems, space: SearchSpace | None) -> None:
        self.p = p
        self.space = space
        self.by_name = {} if space is None else {param.name: param for param in space}
        self.indexes = {param.name: values_index(param) for param in self.by_name.values()
                        if not param.is_numeric_range}
        self.guesses = _MAX_GUESSES

    def point(self, place: str, raw: Any) -> Point | None:
        """``raw`` as a point, or None with its problems listed."""
        if not isinstance(raw, Mapping):
            self.p.add(place, f"must be a mapping of parameter names to values, such as "
                              f"{{lr: 0.01, optimizer: adam}} (got {describe(raw)})")
            return None
        if self.space is None:
            return None
        before = len(self.p)
        self._names(place, raw)
        values = self._values(place, raw, self.space.params)
        return MappingProxyType(values) if len(self.p) == before else None

    def _names(self, place: str, raw: Mapping[Any, Any]) -> None:
        """A problem for each key that names no parameter."""
        for key in raw:
            if not isinstance(key, str):
                self.p.add(place, f"keys must be parameter names (got {describe(key)})")
            elif key not in self.by_name:
                self.p.add(at(place, key), f"no parameter named {key!r}{self._hint(key)}")

    def _hint(self, name: str) -> str:
        """`` (did you mean ...?)`` for the first few unknown names: each guess compares the
        name with every parameter's, too slow for a generated file with thousands of each."""
        if self.p.full or not self.guesses:
            return ""
        self.guesses -= 1
        return did_you_mean(name, self.by_name)

    def _values(self, place: str, raw: Mapping[Any, Any], params: Sequence[Param]
                ) -> dict[str, ParamValue]:
        """The values of the parameters active under ``raw``, in file order (as
        :meth:`SearchSpace.active` decides activity), with a problem for each one missing,
        refused, or given to an inactive parameter."""
        values: dict[str, ParamValue] = {}
        missing: list[str] = []
        # Parameters whose activity cannot be told: a parent's value is missing or refused (or
        # its own activity could not be told). Their values are checked, their activity is not.
        unsure: set[str] = set()
        for param in params:
            given = param.name in raw
            where = at(place, param.name)
            if any(parent in unsure for parent in param.when):
                unsure.add(param.name)
                if given:
                    self._value(where, raw[param.name], param)
            elif not param.conditions_hold(values):
                if given:
                    self.p.add(where, f"{_why_inactive(param, values)}: leave it out")
            elif not given:
                missing.append(param.name)
                unsure.add(param.name)
            elif (value := self._value(where, raw[param.name], param)) is None:
                unsure.add(param.name)
            else:
                values[param.name] = value
        if missing:
            names = ", ".join(repr(name) for name in missing)
            self.p.add(place, f"no value for {names}: a point gives a value to every parameter "
                              f"that is active under it (the search fills none in)")
        return values

    def _value(self, place: str, item: Any, param: Param) -> ParamValue | None:
        """``item`` as a value of ``param``, as a trial receives it, or None with a problem."""
        if param.type is ParamType.DOUBLE:
            return _double(self.p, place, item, param)
        return value_of(self.p, place, item, param, self.indexes.get(param.name, {}))


def _double(p: Problems, place: str, item: Any, param: Param) -> float | None:
    """A number in the range of the double ``param``, on its step if it has one."""
    value = number(p, place, item)
    if value is None:
        return None
    assert param.low is not None and param.high is not None
    if not param.low <= value <= param.high:
        p.add(place, f"{show_number(value)} is outside the range of {param.name!r} "
                     f"({show_number(param.low)}..{show_number(param.high)})")
        return None
    if param.range_problem(value) is not None:  # in the range: off the step
        assert param.step is not None
        p.add(place, f"{show_number(value)} is not on the step of {param.name!r} "
                     f"({show_number(param.low)}, {show_number(param.low + param.step)}, ...)")
        return None
    return float(value)


def _why_inactive(param: Param, values: Mapping[str, ParamValue]) -> str:
    """Why ``param`` is not active under ``values`` (the values of the active parameters): the
    first of its conditions that fails."""
    for parent, allowed in param.when.items():
        if parent not in values:
            return (f"{param.name!r} is set only when {parent!r} is, and {parent!r} is not "
                    f"active in this point")
        if values[parent] not in allowed:
            wanted = " or ".join(describe(v) for v in allowed)
            return (f"{param.name!r} is set only when {parent!r} is {wanted} (this point has "
                    f"{parent!r} {describe(values[parent])})")
    return f"{param.name!r} is not active in this point"  # not reached: a condition failed
