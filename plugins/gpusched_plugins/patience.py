"""``patience``: stop a trial whose metric has stopped improving (Keras's EarlyStopping; Optuna's
PatientPruner without a wrapped pruner is a close relative).

The trial's reports that carry the metric are read in order, keeping a reference best: the first
value, replaced by any later value better than it by more than ``min_delta`` (for ``maximize``,
``value > best + min_delta``; for ``minimize``, ``value < best - min_delta``). The trial stops when
``patience`` or more reports have come since that best, unless its latest reported step is still
below ``grace_period``. Only the trial's own curve matters; other trials do not.

Options (all optional):
- ``patience`` (default 5): how many reports without improvement are tolerated (Keras's
  ``patience``), a whole number >= 1.
- ``min_delta`` (default 0): the least change that counts as an improvement, >= 0.
- ``grace_period`` (default 0): no stop while the latest ``training_iteration`` is below this
  (Keras's ``start_from_epoch``, roughly: the reports before it still count).

Non-finite values are ignored. A trial that has reported the metric but *no finite value at all*
(it diverged: only NaN or infinities) has no best to improve on: it stops once a report of the
batch with such a value is at ``training_iteration`` ``patience + 1`` or later (the reports a
flat curve gets before it stops; ``training_iteration`` counts every report, on from the trial
it continues for a promoted one, which so may stop at its first NaN report), and not below
``grace_period``. Keras's EarlyStopping likewise stops a NaN run after ``patience`` epochs. The
decision is a function of the trial's view and the batch only, so a restarted daemon decides
the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import Goal, StoppingPlugin, TrialView
from gpusched_plugins._diverged import diverged_steps
from gpusched_plugins._options import number, refuse_unknown

__all__ = ["PatienceStopping"]

_KNOWN = ("grace_period", "min_delta", "patience")


class PatienceStopping(StoppingPlugin):
    """Stop a trial whose best value has not improved for ``patience`` reports."""

    summary: ClassVar[str] = ("stop a trial whose metric has not improved for `patience` "
                              "reports (Keras's EarlyStopping)")

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        super().__init__(metric=metric, goal=goal, options=options)
        refuse_unknown(self.options, _KNOWN)
        self.patience = int(number(self.options, "patience", 5, low=1, whole=True))
        self.min_delta = number(self.options, "min_delta", 0.0, low=0.0)
        self.grace_period = int(number(self.options, "grace_period", 0, low=0, whole=True))

    def should_stop(
        self,
        trial: TrialView,
        new_reports: Sequence[Mapping[str, Any]],
        others: Sequence[TrialView],
    ) -> str | None:
        """A reason when ``patience`` reports have passed since the last real improvement."""
        points = [(int(step), float(value))
                  for step, value in zip(trial.metric_steps, trial.metric_values, strict=False)
                  if math.isfinite(value)]
        if not points:
            return self._diverged(trial, new_reports)
        if points[-1][0] < self.grace_period:
            return None
        sign = 1.0 if self.goal is Goal.MAXIMIZE else -1.0
        best = 0
        for index in range(1, len(points)):
            if sign * (points[index][1] - points[best][1]) > self.min_delta:
                best = index
        since = len(points) - 1 - best
        if since < self.patience:
            return None
        step, value = points[best]
        return (f"patience: best {self.metric} {value:g} at step {step}, no improvement > "
                f"{self.min_delta:g} in the {since} reports since")

    def _diverged(self, trial: TrialView, new_reports: Sequence[Mapping[str, Any]]) -> str | None:
        """A trial with only NaN or infinite values so far has no best to improve on: it stops
        once a report of the batch with such a value is at ``training_iteration`` ``patience +
        1`` or later (and past ``grace_period``), the reports a flat curve gets."""
        steps = diverged_steps(trial, new_reports, self.metric)
        if not steps or steps[-1] < max(self.patience + 1, self.grace_period):
            return None
        return (f"patience: no finite {self.metric} by step {steps[-1]}, only NaN or infinite"
                f" values")
