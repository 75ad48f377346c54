"""``asha``: asynchronous successive halving (Li et al., "A System for Massively Parallel
Hyperparameter Tuning"; Ray Tune's ASHAScheduler, Optuna's SuccessiveHalvingPruner).

Rungs lie at ``grace_period * reduction_factor**k`` (k = 0, 1, ...) up to ``max_t``, counted in
``training_iteration``. When a report of the trial reaches (or passes) a rung for the first time,
its value in that report -- the value at that step, not its best so far, as Ray Tune and Optuna
do -- is ranked with the values of every other trial (of the same bracket) whose
``metric_steps`` reached that rung, whatever that trial's state: each contributes the value of
its first report at or past the rung. With ``n`` values at the rung, this trial's included, the
trial continues when it is among the best ``n // reduction_factor`` (ties continue); with fewer
than ``reduction_factor`` values it continues: nothing waits for a rung to fill, so GPUs never
idle. A report that passes several rungs at once is ranked at the highest of them only (as Ray
Tune does). A trial stops once a report reaches ``max_t``: its ``training_iteration``, whatever
its metric (as in Ray Tune: a trial whose reports lack the metric, or hold NaN, stops there too).

Options (all optional):
- ``grace_period`` (default 1): the first rung (Ray Tune's ``grace_period``, Optuna's
  ``min_resource``).
- ``reduction_factor`` (default 4, the default of both Ray Tune and Optuna): eta, a whole
  number >= 2; the top ``1/eta`` continue at each rung, and rungs are eta times apart.
- ``max_t`` (default 100): a trial stops once it reports this ``training_iteration``.
- ``brackets`` (default 1): trial ``n`` goes to bracket ``n % brackets``; bracket ``s`` has its
  rungs at ``grace_period * reduction_factor**(k + s)`` and its trials compete only with each
  other (Ray Tune's ``brackets``, assigned by number rather than at random).

Reports without the metric, and non-finite values, are ignored: a NaN at a rung does not rank a
trial that has finite values, and its next finite value is the one ranked there. A trial that
has reported the metric but *no finite value at all* (it diverged: only NaN or infinities) is
ranked as the worst value there is, at each such report, at the highest rung it has reached:
it stops once that rung holds ``reduction_factor`` values with its own, and goes on while it
holds fewer. (In Ray Tune's ASHA a NaN is never below the cutoff, so such a trial passes every
rung; Optuna's pruners prune it at once.)

The decision is a function of the trial views and the batch only, so a restarted daemon decides
the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import Goal, PluginOptionsError, StoppingPlugin, TrialView
from gpusched_plugins._diverged import diverged_steps, report_step
from gpusched_plugins._options import number, refuse_unknown

__all__ = ["AshaStopping"]

_KNOWN = ("brackets", "grace_period", "max_t", "reduction_factor")


def _whole(options: Mapping[str, Any], key: str, default: int, *, low: int) -> int:
    return int(number(options, key, default, low=low, whole=True))


def _is_value(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


def _points(trial: TrialView) -> list[tuple[int, float]]:
    """The trial's (step, value) pairs in report order, non-finite values left out."""
    return [(int(step), float(value))
            for step, value in zip(trial.metric_steps, trial.metric_values, strict=False)
            if _is_value(value)]


def _value_at(points: Sequence[tuple[int, float]], rung: int) -> float | None:
    """The value of the first report at or past ``rung`` (None: the trial never got there)."""
    return next((value for step, value in points if step >= rung), None)


class AshaStopping(StoppingPlugin):
    """Asynchronous successive halving: keep the top 1/eta of the trials at each rung."""

    summary: ClassVar[str] = ("asynchronous successive halving: keep the top 1/eta of the "
                              "trials at each rung (Ray Tune's ASHAScheduler)")

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        super().__init__(metric=metric, goal=goal, options=options)
        refuse_unknown(self.options, _KNOWN)
        self.grace_period = _whole(self.options, "grace_period", 1, low=1)
        self.reduction_factor = _whole(self.options, "reduction_factor", 4, low=2)
        self.max_t = _whole(self.options, "max_t", 100, low=1)
        self.brackets = _whole(self.options, "brackets", 1, low=1)
        if self.max_t < self.grace_period:
            raise PluginOptionsError(f"max_t ({self.max_t}) must be at least grace_period "
                                     f"({self.grace_period})")
        self.rungs: tuple[tuple[int, ...], ...] = tuple(
            self._bracket_rungs(s) for s in range(self.brackets))
        if not self.rungs[-1]:
            raise PluginOptionsError(
                f"brackets must be at most {sum(1 for r in self.rungs if r)}: bracket "
                f"{self.brackets - 1} would start at rung {self.grace_period} * "
                f"{self.reduction_factor}^{self.brackets - 1}, past max_t {self.max_t}")

    def _bracket_rungs(self, s: int) -> tuple[int, ...]:
        rungs: list[int] = []
        rung = self.grace_period * self.reduction_factor ** s
        while rung <= self.max_t:
            rungs.append(rung)
            rung *= self.reduction_factor
        return tuple(rungs)

    def bracket_of(self, trial: TrialView) -> int:
        """The bracket of ``trial``: its number modulo ``brackets`` (never negative)."""
        return trial.number % self.brackets

    def should_stop(
        self,
        trial: TrialView,
        new_reports: Sequence[Mapping[str, Any]],
        others: Sequence[TrialView],
    ) -> str | None:
        """A reason when one of the batch's reports reaches ``max_t`` or loses at a rung."""
        points = _points(trial)
        reason = (self._judge(trial, points, new_reports, others) if points
                  else self._judge_diverged(trial, new_reports, others))
        if reason is not None:
            return reason
        # max_t whatever the metric: a trial whose reports lack it, or hold NaN, stops too.
        steps = [step for step, _ in points]
        steps += [s for r in (*new_reports, trial.last_report) if (s := report_step(r)) is not None]
        if steps and max(steps) >= self.max_t:
            return f"asha: reached max_t {self.max_t}"
        return None

    def _judge(self, trial: TrialView, points: Sequence[tuple[int, float]],
               new_reports: Sequence[Mapping[str, Any]], others: Sequence[TrialView]
               ) -> str | None:
        """The batch's values, each ranked at the rungs it passes (or stopped at max_t)."""
        # The batch's reports that carry the metric are the last ones of the trial's series.
        fresh = sum(1 for report in new_reports if _is_value(report.get(self.metric)))
        start = len(points) - min(fresh, len(points))
        reached = max((step for step, _ in points[:start]), default=-math.inf)
        bracket = self.bracket_of(trial)
        for step, value in points[start:]:
            if step >= self.max_t:
                return f"asha: reached max_t {self.max_t}"
            passed = [rung for rung in self.rungs[bracket] if reached < rung <= step]
            reached = max(reached, step)
            if passed:
                reason = self._rank(trial, others, bracket=bracket, rung=passed[-1],
                                    step=step, value=value)
                if reason is not None:
                    return reason
        return None

    def _judge_diverged(self, trial: TrialView, new_reports: Sequence[Mapping[str, Any]],
                        others: Sequence[TrialView]) -> str | None:
        """A trial without a finite value so far: each report of the batch with a NaN or
        infinite value is ranked, as the worst value there is, at the highest rung it has
        reached (the reports before the batch are not in the view, so not only at the first
        report past a rung: a rung that had too few values then may have enough now)."""
        bracket = self.bracket_of(trial)
        worst = -math.inf if self.goal is Goal.MAXIMIZE else math.inf
        for step in diverged_steps(trial, new_reports, self.metric):
            if step >= self.max_t:
                return f"asha: reached max_t {self.max_t}"
            reached = [rung for rung in self.rungs[bracket] if rung <= step]
            if reached:
                reason = self._rank(trial, others, bracket=bracket, rung=reached[-1],
                                    step=step, value=worst)
                if reason is not None:
                    return reason
        return None

    def _rank(self, trial: TrialView, others: Sequence[TrialView], *, bracket: int, rung: int,
              step: int, value: float) -> str | None:
        """A reason when ``value`` is not in the top 1/eta of the values at ``rung`` (an infinite
        ``value``: the trial has reported only NaN or infinite ones, and ranks last)."""
        values = [value]
        for other in others:
            if other.number == trial.number or self.bracket_of(other) != bracket:
                continue
            theirs = _value_at(_points(other), rung)
            if theirs is not None:
                values.append(theirs)
        eta, count = self.reduction_factor, len(values)
        if count < eta:
            return None  # asynchronous: too few at the rung to rank, so it goes on
        ranked = sorted(values, reverse=self.goal is Goal.MAXIMIZE)
        cutoff = ranked[count // eta - 1]
        if not self.goal.better(cutoff, value):
            return None
        where = f"rung {rung}" if step == rung else f"step {step} (rung {rung})"
        if self.brackets > 1:
            where += f" of bracket {bracket}"
        if math.isinf(value):
            return (f"asha: no finite {self.metric} by {where}, only NaN or infinite values: "
                    f"ranked last of the {count} trials there, where the top 1/{eta} go on "
                    f"(cutoff {cutoff:g})")
        return (f"asha: {self.metric} {value:g} at {where} is not in the top 1/{eta} of "
                f"{count} trials there (cutoff {cutoff:g})")
