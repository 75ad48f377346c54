"""Counting and indexing the distinct assignments of a space with conditional parameters.

A grid over a conditional space is not the cartesian product of its axes: an inactive parameter
takes no value, so the product would hold the same assignment once per value of every inactive
axis. :class:`Combinations` numbers the distinct assignments instead, like nested loops written
in file order where a loop runs only when its parameter is active. Without conditions this is
exactly the mixed-radix numbering of the product (the first parameter varies slowest).

How many ways the parameters from one on can be assigned depends only on which of them the
earlier ones have already switched off: those whose condition names an earlier parameter that is
inactive, or that took a value the condition does not allow. That set (a bitmask) is the state of
a walk in file order; the counts of every state the walk can reach are computed once, level by
level and without recursion, so :meth:`point` and :meth:`index` only look them up. Values that
no condition tells apart lead to the same state, and so do the many paths to a shared ancestor
or the many parents of one parameter: a chain of conditions as long as the space has a few
states per level, and a space without conditions one. The work is the number of parameters
times the states per level, plus each parent's axis matched once against each distinct
condition on it. States do multiply where k parents are all declared before their children
(k switches, then what each one enables): up to 2^k per level in between, as in any numbering
that walks the file in order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # plugin_api imports this module; the names are only needed for types
    from gpusched.plugin_api import ParamValue, SearchSpace

__all__ = ["Combinations"]


def _bits(offsets: Sequence[int]) -> int:
    """The bitmask with the bits at ``offsets`` set, built in one pass (or-ing them one at a
    time into a wide integer would copy it once per bit)."""
    if not offsets:
        return 0
    buf = bytearray(max(offsets) // 8 + 1)
    for k in offsets:
        buf[k >> 3] |= 1 << (k & 7)
    return int.from_bytes(buf, "little")


class Combinations:
    """The distinct assignments of ``space`` when each parameter takes the values of its axis.

    ``axes`` has one sequence of values per parameter, in the space's order (a grid search
    passes each parameter's grid values). ``len()`` is how many distinct assignments there are;
    :meth:`point` gives the one at an index and :meth:`index` finds an assignment's index.

    A condition names the latest parameter of that name before it (a space read from an
    experiment file has no name twice).
    """

    def __init__(self, space: SearchSpace, axes: Sequence[Sequence[ParamValue]]) -> None:
        self._params = space.params
        self._axes = [tuple(axis) for axis in axes]
        if len(self._axes) != len(self._params):
            raise ValueError(f"{len(self._axes)} axes for {len(self._params)} parameters")
        # The walk's state before parameter i: bit k set when parameter i + k is switched off by
        # a condition on a parameter before i. Entering i shifts it right by one; an inactive
        # parameter then switches off all its children (_off[i]), an active parent the children
        # that its value fails (_on[i][position]); both masks count from parameter i + 1.
        self._off: list[int] = []
        self._on: list[tuple[int, ...] | None] = []
        # _weights[i]: each distinct mask of _on[i] with the number of axis values giving it.
        self._weights: list[tuple[tuple[int, int], ...]] = []
        for i, groups in enumerate(self._children()):
            if not groups:
                self._off.append(0)
                self._on.append(None)
                self._weights.append(())
                continue
            self._off.append(_bits([k for offsets in groups.values() for k in offsets]))
            # Children with the same condition on i fail the same values: each such group is
            # matched against the axis once, and the values failing the same groups share a mask.
            fails = [[not holds for holds in self._matches(i, offsets[0] + i + 1, allowed)]
                     for allowed, offsets in groups.items()]
            masks: dict[tuple[bool, ...], int] = {}
            on: list[int] = []
            for failed in zip(*fails, strict=True):
                if failed not in masks:
                    masks[failed] = _bits([k for fail, offsets in zip(failed, groups.values(),
                                                                      strict=True)
                                           if fail for k in offsets])
                on.append(masks[failed])
            self._on.append(tuple(on))
            weights: dict[int, int] = {}
            for mask in on:
                weights[mask] = weights.get(mask, 0) + 1
            self._weights.append(tuple(weights.items()))
        self._levels = self._count()
        self._size = self._levels[0][0]

    def _children(self) -> list[dict[tuple[ParamValue, ...], list[int]]]:
        """For each parameter, its children grouped by the values their condition allows it:
        each child as its offset from the next parameter."""
        out: list[dict[tuple[ParamValue, ...], list[int]]] = [{} for _ in self._params]
        place: dict[str, int] = {}
        for j, param in enumerate(self._params):
            for parent, allowed in param.when.items():
                i = place[parent]  # an earlier parameter, as SearchSpace checked
                out[i].setdefault(allowed, []).append(j - i - 1)
            place[param.name] = j
        return out

    def _matches(self, i: int, j: int, allowed: tuple[ParamValue, ...]) -> list[bool]:
        """For each value on parameter ``i``'s axis, whether child ``j``'s condition on it,
        which allows ``allowed``, holds: :meth:`Param.conditions_hold` of the child with that
        one condition, so values match exactly as everywhere else (a number as a number,
        never a boolean)."""
        name = self._params[i].name
        condition = replace(self._params[j], when={name: allowed})
        return [condition.conditions_hold({name: value}) for value in self._axes[i]]

    def _count(self) -> list[dict[int, int]]:
        """For each level i (0 to len(params)), the states that the walk can reach before
        parameter i, each mapped to how many ways parameters i, i+1, ... can be assigned."""
        n = len(self._params)
        levels: list[dict[int, int]] = [{} for _ in range(n + 1)]
        levels[0][0] = 0
        for i in range(n):  # forward: the states reachable at each level
            here, below = levels[i], levels[i + 1]
            off, parent, weights = self._off[i], self._on[i] is not None, self._weights[i]
            for state in here:
                rest = state >> 1
                if state & 1:
                    below[rest | off] = 0
                elif parent:
                    for mask, _ in weights:
                        below[rest | mask] = 0
                else:
                    below[rest] = 0
        levels[n] = {0: 1}  # nothing left to assign: one way (no condition reaches past the end)
        for i in range(n - 1, -1, -1):  # backward: the counts
            here, below = levels[i], levels[i + 1]
            off, parent, weights = self._off[i], self._on[i] is not None, self._weights[i]
            length = len(self._axes[i])
            for state in here:
                rest = state >> 1
                if state & 1:
                    here[state] = below[rest | off]
                elif parent:
                    here[state] = sum(times * below[rest | mask] for mask, times in weights)
                else:
                    here[state] = length * below[rest]
        return levels

    def __len__(self) -> int:
        return self._size

    @property
    def size(self) -> int:
        """How many combinations there are: ``len()`` as a Python integer, which ``len()``
        itself cannot return past 2**63 - 1 (OverflowError)."""
        return self._size

    def point(self, index: int) -> dict[str, ParamValue]:
        """The assignment at ``index`` (0 <= index < len): active parameters only."""
        if not 0 <= index < self._size:
            raise IndexError(f"combination {index} of {self._size}")
        out: dict[str, ParamValue] = {}
        state = 0
        for i, param in enumerate(self._params):
            rest = state >> 1
            if state & 1:
                state = rest | self._off[i]
                continue
            axis, below, on = self._axes[i], self._levels[i + 1], self._on[i]
            if on is None:
                position, index = divmod(index, below[rest])
                out[param.name] = axis[position]
                state = rest
                continue
            for value, mask in zip(axis, on, strict=True):
                state = rest | mask
                if index < below[state]:
                    out[param.name] = value
                    break
                index -= below[state]
        return out

    def index(self, positions: Mapping[str, int]) -> int | None:
        """The index of the assignment whose active parameters take the values at
        ``positions`` (parameter name → position on its axis), or None when an active
        parameter has no position. Positions of inactive parameters are ignored."""
        index = 0
        state = 0
        for i, param in enumerate(self._params):
            rest = state >> 1
            if state & 1:
                state = rest | self._off[i]
                continue
            position = positions.get(param.name)
            if position is None or not 0 <= position < len(self._axes[i]):
                return None
            below, on = self._levels[i + 1], self._on[i]
            if on is None:
                index += position * below[rest]
                state = rest
                continue
            index += sum(below[rest | mask] for mask in on[:position])
            state = rest | on[position]
        return index
