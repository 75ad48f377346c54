"""Hyperband's brackets and rungs, rebuilt from the trial log (the state of ``hyperband``).

The arithmetic is KerasTuner's ``HyperbandOracle`` (``_get_num_brackets``, ``_get_size``,
``_get_epochs``), done in exact integers: KerasTuner's ``math.log(max_epochs, factor)`` is a
float, and ``math.log(15625, 5)`` is 6.000000000000001, which gives bracket 0 one trial more
than the formula means (the same for ``6**6`` and ``7**5``; no other case up to 100000).
Brackets run from the most aggressive (``s = s_max``: many trials, small budget, ``s + 1``
rungs) to plain random search (``s = 0``), once per Hyperband iteration.

Nothing is kept between calls: where each trial stands follows from the log alone. Fresh
configurations (``continues`` is None) fill the first rung of bracket 0, then of bracket 1,
and so on, in trial-number order (a bracket is opened only once the one before has its first
rung full, so this is the order they were made in); a promoted trial is one rung above the
trial it continues, in the same bracket.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gpusched.plugin_api import TrialView

__all__ = ["Schedule", "Bracket", "rebuild"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Schedule:
    """KerasTuner's bracket arithmetic for ``max_epochs``, ``factor``, ``min_epochs``."""

    max_epochs: int
    factor: int
    min_epochs: int = 1
    iterations: int = 1

    @property
    def num_brackets(self) -> int:
        """How many times ``max_epochs`` can be divided by ``factor`` and stay >= min_epochs."""
        count, power = 0, 1
        while self.max_epochs >= self.min_epochs * power:
            count, power = count + 1, power * self.factor
        return count

    @property
    def _end_size(self) -> int:
        """``ceil(1 + log_factor(max_epochs))``, exactly: the first rung of bracket 0."""
        k, power = 0, 1
        while power < self.max_epochs:
            k, power = k + 1, power * self.factor
        return 1 + k

    def bracket_s(self, index: int) -> int:
        """The ``s`` of the ``index``-th bracket opened (0: the first, most aggressive)."""
        return self.num_brackets - 1 - index % self.num_brackets

    @property
    def total_brackets(self) -> int:
        """Brackets in all iterations."""
        return self.num_brackets * self.iterations

    def size(self, s: int, rung: int) -> int:
        """How many trials rung ``rung`` of bracket ``s`` runs (KerasTuner's ``_get_size``)."""
        return _ceil_div(self._end_size * self.factor ** (s - rung), s + 1)

    def epochs(self, s: int, rung: int) -> int:
        """The budget of rung ``rung`` of bracket ``s`` (KerasTuner's ``_get_epochs``)."""
        return _ceil_div(self.max_epochs, self.factor ** (s - rung))

    def trials(self) -> int:
        """Every trial of every bracket and iteration, when no rung comes up short."""
        per_iteration = sum(self.size(s, r) for s in range(self.num_brackets)
                            for r in range(s + 1))
        return per_iteration * self.iterations


def _completed(t: TrialView) -> bool:
    return t.ran_its_course and t.objective is not None


@dataclass
class Bracket:
    """One bracket as the log shows it: the trials of each of its ``s + 1`` rungs."""

    index: int
    s: int
    schedule: Schedule
    rungs: list[list[TrialView]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.rungs:
            self.rungs = [[] for _ in range(self.s + 1)]

    def first_rung_full(self) -> bool:
        """True once every fresh configuration of this bracket has been made."""
        return len(self.rungs[0]) >= self.schedule.size(self.s, 0)

    def _candidates(self, rung: int) -> list[TrialView]:
        """Completed trials of ``rung`` not promoted yet."""
        taken = {t.continues for t in self.rungs[rung + 1]} if rung < self.s else set()
        return [t for t in self.rungs[rung] if _completed(t) and t.number not in taken]

    def closed(self, rung: int) -> bool:
        """True when ``rung`` will get no more trials: full, or short because the rung below
        has ended without enough completed trials to fill it."""
        if rung == 0:
            return self.first_rung_full()
        if len(self.rungs[rung]) >= self.schedule.size(self.s, rung):
            return True
        below = self.rungs[rung - 1]
        return (self.closed(rung - 1) and all(t.ended for t in below)
                and not self._candidates(rung - 1))

    def done(self) -> bool:
        """True when the last rung is closed: this bracket makes no more trials."""
        return self.closed(self.s)

    def promotion(self, rung: int, sign: float) -> TrialView | None:
        """The trial of rung ``rung - 1`` to promote into ``rung`` now, if any.

        KerasTuner's rule: the j-th of the rung's ``size`` places is given once more trials of
        the rung below have ended than it throws out (``past_size - size + j``), to the best
        completed one not promoted yet. That is asynchronous (no barrier: the first promotion
        comes before the last trial of the rung below ends) and still promotes exactly the top
        ``size``: whoever has not ended yet cannot outnumber the places left. Deviation: a
        failed, stopped or cancelled trial counts as ended but is never promoted (KerasTuner
        waits for it forever), and a rung below that comes up short shrinks this one.
        """
        placed = len(self.rungs[rung])
        size = self.schedule.size(self.s, rung)
        if placed >= size:
            return None
        candidates = self._candidates(rung - 1)
        if not candidates:
            return None
        below = self.rungs[rung - 1]
        planned = len(below) if self.closed(rung - 1) else self.schedule.size(self.s, rung - 1)
        ended = sum(1 for t in below if t.ended)
        if ended < planned - size + placed + 1:
            return None
        assert all(t.objective is not None for t in candidates)
        return min(candidates, key=lambda t: (sign * (t.objective or 0.0), t.number))


def rebuild(schedule: Schedule, history: Sequence[TrialView]) -> list[Bracket]:
    """The brackets opened so far, with their trials, from the experiment's own trials.

    Trials of ``resume_from`` (negative numbers) belong to no bracket; so does a trial that fits
    none (a log written under other options): both are ignored.
    """
    brackets: list[Bracket] = []
    where: dict[int, tuple[Bracket, int]] = {}
    for t in sorted((t for t in history if t.number >= 0), key=lambda t: t.number):
        if t.continues is None:
            if not brackets or brackets[-1].first_rung_full():
                if len(brackets) >= schedule.total_brackets:
                    continue
                index = len(brackets)
                brackets.append(Bracket(index, schedule.bracket_s(index), schedule))
            bracket, rung = brackets[-1], 0
        elif t.continues in where:
            bracket, parent_rung = where[t.continues]
            rung = parent_rung + 1
            if rung > bracket.s:
                continue
        else:
            continue
        bracket.rungs[rung].append(t)
        where[t.number] = (bracket, rung)
    return brackets
