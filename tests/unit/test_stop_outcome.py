"""``stop_outcome``: how a trial that gpusched stopped ends, the one rule that the live daemon
(``TrialRunner._conclude``) and a restarted one (``restore``, for a trial whose stop was sent
before a crash) both apply; and what a restart records for such a trial from the log alone
(tests/integration/test_restart_after_stop_sent.py kills a real daemon)."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.experiment import (
    STOP_KEY_EVENT,
    ExperimentRun,
    StopOutcome,
    StopRequest,
    stop_outcome,
)
from gpusched._daemon.restore import INTERRUPTED_REASON, restore_trials
from gpusched._daemon.store import Store, open_store
from gpusched._daemon.trial_runner import STOP_SENT_EVENT
from gpusched.models import ExperimentState, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import ExperimentSpec, parse_experiment

BOUND = "stop bound reached: training_iteration=3 >= 3"
NO_RESULT = "; it reported no finite 'score', so it has no result"


def _spec(tmp_path: Path, **more: Any) -> ExperimentSpec:
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "score",
                             "max_trials": 1, **more,
                             "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]},
                            base_dir=tmp_path)


def test_a_stopped_trial_keeps_its_objective_by_the_experiment_s_rule(tmp_path: Path) -> None:
    values = [0.2, 0.9, 0.5]
    stop = StopRequest(TrialState.STOPPED, BOUND, by_plugin=True)
    assert stop_outcome(stop, values, _spec(tmp_path)) == StopOutcome(
        TrialState.STOPPED, BOUND, 0.5)
    best = _spec(tmp_path, objective="best", goal="maximize")
    assert stop_outcome(stop, values, best) == StopOutcome(TrialState.STOPPED, BOUND, 0.9)


def test_a_plugin_s_stop_before_any_finite_value_fails_the_trial(tmp_path: Path) -> None:
    stop = StopRequest(TrialState.STOPPED, BOUND, by_plugin=True)
    assert stop_outcome(stop, [math.nan], _spec(tmp_path)) == StopOutcome(
        TrialState.FAILED, BOUND + NO_RESULT, None)
    # A stop that says so already is not told twice.
    diverged = StopRequest(TrialState.STOPPED, "no finite 'score' in 3 reports", by_plugin=True)
    assert stop_outcome(diverged, [], _spec(tmp_path)).reason == diverged.reason


def test_a_time_budget_s_stop_without_a_result_stays_stopped(tmp_path: Path) -> None:
    stop = StopRequest(TrialState.STOPPED, "time_budget of 60s used up")
    assert stop_outcome(stop, [], _spec(tmp_path)) == StopOutcome(
        TrialState.STOPPED, stop.reason, None)


@pytest.mark.parametrize(("state", "reason"), [
    (TrialState.FAILED, "trial_timeout of 5s exceeded"),
    (TrialState.CANCELLED, "cancelled"),
])
def test_a_timeout_or_a_cancel_ends_as_asked_without_a_result(
    tmp_path: Path, state: TrialState, reason: str,
) -> None:
    stop = StopRequest(state, reason)
    assert stop_outcome(stop, [0.7], _spec(tmp_path)) == StopOutcome(state, reason, None)


# --- at a restart: a trial the log has running, its stop sent -------------------------------


def _restarted(spec: ExperimentSpec) -> ExperimentRun:
    """The experiment as a restarted daemon makes it, before its trials are read back."""
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    return ExperimentRun("e1", 1, spec, 0, search, [], state=ExperimentState.RUNNING)


async def _cut_off_after(store: Store, spec: ExperimentSpec, tmp_path: Path,
                         scores: list[float], *stops: dict[str, Any],
                         attempts: int = 1, more: dict[str, Any] | None = None) -> None:
    """The log of a daemon killed while trial 0 ran its attempt ``attempts`` and reported
    ``scores`` (at iterations 1, 2, ..., with ``more`` in each report), with these
    ``trial_stop_sent`` events after its start (none: no stop was sent)."""
    await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0, priority=0,
                                  owner_uid=os.getuid())
    await store.create_trial("e1", 0, {"x": 0.5}, str(tmp_path / "trials" / "e1" / "0"))
    await store.add_reports("e1", 0, 0, [{"score": v, "training_iteration": i, **(more or {})}
                                         for i, v in enumerate(scores, 1)])
    await store.record_trial("e1", 0, {"state": "running", "pid": 4_000_000,
                                       "attempts": attempts, "started_at": time.time()},
                             "trial_started", attempt=attempts, status_from=0)
    for stop in stops:
        await store.add_event(STOP_SENT_EVENT, "e1", 0, **stop)


BY_THE_BOUND = {"state": "stopped", "reason": BOUND, "by_plugin": True, "attempt": 1}


async def test_a_length_bound_s_stop_ends_the_trial_stopped_and_warns_of_unseen_keys(
    tmp_path: Path,
) -> None:
    # As the live daemon does: the stop's outcome, and with it the warning that a stop: key
    # was never reported (a judged end: the trial ran the course its user set); not of one
    # that its reports gave.
    spec = _spec(tmp_path, stop={"training_iteration": 3, "val_acc": 0.9, "epoch": 10})
    async with open_store(tmp_path / "log.db") as store:
        await _cut_off_after(store, spec, tmp_path, [0.1, 0.2, 0.3], BY_THE_BOUND,
                             more={"epoch": 1})
        exp = _restarted(spec)
        await restore_trials(store, exp)
        row = await store.trial("e1", 0)
        warnings = [e for e in await store.events("e1") if e["kind"] == STOP_KEY_EVENT]
    trial = exp.trials[0]
    assert (trial.state, trial.objective, trial.at_length_bound) == (
        TrialState.STOPPED, 0.3, True)
    assert exp.requeued == []
    assert row is not None
    assert (row["state"], row["reason"], row["objective"], row["attempts"]) == (
        "stopped", BOUND, 0.3, 1)
    assert [w["data"]["key"] for w in warnings] == ["val_acc"]
    assert exp.unseen_stop_keys == set()


async def test_a_plugin_s_stop_without_a_result_fails_and_the_rules_judge_it_once(
    tmp_path: Path,
) -> None:
    spec = _spec(tmp_path)
    async with open_store(tmp_path / "log.db") as store:
        await _cut_off_after(store, spec, tmp_path, [math.nan], BY_THE_BOUND)
        await restore_trials(store, _restarted(spec))
        row = await store.trial("e1", 0)
        failing = await store.last_event("e1", ["experiment_failing"])
    assert row is not None and (row["state"], row["reason"]) == ("failed", BOUND + NO_RESULT)
    assert failing is not None and failing["data"]["reason"].startswith(
        "the first trial, e1/0, failed")


async def test_a_decision_made_before_the_crash_stands(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    timeout = {"state": "failed", "reason": "trial_timeout of 5s exceeded", "attempt": 1}
    async with open_store(tmp_path / "log.db") as store:
        await _cut_off_after(store, spec, tmp_path, [0.1], timeout)
        await store.add_event("experiment_failing", "e1", reason="3 trials failed in a row")
        await restore_trials(store, _restarted(spec))
        row = await store.trial("e1", 0)
        decisions = [e for e in await store.events("e1") if e["kind"] == "experiment_failing"]
    assert row is not None and (row["state"], row["objective"]) == ("failed", None)
    assert [e["data"]["reason"] for e in decisions] == ["3 trials failed in a row"]


@pytest.mark.parametrize("stop", [
    # An interruption (the daemon's shutdown) is never kept; nor an event it cannot read.
    {"state": "interrupted", "reason": "the daemon stopped while it ran"},
    {"state": "stopped"},
    {"state": ["stopped"], "reason": BOUND},
], ids=["interrupted", "no-reason", "not-a-state"])
async def test_a_stop_that_is_not_kept_runs_the_trial_again(
    tmp_path: Path, stop: dict[str, Any],
) -> None:
    spec = _spec(tmp_path)
    async with open_store(tmp_path / "log.db") as store:
        await _cut_off_after(store, spec, tmp_path, [0.1], stop)
        exp = _restarted(spec)
        await restore_trials(store, exp)
        row = await store.trial("e1", 0)
    assert exp.requeued == [0]
    assert row is not None and (row["state"], row["reason"]) == (
        "interrupted", INTERRUPTED_REASON)


async def test_a_stop_sent_to_an_earlier_attempt_says_nothing_of_the_cut_off_one(
    tmp_path: Path,
) -> None:
    # Attempt 1 was stopped, and its end refused by the log: it ran again in that daemon,
    # which was killed during attempt 2, with no stop sent to that one. It runs again.
    spec = _spec(tmp_path)
    async with open_store(tmp_path / "log.db") as store:
        await _cut_off_after(store, spec, tmp_path, [0.1], BY_THE_BOUND)
        await store.record_trial("e1", 0, {"state": "running", "attempts": 2},
                                 "trial_started", attempt=2, status_from=0)
        exp = _restarted(spec)
        await restore_trials(store, exp)
    assert exp.requeued == [0] and exp.trials[0].state is TrialState.INTERRUPTED
