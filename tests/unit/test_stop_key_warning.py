"""A ``stop:`` key that the trials never report is warned about once per experiment, at the
first judged end of a trial without it (docs/experiment-file.md, ``stop``)."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import (
    STOP_KEY_EVENT,
    ExperimentRun,
    TrialRun,
    see_stop_keys,
    stop_keys_to_watch,
    stopped_at_a_length_bound,
)
from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import Store, open_store
from gpusched._daemon.trial_runner import (
    TrialRunner,
    _without_the_metric,
    unreported_stop_key_warning,
)
from gpusched.config import DaemonSettings
from gpusched.errors import StoreError
from gpusched.models import ExperimentState, TrialState
from gpusched.plugin_api import BOUND_STOP_REASON
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment

PARAMS: list[dict[str, Any]] = [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}]


def run(tmp_path: Path, **settings: Any) -> ExperimentRun:
    data = {"name": "exp", "command": "python train.py", "metric": "val_accuracy",
            "params": PARAMS, **settings}
    spec = parse_experiment(data, base_dir=tmp_path)
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    return ExperimentRun("e3", 3, spec, 0, search, [], state=ExperimentState.RUNNING)


def ended(exp: ExperimentRun, state: TrialState, reports: int = 1, *,
          at_bound: bool = False, on_length: bool = True) -> TrialRun:
    """A trial of ``exp`` that ended in ``state`` with ``reports`` reports (``at_bound``:
    stopped by a ``stop:`` bound; ``on_length``: one on training_iteration, not a metric's)."""
    trial = TrialRun(number=len(exp.trials), params={"x": 0.5}, state=state, reports=reports,
                     at_bound=at_bound, at_length_bound=at_bound and on_length)
    exp.trials[trial.number] = trial
    return trial


# --- which keys are watched -----------------------------------------------------------------


def test_auto_filled_keys_and_the_metric_are_not_watched(tmp_path: Path) -> None:
    exp = run(tmp_path, stop={"training_iteration": 50, "time_total_s": 60, "timestamp": 1,
                              "time_this_iter_s": 9, "val_accuracy": 0.99, "val_acc": 0.95,
                              "epoch": 10})
    assert stop_keys_to_watch(exp.spec) == {"val_acc", "epoch"}
    assert exp.unseen_stop_keys == {"val_acc", "epoch"}


def test_without_stop_keys_nothing_is_watched(tmp_path: Path) -> None:
    # The dispatch benchmark's case: the runner's one test finds an empty set.
    exp = run(tmp_path)
    assert exp.unseen_stop_keys == set()
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == []


# --- what counts as reported ----------------------------------------------------------------


def test_a_number_is_seen_and_what_the_bound_cannot_compare_is_not() -> None:
    unseen = {"a", "b", "c", "d", "e", "f"}
    see_stop_keys(unseen, [{"a": 1, "b": True, "c": math.nan, "d": "0.9"},
                           {"e": math.inf, "f": None, "x": 2.0}])
    assert unseen == {"b", "c", "d", "f"}
    see_stop_keys(unseen, [{"b": 0.5}])
    assert unseen == {"c", "d", "f"}


# --- when and how often it warns ------------------------------------------------------------


def test_the_first_judged_end_warns_about_each_unseen_key_once(tmp_path: Path) -> None:
    exp = run(tmp_path, stop={"val_acc": 0.95, "training_iteration": 50, "epoch": 10})
    # In the file's order, whatever the set's.
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == ["val_acc", "epoch"]
    assert exp.unseen_stop_keys == set()
    for state in (TrialState.COMPLETED, TrialState.STOPPED, TrialState.FAILED):
        assert exp.unreported_stop_keys(ended(exp, state)) == []


def test_a_completed_trial_is_judged(tmp_path: Path) -> None:
    exp = run(tmp_path, stop={"val_acc": 0.95})
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == ["val_acc"]


def test_a_trial_stopped_at_the_bound_is_judged(tmp_path: Path) -> None:
    # Ray Tune's usual stop: every trial ends at iteration 3, stopped by the other bound: it
    # ran as far as asked, and never reported val_acc by then.
    exp = run(tmp_path, stop={"val_acc": 0.5, "training_iteration": 3})
    assert exp.unreported_stop_keys(ended(exp, TrialState.STOPPED, at_bound=True)) == [
        "val_acc"]
    assert exp.unseen_stop_keys == set()


def test_a_trial_stopped_at_a_metrics_bound_is_not_judged(tmp_path: Path) -> None:
    # val_acc reached its bound at epoch 3: a key reported every 10 epochs has not come yet.
    exp = run(tmp_path, stop={"val_acc": 0.9, "val_loss_every10": 0.1})
    assert exp.unreported_stop_keys(
        ended(exp, TrialState.STOPPED, at_bound=True, on_length=False)) == []
    assert exp.unseen_stop_keys == {"val_acc", "val_loss_every10"}  # not judged: still watched


@pytest.mark.parametrize(("reason", "judged"), [
    (f"{BOUND_STOP_REASON}training_iteration=3 >= 3", True),
    (f"{BOUND_STOP_REASON}time_total_s=61.2 >= 60", True),
    (f"{BOUND_STOP_REASON}val_acc=0.93 >= 0.9", False),
    ("median stopping rule: 0.9 < 0.95", False),
])
def test_only_a_bound_on_how_long_it_ran_is_a_whole_course(reason: str, judged: bool) -> None:
    assert stopped_at_a_length_bound(TrialState.STOPPED, reason) is judged
    assert not stopped_at_a_length_bound(TrialState.COMPLETED, reason)


def test_a_trial_stopped_at_the_bound_without_reports_is_not_judged(tmp_path: Path) -> None:
    exp = run(tmp_path, stop={"val_acc": 0.5})
    assert exp.unreported_stop_keys(ended(exp, TrialState.STOPPED, 0, at_bound=True)) == []
    assert exp.unseen_stop_keys == {"val_acc"}


@pytest.mark.parametrize(("state", "reports"), [
    (TrialState.QUEUED, 3),  # a crash to be retried: its next attempt may report it
    (TrialState.CANCELLED, 3),
    (TrialState.INTERRUPTED, 3),
    (TrialState.COMPLETED, 0),  # nothing reported: its reports say nothing about the keys
    (TrialState.FAILED, 0),
    # Stopped early (by a stopping plugin, not the bound) or failed: it may have ended before
    # a key reported late came.
    (TrialState.STOPPED, 3),
    (TrialState.FAILED, 3),
])
def test_other_ends_are_not_judged(tmp_path: Path, state: TrialState, reports: int) -> None:
    exp = run(tmp_path, stop={"val_acc": 0.95})
    assert exp.unreported_stop_keys(ended(exp, state, reports)) == []
    assert exp.unseen_stop_keys == {"val_acc"}  # still watched: the next end judges it


def test_a_key_any_trial_reported_is_not_warned_about(tmp_path: Path) -> None:
    exp = run(tmp_path, stop={"val_acc": 0.95, "epoch": 10})
    see_stop_keys(exp.unseen_stop_keys, [{"epoch": 3}])  # another trial, still running
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == ["val_acc"]


# --- after a restart or a resume: what the log settled --------------------------------------


AT_BOUND = f"{BOUND_STOP_REASON}training_iteration=3 >= 3"  # the bounds plugin's reason


async def restored(tmp_path: Path, trials: list[tuple[str, list[dict[str, Any]]]],
                   reasons: dict[int, str] | None = None, **settings: Any) -> ExperimentRun:
    """The experiment as a restarted daemon reads it back from a log whose trials had these
    states and stored reports (and ``reasons``: trial number -> its reason)."""
    async with open_store(tmp_path / "log.db") as store:
        exp = run(tmp_path, **settings)
        exp.id = await store.create_experiment(name="exp", spec=exp.spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        for number, (state, reports) in enumerate(trials):
            await store.create_trial(exp.id, number, {"x": 0.5}, str(tmp_path / str(number)))
            await store.add_reports(exp.id, number, 0, reports)
            await store.update_trial(exp.id, number, state=state,
                                     reason=(reasons or {}).get(number))
        await restore_trials(store, exp)
    return exp


async def test_a_key_an_earlier_attempt_of_the_trial_reported_is_not_warned_about(
    tmp_path: Path,
) -> None:
    # Its first attempt reported val_acc (validation at epoch 10) and was cut off by a crash;
    # the attempt after the restart goes on from the checkpoint and completes before the next
    # validation. The key is in the log: no warning that it was never reported.
    exp = await restored(tmp_path, [("running", [{"val_accuracy": 0.5, "val_acc": 0.8}])],
                         stop={"val_acc": 0.99, "epoch": 10})
    assert exp.unseen_stop_keys == {"epoch"}
    trial = exp.trials[0]
    trial.state, trial.reports = TrialState.COMPLETED, 2
    assert exp.unreported_stop_keys(trial) == ["epoch"]


async def test_keys_of_trials_that_ended_unjudged_count_after_a_restart(tmp_path: Path) -> None:
    # A trial stopped early or failed reported them: reported is reported, whatever its end.
    exp = await restored(tmp_path, [("stopped", [{"val_acc": 0.8}]),
                                    ("failed", [{"epoch": 3}]),
                                    ("cancelled", [{"lr": 0.1}]),
                                    ("queued", [])],
                         stop={"val_acc": 0.99, "epoch": 10, "lr": 1.0, "step": 5})
    assert exp.unseen_stop_keys == {"step"}


async def test_only_numbers_count_and_any_key_can_be_looked_for(tmp_path: Path) -> None:
    # As live (see_stop_keys): true/false and NaN (stored as null) are not numbers. A key's
    # characters are its own: a dot or a quote is not a JSON path.
    exp = await restored(tmp_path, [("failed", [{"flag": True, "gone": math.nan,
                                                 "text": "0.9", 'a.b "c"': 1, "i": 2**40}])],
                         stop={"flag": 1, "gone": 1, "text": 1, 'a.b "c"': 1, "i": 1})
    assert exp.unseen_stop_keys == {"flag", "gone", "text"}


async def test_no_repeat_after_a_restart(tmp_path: Path) -> None:
    # Trial 0 had a judged end: each key was reported or warned about then (the warning
    # commits with that end). Trial 1, run again after the restart, warns about nothing.
    exp = await restored(tmp_path, [("completed", [{"val_accuracy": 0.9}]), ("running", [])],
                         stop={"val_acc": 0.95})
    assert exp.unseen_stop_keys == set()  # nothing is checked any more
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == []


async def test_after_a_restart_unjudged_trials_of_the_log_do_not_count(tmp_path: Path) -> None:
    exp = await restored(tmp_path, [("cancelled", [{"val_accuracy": 0.9}]), ("failed", []),
                                    ("queued", []), ("stopped", [{"val_accuracy": 0.9}]),
                                    ("completed", []), ("stopped", [])],
                         # Stopped early by a plugin, and at the bound with nothing reported.
                         {3: "median stopping rule: 0.9 < 0.95", 5: AT_BOUND},
                         stop={"val_acc": 0.95})
    assert exp.unreported_stop_keys(ended(exp, TrialState.COMPLETED)) == ["val_acc"]


async def test_no_repeat_after_a_restart_once_a_trial_stopped_at_the_bound(
    tmp_path: Path,
) -> None:
    # As live: a trial stopped at the bound with reports is a judged end, whose warnings were
    # committed with it. The trial run again after the restart warns about nothing.
    exp = await restored(tmp_path, [("stopped", [{"val_accuracy": 0.4}]), ("running", [])],
                         {0: AT_BOUND}, stop={"val_acc": 0.5, "training_iteration": 3})
    assert exp.trials[0].at_bound
    assert exp.unseen_stop_keys == set()
    assert exp.unreported_stop_keys(ended(exp, TrialState.STOPPED, at_bound=True)) == []


# --- the warning's text ---------------------------------------------------------------------


def test_the_warning_names_what_was_reported_and_the_closest_key() -> None:
    last = {"val_accuracy": 0.9, "loss": 0.1, "training_iteration": 3, "time_total_s": 1.0,
            "time_this_iter_s": 0.3, "timestamp": 1}
    assert unreported_stop_key_warning("val_acc", "e3/0", last) == (
        "stop: 'val_acc' was never reported by trial e3/0 (it reported loss, val_accuracy)"
        " (did you mean 'val_accuracy'?): that bound cannot stop a trial; name a key the"
        " trainer reports")


def test_the_warning_without_a_close_key_or_any_key_of_the_trainer() -> None:
    assert unreported_stop_key_warning("epoch", "e3/1", {"loss": 0.1}) == (
        "stop: 'epoch' was never reported by trial e3/1 (it reported loss): that bound"
        " cannot stop a trial; name a key the trainer reports")
    assert unreported_stop_key_warning("epoch", "e3/1", {"training_iteration": 1}) == (
        "stop: 'epoch' was never reported by trial e3/1: that bound cannot stop a trial;"
        " name a key the trainer reports")


def test_the_warning_for_a_key_reported_but_never_as_a_number() -> None:
    assert unreported_stop_key_warning("phase", "e3/0", {"phase": "warmup"}) == (
        "stop: 'phase' was never reported as a number by trial e3/0 (its last value:"
        " 'warmup'): that bound cannot stop a trial; report it as a number")
    long = unreported_stop_key_warning("phase", "e3/0", {"phase": "w" * 100})
    assert f"(its last value: '{'w' * 36}...)" in long


def test_a_misspelled_auto_filled_key_is_guessed_and_said_to_be_gpuscheds() -> None:
    last = {"val_accuracy": 0.9, "loss": 0.1, "training_iteration": 2, "time_total_s": 1.0,
            "time_this_iter_s": 0.5, "timestamp": 1}
    assert unreported_stop_key_warning("training_iteraton", "e3/0", last) == (
        "stop: 'training_iteraton' was never reported by trial e3/0 (it reported loss,"
        " val_accuracy) (did you mean 'training_iteration'? gpusched fills it in for every"
        " report): that bound cannot stop a trial; write 'training_iteration'")
    # Whatever the trainer reported (here nothing of its own), and by case first.
    assert unreported_stop_key_warning("Time_Total_S", "e3/0", {"training_iteration": 1}) == (
        "stop: 'Time_Total_S' was never reported by trial e3/0 (did you mean 'time_total_s'?"
        " gpusched fills it in for every report): that bound cannot stop a trial; write"
        " 'time_total_s'")


def test_the_trainers_own_close_key_is_guessed_before_an_auto_filled_one() -> None:
    # `time_total` is close to time_total_s, and closer to nothing the trainer reported...
    assert "did you mean 'time_total_s'?" in unreported_stop_key_warning(
        "time_total", "e3/0", {"loss": 0.1})
    # ... but a key the trainer reports is what a typo most likely meant.
    assert unreported_stop_key_warning("time_total", "e3/0", {"time_totals": 3}) == (
        "stop: 'time_total' was never reported by trial e3/0 (it reported time_totals) (did you"
        " mean 'time_totals'?): that bound cannot stop a trial; name a key the trainer reports")


def test_the_metrics_message_is_unchanged() -> None:
    assert _without_the_metric("score", {"scor": 1.0, "step": 0, "training_iteration": 1}) == (
        "exited 0 without reporting 'score' (it reported scor, step) (did you mean 'scor'?)")
    assert _without_the_metric("score", {"timestamp": 1}) == (
        "exited 0 without reporting 'score'")


# --- recorded with the trial's end ----------------------------------------------------------


@asynccontextmanager
async def ending_trial(tmp_path: Path) -> AsyncIterator[tuple[Store, TrialRunner]]:
    """A runner whose trial e1/0 (stop: val_acc, never reported) is about to complete, over a
    real trial log; no trial process."""
    async with open_store(tmp_path / "log.db") as store:
        exp = run(tmp_path, stop={"val_acc": 0.95})
        exp.id = await store.create_experiment(name="exp", spec=exp.spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        await store.create_trial(exp.id, 0, {"x": 0.5}, str(tmp_path / "0"))
        trial = TrialRun(number=0, params={"x": 0.5}, state=TrialState.RUNNING, reports=1,
                         last_report={"val_accuracy": 0.9})
        exp.trials[0] = trial

        async def ended(*args: Any) -> None:
            pass

        settings = DaemonSettings()
        yield store, TrialRunner(
            experiment=exp, trial=trial, uuids=[], store=store,
            backend=FakeBackend(FakeConfig(devices=())), devices=DeviceTable([], settings),
            settings=settings, trial_dir=tmp_path / "0", daemon_env={}, on_end=ended)


async def test_the_warning_is_recorded_with_the_trials_end(tmp_path: Path) -> None:
    async with ending_trial(tmp_path) as (store, runner):
        await runner._finish(TrialState.COMPLETED, "exited 0; val_accuracy = 0.9", 0, 0.9)
        events = await store.events("e1")
    assert [(e["kind"], e["trial"]) for e in events] == [("trial_ended", 0),
                                                          (STOP_KEY_EVENT, None)]
    assert events[1]["data"] == {"key": "val_acc", "reason": unreported_stop_key_warning(
        "val_acc", "e1/0", {"val_accuracy": 0.9})}


async def test_a_trial_stopped_at_the_bound_records_the_warning_with_its_end(
    tmp_path: Path,
) -> None:
    # The runner's own path: at_bound comes from the bound's reason, before the end is judged.
    async with ending_trial(tmp_path) as (store, runner):
        await runner._finish(TrialState.STOPPED, AT_BOUND, -15, 0.9)
        events = await store.events("e1")
    assert runner.trial.at_bound
    assert [(e["kind"], e["trial"]) for e in events] == [("trial_ended", 0),
                                                          (STOP_KEY_EVENT, None)]
    assert events[1]["data"]["key"] == "val_acc"


async def test_a_trial_stopped_early_records_no_warning(tmp_path: Path) -> None:
    async with ending_trial(tmp_path) as (store, runner):
        await runner._finish(TrialState.STOPPED, "median stopping rule", -15, 0.9)
        events = await store.events("e1")
    assert [e["kind"] for e in events] == ["trial_ended"]
    assert runner.exp.unseen_stop_keys == {"val_acc"}


async def test_a_warning_the_log_refuses_leaves_the_end_unrecorded_and_judged_again(
    tmp_path: Path,
) -> None:
    # One commit: a daemon killed after the end alone never gave the warning (its restart
    # takes the judged end for the warning's having been given). Refused, neither is there,
    # and the trial, which runs again, judges the key again at its end.
    async with ending_trial(tmp_path) as (store, runner):
        with sqlite3.connect(store.path) as db:
            db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kind ="
                       f" '{STOP_KEY_EVENT}' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(StoreError, match="disk full"):
            await runner._finish(TrialState.COMPLETED, "exited 0; val_accuracy = 0.9", 0, 0.9)
        row = await store.trial("e1", 0)
        events = await store.events("e1")
    assert row is not None and row["state"] == "queued"  # its end is not recorded
    assert events == []
    assert runner.exp.unseen_stop_keys == {"val_acc"}
