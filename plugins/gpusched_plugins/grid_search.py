"""``grid``: every combination of each parameter's grid values, in the experiment file's order.

Each parameter contributes the values of :meth:`Param.grid`: ``discrete`` values in ascending
order (the spec sorts them) and ``categorical`` ones as listed; integers every ``step`` (default
1); a ``double`` with a ``step`` every step, and one without a step at ``points_per_double``
values spread evenly on its scale (``linear``, ``log`` or ``reverse_log``), both ends included
as written and the inner points at the decimals they stand for when they are within float
error of one (``1e-3, 1e-2, 1e-1, 1`` rather than ``0.009999999999999995``: see
:func:`_round_inner`). The grid is their cartesian product with the first
parameter varying slowest (like nested loops written in file order), optionally shuffled by a
seeded permutation.

With conditional parameters (``when:``) the grid holds each distinct assignment once: a loop
runs only where its parameter is active, so no two points differ only in inactive parameters
(:meth:`SearchSpace.combinations`), and the size limit counts those distinct points.

The plugin is a pure function of the history: trial ``number`` gets the first grid point, in grid
order, that no trial of the history used, whatever that trial's state. A point whose trial failed
is therefore *not* retried by the grid; retries are the daemon's business
(``max_retries_per_trial``). Trials whose parameters are not a grid point (for instance those of
an experiment resumed with ``resume_from`` that used another search) are ignored.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NoReturn

import numpy as np

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    ParamValue,
    PluginOptionsError,
    SearchPlugin,
    SearchSpace,
    TrialView,
)

__all__ = ["GridSearch", "MAX_GRID_POINTS"]

MAX_GRID_POINTS = 1_000_000
"""Larger grids are refused: they would never finish and the shuffle would cost real memory."""

_OPTIONS = frozenset({"points_per_double", "shuffle"})


class _Axis:
    """One parameter's grid values, and the reverse lookup value -> index."""

    def __init__(self, param: Param, points: int) -> None:
        values = param.grid(points)
        if param.type is ParamType.DOUBLE and param.step is None:
            values = _round_inner(values)
        # Duplicate values would make a point that history can never mark as used (the lookup
        # finds the first copy), so the grid would propose it forever: keep the first of each.
        self.values: tuple[ParamValue, ...] = tuple(dict.fromkeys(values))
        self._index = {value: i for i, value in enumerate(self.values)}
        # Numeric grids are ascending, which lets lookup bisect for a near miss.
        self._numbers: list[float] | None = None
        if param.is_numeric_range:
            self._numbers = [float(v) for v in self.values]

    def __len__(self) -> int:
        return len(self.values)

    def index(self, value: Any) -> int | None:
        """The index of ``value`` on this axis, or None when it is not a grid value.

        Floats from the trial log may have made a round trip through JSON and SQLite, so a
        value within a relative 1e-9 of a grid value counts as that value.
        """
        try:
            return self._index[value]
        except (KeyError, TypeError):  # TypeError: an unhashable value from a foreign trial
            pass
        numbers = self._numbers
        if numbers is None or isinstance(value, bool) or not isinstance(value, int | float):
            return None
        at = bisect.bisect_left(numbers, float(value))
        for i in (at - 1, at):
            if 0 <= i < len(numbers) and math.isclose(
                numbers[i], value, rel_tol=1e-9, abs_tol=1e-12
            ):
                return i
        return None


class GridSearch(SearchPlugin):
    """Grid search: options ``points_per_double`` (int >= 2, default 5), ``shuffle`` (bool)."""

    summary: ClassVar[str] = "every combination of the parameters' grid values, in file order"

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        points, shuffle = _parse_options(self.options)
        # Counted before any axis is built: an integer range of 1e9 must be refused, not listed.
        lengths = [_axis_length(param, points) for param in space]
        if math.prod(lengths) > MAX_GRID_POINTS and not (
            space.conditional and max(lengths) <= MAX_GRID_POINTS
        ):
            _refuse(space, lengths, math.prod(lengths))
        self._axes = tuple(_Axis(param, points) for param in space)
        # The distinct points: with conditional parameters, fewer than the product of the axes.
        self._grid = space.combinations([axis.values for axis in self._axes])
        self._size = self._grid.size  # len() raises past 2**63: refused below instead
        if self._size > MAX_GRID_POINTS:
            _refuse(space, lengths, self._size)
        self._order: np.ndarray[Any, np.dtype[np.int64]] | None = None
        if shuffle:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise PluginOptionsError(f"seed must be a non-negative integer (got {seed!r})")
            self._order = np.random.default_rng(seed).permutation(self._size)

    def size(self) -> int:
        """How many points the grid has: the daemon's default ``max_trials`` for this search."""
        return self._size

    def suggest(
        self, number: int, history: Sequence[TrialView]
    ) -> Mapping[str, ParamValue] | None:
        """The first grid point no trial of ``history`` used, or None once all are used."""
        used = {index for trial in history if (index := self._flat_index(trial)) is not None}
        # At most len(used) positions are skipped, so this loop is O(len(history)).
        for position in range(self._size):
            index = position if self._order is None else int(self._order[position])
            if index not in used:
                return self._point(index)
        return None

    def _flat_index(self, trial: TrialView) -> int | None:
        """The grid index of ``trial``'s parameters, or None when they are not a grid point."""
        positions: dict[str, int] = {}
        for param, axis in zip(self.space, self._axes, strict=True):
            if param.name in trial.params:
                i = axis.index(trial.params[param.name])
                if i is not None:
                    positions[param.name] = i
        # An active parameter without a grid value makes this None; inactive ones don't count.
        return self._grid.index(positions)

    def _point(self, index: int) -> dict[str, ParamValue]:
        return self._grid.point(index)


def _refuse(space: SearchSpace, lengths: Sequence[int], size: int) -> NoReturn:
    shape = " x ".join(f"{p.name}={n:,}" for p, n in zip(space, lengths, strict=True))
    if space.conditional:
        shape += ", each conditional parameter counted only where it is active"
    raise PluginOptionsError(
        f"the grid has {size:,} points ({shape}), more than the limit of "
        f"{MAX_GRID_POINTS:,}: give doubles a step, lower points_per_double, "
        f"or use random search"
    )


def _round_inner(values: Sequence[ParamValue]) -> tuple[ParamValue, ...]:
    """A double's grid with its inner points at the decimals they stand for.

    :meth:`Param.grid` spaces the points on the scale through ``exp``/``log``, so a log grid
    from 1e-3 to 1 comes out as 0.001, 0.009999999999999995, 0.09999999999999998, 1.0: the ends
    are the written ones, the inner points a few units in the last place off ``0.01`` and
    ``0.1``, which the trial would get as its flag (and a linear one from 0.1 to 0.7 has
    0.5499999999999999). An inner point becomes the decimal it stands for when that decimal
    is short, at most 12 significant digits, and 15 significant digits of the point give it
    and lie within 4 units in the last place of the point: rounding noise, far below any
    difference a search means. Other points (``sqrt(1e-5)``, a third) stay as they are. The
    ends stay, and the whole grid stays as it was if the points would not stay strictly
    increasing (a range a few units in the last place wide).
    """
    if len(values) < 3:
        return tuple(values)
    numbers = [float(v) for v in values]
    out = [numbers[0]]
    for x in numbers[1:-1]:
        nice = float(f"{x:.15g}")
        short = float(f"{nice:.12g}") == nice  # at most 12 significant digits
        out.append(nice if short and abs(nice - x) <= 4 * math.ulp(x) else x)
    out.append(numbers[-1])
    if all(a < b for a, b in itertools.pairwise(out)):
        return tuple(out)
    return tuple(values)


def _axis_length(param: Param, points: int) -> int:
    """How many values ``param.grid(points)`` yields, without building them.

    Mirrors :meth:`Param.grid`'s count; duplicates removed later can only make the grid smaller.
    """
    if not param.is_numeric_range:
        return len(param.values)
    if param.step is None and param.type is not ParamType.INTEGER:
        return points
    assert param.low is not None and param.high is not None, param.name
    step = param.step if param.step is not None else 1.0
    return math.floor((param.high - param.low) / step + 1e-9) + 1


def _parse_options(options: Mapping[str, Any]) -> tuple[int, bool]:
    """Check the options; return ``(points_per_double, shuffle)``."""
    unknown = sorted(map(str, set(options) - _OPTIONS))
    if unknown:
        raise PluginOptionsError(
            f"unknown grid option(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(_OPTIONS))})"
        )
    points = options.get("points_per_double", 5)
    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise PluginOptionsError(f"points_per_double must be an integer >= 2 (got {points!r})")
    shuffle = options.get("shuffle", False)
    if not isinstance(shuffle, bool):
        raise PluginOptionsError(f"shuffle must be true or false (got {shuffle!r})")
    return points, shuffle
