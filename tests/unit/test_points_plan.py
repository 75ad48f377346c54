"""``points_to_evaluate`` with a search of known size (``grid``, ``hyperband``): how many trials
run when the file sets no ``max_trials`` (a point on the grid, or one that takes a hyperband
configuration's place, adds no trial), and the points a search that gives budgets cannot take
(refused at submit: left over, they would run with no budget)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import pytest

from gpusched._daemon import experiment as experiment_module
from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import open_store
from gpusched._daemon.waiting import pending_trials
from gpusched.config import DaemonSettings
from gpusched.errors import SpecError
from gpusched.models import TrialState
from gpusched.spec import ExperimentSpec, parse_experiment

X = {"name": "x", "type": "double", "min": 0, "max": 1}
# max_epochs 3, factor 3: bracket s=1 makes 3 configurations at 1 epoch and promotes 1 to 3;
# bracket s=0 makes 2 at 3 epochs. 6 trials, 5 of them new configurations.
HYPERBAND = {"algorithm": "hyperband", "max_epochs": 3, "factor": 3, "budget_flag": None}


def _spec(tmp_path: Path, search: Any, points: list[dict[str, Any]],
          **settings: Any) -> ExperimentSpec:
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "search": search, "params": [X], "points_to_evaluate": points,
                             **settings}, base_dir=tmp_path)


@asynccontextmanager
async def daemon(tmp_path: Path) -> AsyncIterator[Scheduler]:
    """A scheduler (no GPUs) over a real trial log."""
    async with open_store(tmp_path / "log.db") as store:
        yield Scheduler(store=store, backend=cast(GpuBackend, None), settings=DaemonSettings(),
                        state_dir=tmp_path / "state")


async def _submitted(scheduler: Scheduler, s: ExperimentSpec) -> ExperimentRun:
    return scheduler.active[await scheduler.submit(s, os.getuid(), source="exp.yaml")]


async def _run_all(scheduler: Scheduler, exp: ExperimentRun) -> list[TrialRun]:
    """Every trial the experiment runs, as placement asks for them, each completing at once."""
    while exp.wants_more():
        trial = await scheduler._next_trial(exp)
        if trial is None:
            break
        trial.state, trial.objective = TrialState.COMPLETED, trial.params["x"]
    return list(exp.trials.values())


async def test_a_point_on_the_grid_adds_no_trial_and_one_off_it_or_twice_does(
    tmp_path: Path,
) -> None:
    # The grid: 0, 0.25, 0.5, 0.75, 1. 0.5 is on it (the grid skips it); 0.3 is not, and 0.5
    # listed again runs again: 5 + 2 trials.
    s = _spec(tmp_path, "grid", [{"x": 0.5}, {"x": 0.3}, {"x": 0.5}])
    async with daemon(tmp_path) as scheduler:
        exp = await _submitted(scheduler, s)
        assert exp.max_trials == 7 and pending_trials(exp) == 7  # what `ls` counts as queued
        trials = await _run_all(scheduler, exp)
    assert [t.params["x"] for t in trials] == [0.5, 0.3, 0.5, 0.0, 0.25, 0.75, 1.0]


async def test_hyperband_points_take_new_configurations_places_and_add_no_trial(
    tmp_path: Path,
) -> None:
    s = _spec(tmp_path, HYPERBAND, [{"x": 0.1}, {"x": 0.2}])
    async with daemon(tmp_path) as scheduler:
        exp = await _submitted(scheduler, s)
        assert exp.max_trials == 6 and pending_trials(exp) == 6  # the brackets' trials
        trials = await _run_all(scheduler, exp)
    assert [t.params["x"] for t in trials][:2] == [0.1, 0.2]
    assert len(trials) == 6
    assert all(t.budget is not None for t in trials)  # every trial gets --epochs


@pytest.mark.parametrize(("settings", "new", "within"), [
    ({}, 5, ""),
    # Trial 3 is a promotion: of the first 4 trials, 3 are new configurations.
    ({"max_trials": 4}, 3, " in its first 4 trials (max_trials)"),
])
async def test_points_a_search_that_gives_budgets_cannot_take_are_refused_at_submit(
    tmp_path: Path, settings: dict[str, Any], new: int, within: str,
) -> None:
    points = [{"x": i / 10} for i in range(new + 1)]
    s = _spec(tmp_path, HYPERBAND, points, **settings)
    async with daemon(tmp_path) as scheduler:
        with pytest.raises(SpecError) as refused:
            await scheduler.submit(s, os.getuid(), source="exp.yaml")
        assert scheduler.active == {}
        assert await scheduler.store.experiments() == []  # nothing recorded
    assert [str(p) for p in refused.value.problems] == [
        f"points_to_evaluate: lists {new + 1} points, but search 'hyperband' makes only {new}"
        f" new configurations{within}: each point takes the place of one, with the budget the"
        " search gives it (its other trials continue one, and no point takes their place);"
        f" list at most {new} points, or change the search's options so that it makes more"]


async def test_as_many_points_as_new_configurations_all_run_with_budgets(
    tmp_path: Path,
) -> None:
    points = [{"x": i / 10} for i in range(5)]
    async with daemon(tmp_path) as scheduler:
        exp = await _submitted(scheduler, _spec(tmp_path, HYPERBAND, points))
        trials = await _run_all(scheduler, exp)
    fresh = [t for t in trials if t.continues is None]
    assert [t.params for t in fresh] == points
    assert [t.budget for t in trials] == [1, 1, 1, 3, 3, 3]


async def test_a_point_left_where_that_was_not_worked_out_runs_with_the_top_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A search too long to work out at submit is not refused: its max_trials counts every
    # point, and a point left once it has run out gets the top budget it gave, not none.
    monkeypatch.setattr(experiment_module, "PLAN_STEPS", 2)
    points = [{"x": i / 10} for i in range(7)]
    async with daemon(tmp_path) as scheduler:
        exp = await _submitted(scheduler, _spec(tmp_path, HYPERBAND, points))
        assert exp.plan is None and exp.max_trials == 6 + 7
        trials = await _run_all(scheduler, exp)
    assert len(trials) == 8 and all(t.budget is not None for t in trials)
    assert [(t.params["x"], t.budget) for t in trials[6:]] == [(0.5, 3), (0.6, 3)]


async def test_a_restarted_daemon_counts_the_same_trials(tmp_path: Path) -> None:
    s = _spec(tmp_path, "grid", [{"x": 0.5}, {"x": 0.3}])
    async with daemon(tmp_path) as scheduler:
        exp = await _submitted(scheduler, s)
        restarted = Scheduler(store=scheduler.store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        await restarted._restore()
        again = restarted.active[exp.id]
    assert exp.max_trials == again.max_trials == 6
