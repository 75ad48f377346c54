"""The plugin interface: the only gpusched module a search or stopping plugin imports.

A search plugin proposes the next trial's hyperparameters; a stopping plugin decides whether a
running trial should stop early. Both are pure functions of the trial log (plus the experiment's
seed): a restarted daemon rebuilds them from the log and gets the same decisions. Shaped after
Optuna's ``samplers/_base.py`` and ``pruners/_base.py``: few abstract methods, inputs as immutable
snapshots.

Plugins are registered through the entry-point groups ``gpusched.search`` and
``gpusched.stopping`` (see docs/plugins.md).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum, StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Any, ClassVar, Final

from gpusched._combinations import Combinations
from gpusched.models import TERMINAL_TRIAL_STATES, Goal, TrialState

__all__ = [
    "ParamType",
    "Scale",
    "ParamValue",
    "Param",
    "SearchSpace",
    "Combinations",
    "TrialView",
    "Suggestion",
    "Wait",
    "WAIT",
    "as_suggestion",
    "SearchPlugin",
    "StoppingPlugin",
    "PluginOptionsError",
    "Goal",
    "TrialState",
    "BOUND_STOP_REASON",
]

BOUND_STOP_REASON = "stop bound reached: "
"""How the reason of a trial stopped by the experiment's ``stop:`` bounds begins (the built-in
``bounds`` plugin's): such a trial ran the course its user set (:attr:`TrialView.at_bound`)."""

ParamValue = float | int | str
"""A hyperparameter's value as a trial receives it."""


class ParamType(StrEnum):
    """The four parameter types of AI Platform's HyperparameterSpec."""

    DOUBLE = "double"
    INTEGER = "integer"
    DISCRETE = "discrete"
    CATEGORICAL = "categorical"


class Scale(StrEnum):
    """How a numeric range is spread over the unit interval."""

    LINEAR = "linear"
    LOG = "log"
    REVERSE_LOG = "reverse_log"


class PluginOptionsError(ValueError):
    """Raised by a plugin's constructor when its options are invalid; the message says which."""


def _no_conditions() -> Mapping[str, tuple[ParamValue, ...]]:
    return MappingProxyType({})


def _on_step(lo: float, step: float, k: int) -> float:
    """``lo + k * step`` as written in decimal: 0.1 + 2 * 0.1 is 0.3, not 0.30000000000000004
    (which a trainer would receive as its flag, and which lies above a ``max`` of 0.3)."""
    return float(Decimal(repr(float(lo))) + k * Decimal(repr(float(step))))


@dataclass(frozen=True)
class Param:
    """One hyperparameter of the search space, already validated.

    Numeric parameters (``double``, ``integer``) have ``low``/``high``, a ``scale`` and an optional
    ``step``; ``discrete`` and ``categorical`` ones have ``values``. ``from_unit`` maps a point of
    [0, 1] to a value, so a searcher that works in the unit cube handles every type and scale.

    ``when`` makes the parameter conditional (the experiment file's ``when:``): it maps the name
    of an earlier parameter (a categorical, discrete or integer one) to the values that enable
    this one, "any of" them; several parents must all hold. A parameter is *active* when its
    conditions hold and its parents are active themselves; only active parameters get a value
    (see :meth:`SearchSpace.active`).
    """

    name: str
    type: ParamType
    low: float | None = None
    high: float | None = None
    scale: Scale = Scale.LINEAR
    step: float | None = None
    values: tuple[ParamValue, ...] = ()
    when: Mapping[str, tuple[ParamValue, ...]] = field(default_factory=_no_conditions,
                                                       hash=False)

    def __post_init__(self) -> None:
        # Read-only with tuple values: one Param is shared by every plugin of an experiment.
        if not isinstance(self.when, MappingProxyType) or any(
            not isinstance(v, tuple) for v in self.when.values()
        ):
            frozen = {str(k): tuple(v) for k, v in self.when.items()}
            object.__setattr__(self, "when", MappingProxyType(frozen))

    def conditions_hold(self, values: Mapping[str, object]) -> bool:
        """True when every condition of ``when`` holds in ``values``, the values of the
        parameters active so far (a parent missing from ``values`` fails its condition).
        A parameter without conditions always holds."""
        return all(
            parent in values and _among(values[parent], allowed)
            for parent, allowed in self.when.items()
        )

    def problem_with(self, value: object) -> str | None:
        """What is wrong with ``value`` as this parameter's value in a suggestion, or None.

        Values must be plain values, as a trial log stores them: an ``int`` (never a ``bool``)
        for an integer, an ``int`` or ``float`` for a double, inside the range and on the step;
        one of the listed values for a list. A numpy integer (not an ``int``) is refused: it
        cannot be written to the log (return ``int(x)``).
        """
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            return (f"{value!r} is a {type(value).__module__}.{type(value).__qualname__}, not a"
                    " plain int, float or str (return int(x), float(x) or str(x))")
        if not self.is_numeric_range:
            listed = _among(value, self.values)
            return None if listed else f"{value!r} is not one of {self.values!r}"
        if isinstance(value, str):
            return f"{value!r} is not a number"
        if self.type is ParamType.INTEGER and not isinstance(value, int):
            return f"{value!r} is not an int (an integer parameter)"
        problem = self.range_problem(value)
        return None if problem is None else f"{value!r} {problem}"

    def range_problem(self, value: int | float) -> str | None:
        """For a number of a range parameter: ``"is outside [min, max]"`` or ``"is not on the
        step ... from ..."``, or None when it is in the range and on its step."""
        assert self.low is not None and self.high is not None
        # An int is compared as it is: math.isfinite would overflow on one past a float's range.
        if not ((isinstance(value, int) or math.isfinite(value))
                and self.low <= value <= self.high):
            return f"is outside [{self.low}, {self.high}]"
        if self.step is not None:
            k = (value - self.low) / self.step
            # Relative too: with ~1e10 steps in the range, k's own rounding passes 1e-6.
            if abs(k - round(k)) > 1e-6 + abs(k) * 1e-12:
                return f"is not on the step {self.step} from {self.low}"
        return None

    @property
    def is_numeric_range(self) -> bool:
        """True for ``double`` and ``integer``: a range rather than a list of values."""
        return self.type in (ParamType.DOUBLE, ParamType.INTEGER)

    def _bounds(self) -> tuple[float, float]:
        assert self.low is not None and self.high is not None, self.name
        return float(self.low), float(self.high)

    # Both cached: from_unit and to_unit ask for them at every call (TPE encodes the whole
    # history at each suggestion), and the step's decimal arithmetic is not free.
    @cached_property
    def _top(self) -> float:
        """The highest value on the grid of steps (``max`` itself when the steps reach it)."""
        lo, hi = self._bounds()
        if self.step is None:
            return hi
        return _on_step(lo, self.step, math.floor((hi - lo) / self.step + 1e-9))

    @cached_property
    def _edges(self) -> tuple[float, float]:
        """The range the unit interval covers. On a linear scale an integer, and any range with
        a step, is widened by half a cell at each end (the cell of the top step, when the
        steps stop short of ``max``), so that rounding gives every value an equal share; as
        Optuna widens a stepped range by half a step. (Rounding on ``[min, max]`` itself gave
        the two ends half a share each.) On a log scale values are not meant to share equally,
        and the range stays as it is."""
        lo, hi = self._bounds()
        if self.scale is not Scale.LINEAR:
            if self.type is ParamType.INTEGER and self.step is None:
                return lo - 0.5, hi + 0.5
            return lo, hi
        if self.step is not None:
            # Within a float's range: half a step past a max near the largest float is inf.
            return (max(lo - self.step / 2, -_FLOAT_MAX),
                    min(self._top + self.step / 2, _FLOAT_MAX))
        if self.type is ParamType.INTEGER:
            return lo - 0.5, hi + 0.5
        return lo, hi

    def _warp(self, x: float) -> float:
        """Value space -> the space in which the unit interval is uniform.

        ``log`` and ``reverse_log`` need a positive range (validated by the spec: ``min > 0``,
        and ``min >= 1`` for integers).
        """
        lo, hi = self._edges
        if self.scale is Scale.LOG:
            return math.log(x)
        if self.scale is Scale.REVERSE_LOG:
            # Mirror of log: values crowd towards the top of the range (e.g. momentum near 1).
            # The mirror image of x is lo + hi - x, summed as (hi - x) + lo: the sum first
            # overflows for a range near a float's largest (1e308 .. 1.7e308 gave NaN), and
            # loses lo below hi's last digit (1e-20 .. 1 gave log(0) at the top: a ValueError).
            # x lies in [lo, hi], so this lies in [lo, hi] too: positive, as the spec makes lo.
            return -math.log((hi - x) + lo)
        return x

    def _unwarp(self, y: float) -> float:
        lo, hi = self._edges
        if self.scale is Scale.LOG:
            return math.exp(y)
        if self.scale is Scale.REVERSE_LOG:
            # lo + hi - m for the mirror image m = exp(-y), as hi - (m - lo) for the same
            # reasons as in _warp; m kept in [lo, hi], where exp(log(lo)) may fall just short
            # of lo (and hi + that shortfall overflow, for a range near a float's largest).
            return hi - (min(max(math.exp(-y), lo), hi) - lo)
        return y

    def from_unit(self, u: float) -> ParamValue:
        """Map ``u`` in [0, 1] to a value of this parameter (honouring scale, step and type)."""
        u = min(max(float(u), 0.0), 1.0)
        if not self.is_numeric_range:
            index = min(int(u * len(self.values)), len(self.values) - 1)
            return self.values[index]
        lo, hi = self._bounds()
        elo, ehi = self._edges
        a, b = self._warp(elo), self._warp(ehi)
        # Kept within [a, b]: a + 1.0 * (b - a) may round past b, and exp() of a log just past
        # that of a float's largest overflows (a log range up to 1.7976931348623157e308).
        x = self._unwarp(min(_between(a, b, u), b))
        if self.step is not None:
            top = self._top
            x = min(max(_on_step(lo, self.step, round(_steps(x, lo, self.step))), lo), top)
        x = min(max(x, lo), hi)
        if self.type is ParamType.INTEGER:
            return min(max(round(x), math.ceil(lo)), math.floor(hi))
        return x

    def to_unit(self, value: ParamValue) -> float:
        """The inverse of :meth:`from_unit`: where ``value`` lies in [0, 1]."""
        if not self.is_numeric_range:
            return (self.values.index(value) + 0.5) / len(self.values)
        elo, ehi = self._edges
        a, b = self._warp(elo), self._warp(ehi)
        if b == a:
            return 0.5
        x = min(max(float(value), elo), ehi)
        return min(max(_share(self._warp(x), a, b), 0.0), 1.0)

    def grid(self, points: int) -> tuple[ParamValue, ...]:
        """The values a grid search visits.

        Lists are visited whole; integers every ``step`` (default 1); a ``double`` with a ``step``
        every step, and without one at ``points`` values spread evenly on its scale, both ends
        included.
        """
        if not self.is_numeric_range:
            return self.values
        lo, hi = self._bounds()
        if self.step is not None or self.type is ParamType.INTEGER:
            step = self.step if self.step is not None else 1.0
            count = math.floor((hi - lo) / step + 1e-9) + 1
            out = [min(_on_step(lo, step, i), hi) for i in range(count)]
            if self.type is ParamType.INTEGER:
                return tuple(round(x) for x in out)
            return tuple(out)
        a, b = self._warp(lo), self._warp(hi)
        if points <= 1:
            return (self._unwarp((a + b) / 2),)
        inner = [min(max(self._unwarp(a + (b - a) * i / (points - 1)), lo), hi)
                 for i in range(1, points - 1)]
        return (lo, *inner, hi)  # the ends exactly as written, not exp(log(x)) of them


_FLOAT_MAX: Final = 1.7976931348623157e308  # sys.float_info.max


def _between(a: float, b: float, u: float) -> float:
    """``a + u * (b - a)``; where ``b - a`` overflows (a linear range wider than half the
    largest float, widened by half a step), the same point as ``a * (1 - u) + b * u``."""
    span = b - a
    return a + u * span if math.isfinite(span) else a * (1.0 - u) + b * u


def _share(x: float, a: float, b: float) -> float:
    """``(x - a) / (b - a)``; where ``b - a`` overflows, the same taken in halves."""
    span = b - a
    if math.isfinite(span):
        return (x - a) / span
    return (x / 2 - a / 2) / (b / 2 - a / 2)


def _steps(x: float, lo: float, step: float) -> float:
    """``(x - lo) / step``; where ``x - lo`` overflows, the same taken in halves."""
    diff = x - lo
    if math.isfinite(diff):
        return diff / step
    return (x / 2 - lo / 2) / (step / 2)


def _among(value: object, allowed: tuple[ParamValue, ...]) -> bool:
    """``value in allowed``, numbers compared as numbers (a JSON-mangled 3.0 is 3), never a
    boolean (``True == 1`` in Python, but not in a trial log)."""
    return not isinstance(value, bool) and any(value == v for v in allowed)


@dataclass(frozen=True)
class SearchSpace:
    """The ordered parameters of an experiment.

    With conditional parameters (:attr:`Param.when`), an assignment holds values for the
    *active* parameters only; :meth:`active`, :meth:`restrict`, :meth:`from_unit`,
    :meth:`groups` and :meth:`combinations` are the one implementation every plugin shares.
    A condition may only name an earlier parameter, so activity is decided in one pass in
    file order and a searcher can assign values in that order.
    """

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        seen: dict[str, Param] = {}
        for param in self.params:
            for parent in param.when:
                if parent not in seen:
                    raise ValueError(f"parameter {param.name!r}: a condition names "
                                     f"{parent!r}, which is not an earlier parameter")
                if seen[parent].type is ParamType.DOUBLE:
                    raise ValueError(f"parameter {param.name!r}: {parent!r} is a double, "
                                     f"which cannot be conditioned on")
            seen[param.name] = param

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    def names(self) -> tuple[str, ...]:
        """Parameter names, in the order of the experiment file."""
        return tuple(p.name for p in self.params)

    @property
    def conditional(self) -> bool:
        """True when some parameter carries a condition."""
        return any(p.when for p in self.params)

    def from_unit(self, point: Sequence[float]) -> dict[str, ParamValue]:
        """Map a point of the unit cube (one coordinate per parameter) to hyperparameters.

        Only active parameters get a value: the coordinates of inactive ones are ignored.
        """
        out: dict[str, ParamValue] = {}
        for param, u in zip(self.params, point, strict=True):
            if param.conditions_hold(out):
                out[param.name] = param.from_unit(u)
        return out

    def active(self, params: Mapping[str, object]) -> tuple[Param, ...]:
        """The parameters active under the assignment ``params``, in file order.

        ``params`` may be partial or hold extra names: a parameter is active when its
        conditions hold in the values ``params`` gives the active parameters before it. One
        whose parent is active but has no value in ``params`` is not (yet) active, so a
        searcher that assigns in file order asks again after each value.
        """
        seen: dict[str, object] = {}
        out: list[Param] = []
        for param in self.params:
            if param.conditions_hold(seen):
                out.append(param)
                if param.name in params:
                    seen[param.name] = params[param.name]
        return tuple(out)

    def is_active(self, name: str, params: Mapping[str, object]) -> bool:
        """True when parameter ``name`` is active under ``params`` (see :meth:`active`)."""
        return any(p.name == name for p in self.active(params))

    def restrict(self, params: Mapping[str, ParamValue]) -> dict[str, ParamValue]:
        """``params`` without the names that are inactive under it (or not in the space)."""
        return {p.name: params[p.name] for p in self.active(params) if p.name in params}

    def problem_with(self, params: Mapping[str, object]) -> str | None:
        """What is wrong with a suggestion's ``params`` (restricted to the active ones): an
        active parameter without a value, or a value :meth:`Param.problem_with` refuses; None
        when nothing is."""
        for param in self.active(params):
            if param.name not in params:
                return f"no value for the active parameter '{param.name}'"
            if (problem := param.problem_with(params[param.name])) is not None:
                return f"'{param.name}': {problem}"
        return None

    @cached_property
    def _by_name(self) -> Mapping[str, Param]:
        """The parameters by name (for a hand-built space that repeats one, the last)."""
        return {p.name: p for p in self.params}

    def requirements(self, param: Param) -> dict[str, tuple[ParamValue, ...]]:
        """What ``param`` needs to be active, its parents' own needs included: each ancestor's
        name mapped to the values it must take. An empty tuple means it can never be active.

        Ancestors are listed in the order a walk up from ``param`` meets them: depth first,
        each ``when`` in its order. The walk visits each ancestor once, so it is linear in the
        size of the space (asking each parent for its own requirements, as this once did, walks
        a shared ancestor again for every path to it: exponential in a chain of two-parent
        conditions), and it keeps its own stack: a chain of conditions may be as long as the
        space.
        """
        by_name = self._by_name
        need: dict[str, tuple[ParamValue, ...]] = {}
        walked: set[str] = set()
        todo: list[Iterator[tuple[str, tuple[ParamValue, ...]]]] = [iter(param.when.items())]
        while todo:
            step = next(todo[-1], None)
            if step is None:
                todo.pop()
                continue
            name, allowed = step
            need[name] = allowed if name not in need else tuple(
                v for v in need[name] if _among(v, allowed))
            if name not in walked:
                # Met again, an ancestor adds nothing: its own conditions were all taken in
                # when it was first met, and asking for the same values twice changes nothing.
                walked.add(name)
                todo.append(iter(by_name[name].when.items()))
        return need

    def groups(self) -> tuple[tuple[Param, ...], ...]:
        """The parameters split by when they are active: those with the same
        :meth:`requirements` (active together, always) form one group, in file order. Without
        conditions this is one group, the whole space. A group's parents lie in earlier groups."""
        # Equal requirements name the same ancestors, and the same conditions make the same
        # requirements: only parameters with the same ancestors but other conditions have
        # their requirements listed and compared. A chain of thousands of conditions, where
        # each parameter's requirements are as long as the chain, is split without listing any.
        ancestors = self._ancestors()
        conditions = [frozenset((k, frozenset(v)) for k, v in p.when.items())
                      for p in self.params]
        kinds: dict[int, set[frozenset[tuple[str, frozenset[ParamValue]]]]] = {}
        for above, when in zip(ancestors, conditions, strict=True):
            kinds.setdefault(above, set()).add(when)
        groups: dict[tuple[int, object], list[Param]] = {}
        for param, above, when in zip(self.params, ancestors, conditions, strict=True):
            key: object = when
            if len(kinds[above]) > 1:
                key = tuple(sorted((k, frozenset(v)) for k, v in self.requirements(param).items()))
            groups.setdefault((above, key), []).append(param)
        return tuple(tuple(g) for g in groups.values())

    def _ancestors(self) -> list[int]:
        """Each parameter's ancestors, as a bitset of their places in :attr:`params`."""
        place: dict[str, int] = {}
        out: list[int] = []
        for i, param in enumerate(self.params):
            above = 0
            for parent in param.when:
                j = place[parent]  # an earlier parameter, as __post_init__ checked
                above |= out[j] | 1 << j
            out.append(above)
            place[param.name] = i
        return out

    def combinations(self, axes: Sequence[Sequence[ParamValue]]) -> Combinations:
        """Every distinct assignment when each parameter takes the values of its axis (one per
        parameter, in order): see :class:`Combinations`."""
        return Combinations(self, axes)


@dataclass(frozen=True)
class TrialView:
    """An immutable snapshot of one trial, as a plugin sees it.

    ``metric_values`` is the experiment's metric in report order (reports without it skipped);
    ``metric_steps`` gives each value's ``training_iteration``. ``objective`` is set once the
    trial has ended with a result (completed, or stopped with one).
    """

    number: int
    params: Mapping[str, ParamValue]
    state: TrialState
    objective: float | None = None
    metric_values: Sequence[float] = ()
    metric_steps: Sequence[int] = ()
    last_report: Mapping[str, Any] = field(default_factory=dict)
    #: the budget it was given (a :class:`Suggestion`'s), None for none
    budget: int | float | None = None
    #: the number of the trial it went on from (a :class:`Suggestion`'s ``continues``)
    continues: int | None = None
    #: stopped by the experiment's ``stop:`` bound (``training_iteration: 20``, say): it ran the
    #: course its user set, as Ray Tune's trials that meet ``stop`` do, not stopped early
    at_bound: bool = False

    @property
    def ran_its_course(self) -> bool:
        """True once it completed, or was stopped at the experiment's ``stop:`` bound: a full
        curve that early stopping compares with (a trial stopped early is not one)."""
        return self.state is TrialState.COMPLETED or (
            self.state is TrialState.STOPPED and self.at_bound)

    @property
    def finished(self) -> bool:
        """True once the trial has ended with an objective the search can learn from."""
        return self.objective is not None and self.state in (
            TrialState.COMPLETED, TrialState.STOPPED
        )

    @property
    def ended(self) -> bool:
        """True once the trial will report no more: completed, stopped, failed or cancelled
        (an interrupted one runs again)."""
        return self.state in TERMINAL_TRIAL_STATES


@dataclass(frozen=True)
class Suggestion:
    """A suggestion with more than params: what :meth:`SearchPlugin.suggest` may return instead
    of a plain mapping.

    ``budget`` (a positive number: epochs, steps, a share of the data) reaches the trial as
    ``GPUSCHED_BUDGET`` and, when the plugin sets :attr:`SearchPlugin.budget_flag`, as that flag.
    ``continues`` names an earlier trial of the experiment, ended and not continued yet, that
    this one goes on from: it gets that trial's checkpoint folder (Hyperband's promotion,
    KerasTuner's ``tuner/trial_id``; the params may differ, as in population-based training).
    """

    params: Mapping[str, ParamValue]
    budget: int | float | None = None
    continues: int | None = None

    def __post_init__(self) -> None:
        budget = self.budget
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int | float)
                                   or not math.isfinite(budget) or budget <= 0):
            raise ValueError(f"a suggestion's budget must be a positive number (got {budget!r})")
        cont = self.continues
        if cont is not None and (isinstance(cont, bool) or not isinstance(cont, int) or cont < 0):
            raise ValueError(f"a suggestion's continues must be a trial number (got {cont!r})")


class Wait(Enum):
    """The type of :data:`WAIT`."""

    WAIT = "wait"


WAIT: Final = Wait.WAIT
"""What :meth:`SearchPlugin.suggest` returns for "nothing to start now; ask again when a trial
ends" (KerasTuner's IDLE): a rung waiting for its trials. Returned while none of the
experiment's trials runs, it means exhausted (the history cannot change, nor the answer)."""


def as_suggestion(answer: Mapping[str, ParamValue] | Suggestion) -> Suggestion:
    """``answer`` as a :class:`Suggestion` (a plain mapping has no budget and continues none)."""
    return answer if isinstance(answer, Suggestion) else Suggestion(params=answer)


class SearchPlugin(ABC):
    """Proposes hyperparameters. Subclasses implement :meth:`suggest`.

    The constructor receives the space, the goal, the experiment's seed (always set: the daemon
    draws one at submit when the file has none) and the plugin's options (the ``search:`` mapping
    without ``algorithm`` and ``seed``). Raise :class:`PluginOptionsError` for bad options.
    """

    #: a one-line description for ``gpusched plugins``
    summary: ClassVar[str] = ""
    #: the flag that carries a :class:`Suggestion`'s budget to the trial (``"--epochs"`` gives
    #: ``--epochs=9``); None: only the environment variable ``GPUSCHED_BUDGET``
    budget_flag: str | None = None

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        self.space = space
        self.goal = goal
        self.seed = seed
        self.options = dict(options)

    @abstractmethod
    def suggest(
        self, number: int, history: Sequence[TrialView]
    ) -> Mapping[str, ParamValue] | Suggestion | Wait | None:
        """Hyperparameters for trial ``number``, or ``None`` when the space is exhausted.

        A :class:`Suggestion` adds a budget and the trial to continue from; :data:`WAIT` says
        that nothing can start until a running trial ends. ``history`` holds every earlier
        trial of the experiment (and of the one it resumes, numbered -N ... -1), finished or
        not. The answer must depend only on ``number``, ``history`` and the seed.
        """


class StoppingPlugin(ABC):
    """Decides whether a running trial stops early. Subclasses implement :meth:`should_stop`.

    The constructor receives the experiment's metric and goal and the plugin's options (the
    ``early_stopping:`` mapping without ``policy``, or the ``stop:`` mapping for ``bounds``).
    """

    summary: ClassVar[str] = ""

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        self.metric = metric
        self.goal = goal
        self.options = dict(options)

    @abstractmethod
    def should_stop(
        self,
        trial: TrialView,
        new_reports: Sequence[Mapping[str, Any]],
        others: Sequence[TrialView],
    ) -> str | None:
        """Return a reason to stop ``trial`` now, or ``None`` to let it run.

        Called after each batch of reports, ``new_reports`` being that batch (already part of
        ``trial``); ``others`` are the experiment's other trials.
        """
