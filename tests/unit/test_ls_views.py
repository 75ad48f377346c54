"""`ls` and `watch`: a trial's objective so far (marked, with its footnote), an experiment
without `max_trials`, a mistyped column's "did you mean" (nested paths, the other view, the
list of names), names checked once against every row and the experiment's declared ones, and
a running trial's TIME."""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gpusched._daemon import views
from gpusched.errors import UsageError
from gpusched.models import TrialState
from gpusched.views import listing, query, tables
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
        query.check_columns([trial(0), trial(1)], ["id", typo], "ls e1 --columns", trials=True)
    said = str(caught.value)
    assert said.startswith(f"ls e1 --columns: no column '{typo}' (did you mean '{meant}'?);"
                           " there are: ")
    assert "params.lr" in said  # and still every column there is


def test_nothing_far_is_suggested() -> None:
    with pytest.raises(UsageError) as caught:
        query.check_columns([trial(0)], ["zzzzqqq"], "ls --columns", trials=True)
    assert "did you mean" not in str(caught.value)


def _trials(rows: list[dict[str, Any]]) -> bool:
    """Whether ``rows`` are trials (only a trial view has a number)."""
    return "number" in rows[0]


def _suggested(rows: list[dict[str, Any]], column: str, what: str = "ls --columns") -> str:
    """The message refusing ``column``."""
    with pytest.raises(UsageError) as caught:
        query.check_columns(rows, [column], what, trials=_trials(rows))
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
    here = re.search(r"\(did you mean '([^']+)'\?\)", said)
    if here:  # (or none at all)
        assert here[1] != typo
        query.check_columns(rows, [here[1]], "ls --columns", trials=_trials(rows))  # accepted
    there = re.search(r"\(did you mean '([^']+)', a column of", said)
    if there:  # a name of the other view, said to be so: accepted there
        assert here is None and there[1] != typo
        query.check_columns([], [there[1]], "ls --columns", trials=not _trials(rows))


def test_a_refused_alias_is_never_suggested_as_itself() -> None:
    for alias in ("tries", "iter", "time"):
        assert f"did you mean '{alias}'" not in _suggested([experiment()], alias)


@pytest.mark.parametrize(("column", "what", "command"), [
    ("tries", "ls --columns", "gpusched ls EXP --columns tries"),
    ("iter", "ls --columns", "gpusched ls EXP --columns iter"),
    ("objective", "ls --sort", "gpusched ls EXP --sort objective"),
    ("last_report.time_total_s", "ls --filter",
     "gpusched ls EXP --filter 'last_report.time_total_s OP VALUE'"),
    ("gpus", "ls --columns", "gpusched ls EXP --columns gpus"),
    ("time", "ls --columns", "gpusched ls EXP --columns time"),
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


def test_an_other_views_column_is_claimed_by_its_whole_path_only() -> None:
    # `best.objectiv` is no column of the experiments list either: not sent there as one.
    said = _suggested([trial(0)], "best.objectiv", "ls e1 --columns")
    assert "gpusched ls --columns best.objectiv" not in said
    # An experiment's hyperparameters and metrics are not known to the experiments list.
    said = _suggested([experiment(best=None)], "params.lrr")
    assert "gpusched ls EXP --columns params.lrr" not in said
    assert said.startswith("ls --columns: no column 'params.lrr' in the experiments list:"
                           " hyperparameters (params.NAME) and metrics (last_report.NAME) are"
                           " columns of one experiment's trials (gpusched ls EXP); there are: ")


@pytest.mark.parametrize(("rows", "typo", "says"), [
    ([experiment()], "trails.running", " (did you mean 'trials.running'?)"),
    ([experiment(best=None)], "best.objectiv", " (did you mean 'best.objective'?)"),
    ([trial(0)], "waiting.cod", " (did you mean 'waiting.code'?)"),
    ([trial(0)], "trials.runing", " in one experiment's trials (did you mean 'trials.running', a"
                                  " column of the experiments list? gpusched ls --columns"
                                  " trials.running)"),
    ([experiment()], "atempts", " in the experiments list (did you mean 'attempts', a column of"
                                " one experiment's trials? gpusched ls EXP --columns attempts)"),
    ([experiment(best=None)], "last_report.val_acc",  # which metrics there are is not known
     " in the experiments list: hyperparameters (params.NAME) and metrics (last_report.NAME)"
     " are columns of one experiment's trials (gpusched ls EXP)"),
])
def test_a_nested_path_is_guessed_at_too(rows: list[dict[str, Any]], typo: str,
                                         says: str) -> None:
    assert _suggested(rows, typo).startswith(f"ls --columns: no column '{typo}'{says}; ")


def _listed(said: str) -> set[str]:
    """The names a refusal lists after ``there are:``."""
    listing_ = said.partition("; there are: ")[2]
    parts = [p.removeprefix("the short names ").removeprefix(
        "the bare hyperparameter and metric names ") for p in listing_.split("; ")]
    return {n for p in parts for n in p.split(", ")}


@pytest.mark.parametrize(("rows", "typo"), [
    ([trial(0)], "trys"), ([trial(0)], "whyy"), ([trial(0)], "itr"), ([trial(0)], "gpu"),
    ([trial(0)], "tim"), ([trial(0)], "wai"), ([trial(0)], "trail"), ([trial(0)], "lrr"),
    ([trial(0)], "val_los"), ([trial(0)], "waiting.cod"), ([experiment()], "wai"),
    ([experiment()], "whyy"), ([experiment()], "trails.running"), ([experiment()], "trail"),
])
def test_every_suggestion_is_in_the_list_of_columns(rows: list[dict[str, Any]],
                                                    typo: str) -> None:
    said = _suggested(rows, typo)
    guess = re.search(r"\(did you mean '([^']+)'\?\)", said)
    assert guess is not None, said
    assert guess[1] in _listed(said)


def test_the_list_names_the_short_and_the_bare_names_a_view_takes() -> None:
    listed = _listed(_suggested([trial(0)], "zzzzqqq"))
    assert {"gpus", "iter", "time", "trial", "tries", "wait", "waiting", "why"} <= listed
    assert {"lr", "val_loss", "params.lr", "last_report.val_loss"} <= listed
    listed = _listed(_suggested([experiment()], "zzzzqqq"))
    assert {"trial", "wait", "waiting", "why", "trials.running", "best.objective"} <= listed
    assert not {"gpus", "iter", "time", "tries", "lr"} & listed  # the trials' alone


# --- names checked once, against every row --------------------------------------------------


def sgd_and_adam() -> list[dict[str, Any]]:
    """Trials of a file declaring lr, opt and momentum (active for sgd alone), metric acc."""
    return [trial(0, params={"lr": 0.1, "opt": "sgd", "momentum": 0.9},
                  last_report={"training_iteration": 3, "acc": 0.5}),
            trial(1, params={"lr": 0.2, "opt": "adam"}, last_report=None)]


class LsClient:
    """What `ls` asks the daemon: an experiment declaring lr, opt, momentum (conditional) and
    beta (never drawn yet), metric acc; its trials (``TRIALS``); the experiments list."""

    TRIALS: ClassVar[list[dict[str, Any]]] = []
    EXPERIMENTS: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, socket: Any) -> None:
        pass

    def show(self, target: str) -> dict[str, Any]:
        declared = [{"name": n} for n in ("lr", "opt", "momentum", "beta")]
        return experiment(metric="acc", spec={"params": declared, "objective": "last"})

    def trials(self, exp: str, *, last_report: bool) -> list[dict[str, Any]]:
        return [dict(t) for t in self.TRIALS]

    def experiments(self, *, include_finished: bool) -> list[dict[str, Any]]:
        return [dict(e) for e in self.EXPERIMENTS]

    def gpus(self) -> dict[str, Any]:
        return {"devices": []}


def ls(monkeypatch: pytest.MonkeyPatch, trials: list[dict[str, Any]], *, experiment_: str | None
       = "e1", columns: str | None = None, sort: str | None = None,
       filters: tuple[str, ...] = (), limit: int | None = None) -> int:
    monkeypatch.setattr(LsClient, "TRIALS", trials)
    monkeypatch.setattr(listing, "Client", LsClient)
    return listing.cmd_ls(argparse.Namespace(
        socket=None, experiment=experiment_, all=False, json=False, columns=columns,
        sort=sort, desc=False, filter=list(filters), limit=limit))


@pytest.mark.parametrize(("filters", "limit"), [
    (("opt == adam",), None),  # leaves only trials where momentum is inactive
    ((), 1),  # so does the limit, after sorting
    (("state == nothing",), None),  # leaves nothing at all
])
def test_a_filter_or_limit_does_not_change_which_columns_there_are(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        filters: tuple[str, ...], limit: int | None) -> None:
    rows = sgd_and_adam()
    assert ls(monkeypatch, rows, columns="id,momentum", sort="opt", filters=filters,
              limit=limit) == 0
    capsys.readouterr()
    with pytest.raises(UsageError, match=r"^ls --columns: no column 'momentm' \(did you mean"
                                         r" 'momentum'\?\)"):
        ls(monkeypatch, rows, columns="id,momentm", filters=filters, limit=limit)
    with pytest.raises(UsageError, match=r"^ls e1 --sort: no column 'momentm'"):
        ls(monkeypatch, rows, sort="momentm", filters=filters, limit=limit)
    with pytest.raises(UsageError, match=r"^ls e1 --filter: no column 'momentm'"):
        ls(monkeypatch, rows, filters=(*filters, "momentm > 0"), limit=limit)


def test_the_metric_and_declared_hyperparameters_are_columns_before_any_trial_has_them(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for trials in ([], [trial(0, params={"lr": 0.1}, last_report=None)]):
        assert ls(monkeypatch, trials, columns="id,lr,beta,params.momentum,acc,"
                  "last_report.acc,iter,time", sort="-acc", filters=("acc > 0.5",)) == 0
        assert capsys.readouterr().out.splitlines()[0].split() == [
            "TRIAL", "lr", "beta", "momentum", "acc", "acc", "ITER", "TIME"]
        with pytest.raises(UsageError, match=r"no column 'acc_' \(did you mean 'acc'\?\)"):
            ls(monkeypatch, trials, columns="id,acc_")
        with pytest.raises(UsageError, match=r"no column 'bta' \(did you mean 'beta'\?\)"):
            ls(monkeypatch, trials, sort="bta")


def test_the_experiments_list_checks_names_against_every_experiment(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    old = experiment(state="completed", ended_at=1.0)  # not shown without --all
    monkeypatch.setattr(LsClient, "EXPERIMENTS", [old])
    assert ls(monkeypatch, [], experiment_=None, columns="id,trials.running,best.objective",
              filters=("wait == behind",)) == 0
    assert capsys.readouterr().out.split() == ["ID", "TRIALS.RUNNING", "BEST.OBJECTIVE"]
    with pytest.raises(UsageError, match=r"^ls --columns: no column 'trails.running' \(did you"
                                         r" mean 'trials.running'\?\)"):
        ls(monkeypatch, [], experiment_=None, columns="id,trails.running")
    monkeypatch.setattr(LsClient, "EXPERIMENTS", [])  # no experiment at all: still checked
    with pytest.raises(UsageError, match=r"^ls --sort: no column 'nam' \(did you mean 'name'"):
        ls(monkeypatch, [], experiment_=None, sort="nam")


# --- TIME: a running trial's too, as watch shows it -----------------------------------------


def test_a_running_trials_time_is_its_time_at_its_last_report_in_ls_and_watch() -> None:
    rows = [trial(0, duration_s=185.0, last_report={"time_total_s": 180.0}),
            trial(1, state="running", duration_s=None,
                  last_report={"training_iteration": 2, "time_total_s": 65.0}),
            trial(2, state="running", duration_s=None, last_report=None),
            trial(3, state="queued", duration_s=None, last_report=None)]
    ls_times = [r["TIME"] for r in cells(tables.render_rows(rows, tables.trial_columns(rows)))]
    assert ls_times == ["3m05s", "1m05s", "-", "-"]
    picture = render_snapshot(experiment(), rows).splitlines()
    assert [r["TIME"] for r in cells("\n".join(picture[4:]))] == ls_times
    assert [query.lookup(r, "time") for r in rows] == [185.0, 65.0, None, None]
    assert query.lookup(experiment(), "time") is query.MISSING  # an experiment has none
    by_time = query.sort_rows(rows, ["-time"])
    assert [r["number"] for r in by_time] == [0, 1, 2, 3]
