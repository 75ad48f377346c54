"""Reading experiments back from the trial log: after a restart, and for ``resume_from``.

The log is the source of truth: what the scheduler holds in memory at start is rebuilt here,
so the search plugins (pure functions of these views) continue the same search.
"""

from __future__ import annotations

from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.store import Store
from gpusched.errors import RequestError
from gpusched.models import TrialState
from gpusched.plugin_api import TrialView
from gpusched.spec import ExperimentSpec

__all__ = ["prior_trials", "restore_trials"]

INTERRUPTED_REASON = "the daemon went down while it ran"


async def prior_trials(store: Store, spec: ExperimentSpec) -> list[TrialView]:
    """The finished trials of the experiment ``spec`` resumes from (none without one).

    They are numbered -1, -2, ... so that they never collide with the new experiment's own.
    """
    if not spec.resume_from:
        return []
    row = await store.experiment(spec.resume_from)
    if row is None:
        raise RequestError("invalid_experiment",
                           f"resume_from: no experiment '{spec.resume_from}'")
    rows = await store.trials(row["id"])
    series = await store.metric_series(row["id"], [r["number"] for r in rows], spec.metric)
    views: list[TrialView] = []
    for r in rows:
        state = TrialState(r["state"])
        if state in (TrialState.COMPLETED, TrialState.STOPPED) and r["objective"] is not None:
            pairs = series.get(r["number"], [])
            views.append(TrialView(
                number=-1 - len(views), params=r["params"], state=state,
                objective=r["objective"], metric_values=tuple(v for _, v in pairs),
                metric_steps=tuple(s for s, _ in pairs)))
    return views


async def restore_trials(store: Store, exp: ExperimentRun) -> None:
    """Fill ``exp`` with its trials from the log.

    A trial still ``running`` in the log was cut off by a crash: it is recorded ``interrupted``
    and, like one interrupted by a graceful stop or never started, queued to run again with its
    params and checkpoint folder.
    """
    rows = await store.trials(exp.id)
    series = await store.metric_series(exp.id, [r["number"] for r in rows], exp.spec.metric)
    for r in rows:
        state = TrialState(r["state"])
        pairs = series.get(r["number"], [])
        trial = TrialRun(number=r["number"], params=r["params"], state=state,
                         objective=r["objective"], attempts=r["attempts"],
                         reports=r["reports"], metric_values=[v for _, v in pairs],
                         metric_steps=[s for s, _ in pairs])
        exp.trials[trial.number] = trial
        if state is TrialState.RUNNING:
            trial.state = TrialState.INTERRUPTED
            await store.update_trial(exp.id, trial.number, state="interrupted",
                                     reason=INTERRUPTED_REASON)
        if trial.state in (TrialState.INTERRUPTED, TrialState.QUEUED):
            trial.objective = None  # it runs again: its result comes from that run
            exp.requeued.append(trial.number)
