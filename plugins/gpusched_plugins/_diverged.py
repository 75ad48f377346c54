"""Reports of a trial that diverged: it reported the metric, but never a finite value of it.

The daemon keeps only finite values in :attr:`TrialView.metric_values`, so a trial whose loss
was NaN from the start has none: a stopping rule that judges values never judged it, and it ran
to its end. The reports themselves still hold the NaN: the batch a stopping plugin is handed
(``new_reports``) as read, ``float("nan")`` or an infinity, and :attr:`TrialView.last_report`
as the log stores it, where NaN and the infinities are ``null``. Each report carries its
``training_iteration`` (the daemon fills it in: 1, 2, 3, ... per trial, and on from the last of
the trial it continues for one that continues another: hyperband's promotion).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gpusched.plugin_api import TrialView

__all__ = ["diverged_steps", "report_step"]


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def report_step(report: Mapping[str, Any]) -> int | None:
    """A report's ``training_iteration``, or None when it has none that is a finite number."""
    step = report.get("training_iteration")
    if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
        return None
    return int(step)


def _not_finite(value: Any) -> bool:
    """NaN or an infinity as read, or ``None``, as the log stores them (the daemon drops a
    ``null`` a trial reports, so a stored one was not finite)."""
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def diverged_steps(trial: TrialView, new_reports: Sequence[Mapping[str, Any]],
                   metric: str) -> list[int]:
    """The ``training_iteration`` of each report of the batch whose ``metric`` is NaN or
    infinite, in report order, when ``trial`` has no finite value of ``metric`` at all; else
    (or for a batch without such reports) an empty list.

    A trial that never reported the metric, or reported it as text, has none either: only a
    value that is there and not finite counts, so such a trial is left alone."""
    if any(_is_number(v) and math.isfinite(v) for v in trial.metric_values):
        return []
    return [step for report in new_reports
            if metric in report and _not_finite(report[metric])
            and (step := report_step(report)) is not None]
