"""``percentile`` and ``median``: stop a trial whose best result so far is worse than most
finished trials' results at the same step (Optuna's PercentilePruner and MedianPruner; AI
Platform's ``enableTrialEarlyStopping`` is ``median``).

At each batch of reports, with ``s`` the trial's latest ``training_iteration`` that carries the
metric: every *completed* trial that reported the metric at or before ``s`` contributes its
value at its last such step; the trial stops when its best value so far is worse than the
``percentile`` threshold of those values (for ``maximize``, below the ``100 - percentile``-th
percentile: ``percentile: 25`` keeps the top 25%; ``median`` is ``percentile: 50``).

A trial that has reported the metric but *no finite value at all* (it diverged: only NaN or
infinities, which the views leave out) is judged the same way, as the worst value there is, at
the latest ``training_iteration`` of the batch whose value is NaN or infinite: it stops there
once ``grace_period`` and ``min_trials`` allow a decision (Optuna's PercentilePruner prunes a
trial whose best value is NaN as soon as its warm-up and start-up allow). One that never
reported the metric is left alone.

Options (all optional):
- ``percentile`` (``percentile`` only; default 25): in (0, 100).
- ``grace_period`` (default 0): no stop while ``s`` is below this (Optuna's ``n_warmup_steps``,
  Ray Tune's ``grace_period`` counted in ``training_iteration``).
- ``min_trials`` (default 5): no stop until this many completed trials have a value at ``s``
  (Optuna's ``n_startup_trials``; Ray Tune's ``min_samples_required``).

The decision is a function of the trial views only, so a restarted daemon decides the same.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from gpusched.plugin_api import Goal, PluginOptionsError, StoppingPlugin, TrialView
from gpusched_plugins._diverged import diverged_steps
from gpusched_plugins._options import number, refuse_unknown

__all__ = ["PercentileStopping", "MedianStopping"]


def _value_at(trial: TrialView, step: int) -> float | None:
    """The trial's metric at its last step <= ``step`` (None: none that early)."""
    index = bisect.bisect_right(list(trial.metric_steps), step)
    return float(trial.metric_values[index - 1]) if index else None


class PercentileStopping(StoppingPlugin):
    """Stop a trial whose best value is worse than a percentile of completed trials."""

    summary: ClassVar[str] = ("stop a trial below the given percentile of completed trials at "
                              "the same step (Optuna's PercentilePruner)")
    default_percentile: ClassVar[float] = 25.0
    takes_percentile: ClassVar[bool] = True
    name: ClassVar[str] = "percentile"

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        super().__init__(metric=metric, goal=goal, options=options)
        known = {"grace_period", "min_trials"} | ({"percentile"} if self.takes_percentile
                                                  else set())
        refuse_unknown(self.options, known)
        self.percentile = (number(self.options, "percentile", self.default_percentile,
                                   low=0.0, high=100.0)
                           if self.takes_percentile else self.default_percentile)
        if not 0.0 < self.percentile < 100.0:
            raise PluginOptionsError(f"percentile must be between 0 and 100, exclusive "
                                     f"(got {self.percentile:g})")
        self.grace_period = int(number(self.options, "grace_period", 0, low=0, whole=True))
        self.min_trials = int(number(self.options, "min_trials", 5, low=1, whole=True))

    def should_stop(
        self,
        trial: TrialView,
        new_reports: Sequence[Mapping[str, Any]],
        others: Sequence[TrialView],
    ) -> str | None:
        """A reason when the trial's best so far is below the threshold at its latest step."""
        diverged = diverged_steps(trial, new_reports, self.metric)
        if diverged:
            # Only NaN or infinite values so far: judged at its latest such step, as the worst
            # value there is (see the module docstring).
            step = diverged[-1]
        elif trial.metric_values:
            step = int(trial.metric_steps[-1])
        else:
            return None
        if step < self.grace_period:
            return None
        values = [v for t in others if t.ran_its_course
                  and (v := _value_at(t, step)) is not None and math.isfinite(v)]
        if len(values) < self.min_trials:
            return None
        maximize = self.goal is Goal.MAXIMIZE
        q = 100.0 - self.percentile if maximize else self.percentile
        threshold = float(np.percentile(values, q))
        what = "median" if self.percentile == 50.0 else f"{q:g}th percentile"
        if diverged:
            return (f"{self.name} stopping: no finite {self.metric} by step {step} (only NaN or"
                    f" infinite values), worse than any: the {what} is {threshold:g} of"
                    f" {len(values)} completed trials")
        best = max(trial.metric_values) if maximize else min(trial.metric_values)
        if (best < threshold) if maximize else (best > threshold):
            side = "below" if maximize else "above"
            return (f"{self.name} stopping: best {self.metric} {best:g} by step {step} is {side}"
                    f" the {what} {threshold:g} of {len(values)} completed trials")
        return None


class MedianStopping(PercentileStopping):
    """Stop a trial whose best value is worse than the median of completed trials."""

    summary: ClassVar[str] = ("stop a trial below the median of completed trials at the same "
                              "step (Optuna's MedianPruner; AI Platform's early stopping)")
    default_percentile: ClassVar[float] = 50.0
    takes_percentile: ClassVar[bool] = False
    name: ClassVar[str] = "median"
