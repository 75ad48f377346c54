"""`ls` and `watch`: a trial's objective so far (marked, with its footnote), an experiment
without `max_trials`, and a mistyped column's "did you mean"."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon import views
from gpusched.errors import UsageError
from gpusched.models import TrialState
from gpusched.views import query, tables
from gpusched.views.watch import header_lines, render_snapshot
from tests.unit.test_experiment import add, run
from tests.unit.test_views import cells, experiment, trial

R, C, Q, X = TrialState.RUNNING, TrialState.COMPLETED, TrialState.QUEUED, TrialState.CANCELLED
INTERRUPTED = TrialState.INTERRUPTED
REPORTED = [{"acc": 0.3}, {"acc": 0.9}, {"acc": math.nan}, {"acc": 0.5}, {"loss": 1.0}]


# --- the daemon: objective_so_far -----------------------------------------------------------


@pytest.mark.parametrize(("settings", "want"), [
    ({"objective": "best", "goal": "maximize"}, 0.9),
    ({"objective": "best", "goal": "minimize"}, 0.3),
    ({"objective": "last"}, 0.5),  # the last finite value, not the last report's (no acc)
])
def test_the_objective_so_far_follows_the_experiments_rule(
        tmp_path: Path, settings: dict[str, Any], want: float) -> None:
    exp = run(tmp_path, **settings)
    (running,) = add(exp, R)
    running.take_reports(REPORTED, "acc")  # as the daemon accounts them
    assert views.objectives_so_far(exp) == {0: want}


def test_only_trials_that_have_not_ended_and_reported_have_one(tmp_path: Path) -> None:
    exp = run(tmp_path, objective="best", goal="maximize")
    trials = add(exp, R, INTERRUPTED, Q, C, X, R)
    for t in trials[:5]:
        t.take_reports(REPORTED, "acc")
    trials[5].take_reports([{"acc": math.inf}, {"loss": 2.0}], "acc")  # nothing finite yet
    # Running, interrupted and queued again (a retry) go on; completed and cancelled ended.
    assert views.objectives_so_far(exp) == {0: 0.9, 1: 0.9, 2: 0.9}
    assert views.objectives_so_far(None) == {}  # not in progress: no trial is left running


def test_the_trial_view_carries_it_and_is_null_without_one() -> None:
    row = {"number": 3, "state": "running", "params": {}, "budget": None, "continues": None,
           "objective": None, "reason": None, "devices": [], "pid": 7, "attempts": 1,
           "exit_code": None, "exit_signal": None, "reports": 4, "created_at": 1.0,
           "started_at": 2.0, "ended_at": None, "dir": "/x"}
    assert views.trial_view(row, exp_id="e1", so_far=0.9)["objective_so_far"] == 0.9
    view = views.trial_view(row, exp_id="e1")
    assert "objective_so_far" in view and view["objective_so_far"] is None


# --- the tables -----------------------------------------------------------------------------


def so_far_rows() -> list[dict[str, Any]]:
    return [trial(0, objective=0.75, objective_so_far=None),
            trial(1, state="running", objective=None, objective_so_far=0.912345),
            trial(2, state="running", objective=None, objective_so_far=None),
            # Never both in a daemon's answer; if they were, the result is what is shown.
            trial(3, objective=0.5, objective_so_far=0.8)]


def test_a_running_trials_objective_so_far_is_shown_marked() -> None:
    rows = so_far_rows()
    text = tables.render_rows(rows, tables.trial_columns(rows), metric="val_accuracy")
    assert [r["VAL_ACCURACY"] for r in cells(text)] == ["0.75", "0.9123*", "-", "0.5"]


@pytest.mark.parametrize(("exp", "says"), [
    (experiment(spec={"objective": "best"}), "the trial's highest val_accuracy so far"
                                             " (objective: best)"),
    (experiment(goal="minimize", spec={"objective": "best"}),
     "the trial's lowest val_accuracy so far (objective: best)"),
    (experiment(spec={"objective": "last"}),
     "the trial's last finite val_accuracy so far (objective: last)"),
    (experiment(), "the trial's val_accuracy so far"),  # a view without its spec
])
def test_the_footnote_says_what_the_marked_value_is(exp: dict[str, Any], says: str) -> None:
    rows = so_far_rows()
    note = tables.so_far_note(rows, tables.trial_columns(rows), exp)
    assert note == f"* not final: {says}; its result when it ends"


def test_no_footnote_without_a_marked_cell() -> None:
    rows = so_far_rows()
    assert tables.so_far_note(rows, ["id", "state", "lr"], experiment()) is None
    ended = [rows[0], rows[2], rows[3]]
    assert tables.so_far_note(ended, tables.trial_columns(ended), experiment()) is None


def test_the_footnote_shows_a_metric_name_printably() -> None:
    note = tables.so_far_note(so_far_rows(), ["objective"], experiment(metric="a\x1bb"))
    assert note is not None and "a\\x1bb" in note and "\x1b" not in note


def test_watch_marks_the_value_so_far_and_explains_it() -> None:
    rows = so_far_rows()[:2]
    lines = render_snapshot(experiment(spec={"objective": "best"}), rows).splitlines()
    assert [r["OBJECTIVE"] for r in cells("\n".join(lines[4:-1]))] == ["0.75", "0.9123*"]
    assert lines[-1] == ("* not final: the trial's highest val_accuracy so far (objective:"
                         " best); its result when it ends")


def test_watch_keeps_room_for_the_footnote_on_a_small_terminal() -> None:
    rows = [trial(n) for n in range(29)] + [trial(29, state="running", objective=None,
                                                  objective_so_far=0.5)]
    lines = render_snapshot(experiment(), rows, height=12).splitlines()
    assert len(lines) == 12  # header 3, blank, table header, 5 rows, 2 notes
    assert lines[-2] == "(25 earlier trials not shown: gpusched ls e1)"
    assert lines[-1].startswith("* not final:")


# --- no max_trials --------------------------------------------------------------------------


def test_an_experiment_without_max_trials_shows_its_counts_alone() -> None:
    rows = [experiment(max_trials=None), experiment(id="e2", max_trials=30)]
    got = cells(tables.render_rows(rows, tables.experiment_columns(), trials=False))
    assert [r["TRIALS"] for r in got] == ["2 running, 4 done, 1 failed",
                                          "2 running, 4 done, 1 failed / 30"]
    assert header_lines(experiment(max_trials=None))[1] == (
        "trials: 8 (2 running, 3 completed, 1 stopped, 1 failed, 1 interrupted)")


# --- did you mean ---------------------------------------------------------------------------


@pytest.mark.parametrize(("typo", "meant"), [
    ("stat", "state"), ("params.lrr", "params.lr"), ("val_los", "val_loss"),
    ("itr", "iter"), ("duration", "duration_s"), ("Attempts", "attempts"),
])
def test_an_unknown_column_suggests_the_closest_name(typo: str, meant: str) -> None:
    with pytest.raises(UsageError) as caught:
        query.check_columns([trial(0), trial(1)], ["id", typo], "ls e1 --columns")
    said = str(caught.value)
    assert said.startswith(f"ls e1 --columns: no column '{typo}' (did you mean '{meant}'?);"
                           " there are: ")
    assert "params.lr" in said  # and still every column there is


def test_sort_and_filter_suggest_too_and_nothing_far_is_suggested() -> None:
    with pytest.raises(UsageError, match=r"no column 'objectiv' \(did you mean 'objective'\?\)"):
        query.sort_rows([trial(0)], ["-objectiv"], what="ls e1")
    with pytest.raises(UsageError, match=r"no column 'val_los' \(did you mean 'val_loss'\?\)"):
        query.apply_filters([trial(0)], [query.parse_filter("val_los < 1")], "ls e1")
    with pytest.raises(UsageError) as caught:
        query.check_columns([trial(0)], ["zzzzqqq"], "ls --columns")
    assert "did you mean" not in str(caught.value)


def _suggested(rows: list[dict[str, Any]], column: str, what: str = "ls --columns") -> str:
    """The message refusing ``column``."""
    with pytest.raises(UsageError) as caught:
        query.check_columns(rows, [column], what)
    return str(caught.value)


def _no_last_report(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "last_report"}


@pytest.mark.parametrize(("rows", "typo"), [
    ([experiment()], "trys"), ([experiment()], "Tries"), ([experiment()], "itr"),
    ([experiment()], "tim"), ([experiment()], "gpu"), ([experiment()], "wai"),
    # A hyperparameter named as an alias is read as the alias, which these rows refuse.
    ([_no_last_report(trial(0, params={"iter": 3}))], "itr"),
    ([trial(0)], "trys"), ([trial(0)], "Tries"), ([trial(0)], "whyy"),
])
def test_a_suggestion_is_a_column_the_view_accepts(rows: list[dict[str, Any]],
                                                   typo: str) -> None:
    said = _suggested(rows, typo)
    guess = said.partition("(did you mean '")[2].partition("'?)")[0]
    if guess:  # (or none at all)
        assert guess != typo
        query.check_columns(rows, [guess], "ls --columns")  # not refused in turn


def test_a_refused_alias_is_never_suggested_as_itself() -> None:
    for alias in ("tries", "iter", "time"):
        assert f"did you mean '{alias}'" not in _suggested([experiment()], alias)


@pytest.mark.parametrize(("column", "what", "command"), [
    ("tries", "ls --columns", "gpusched ls EXP --columns tries"),
    ("iter", "ls --columns", "gpusched ls EXP --columns iter"),
    ("objective", "ls --sort", "gpusched ls EXP --sort objective"),
    ("params.lr", "ls --filter", "gpusched ls EXP --filter 'params.lr OP VALUE'"),
    ("gpus", "ls --columns", "gpusched ls EXP --columns gpus"),
])
def test_a_trial_column_asked_of_the_experiments_list_says_where_it_is(
        column: str, what: str, command: str) -> None:
    assert _suggested([experiment()], column, what).startswith(
        f"{what}: no column '{column}' in the experiments list: it is a column of one"
        f" experiment's trials ({command}); there are: ")


@pytest.mark.parametrize(("column", "what", "command"), [
    ("owner", "ls e1 --columns", "gpusched ls --columns owner"),
    ("max_trials", "ls e1 --sort", "gpusched ls --sort max_trials"),
    ("trials.running", "ls e1 --columns", "gpusched ls --columns trials.running"),
])
def test_an_experiment_column_asked_of_the_trials_says_where_it_is(
        column: str, what: str, command: str) -> None:
    assert _suggested([trial(0), trial(1)], column, what).startswith(
        f"{what}: no column '{column}' in one experiment's trials: it is a column of the"
        f" experiments list ({command}); there are: ")


def test_a_column_of_neither_view_is_still_guessed_at() -> None:
    said = _suggested([experiment()], "stat")
    assert "(did you mean 'state'?)" in said and "trials (" not in said
