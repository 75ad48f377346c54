"""``bounds``: the experiment file's ``stop:`` mapping, e.g. ``{training_iteration: 100,
val_accuracy: 0.99}``.

A trial stops as soon as one of its new reports has a value that reached its bound. For the
experiment's metric "reached" follows the goal (``maximize``: value >= bound, ``minimize``:
value <= bound); every other key means value >= bound, as with ``training_iteration``. Reports
without a key, or with a value that is not a number (or is NaN), are ignored for that key.

A key that trials never report in such a value can stop nothing: the daemon warns about it
once per experiment (the ``stop_key_never_reported`` event, see docs/experiment-file.md), and
reads "reported" as this plugin does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from gpusched.plugin_api import (
    BOUND_STOP_REASON,
    Goal,
    PluginOptionsError,
    StoppingPlugin,
    TrialView,
)

__all__ = ["BoundsStopping"]


def _is_number(value: Any) -> bool:
    # bool is an int subclass, but `true` in a report or a bound is not a quantity.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _show(value: float) -> str:
    """A number as written or reported: ``100`` stays ``100``, ``0.991`` stays ``0.991``."""
    return str(value) if isinstance(value, int) else repr(float(value))


class BoundsStopping(StoppingPlugin):
    """Stop a trial once a reported value reaches its ``stop:`` bound."""

    summary: ClassVar[str] = "stop a trial once a reported value reaches its `stop:` bound"

    def __init__(self, *, metric: str, goal: Goal, options: Mapping[str, Any]) -> None:
        super().__init__(metric=metric, goal=goal, options=options)
        bad = [
            f"{key}: {value!r}"
            for key, value in self.options.items()
            if not isinstance(key, str) or not _is_number(value) or math.isnan(value)
        ]
        if bad:
            raise PluginOptionsError(f"stop bounds must be numbers (got {', '.join(bad)})")
        self.bounds: dict[str, float] = dict(self.options)

    def should_stop(
        self,
        trial: TrialView,
        new_reports: Sequence[Mapping[str, Any]],
        others: Sequence[TrialView],
    ) -> str | None:
        """The first bound reached by ``new_reports``, in report then ``stop:`` order, or None."""
        for report in new_reports:
            for key, bound in self.bounds.items():
                value = report.get(key)
                if value is None or not _is_number(value) or math.isnan(value):
                    continue
                at_most = key == self.metric and self.goal == Goal.MINIMIZE
                if value <= bound if at_most else value >= bound:
                    op = "<=" if at_most else ">="
                    return f"{BOUND_STOP_REASON}{key}={_show(value)} {op} {_show(bound)}"
        return None
