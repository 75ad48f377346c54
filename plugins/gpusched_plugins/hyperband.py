"""``hyperband``: KerasTuner's Hyperband, over the trial log.

Each bracket draws fresh configurations at a small budget and promotes the best ``1/factor``
of each rung to ``factor`` times the budget, where they go on from their checkpoint folder
(a :class:`~gpusched.plugin_api.Suggestion` with ``continues``); brackets go from the most
aggressive to plain random search at ``max_epochs``, ``hyperband_iterations`` times. The
arithmetic and the promotion rule are KerasTuner's (see ``_brackets.py`` for where and why
this deviates).

Asynchronous as KerasTuner's oracle is: a trial is asked for whenever a GPU is free; the answer
is, in this order, a fresh configuration for a bracket whose first rung is not full, a promotion
that a rung allows already (oldest bracket first, lowest rung first), else the next bracket is
opened. Only when the last bracket is open and its rungs wait for running trials does it answer
:data:`~gpusched.plugin_api.WAIT`, and ``None`` once every bracket is done.

Pure over the log: fresh configurations are drawn as ``random`` draws them (seeded by the seed
and the trial number, and after ``resume_from`` by the earlier experiment's trials too:
:func:`~gpusched_plugins.random_search.draw_entropy`); which bracket and rung each trial is in
follows from the history.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import (
    WAIT,
    Goal,
    ParamValue,
    PluginOptionsError,
    SearchPlugin,
    SearchSpace,
    Suggestion,
    TrialView,
    Wait,
)
from gpusched_plugins._brackets import Bracket, Schedule, rebuild
from gpusched_plugins._options import number, refuse_unknown
from gpusched_plugins.random_search import RandomSearch

__all__ = ["Hyperband"]

_OPTIONS = ("max_epochs", "factor", "hyperband_iterations", "min_epochs", "budget_flag")
_FLAG = re.compile(r"--?[A-Za-z0-9][A-Za-z0-9_.-]*")
DEFAULT_MAX_EPOCHS = 81  # the Hyperband paper's worked example (R = 81, eta = 3): 5 brackets


def _flag(options: Mapping[str, Any], space: SearchSpace) -> str | None:
    flag = options.get("budget_flag", "--epochs")
    if flag is None:
        return None
    if not isinstance(flag, str) or not _FLAG.fullmatch(flag):
        raise PluginOptionsError(
            f"budget_flag must be a flag such as '--epochs', or null for none (got {flag!r})")
    if flag.lstrip("-") in space.names():
        raise PluginOptionsError(
            f"budget_flag {flag} is also a parameter: the trial would get it twice (rename one)")
    return flag


class Hyperband(SearchPlugin):
    """Hyperband with KerasTuner's options: ``max_epochs``, ``factor``,
    ``hyperband_iterations``, ``min_epochs``; ``budget_flag`` names the flag the budget is
    given with (default ``--epochs``; null: only ``GPUSCHED_BUDGET``)."""

    summary: ClassVar[str] = (
        "KerasTuner's Hyperband: brackets of successive halving, promoted trials continue"
        " from their checkpoint")

    def __init__(
        self, space: SearchSpace, *, goal: Goal, seed: int, options: Mapping[str, Any]
    ) -> None:
        super().__init__(space, goal=goal, seed=seed, options=options)
        refuse_unknown(self.options, _OPTIONS)
        max_epochs = int(number(self.options, "max_epochs", DEFAULT_MAX_EPOCHS, low=1,
                                whole=True))
        min_epochs = int(number(self.options, "min_epochs", 1, low=1, high=max_epochs,
                                whole=True))
        self.schedule = Schedule(
            max_epochs=max_epochs,
            factor=int(number(self.options, "factor", 3, low=2, whole=True)),
            min_epochs=min_epochs,
            iterations=int(number(self.options, "hyperband_iterations", 1, low=1, whole=True)),
        )
        if self.schedule.trials() > 10**6:
            raise PluginOptionsError(
                f"hyperband with these options runs {self.schedule.trials()} trials: lower"
                " max_epochs or hyperband_iterations, or raise factor")
        self.budget_flag = _flag(self.options, space)
        self._fresh = RandomSearch(space, goal=goal, seed=seed, options={})
        self._sign = -1.0 if goal is Goal.MAXIMIZE else 1.0

    def __repr__(self) -> str:
        s = self.schedule
        return (f"<Hyperband max_epochs={s.max_epochs} factor={s.factor}"
                f" brackets={s.num_brackets} iterations={s.iterations} trials={s.trials()}>")

    def size(self) -> int:
        """Every trial of every bracket: the experiment's ``max_trials`` when the file has none."""
        return self.schedule.trials()

    def _new(self, number: int, bracket_s: int, history: Sequence[TrialView]) -> Suggestion:
        # random's draw for this trial, with the history: after resume_from it draws others
        # than the earlier experiment did (see random_search.draw_entropy).
        params = self._fresh.suggest(number, history)
        return Suggestion(params=params, budget=self.schedule.epochs(bracket_s, 0))

    def _promote(self, bracket: Bracket) -> Suggestion | None:
        for rung in range(1, bracket.s + 1):
            best = bracket.promotion(rung, self._sign)
            if best is not None:
                params: Mapping[str, ParamValue] = dict(best.params)
                return Suggestion(params=params, budget=self.schedule.epochs(bracket.s, rung),
                                  continues=best.number)
        return None

    def suggest(
        self, number: int, history: Sequence[TrialView]
    ) -> Suggestion | Wait | None:
        """A fresh configuration, a promotion, :data:`WAIT` or None (see the module docstring)."""
        brackets = rebuild(self.schedule, history)
        for bracket in brackets:
            if bracket.done():
                continue
            if not bracket.first_rung_full():
                return self._new(number, bracket.s, history)
            promoted = self._promote(bracket)
            if promoted is not None:
                return promoted
        if len(brackets) < self.schedule.total_brackets:
            return self._new(number, self.schedule.bracket_s(len(brackets)), history)
        # An open bracket with nothing to start waits for its running trials; with none
        # running there is always something to start, so this WAIT cannot last.
        waiting = any(not b.done() for b in brackets)
        if waiting and any(not t.ended for t in history if t.number >= 0):
            return WAIT
        return None
