"""Per-user limits: how many GPUs, and how many running trials, one user's experiments may hold
at once (``max_gpus_per_user``, ``max_trials_per_user``; 0 is no limit).

A trial counts from its start until its processes are gone (a GPU that is still releasing is
no longer its user's). GPUs count as the experiment asks for them: a ``gpus_per_trial: 0.5``
trial holds half a GPU, a CPU-only one none. An experiment held back by its user's limit waits,
and says why (``waiting`` in `gpusched ls --json`), while other users' trials take the GPUs.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpusched._daemon.access import login_name
from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.trial_runner import TrialRunner
from gpusched.config import DaemonSettings

__all__ = ["PER_USER_LIMIT", "Usage", "UserLimits"]

PER_USER_LIMIT = "per-user limit"  # how every such wait reason begins
Usage = dict[int | None, tuple[float, int]]  # owner uid -> (GPUs held, trials running)


class UserLimits:
    """The per-user limits of the daemon's settings."""

    def __init__(self, settings: DaemonSettings) -> None:
        self.max_gpus = settings.max_gpus_per_user
        self.max_trials = settings.max_trials_per_user
        self.enabled = bool(self.max_gpus or self.max_trials)

    def __repr__(self) -> str:
        return f"<UserLimits gpus={self.max_gpus:g} trials={self.max_trials}>"

    def submit_problem(self, gpus_per_trial: float) -> str | None:
        """What is wrong with an experiment whose every trial would be over the GPU limit (it
        would wait forever): the problem at its ``gpus_per_trial``; None when it fits."""
        if self.max_gpus and gpus_per_trial > self.max_gpus + 1e-9:
            return (f"{gpus_per_trial:g} is over this daemon's per-user limit of"
                    f" {self.max_gpus:g} GPUs (max_gpus_per_user): ask for fewer")
        return None

    @staticmethod
    def usage(runners: Iterable[TrialRunner]) -> Usage:
        """What each user's running trials hold now."""
        held: Usage = {}
        for runner in runners:
            if runner.trial.processes_gone:
                continue
            gpus, trials = held.get(runner.exp.owner_uid, (0.0, 0))
            held[runner.exp.owner_uid] = (gpus + runner.exp.spec.gpus_per_trial, trials + 1)
        return held

    def blocked(self, exp: ExperimentRun, usage: Usage) -> str | None:
        """Why ``exp`` may not start another trial now under its owner's limits, or None."""
        gpus, trials = usage.get(exp.owner_uid, (0.0, 0))
        if self.max_trials and trials >= self.max_trials:
            return (f"{PER_USER_LIMIT}: {_who(exp)} runs {trials} trials"
                    f" (max_trials_per_user = {self.max_trials})")
        need = exp.spec.gpus_per_trial
        if self.max_gpus and need and gpus + need > self.max_gpus + 1e-9:
            return (f"{PER_USER_LIMIT}: {_who(exp)} holds {gpus:g} of {self.max_gpus:g} GPUs"
                    f" (max_gpus_per_user), a trial needs {need:g}")
        return None


def _who(exp: ExperimentRun) -> str:
    """The owner's login name, for a message. Asked only once a limit is hit: placement calls
    ``blocked`` for every experiment at every pass, on the event loop, and the user database
    may be a slow directory (``access`` keeps its answers a while, too)."""
    return login_name(exp.owner_uid) or "its owner"
