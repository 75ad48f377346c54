"""States and small value types shared by the client and the daemon.

States are ``str`` enums so that they travel over the socket and into SQLite as plain words.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ExperimentState",
    "TrialState",
    "DeviceState",
    "Goal",
    "ObjectiveRule",
    "TERMINAL_TRIAL_STATES",
    "TERMINAL_EXPERIMENT_STATES",
    "AUTO_FILLED_FIELDS",
]


class ExperimentState(StrEnum):
    """Where an experiment is in its life (SPEC section 8)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TrialState(StrEnum):
    """Where a trial is in its life (SPEC section 8)."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"  # early stopping or a `stop:` bound; its reports still count
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # the daemon went down while it ran


class DeviceState(StrEnum):
    """What a GPU is doing, as `gpusched gpus` shows it (SPEC section 6)."""

    FREE = "free"
    BUSY = "busy"
    RELEASING = "releasing"
    FOREIGN = "foreign"
    QUARANTINED = "quarantined"
    LOST = "lost"


class Goal(StrEnum):
    """Which way the experiment's metric should go."""

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when ``a`` is strictly better than ``b`` under this goal."""
        return a > b if self is Goal.MAXIMIZE else a < b


class ObjectiveRule(StrEnum):
    """Which reported value of the metric is a trial's result."""

    LAST = "last"
    BEST = "best"


TERMINAL_TRIAL_STATES = frozenset(
    {TrialState.COMPLETED, TrialState.STOPPED, TrialState.FAILED, TrialState.CANCELLED}
)
TERMINAL_EXPERIMENT_STATES = frozenset(
    {ExperimentState.COMPLETED, ExperimentState.FAILED, ExperimentState.CANCELLED}
)

AUTO_FILLED_FIELDS: tuple[str, ...] = (
    "training_iteration", "time_total_s", "time_this_iter_s", "timestamp")
"""Ray Tune's fields, which the daemon adds to every report (in this order): not what a trainer
reported. The views know them before any report has them (``gpusched ls EXP``'s columns)."""
