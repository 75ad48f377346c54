"""Counting and indexing the distinct assignments of a space with conditional parameters.

A grid over a conditional space is not the cartesian product of its axes: an inactive parameter
takes no value, so the product would hold the same assignment once per value of every inactive
axis. :class:`Combinations` numbers the distinct assignments instead, like nested loops written
in file order where a loop runs only when its parameter is active. Without conditions this is
exactly the mixed-radix numbering of the product (the first parameter varies slowest).

Counts below a parameter depend only on the values of the earlier parameters that later ones
name in a condition; they are memoised on those values, so counting, :meth:`point` and
:meth:`index` cost about the sum of the axes' lengths, not the size of the space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plugin_api imports this module; the names are only needed for types
    from gpusched.plugin_api import ParamValue, SearchSpace

__all__ = ["Combinations"]

_ABSENT = object()  # the memo key's mark for a parent that is inactive


class Combinations:
    """The distinct assignments of ``space`` when each parameter takes the values of its axis.

    ``axes`` has one sequence of values per parameter, in the space's order (a grid search
    passes each parameter's grid values). ``len()`` is how many distinct assignments there are;
    :meth:`point` gives the one at an index and :meth:`index` finds an assignment's index.
    """

    def __init__(self, space: SearchSpace, axes: Sequence[Sequence[ParamValue]]) -> None:
        self._params = space.params
        self._axes = [tuple(axis) for axis in axes]
        if len(self._axes) != len(self._params):
            raise ValueError(f"{len(self._axes)} axes for {len(self._params)} parameters")
        parents = {name for param in self._params for name in param.when}
        self._is_parent = [param.name in parents for param in self._params]
        # needed[i]: the parents, declared before i, that parameters from i on refer to; their
        # values are all that the number of completions from i depends on.
        self._needed: list[tuple[str, ...]] = []
        for i in range(len(self._params) + 1):
            earlier = {p.name for p in self._params[:i]}
            later = [name for p in self._params[i:] for name in p.when if name in earlier]
            self._needed.append(tuple(dict.fromkeys(later)))
        self._memo: dict[tuple[object, ...], int] = {}
        self._size = self._count(0, {})

    def __len__(self) -> int:
        return self._size

    def _count(self, i: int, values: Mapping[str, ParamValue]) -> int:
        """How many ways parameters ``i``, ``i+1``, ... can be assigned after ``values`` (the
        values of the active parents before ``i``)."""
        key = (i, *(values.get(name, _ABSENT) for name in self._needed[i]))
        if key in self._memo:
            return self._memo[key]
        # Through the parameters that are no parent, the count is a plain product (a loop, so
        # that a long space does not recurse once per parameter); a parent splits it.
        count = 1
        for j in range(i, len(self._params)):
            param = self._params[j]
            if not param.conditions_hold(values):
                continue
            if self._is_parent[j]:
                count *= sum(self._count(j + 1, {**values, param.name: v})
                             for v in self._axes[j])
                break
            count *= len(self._axes[j])
        self._memo[key] = count
        return count

    def point(self, index: int) -> dict[str, ParamValue]:
        """The assignment at ``index`` (0 <= index < len): active parameters only."""
        if not 0 <= index < self._size:
            raise IndexError(f"combination {index} of {self._size}")
        values: dict[str, ParamValue] = {}  # the active parents so far
        out: dict[str, ParamValue] = {}
        for i, param in enumerate(self._params):
            if not param.conditions_hold(values):
                continue
            axis = self._axes[i]
            if not self._is_parent[i]:
                position, index = divmod(index, self._count(i + 1, values))
                out[param.name] = axis[position]
                continue
            for value in axis:
                below = self._count(i + 1, {**values, param.name: value})
                if index < below:
                    break
                index -= below
            values[param.name] = out[param.name] = value
        return out

    def index(self, positions: Mapping[str, int]) -> int | None:
        """The index of the assignment whose active parameters take the values at
        ``positions`` (parameter name → position on its axis), or None when an active
        parameter has no position. Positions of inactive parameters are ignored."""
        values: dict[str, ParamValue] = {}
        index = 0
        for i, param in enumerate(self._params):
            if not param.conditions_hold(values):
                continue
            position = positions.get(param.name)
            if position is None or not 0 <= position < len(self._axes[i]):
                return None
            if not self._is_parent[i]:
                index += position * self._count(i + 1, values)
                continue
            for value in self._axes[i][:position]:
                index += self._count(i + 1, {**values, param.name: value})
            values[param.name] = self._axes[i][position]
        return index
