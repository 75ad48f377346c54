"""``points_to_evaluate``: the file's checks (each problem at its place), the stored form, and
how the scheduler hands the points out (first, in order, derived from the trial log); and the
submit warning of a ``resume_from`` that the search cannot learn from."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar, cast

import pytest

from gpusched._daemon import views
from gpusched._daemon.experiment import (
    ExperimentRun,
    PriorTrials,
    TrialRun,
    resume_from_warning,
)
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.restore import prior_trials, restore_trials
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store, open_store
from gpusched.config import DaemonSettings
from gpusched.errors import SpecError
from gpusched.models import ExperimentState, TrialState
from gpusched.plugin_api import (
    ParamValue,
    SearchPlugin,
    Suggestion,
    TrialView,
)
from gpusched.plugins import make_search_plugin
from gpusched.spec import (
    DEFAULT_MAX_TRIALS,
    ExperimentSpec,
    parse_experiment,
    parse_experiment_text,
)

PARAMS: list[dict[str, Any]] = [
    {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", 32]},
    {"name": "lr", "type": "double", "min": 1e-4, "max": 0.1, "scale": "log"},
    {"name": "layers", "type": "integer", "min": 1, "max": 4},
    {"name": "width", "type": "discrete", "values": [64, 128.0], "when": {"layers": [3, 4]}},
    {"name": "momentum", "type": "double", "min": 0, "max": 0.9, "step": 0.1,
     "when": {"optimizer": "sgd"}},
]
SGD: dict[str, ParamValue] = {"optimizer": "sgd", "lr": 0.01, "layers": 3, "width": 128,
                              "momentum": 0.9}
ADAM: dict[str, ParamValue] = {"optimizer": "adam", "lr": 0.001, "layers": 1}


def spec(points: Any = None, **settings: Any) -> ExperimentSpec:
    data = {"name": "exp", "command": "python t.py", "metric": "acc", "params": PARAMS,
            **settings}
    if points is not None:
        data["points_to_evaluate"] = points
    return parse_experiment(data, base_dir="/tmp")


def problems(points: Any, **settings: Any) -> list[str]:
    with pytest.raises(SpecError) as refused:
        spec(points, **settings)
    return [str(p) for p in refused.value.problems]


# --- the file ---------------------------------------------------------------------------------


def test_points_are_read_as_their_trials_receive_them() -> None:
    written = [{"optimizer": "sgd", "lr": 1e-2, "layers": 3.0, "width": 128, "momentum": 0.9},
               {"layers": 1, "lr": 1e-1, "optimizer": 32}]
    points = spec(written, max_trials=2).points_to_evaluate
    assert points == (SGD, {"optimizer": "32", "lr": 0.1, "layers": 1})
    # A double's value is a float, an integer's an int, a discrete's the parameter's own
    # spelling, a categorical's its text: as a suggestion's, and in the order of `params`.
    assert tuple(map(type, points[1].values())) == (str, float, int)
    assert type(points[0]["layers"]) is int and list(points[1]) == ["optimizer", "lr", "layers"]
    assert type(points[0]["width"]) is float  # 128.0, as `values` lists it
    assert spec().points_to_evaluate == () == spec([]).points_to_evaluate


def test_the_stored_form_round_trips_and_says_null_for_none() -> None:
    s = spec([SGD, ADAM])
    data = json.loads(json.dumps(s.to_dict()))
    assert data["points_to_evaluate"] == [SGD, ADAM]
    again = ExperimentSpec.from_dict(data)
    assert again == s and again.to_dict() == s.to_dict()
    assert spec().to_dict()["points_to_evaluate"] is None
    with pytest.raises(TypeError):
        s.points_to_evaluate[0]["lr"] = 0.5  # type: ignore[index]  # read-only


@pytest.mark.parametrize(("point", "said"), [
    ({**ADAM, "layrs": 2},
     "points_to_evaluate[0].layrs: no parameter named 'layrs' (did you mean 'layers'?)"),
    ({**ADAM, "lr": 1}, "points_to_evaluate[0].lr: 1 is outside the range of 'lr' (0.0001..0.1)"),
    ({**ADAM, "lr": "fast"}, "points_to_evaluate[0].lr: must be a number (got 'fast')"),
    ({**ADAM, "optimizer": "nadam"},
     "points_to_evaluate[0].optimizer: 'nadam' is not a value of 'optimizer' ('sgd', 'adam',"
     " '32')"),
    ({**ADAM, "layers": 2.5},
     "points_to_evaluate[0].layers: must be a whole number: 'layers' is an integer (got 2.5)"),
    ({**ADAM, "layers": 5},
     "points_to_evaluate[0].layers: 5 is outside the range of 'layers' (1..4)"),
    ({**SGD, "width": 96},
     "points_to_evaluate[0].width: 96 is not a value of 'width' (64, 128.0)"),
    ({**SGD, "momentum": 0.45},
     "points_to_evaluate[0].momentum: 0.45 is not on the step of 'momentum' (0.0, 0.1, ...)"),
    ({"optimizer": "adam", "lr": 0.01},
     "points_to_evaluate[0]: no value for 'layers': a point gives a value to every parameter"
     " that is active under it (the search fills none in)"),
    ({**ADAM, "momentum": 0.5},
     "points_to_evaluate[0].momentum: 'momentum' is set only when 'optimizer' is 'sgd' (this"
     " point has 'optimizer' 'adam'): leave it out"),
    ({**ADAM, "width": 64},
     "points_to_evaluate[0].width: 'width' is set only when 'layers' is 3 or 4 (this point has"
     " 'layers' 1): leave it out"),
    ({"optimizer": "adam", "lr": 0.001, "layers": 1, 7: 1},
     "points_to_evaluate[0]: keys must be parameter names (got 7)"),
    (5, "points_to_evaluate[0]: must be a mapping of parameter names to values, such as"
        " {lr: 0.01, optimizer: adam} (got 5)"),
])
def test_each_problem_of_a_point_is_named_at_its_place(point: Any, said: str) -> None:
    assert problems([point]) == [said]


def test_what_depends_on_a_missing_or_refused_value_is_not_guessed_at() -> None:
    # No `layers`: whether `width` is active cannot be told, so it is not called inactive; a
    # refused optimizer leaves `momentum` neither missing nor inactive.
    assert problems([{"optimizer": "adam", "lr": 0.01, "width": 64},
                     {"optimizer": "nadam", "lr": 0.01, "layers": 1}]) == [
        "points_to_evaluate[0]: no value for 'layers': a point gives a value to every parameter"
        " that is active under it (the search fills none in)",
        "points_to_evaluate[1].optimizer: 'nadam' is not a value of 'optimizer' ('sgd', 'adam',"
        " '32')"]


def test_the_list_itself_and_max_trials() -> None:
    assert problems({"lr": 0.01}) == [
        "points_to_evaluate: must be a list of points, each a mapping of parameter names to"
        " values, e.g. [{lr: 0.01, optimizer: adam}] (got a mapping)"]
    assert problems([ADAM, SGD, ADAM], max_trials=2) == [
        "points_to_evaluate: lists 3 points, more than max_trials (2): each point is a trial;"
        " raise max_trials or list fewer points"]
    assert spec([ADAM, SGD], max_trials=2).max_trials == 2


def test_with_bad_params_only_the_shape_of_the_points_is_checked() -> None:
    bad = [*PARAMS, {"name": "wd", "type": "double", "min": 1, "max": 0}]
    assert problems([{"nothing": 1}, 3], params=bad) == [
        "params[5].max: must be greater than min (got 0 <= 1)",
        "points_to_evaluate[1]: must be a mapping of parameter names to values, such as"
        " {lr: 0.01, optimizer: adam} (got 3)"]


def test_set_reaches_into_the_points() -> None:
    text = json.dumps({"command": "python t.py", "metric": "acc", "params": PARAMS,
                       "points_to_evaluate": [ADAM, SGD]})

    def parsed(*overrides: str) -> tuple[Mapping[str, ParamValue], ...]:
        return parse_experiment_text(text, source="x.yaml", base_dir="/tmp",
                                     overrides=overrides).points_to_evaluate

    assert parsed("points_to_evaluate[0].lr=0.05")[0]["lr"] == 0.05
    assert parsed("points_to_evaluate[1]=") == (ADAM,)
    assert parsed("points_to_evaluate=") == ()
    added = parsed("points_to_evaluate[2]={optimizer: adam, lr: 0.1, layers: 2}")
    assert added == (ADAM, SGD, {"optimizer": "adam", "lr": 0.1, "layers": 2})
    fresh = parse_experiment_text(
        json.dumps({"command": "python t.py", "metric": "acc", "params": PARAMS}),
        source="x.yaml", base_dir="/tmp",
        overrides=["points_to_evaluate[0].optimizer=adam", "points_to_evaluate[0].lr=0.1",
                   "points_to_evaluate[0].layers=2"])
    assert fresh.points_to_evaluate == ({"optimizer": "adam", "lr": 0.1, "layers": 2},)
    with pytest.raises(SpecError, match=r"points_to_evaluate\[0\]\.lr: 9 is outside"):
        parsed("points_to_evaluate[0].lr=9")


# --- which trial takes which point ------------------------------------------------------------


def run(s: ExperimentSpec, search: SearchPlugin | None = None) -> ExperimentRun:
    search = search or make_search_plugin(s.search_algorithm, s.space(), goal=s.goal, seed=0,
                                          options=s.search_options)
    return ExperimentRun("e1", 1, s, 0, search, [], state=ExperimentState.RUNNING)


def test_the_next_point_is_counted_over_the_trials_that_continue_none() -> None:
    exp = run(spec([ADAM, SGD]))
    assert exp.next_point() == ADAM
    exp.trials[0] = TrialRun(number=0, params=dict(ADAM))
    assert exp.next_point() == SGD
    exp.trials[1] = TrialRun(number=1, params=dict(ADAM), continues=0)  # a promotion
    assert exp.next_point() == SGD
    exp.trials[2] = TrialRun(number=2, params=dict(SGD))
    assert exp.next_point() is None
    assert run(spec()).next_point() is None


def test_an_unset_max_trials_makes_room_for_the_points() -> None:
    many = [ADAM] * (DEFAULT_MAX_TRIALS + 2)
    assert run(spec([ADAM, SGD])).max_trials == DEFAULT_MAX_TRIALS  # the points count in it
    assert run(spec(many)).max_trials == DEFAULT_MAX_TRIALS + 2
    grid = spec([{"optimizer": "adam", "lr": 0.01, "layers": 2},
                 {"optimizer": "sgd", "lr": 0.5, "layers": 1}], search="grid",
                params=[{"name": "optimizer", "type": "categorical", "values": ["sgd", "adam"]},
                        {"name": "lr", "type": "discrete", "values": [0.01, 0.5]},
                        {"name": "layers", "type": "integer", "min": 1, "max": 2}])
    # Not worked out (see test_points_plan.py for when it is): the grid plus every point.
    assert run(grid).max_trials == 8 + 2
    assert run(spec([ADAM], max_trials=3)).max_trials == 3


def _spec_in(tmp_path: Path, points: Any, **settings: Any) -> ExperimentSpec:
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "params": PARAMS, "points_to_evaluate": points, **settings},
                            base_dir=tmp_path)


@asynccontextmanager
async def scheduling(tmp_path: Path, s: ExperimentSpec, search: SearchPlugin | None = None,
                     ) -> AsyncIterator[tuple[Store, Scheduler, ExperimentRun]]:
    """A scheduler (no GPUs) over a real log, with ``s`` running as ``e1``."""
    async with open_store(tmp_path / "log.db") as store:
        await store.create_experiment(name="exp", spec=s.to_dict(), seed=0, priority=0,
                                      owner_uid=os.getuid())
        scheduler = Scheduler(store=store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        exp = run(s, search)
        scheduler.active[exp.id] = exp
        yield store, scheduler, exp


async def _next(scheduler: Scheduler, exp: ExperimentRun) -> TrialRun:
    trial = await scheduler._next_trial(exp)
    assert trial is not None
    return trial


async def test_the_first_trials_take_the_points_then_the_search_goes_on_after_a_restart(
    tmp_path: Path,
) -> None:
    third = {"optimizer": "32", "lr": 0.1, "layers": 4, "width": 64}
    s = _spec_in(tmp_path, [SGD, ADAM, third])
    async with scheduling(tmp_path, s) as (store, scheduler, exp):
        taken = [await _next(scheduler, exp) for _ in range(2)]
        for trial in taken:
            await store.update_trial(exp.id, trial.number, state="completed", objective=0.5)
        # The daemon restarts: the experiment is rebuilt from the log alone.
        again = run(s)
        await restore_trials(store, again)
        after = [await _next(scheduler, again) for _ in range(2)]
        rows = await store.trials(exp.id)
    assert [t.params for t in taken] == [SGD, ADAM]
    assert after[0].params == third  # not SGD again: the log says two points were taken
    # Then the search's own suggestion for trial 3, with the points in its history.
    expected = run(s).search.suggest(3, [t.view() for t in again.trials.values()][:3])
    assert isinstance(expected, Mapping)
    assert after[1].number == 3 and after[1].params == s.space().restrict(dict(expected))
    assert [r["params"] for r in rows[:3]] == [SGD, ADAM, third]


class _Rungs(SearchPlugin):
    """A stand-in for hyperband: a budget for each new configuration, and trial 1 a promotion
    of trial 0; then nothing more."""

    summary: ClassVar[str] = "test"

    def suggest(self, number: int, history: Sequence[TrialView]
                ) -> Mapping[str, ParamValue] | Suggestion | None:
        if number == 1:
            return Suggestion(params=history[0].params, budget=9, continues=0)
        if number < 4:
            return Suggestion(params=dict(ADAM, lr=0.05), budget=3)
        return None


async def test_a_point_takes_the_place_of_a_new_configuration_keeping_its_budget(
    tmp_path: Path,
) -> None:
    third = {"optimizer": "adam", "lr": 0.1, "layers": 2}
    s = _spec_in(tmp_path, [SGD, ADAM, third, third], max_trials=10)
    search = _Rungs(s.space(), goal=s.goal, seed=0, options={})
    async with scheduling(tmp_path, s, search) as (_, scheduler, exp):
        trials = []
        for _ in range(5):
            trials.append(await _next(scheduler, exp))
            trials[-1].state = TrialState.COMPLETED  # ended: it may be promoted
        assert await scheduler._next_trial(exp) is None  # the search and the points are done
    assert [(t.params, t.budget, t.continues) for t in trials] == [
        (SGD, 3, None),
        (SGD, 9, 0),  # the promotion is the search's own
        (ADAM, 3, None),
        (third, 3, None),
        # The search had run out (a stand-in of unknown size: nothing refused it at submit):
        # the last point runs with the top budget the search gave, not with none.
        (third, 9, None),
    ]
    assert exp.exhausted


async def test_the_views_say_which_point_each_trial_took_as_the_scheduler_handed_them_out(
    tmp_path: Path,
) -> None:
    # `point` in `gpusched show EXP/N` and `ls --json`: from the log's rows and the spec, by
    # the rule the scheduler hands the points out by; a promotion took none.
    s = _spec_in(tmp_path, [SGD, ADAM], max_trials=10)
    search = _Rungs(s.space(), goal=s.goal, seed=0, options={})
    async with scheduling(tmp_path, s, search) as (store, scheduler, exp):
        for _ in range(4):
            trial = await _next(scheduler, exp)
            trial.state = TrialState.COMPLETED
        row = await store.experiment(exp.id)
        rows = await store.trials(exp.id)
    assert row is not None
    taken = views.points_of(row, rows)
    # Trial 1 is a promotion of trial 0; trial 3 the search's own, once the points are taken.
    assert taken == {0: 0, 2: 1}
    assert rows[3]["params"] == dict(ADAM, lr=0.05)
    assert all(rows[n]["params"] == s.points_to_evaluate[i] for n, i in taken.items())
    assert views.trial_view(rows[2], exp_id="e1", point=taken.get(2))["point"] == 1
    assert views.trial_view(rows[1], exp_id="e1", point=taken.get(1))["point"] is None


def test_without_points_no_trial_took_one() -> None:
    rows = [{"number": 0, "continues": None}, {"number": 1, "continues": None}]
    assert views.points_of({"spec": {"points_to_evaluate": None}}, rows) == {}
    assert views.points_of({"spec": {}}, rows) == {}  # a log from before points_to_evaluate
    assert views.points_of({"spec": {"points_to_evaluate": [ADAM]}}, rows) == {0: 0}


def _grid_spec(tmp_path: Path, points: Any, values: list[Any] | None = None) -> ExperimentSpec:
    x = ({"name": "x", "type": "double", "min": 0, "max": 1} if values is None
         else {"name": "x", "type": "discrete", "values": values})
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "search": "grid", "params": [x], "points_to_evaluate": points},
                            base_dir=tmp_path)


async def test_a_grid_runs_the_points_then_the_grid_points_they_did_not_cover(
    tmp_path: Path,
) -> None:
    s = _grid_spec(tmp_path, [{"x": 0.5}, {"x": 0.3}])  # the grid: 0, 0.25, 0.5, 0.75, 1
    async with scheduling(tmp_path, s) as (_, scheduler, exp):
        while (trial := await scheduler._next_trial(exp)) is not None:
            trial.state = TrialState.COMPLETED
    assert [t.params["x"] for t in exp.trials.values()] == [0.5, 0.3, 0.0, 0.25, 0.75, 1.0]
    assert exp.exhausted and exp.max_trials == 7


async def test_a_resumed_experiment_with_points_left_is_not_refused_as_run_out(
    tmp_path: Path,
) -> None:
    # Its grid is used up by the points that ran, but one point is left: it runs on resume.
    s = _grid_spec(tmp_path, [{"x": 1}, {"x": 2}, {"x": 1}], values=[1, 2])
    async with scheduling(tmp_path, s) as (store, scheduler, exp):
        for trial in [await _next(scheduler, exp) for _ in range(2)]:
            await store.update_trial(exp.id, trial.number, state="failed")
        await store.update_experiment(exp.id, state="failed")
        del scheduler.active[exp.id]
        answer = await scheduler.resume(exp.id)
        resumed = scheduler.active[exp.id]
        last = await _next(scheduler, resumed)
    assert answer == "resuming e1: 0 trials to run again, up to 1 new one (max_trials: 3)"
    assert (last.number, last.params) == (2, {"x": 1})


# --- resume_from with nothing to learn from -----------------------------------------------------


def _view(number: int, params: Mapping[str, ParamValue]) -> TrialView:
    return TrialView(number=number, params=params, state=TrialState.COMPLETED, objective=0.5)


def test_resume_from_warns_when_no_earlier_trial_can_teach_the_search() -> None:
    s = spec(resume_from="e1")
    # Each says what to do: the metric's name or the params to check, or drop resume_from.
    finished = PriorTrials(ended={"completed": 2}, reported={"loss", "score"})
    assert resume_from_warning(s, finished) == (
        "resume_from: e1 has no finished trial (completed, or stopped) that reported 'acc' (its"
        " trials reported loss, score), so the search has nothing to learn from it and starts"
        " from scratch, as without resume_from. To learn from it, if its trials reported the"
        " metric under another name (`gpusched show e1/0` shows a trial's last report), set"
        " metric to that name; else drop resume_from")
    wide = PriorTrials([_view(-2, {**ADAM, "lr": 0.5}), _view(-1, {"x": 1})])
    assert resume_from_warning(s, wide) == (
        "resume_from: none of the 2 finished trials of e1 has params that fit this experiment's"
        " (the first: 'lr': 0.5 is outside [0.0001, 0.1]), so the search has nothing to learn"
        " from it and starts from scratch, as without resume_from. To learn from it, make this"
        " experiment's params (their names, ranges and values) take in the values its trials"
        " ran with; else drop resume_from")
    # One that fits is enough (a whole float for an integer fits, as the searches take it).
    fits = PriorTrials([*wide, _view(-3, {**ADAM, "layers": 1.0})])
    assert resume_from_warning(s, fits) is None
    assert resume_from_warning(spec(), PriorTrials()) is None  # no resume_from: nothing to say


def test_resume_from_guesses_the_metric_among_the_keys_its_trials_reported() -> None:
    s = spec(resume_from="e1", metric="val_accuracy")
    said = resume_from_warning(s, PriorTrials(ended={"completed": 3, "failed": 1},
                                              reported={"loss", "val_acc"}))
    assert said is not None and said.startswith(
        "resume_from: e1 has no finished trial (completed, or stopped) that reported"
        " 'val_accuracy' (its trials reported loss, val_acc) (did you mean 'val_acc'?), so the"
        " search has nothing to learn from it")
    # Reported, but as text (or NaN) only: not "did you mean" the metric itself.
    said = resume_from_warning(s, PriorTrials(ended={"completed": 1},
                                              reported={"val_accuracy"}))
    assert said is not None and said.startswith(
        "resume_from: e1 has no finished trial (completed, or stopped) that reported a finite"
        " 'val_accuracy' (its trials reported val_accuracy), so")


def test_resume_from_says_its_trials_failed_not_that_the_metric_is_misnamed() -> None:
    # They reported the metric, then crashed: renaming the metric would change nothing.
    s = spec(resume_from="e1", metric="val_accuracy")
    failed = PriorTrials(ended={"failed": 9}, reported={"val_accuracy"}, metric_reported=True)
    assert resume_from_warning(s, failed) == (
        "resume_from: the 9 trials of e1 all failed: none has a result, so the search has"
        " nothing to learn from it and starts from scratch, as without resume_from. Resume from"
        " an experiment whose trials have results (`gpusched ls e1` says why these ended), or"
        " drop resume_from")
    one = PriorTrials(ended={"failed": 1}, metric_reported=True)
    assert (resume_from_warning(s, one) or "").startswith(
        "resume_from: the one trial of e1 failed: it has no result, so")
    mixed = PriorTrials(ended={"cancelled": 2, "failed": 7}, metric_reported=True)
    assert (resume_from_warning(s, mixed) or "").startswith(
        "resume_from: none of the 9 trials of e1 has a result (7 failed, 2 cancelled), so")
    # Failed without ever reporting the metric: that too, with the closest key they reported.
    unnamed = PriorTrials(ended={"failed": 2}, reported={"loss", "val_acc"})
    assert (resume_from_warning(s, unnamed) or "").startswith(
        "resume_from: the 2 trials of e1 all failed: none has a result; nor did any report"
        " 'val_accuracy' (they reported loss, val_acc) (did you mean 'val_acc'?), so")
    assert resume_from_warning(s, PriorTrials()) == (
        "resume_from: e1 ran no trial, so the search has nothing to learn from it and starts"
        " from scratch, as without resume_from. Resume from an experiment whose trials have"
        " results, or drop resume_from")


async def test_prior_trials_say_how_the_earlier_trials_ended_when_none_teaches(
    tmp_path: Path,
) -> None:
    later = spec(resume_from="e1", metric="val_accuracy")
    async with open_store(tmp_path / "log.db") as store:
        await store.create_experiment(name="first", spec=spec().to_dict(), seed=0, priority=0,
                                      owner_uid=os.getuid())
        for number, (state, report) in enumerate([
            ("failed", {"val_accuracy": 0.5, "loss": 0.1, "training_iteration": 1}),
            ("failed", {"val_accuracy": 0.6}),
            ("cancelled", {}),
        ]):
            await store.create_trial("e1", number, ADAM, str(tmp_path / str(number)))
            if report:
                await store.add_reports("e1", number, 0, [report])
            await store.update_trial("e1", number, state=state)
        nothing = await prior_trials(store, later)
        await store.update_trial("e1", 1, state="completed")
        learns = await prior_trials(store, later)
    assert list(nothing) == []
    assert dict(nothing.ended) == {"failed": 2, "cancelled": 1}
    assert nothing.reported == ("loss", "val_accuracy")  # not the auto-filled ones
    assert nothing.metric_reported
    # A trial to learn from: the rest is not read (the warning is not given).
    assert [v.objective for v in learns] == [0.6]
    assert dict(learns.ended) == {} and learns.reported == ()
