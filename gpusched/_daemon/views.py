"""The JSON shapes of the read commands (documented in docs/json.md), built from log rows."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection
from typing import Any

from gpusched._daemon.access import login_name
from gpusched._daemon.experiment import ExperimentRun, objective_of, points_taken
from gpusched.models import TERMINAL_TRIAL_STATES, Goal, TrialState

__all__ = ["trial_view", "experiment_view", "best_trials", "parse_target", "objectives_so_far",
           "points_of"]

_TRIAL_STATES = [s.value for s in TrialState]


def parse_target(target: str) -> tuple[str, int | None]:
    """``"e3"`` -> ("e3", None); ``"e3/7"`` -> ("e3", 7). ValueError when malformed."""
    exp, sep, num = target.partition("/")
    if not exp:
        raise ValueError(f"'{target}' names no experiment (expected EXP or EXP/N)")
    if not sep:
        return exp, None
    if not num.isdigit():
        raise ValueError(f"'{target}': the trial number must be a whole number (EXP/N)")
    return exp, int(num)


def objectives_so_far(exp: ExperimentRun | None) -> dict[int, float]:
    """Trial number -> its objective so far: the experiment's ``objective`` rule (last or
    best) over the values of its metric reported so far, for each trial that has not ended
    (running, or waiting to run again) and has reported a finite one. ``exp``: the experiment
    as the scheduler holds it; None (not in progress: none of its trials is left) gives {}.

    From the scheduler's memory, by the rule that will decide the trial's result: no report
    is read, so `ls` stays cheap however many reports the trials have stored."""
    if exp is None:
        return {}
    rule, goal = exp.spec.objective, exp.spec.goal
    out: dict[int, float] = {}
    for number, trial in exp.trials.items():
        if trial.state in TERMINAL_TRIAL_STATES or not trial.metric_values:
            continue
        value = objective_of(trial.metric_values, rule, goal)
        if value is not None:
            out[number] = value
    return out


def points_of(experiment: dict[str, Any], trials: list[dict[str, Any]]) -> dict[int, int]:
    """Trial number -> the index of the point of ``points_to_evaluate`` whose params it took,
    from the experiment's row and its trials' rows (by number), by the rule the scheduler
    hands the points out by (:func:`~gpusched._daemon.experiment.points_taken`)."""
    points = experiment["spec"].get("points_to_evaluate") or ()
    return points_taken(((t["number"], t["continues"]) for t in trials), len(points))


def as_scheduled(trials: list[dict[str, Any]], waiting_again: Collection[int]
                 ) -> list[dict[str, Any]]:
    """The trial rows as the scheduler knows them: one it holds to run again (its number in
    ``waiting_again``: ``Scheduler.trial_waits``) is ``interrupted``, with no pid, whatever
    its row says. Its row says ``running`` when the log refused the write of its end (a full
    disk): its process is gone, and counting it running would tell of a trial that is not."""
    if not waiting_again:
        return trials
    return [{**t, "state": TrialState.INTERRUPTED.value, "pid": None}
            if t["state"] == TrialState.RUNNING.value and t["number"] in waiting_again else t
            for t in trials]


def trial_view(row: dict[str, Any], *, exp_id: str, waiting: dict[str, Any] | None = None,
               so_far: float | None = None, point: int | None = None) -> dict[str, Any]:
    """One trial as `gpusched ls EXP --json` and `show EXP/N --json` give it; ``waiting``:
    why it has not started again, for a trial waiting to run again; ``so_far``: its objective
    so far, for a trial that has not ended (:func:`objectives_so_far`); ``point``: the point
    of ``points_to_evaluate`` it took (:func:`points_of`; docs/json.md)."""
    started, ended = row.get("started_at"), row.get("ended_at")
    duration = (ended - started) if started and ended else None
    return {
        "id": f"{exp_id}/{row['number']}",
        "experiment": exp_id,
        "number": row["number"],
        "state": row["state"],
        "params": row["params"],
        "budget": row["budget"],
        "continues": None if row["continues"] is None else f"{exp_id}/{row['continues']}",
        "point": point,
        "objective": row["objective"],
        "objective_so_far": so_far,
        "reason": row["reason"],
        "devices": row["devices"],
        "pid": row["pid"],
        "attempts": row["attempts"],
        "exit_code": row["exit_code"],
        "exit_signal": row["exit_signal"],
        "reports": row["reports"],
        "created_at": row["created_at"],
        "started_at": started,
        "ended_at": ended,
        "duration_s": duration,
        "dir": row["dir"],
        "waiting": waiting,
    }


def _best(trials: list[dict[str, Any]], goal: Goal) -> dict[str, Any] | None:
    ranked = best_trials(trials, goal, 1)
    return ranked[0] if ranked else None


def best_trials(trials: list[dict[str, Any]], goal: Goal, n: int) -> list[dict[str, Any]]:
    """The ``n`` best trials with a finite objective, best first."""
    scored = [t for t in trials if t["objective"] is not None and math.isfinite(t["objective"])]
    sign = -1.0 if goal is Goal.MAXIMIZE else 1.0
    return sorted(scored, key=lambda t: (sign * t["objective"], t["number"]))[:n]


def experiment_view(row: dict[str, Any], trials: list[dict[str, Any]],
                    waiting: dict[str, Any] | None = None, *,
                    warning_count: int) -> dict[str, Any]:
    """One experiment as `gpusched ls --json` gives it (``show`` adds ``spec`` and more);
    ``waiting``: why trials it has to run have not started (docs/json.md), else None;
    ``warning_count``: how many warning events it has (``Store.warning_counts``)."""
    spec = row["spec"]
    goal = Goal(spec["goal"])
    counts = Counter(t["state"] for t in trials)
    best = _best(trials, goal)
    return {
        "id": row["id"],
        "name": row["name"],
        "state": row["state"],
        "reason": row["reason"],
        "metric": spec["metric"],
        "goal": goal.value,
        "priority": row["priority"],
        "owner_uid": row["owner_uid"],
        "owner": login_name(row["owner_uid"]),
        "seed": row["seed"],
        "max_trials": spec.get("max_trials"),
        "trials": {"total": len(trials), **{s: counts.get(s, 0) for s in _TRIAL_STATES}},
        "best": None if best is None else {
            "trial": f"{row['id']}/{best['number']}", "objective": best["objective"],
            "params": best["params"],
        },
        "submitted_at": row["submitted_at"],
        "started_at": row["started_at"],
        "ended_at": row["ended_at"],
        "waiting": waiting,
        "warning_count": warning_count,
    }
