"""``floor``: stop a trial whose best value so far is still worse than a fixed floor once it has
reported ``grace_period`` steps (a diverged or dead run). Only the trial's own curve matters, so
each decision is a pure function of the trial's view."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import Goal, PluginOptionsError, StoppingPlugin, TrialView

__all__ = ["FloorStopping"]


def _number(options: Mapping[str, Any], name: str, default: float | None) -> float | None:
    value = options.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PluginOptionsError(f"{name} must be a finite number (got {value!r})")
    return float(value)


class FloorStopping(StoppingPlugin):
    """Stops a trial that has not reached ``floor`` by ``grace_period`` (default 3)."""

    summary: ClassVar[str] = "stop a trial still worse than a fixed floor after a grace period"

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        super().__init__(metric=metric, goal=goal, options=options)
        unknown = set(self.options) - {"floor", "grace_period"}
        if unknown:
            raise PluginOptionsError(f"unknown option(s) {', '.join(sorted(unknown))};"
                                     " floor takes: floor, grace_period")
        # No floor given: the plugin never stops anything (it must start without options).
        self.floor = _number(self.options, "floor", None)
        grace = _number(self.options, "grace_period", 3)
        assert grace is not None
        if grace < 1 or not grace.is_integer():
            raise PluginOptionsError(f"grace_period must be a whole number >= 1 (got {grace:g})")
        self.grace_period = int(grace)

    def should_stop(self, trial: TrialView, new_reports: Sequence[Mapping[str, Any]],
                    others: Sequence[TrialView]) -> str | None:
        """A reason once ``grace_period`` values are in and none reached the floor."""
        values = [v for v in trial.metric_values if math.isfinite(v)]
        if self.floor is None or len(values) < self.grace_period:
            return None
        maximize = self.goal is Goal.MAXIMIZE
        best = max(values) if maximize else min(values)
        reached = best >= self.floor if maximize else best <= self.floor
        if reached:
            return None
        word = "below" if maximize else "above"
        return (f"floor: best {self.metric} {best:g} after {len(values)} reports is still"
                f" {word} the floor {self.floor:g}")
