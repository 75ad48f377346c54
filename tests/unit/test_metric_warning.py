"""A metric that looks misspelled (``val_acc`` while the trainer reports ``val_accuracy``) is
warned about as soon as a trial has made a few reports without it, once per experiment: its
text, when it is given and when not, its commit, and what a restarted daemon reads back."""

from __future__ import annotations

import math
import os
import re
import sqlite3
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import (
    METRIC_EVENT,
    METRIC_REPORTS,
    ExperimentRun,
    TrialRun,
    metric_misspelled_as,
    metric_warning_text,
    set_advice,
)
from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import WARNING_EVENTS, Store, open_store
from gpusched._daemon.trial_runner import TrialRunner
from gpusched._spec_yaml import load_text
from gpusched.config import DaemonSettings
from gpusched.errors import StoreError
from gpusched.models import ExperimentState, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment
from gpusched.views import tables

PARAMS: list[dict[str, Any]] = [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}]
STEP = {"step": 1, "train_loss": 0.5}  # a trainer's report between validations
EPOCH = {"val_accuracy": 0.8, "val_loss": 0.4}  # ... and at each validation


def run(tmp_path: Path, metric: str = "val_acc", **settings: Any) -> ExperimentRun:
    data = {"name": "exp", "command": "python train.py", "metric": metric, "params": PARAMS,
            **settings}
    spec = parse_experiment(data, base_dir=tmp_path)
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    return ExperimentRun("e8", 8, spec, 0, search, [], state=ExperimentState.RUNNING)


def trial_of(exp: ExperimentRun) -> TrialRun:
    trial = TrialRun(number=len(exp.trials), params={"x": 0.5}, state=TrialState.RUNNING)
    exp.trials[trial.number] = trial
    return trial


def reports(*keys: dict[str, Any], iteration: int = 1) -> list[dict[str, Any]]:
    """Reports as the collector makes them: the trainer's keys and the auto-filled ones."""
    return [{**k, "training_iteration": iteration + i, "time_total_s": 1.0 + i,
             "time_this_iter_s": 1.0, "timestamp": 1} for i, k in enumerate(keys)]


# --- the text -------------------------------------------------------------------------------


def test_the_warning_names_what_was_reported_and_what_to_type() -> None:
    assert metric_warning_text("val_acc", "e8/0", 3, ["step", "train_loss", "val_accuracy",
                                                      "val_loss"], "val_accuracy") == (
        "metric 'val_acc' was not in the first 3 reports of trial e8/0 (it reported step,"
        " train_loss, val_accuracy, val_loss) (did you mean 'val_accuracy'?): if that is the"
        " metric, cancel (gpusched cancel e8) and submit again with metric: val_accuracy (or"
        " --set metric=val_accuracy)")


def test_one_report_is_said_as_one() -> None:
    assert metric_warning_text("score", "e12/4", 1, ["scor"], "scor") == (
        "metric 'score' was not in the first report of trial e12/4 (it reported scor) (did you"
        " mean 'scor'?): if that is the metric, cancel (gpusched cancel e12) and submit again"
        " with metric: scor (or --set metric=scor)")


def test_the_guess_named_is_the_one_given_not_did_you_means_over_every_key() -> None:
    # did you mean alone would guess train_loss (0.67 to val_los, but nothing's closer than
    # val_loss's 0.93): what is named is the guess that was taken, whatever the list holds.
    said = metric_warning_text("val_loss", "e1/0", 3, ["train_loss", "val_los"], "val_los")
    assert "(did you mean 'val_los'?)" in said and said.count("did you mean") == 1


@pytest.mark.parametrize(("value", "advice"), [
    ("val_accuracy", "metric: val_accuracy (or --set metric=val_accuracy)"),
    ("training/hptuning/metric",
     "metric: training/hptuning/metric (or --set metric=training/hptuning/metric)"),
    # YAML would read these as a number, true, null, a mapping: quoted, as JSON quotes.
    ("1e-3", "metric: \"1e-3\" (or --set 'metric=\"1e-3\"')"),
    ("true", "metric: \"true\" (or --set 'metric=\"true\"')"),
    ("null", "metric: \"null\" (or --set 'metric=\"null\"')"),
    ("acc: top1", "metric: \"acc: top1\" (or --set 'metric=\"acc: top1\"')"),
    # YAML reads it as it is; a shell would split it, or choke on the quote.
    ("val acc", "metric: val acc (or --set 'metric=val acc')"),
    ("it's", "metric: it's (or --set 'metric=it'\"'\"'s')"),
])
def test_the_advice_is_typed_as_given(value: str, advice: str) -> None:
    assert set_advice("metric", value) == advice


@pytest.mark.parametrize("value", ["val_accuracy", "1e-3", "true", "acc: top1", "val acc",
                                   "it's", " lead", "[a]", "~", "x #y", 'q"uote'])
def test_the_advice_gives_the_value_back_to_yaml_and_the_shell(value: str) -> None:
    # What the user pastes: the file's line reads back as the value, and so does the --set
    # once a shell has taken its quotes off (its VALUE is YAML too: docs/experiment-file.md).
    advice = set_advice("metric", value)
    match = re.fullmatch(r"metric: (.*) \(or --set (.*)\)", advice)
    assert match is not None, advice
    assert load_text(f"metric: {match[1]}") == {"metric": value}
    argv = subprocess.run(["sh", "-c", f"printf '%s' {match[2]}"], capture_output=True,
                          text=True, check=True).stdout
    key, _, raw = argv.partition("=")
    assert key == "metric" and load_text(raw) == value


# --- which key is a misspelling ---------------------------------------------------------------


@pytest.mark.parametrize(("metric", "keys", "guess"), [
    ("val_acc", ["step", "train_loss", "val_accuracy", "val_loss"], "val_accuracy"),
    ("Val_Loss", ["val_loss"], "val_loss"),  # case
    ("val-loss", ["val_loss"], "val_loss"),  # another separator
    ("vla_loss", ["val_loss"], "val_loss"),  # letters swapped
    ("score", ["scor"], "scor"),
    ("val_loss", ["train_loss", "val_los"], "val_los"),  # the misspelling, not the other one
    # Another measure, though did you mean takes it for close (>= 0.6): the same on another
    # split, or the metric's name with a word more or less. A trainer reports these as it
    # trains, and the metric only at each validation.
    ("val_loss", ["train_loss"], None),
    ("val_accuracy", ["train_accuracy"], None),
    ("val_acc", ["train_acc"], None),
    ("eval_loss", ["epoch", "learning_rate", "loss"], None),  # Hugging Face's Trainer
    ("accuracy", ["val_accuracy"], None),
    ("val_acc", ["loss"], None),  # nothing close
    ("val_acc", [], None),
])
def test_only_a_close_key_that_is_no_other_measure_is_a_guess(
        metric: str, keys: list[str], guess: str | None) -> None:
    assert metric_misspelled_as(metric, keys) == guess


# --- when it is given -----------------------------------------------------------------------


def test_a_trial_warns_at_its_third_report_without_the_metric(tmp_path: Path) -> None:
    exp = run(tmp_path)
    trial = trial_of(exp)
    exp.take_reports(trial, reports(STEP, STEP))
    assert exp.metric_warning(trial) is None  # two reports say little yet
    exp.take_reports(trial, reports(EPOCH, iteration=3))
    assert METRIC_REPORTS == 3
    assert exp.metric_warning(trial) == metric_warning_text(
        "val_acc", "e8/0", 3, ["step", "train_loss", "val_accuracy", "val_loss"],
        "val_accuracy")
    assert exp.metric_warning(trial) is None  # none other while it is written
    exp.metric_warning_recorded()
    # Once per experiment: nothing is looked at any more.
    assert not exp.watching_metric
    other = trial_of(exp)
    exp.take_reports(other, reports(EPOCH, EPOCH, EPOCH))
    assert exp.metric_warning(other) is None
    assert exp.metric_warning(trial, ended=True) is None


def test_a_close_key_that_comes_later_warns_then(tmp_path: Path) -> None:
    # A loss every step, the misspelled metric's key at the first validation only.
    exp = run(tmp_path)
    trial = trial_of(exp)
    exp.take_reports(trial, reports({"loss": 1.0}, {"loss": 0.9}, {"loss": 0.8}, {"loss": 0.7}))
    assert exp.metric_warning(trial) is None
    assert exp.watching_metric
    exp.take_reports(trial, reports({"loss": 0.6}, {"val_accuracy": 0.5}, {"loss": 0.5},
                                    iteration=5))
    said = exp.metric_warning(trial)
    assert said is not None and said.startswith(
        "metric 'val_acc' was not in the first 7 reports of trial e8/0 (it reported loss,"
        " val_accuracy) (did you mean 'val_accuracy'?)")


def test_any_report_with_the_metric_ends_the_watch(tmp_path: Path) -> None:
    # Whatever its value (NaN, text): the name is right. One trial's report settles it for
    # every other trial, and the report path then tests one false flag.
    for value in (0.5, math.nan, "n/a"):
        exp = run(tmp_path)
        first, second = trial_of(exp), trial_of(exp)
        exp.take_reports(first, reports({"val_acc": value}))
        assert not exp.watching_metric
        exp.take_reports(second, reports(STEP, EPOCH, STEP))
        assert exp.metric_warning(second) is None


def test_an_ended_trial_warns_from_its_first_report(tmp_path: Path) -> None:
    exp = run(tmp_path)
    trial = trial_of(exp)
    exp.take_reports(trial, reports(EPOCH))
    assert exp.metric_warning(trial) is None
    said = exp.metric_warning(trial, ended=True)
    assert said is not None and said.startswith(
        "metric 'val_acc' was not in the first report of trial e8/0")


def test_a_trial_that_reported_nothing_does_not_warn(tmp_path: Path) -> None:
    exp = run(tmp_path)
    assert exp.metric_warning(trial_of(exp), ended=True) is None
    assert exp.watching_metric


def test_keys_not_close_do_not_warn(tmp_path: Path) -> None:
    exp = run(tmp_path, metric="val_loss", goal="minimize")
    trial = trial_of(exp)
    exp.take_reports(trial, reports(STEP, STEP, STEP, STEP))  # train_loss: another measure
    assert exp.metric_warning(trial) is None
    assert exp.metric_warning(trial, ended=True) is None
    assert exp.watching_metric  # still watched: a later report may have a close key


def test_the_auto_filled_keys_are_no_guess(tmp_path: Path) -> None:
    # `timestamps` is close to the `timestamp` every report has: the trainer never wrote it.
    exp = run(tmp_path, metric="timestamps")
    trial = trial_of(exp)
    exp.take_reports(trial, reports(STEP, STEP, STEP))
    assert exp.metric_warning(trial) is None


@pytest.mark.parametrize("ending", ["failure", "cancelling"])
def test_an_ending_experiment_does_not_warn(tmp_path: Path, ending: str) -> None:
    # Its reason says what its trials reported (exited 0 without reporting 'val_acc' ...).
    exp = run(tmp_path)
    trial = trial_of(exp)
    exp.take_reports(trial, reports(EPOCH, EPOCH, EPOCH))
    if ending == "failure":
        exp.failure = "the first trial, e8/0, failed: ..."
    else:
        exp.cancelling = True
    assert exp.metric_warning(trial) is None
    assert exp.metric_warning(trial, ended=True) is None


def test_a_refused_warning_is_given_again_unless_the_metric_came(tmp_path: Path) -> None:
    exp = run(tmp_path)
    trial = trial_of(exp)
    exp.take_reports(trial, reports(EPOCH, EPOCH, EPOCH))
    assert exp.metric_warning(trial) is not None
    exp.metric_warning_refused()
    assert exp.metric_warning(trial) is not None  # the next report gives it again
    # Another trial reports the metric while that one is written, and the log refuses it.
    exp.take_reports(trial_of(exp), reports({"val_acc": 0.5}))
    exp.metric_warning_refused()
    assert not exp.watching_metric
    assert exp.metric_warning(trial) is None


def test_it_is_a_warning_event() -> None:
    # `gpusched show` keeps it however old, and `wait` prints it on stderr.
    assert METRIC_EVENT in WARNING_EVENTS


# --- recorded with the trial's end ----------------------------------------------------------


@asynccontextmanager
async def ending_trial(tmp_path: Path, **settings: Any
                       ) -> AsyncIterator[tuple[Store, TrialRunner]]:
    """A runner whose trial e1/0 reported ``val_accuracy`` twice (metric ``val_acc``) and is
    about to end, over a real trial log; no trial process."""
    async with open_store(tmp_path / "log.db") as store:
        exp = run(tmp_path, **settings)
        exp.id = await store.create_experiment(name="exp", spec=exp.spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        await store.create_trial(exp.id, 0, {"x": 0.5}, str(tmp_path / "0"))
        trial = trial_of(exp)
        exp.take_reports(trial, reports(EPOCH, EPOCH))

        async def ended(*args: Any) -> None:
            pass

        config = DaemonSettings()
        yield store, TrialRunner(
            experiment=exp, trial=trial, uuids=[], store=store,
            backend=FakeBackend(FakeConfig(devices=())), devices=DeviceTable([], config),
            settings=config, trial_dir=tmp_path / "0", daemon_env={}, on_end=ended)


FAILED_REASON = ("exited 0 without reporting 'val_acc' (it reported val_accuracy, val_loss)"
                 " (did you mean 'val_accuracy'?)")


async def test_a_trial_that_ends_warns_in_the_commit_of_its_end(tmp_path: Path) -> None:
    # max_failed_trials: its failure does not end the experiment, which goes on failing
    # every trial unless its user fixes the metric.
    async with ending_trial(tmp_path, max_failed_trials=5) as (store, runner):
        await runner._finish(TrialState.FAILED, FAILED_REASON, 0, None)
        events = await store.events("e1")
        warnings = await store.warnings("e1")
    assert [(e["kind"], e["trial"]) for e in events] == [("trial_ended", 0),
                                                          (METRIC_EVENT, None)]
    assert events[1]["data"] == {"metric": "val_acc", "reason": warnings[0]}
    assert warnings == [metric_warning_text("val_acc", "e1/0", 2, ["val_accuracy", "val_loss"],
                                            "val_accuracy")]


async def test_a_failing_experiment_does_not_also_warn(tmp_path: Path) -> None:
    # Its first trial failed: the experiment fails, its reason says the same.
    async with ending_trial(tmp_path) as (store, runner):
        await runner._finish(TrialState.FAILED, FAILED_REASON, 0, None)
        events = await store.events("e1")
    assert [e["kind"] for e in events] == ["trial_ended", "experiment_failing"]


async def test_an_interrupted_trial_does_not_warn_of_its_few_reports(tmp_path: Path) -> None:
    async with ending_trial(tmp_path) as (store, runner):
        await runner._finish(TrialState.INTERRUPTED, "the daemon is stopping", None, None)
        events = await store.events("e1")
    assert [e["kind"] for e in events] == ["trial_ended"]
    assert runner.exp.watching_metric


async def test_a_warning_the_log_refuses_is_given_again(tmp_path: Path) -> None:
    async with ending_trial(tmp_path, max_failed_trials=5) as (store, runner):
        with sqlite3.connect(store.path) as db:
            db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kind ="
                       f" '{METRIC_EVENT}' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        with pytest.raises(StoreError, match="disk full"):
            await runner._finish(TrialState.FAILED, FAILED_REASON, 0, None)
        events = await store.events("e1")
    assert events == []  # nor its end: the trial runs again
    assert runner.exp.watching_metric


async def test_the_warning_of_a_running_trial_is_recorded_and_given_once(
        tmp_path: Path) -> None:
    async with ending_trial(tmp_path) as (store, runner):
        exp, trial = runner.exp, runner.trial
        exp.take_reports(trial, reports(STEP, iteration=3))
        await runner._warn_of_the_metric()
        await runner._warn_of_the_metric()
        events = await store.events("e1")
    assert [(e["kind"], e["trial"]) for e in events] == [(METRIC_EVENT, None)]
    assert events[0]["data"]["reason"].startswith(
        "metric 'val_acc' was not in the first 3 reports of trial e1/0 (it reported step,"
        " train_loss, val_accuracy, val_loss)")


async def test_a_running_trials_warning_the_log_refuses_is_given_again(tmp_path: Path) -> None:
    async with ending_trial(tmp_path) as (store, runner):
        exp, trial = runner.exp, runner.trial
        exp.take_reports(trial, reports(STEP, iteration=3))
        with sqlite3.connect(store.path) as db:
            db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kind ="
                       f" '{METRIC_EVENT}' BEGIN SELECT RAISE(ABORT, 'disk full'); END")
        await runner._warn_of_the_metric()  # logged, not raised: the trial goes on
        assert exp.watching_metric
        with sqlite3.connect(store.path) as db:
            db.execute("DROP TRIGGER refuse")
        await runner._warn_of_the_metric()
        events = await store.events("e1")
    assert [e["kind"] for e in events] == [METRIC_EVENT]


# --- after a restart or a resume: what the log settled --------------------------------------


async def restored(tmp_path: Path, stored: list[list[dict[str, Any]]],
                   events: tuple[str, ...] = ()) -> ExperimentRun:
    """The experiment as a restarted daemon reads it back from a log whose trials (all
    running when it went down) had these stored reports, and with these events of its own."""
    async with open_store(tmp_path / "log.db") as store:
        exp = run(tmp_path)
        exp.id = await store.create_experiment(name="exp", spec=exp.spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        for number, trial_reports in enumerate(stored):
            await store.create_trial(exp.id, number, {"x": 0.5}, str(tmp_path / str(number)))
            await store.add_reports(exp.id, number, 0, trial_reports)
            await store.update_trial(exp.id, number, state="running")
        for kind in events:
            await store.add_event(kind, exp.id, reason="...")
        await restore_trials(store, exp)
    return exp


async def test_a_log_without_the_metric_or_the_warning_is_watched(tmp_path: Path) -> None:
    exp = await restored(tmp_path, [reports(EPOCH, EPOCH), []],
                         events=("stop_key_never_reported",))
    assert exp.watching_metric
    # The trial that runs again counts its stored reports: its next one warns.
    trial = exp.trials[0]
    exp.take_reports(trial, reports(EPOCH, iteration=3))
    assert exp.metric_warning(trial) is not None


async def test_no_repeat_after_a_restart(tmp_path: Path) -> None:
    exp = await restored(tmp_path, [reports(EPOCH, EPOCH, EPOCH)], events=(METRIC_EVENT,))
    assert not exp.watching_metric
    trial = exp.trials[0]
    exp.take_reports(trial, reports(EPOCH, iteration=4))
    assert exp.metric_warning(trial) is None


@pytest.mark.parametrize("value", [0.5, math.nan, "n/a"])
async def test_a_stored_report_with_the_metric_settles_it(tmp_path: Path, value: Any) -> None:
    # Any trial's, any value: the log stores NaN as null, and the key is there all the same.
    exp = await restored(tmp_path, [reports(EPOCH), reports(EPOCH, {"val_acc": value})])
    assert not exp.watching_metric


# --- `gpusched ls` ---------------------------------------------------------------------------


async def test_warning_counts_are_the_experiments_own_warning_events(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        ids = [await store.create_experiment(name=f"x{i}", spec={}, seed=0, priority=0,
                                             owner_uid=None) for i in range(3)]
        await store.add_event(METRIC_EVENT, ids[0], reason="a")
        await store.add_event("stop_key_never_reported", ids[0], reason="b")
        await store.add_event("stop_key_never_reported", ids[2], reason="c")
        await store.add_event("trial_ended", ids[1], 0)  # not a warning
        await store.add_event("experiment_failing", ids[1], reason="d")
        counts = await store.warning_counts(ids)
        one = await store.warning_counts(ids[2:])
        none = await store.warning_counts([])
    assert counts == {ids[0]: 2, ids[2]: 1}
    assert one == {ids[2]: 1} and none == {}


def test_the_experiments_table_says_which_have_warnings() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "e9", "warning_count": 0}, {"id": "e8", "warning_count": 1},
        {"id": "e7", "warning_count": 2}, {"id": "e6"}]  # e6: an older daemon's view
    assert tables.warning_notes(rows) == [
        "e8 has 1 warning: `gpusched show e8` shows it",
        "e7 has 2 warnings: `gpusched show e7` shows them"]
    assert tables.warning_notes(rows[:1]) == []
