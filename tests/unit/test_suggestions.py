"""What the scheduler does with a search plugin's answer: a Suggestion's budget and continues
go to the log, a bad continues fails the experiment, WAIT waits only while trials run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from gpusched._daemon.budget import budget_argv, budget_environment, fmt_budget
from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store, open_store
from gpusched.config import DaemonSettings
from gpusched.models import ExperimentState, TrialState
from gpusched.plugin_api import (
    WAIT,
    ParamValue,
    SearchPlugin,
    Suggestion,
    TrialView,
    Wait,
    as_suggestion,
)
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment

Answer = Mapping[str, ParamValue] | Suggestion | Wait | None


class Scripted(SearchPlugin):
    """Answers what the test says, and keeps the histories it was shown."""

    def __init__(self, answers: list[Answer]) -> None:
        self.answers = answers
        self.seen: list[Sequence[TrialView]] = []

    def suggest(self, number: int, history: Sequence[TrialView]) -> Answer:
        self.seen.append(history)
        return self.answers.pop(0)


def _experiment(tmp_path: Path, plugin: SearchPlugin) -> ExperimentRun:
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "max_trials": 10,
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    return ExperimentRun("e1", 1, spec, 0, plugin, [], state=ExperimentState.RUNNING)


async def _scheduler_with(store: Store, tmp_path: Path, plugin: SearchPlugin
                          ) -> tuple[Scheduler, ExperimentRun]:
    """A scheduler (no GPUs) with one running experiment searched by ``plugin``."""
    await store.create_experiment(name="exp", spec={}, seed=0, priority=0, owner_uid=None)
    scheduler = Scheduler(store=store, backend=cast(GpuBackend, None),
                          settings=DaemonSettings(), state_dir=tmp_path / "state")
    exp = _experiment(tmp_path, plugin)
    scheduler.active[exp.id] = exp
    return scheduler, exp


async def _ask(tmp_path: Path, answers: list[Answer], *, end_each: bool = True
               ) -> tuple[ExperimentRun, list[dict[str, Any]]]:
    """Ask for a trial per answer (each ended as completed before the next, unless not
    ``end_each``); the experiment and the log's trial rows."""
    plugin = Scripted(list(answers))
    tmp_path.mkdir(parents=True, exist_ok=True)
    async with open_store(tmp_path / "log.db") as store:
        scheduler, exp = await _scheduler_with(store, tmp_path, plugin)
        for _ in answers:
            trial = await scheduler._next_trial(exp)
            if trial is not None:
                if end_each:
                    trial.state, trial.objective = TrialState.COMPLETED, 0.5
                else:
                    trial.state = TrialState.RUNNING
                    exp.live[trial.number] = trial
        rows = await store.trials(exp.id)
    return exp, rows


async def test_budget_and_continues_reach_the_log_and_the_views(tmp_path: Path) -> None:
    exp, rows = await _ask(tmp_path, [
        Suggestion({"x": 1}, budget=3), Suggestion({"x": 1}, budget=9, continues=0), {"x": 2}])
    assert [(r["budget"], r["continues"]) for r in rows] == [(3, None), (9, 0), (None, None)]
    assert [(v.budget, v.continues) for v in exp.history()] == [(3, None), (9, 0),
                                                                (None, None)]
    assert exp.checkpoint_owner(1) == 0 and exp.checkpoint_owner(2) == 2


async def test_continuing_a_trial_that_has_not_ended_fails_the_experiment(
    tmp_path: Path,
) -> None:
    exp, rows = await _ask(tmp_path, [{"x": 1}, Suggestion({"x": 1}, continues=0)],
                           end_each=False)
    assert len(rows) == 1
    assert exp.failure == ("search plugin 'random' failed: continues=0, but trial e1/0 has not"
                           " ended")


@pytest.mark.parametrize(("answers", "why"), [
    ([{"x": 1}, Suggestion({"x": 1}, continues=0), Suggestion({"x": 2}, continues=0)],
     "continues=0, but trial e1/0 is already continued by e1/1"),
    ([{"x": 1}, Suggestion({"x": 1}, continues=5)], "continues=5, but e1 has no trial 5"),
])
async def test_a_checkpoint_folder_is_never_shared_twice(
    tmp_path: Path, answers: list[Answer], why: str
) -> None:
    exp, rows = await _ask(tmp_path, answers)
    assert len(rows) == len(answers) - 1
    assert exp.failure == f"search plugin 'random' failed: {why}"


async def test_wait_waits_while_a_trial_runs_and_is_the_end_when_none_does(
    tmp_path: Path,
) -> None:
    exp, rows = await _ask(tmp_path, [{"x": 1}, WAIT], end_each=False)
    assert len(rows) == 1 and exp.waiting and not exp.exhausted and exp.failure is None
    assert exp.wants_more()  # asked again once the running trial ends
    exp, _ = await _ask(tmp_path / "2", [{"x": 1}, WAIT])
    assert exp.exhausted  # nothing runs: the answer cannot change


def test_a_bad_suggestion_is_refused_where_it_is_made() -> None:
    for bad in (0, -1.5, float("nan"), True, "9"):
        with pytest.raises(ValueError, match="budget must be a positive number"):
            Suggestion({}, budget=bad)  # type: ignore[arg-type]  # the point of the test
    with pytest.raises(ValueError, match="continues must be a trial number"):
        Suggestion({}, continues=-1)
    plain = {"x": 1}
    assert as_suggestion(plain) == Suggestion(plain)
    assert as_suggestion(Suggestion(plain, budget=2)).budget == 2


def test_the_budget_as_a_flag_and_in_the_environment() -> None:
    assert [fmt_budget(b) for b in (9, 9.0, 0.25, 1e-07)] == ["9", "9", "0.25", "1e-07"]
    assert budget_argv("--epochs", 9) == ["--epochs=9"]
    assert budget_argv(None, 9) == [] and budget_argv("--epochs", None) == []
    assert budget_environment(9, initial=3, continues=4) == {
        "GPUSCHED_BUDGET": "9", "GPUSCHED_INITIAL_BUDGET": "3", "GPUSCHED_CONTINUES": "4"}
    assert budget_environment(1, initial=None, continues=None) == {
        "GPUSCHED_BUDGET": "1", "GPUSCHED_INITIAL_BUDGET": "0"}
    assert budget_environment(None, initial=None, continues=None) == {}


def test_hyperband_sets_max_trials_to_its_brackets(tmp_path: Path) -> None:
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "search": {"algorithm": "hyperband", "max_epochs": 9},
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    plugin = make_search_plugin("hyperband", spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    exp = ExperimentRun("e1", 1, spec, 0, plugin, [])
    assert exp.max_trials == 23
    assert isinstance(TrialRun(0, {}, budget=3).view().budget, int)


def test_a_view_has_ended_once_it_will_report_no_more() -> None:
    ended = {s for s in TrialState if TrialView(0, {}, s).ended}
    assert ended == {TrialState.COMPLETED, TrialState.STOPPED, TrialState.FAILED,
                     TrialState.CANCELLED}


async def test_an_answer_that_is_no_mapping_fails_the_experiment(tmp_path: Path) -> None:
    exp, rows = await _ask(tmp_path, [cast(Answer, [1, 2, 3])])
    assert not rows
    assert exp.failure is not None and exp.failure.startswith("search plugin 'random' failed:")


class Slow(SearchPlugin):
    """Takes ``seconds`` per suggestion, noting in which thread and with what history."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.threads: list[int] = []
        self.histories: list[Sequence[TrialView]] = []

    def suggest(self, number: int, history: Sequence[TrialView]) -> Answer:
        import threading
        import time

        self.threads.append(threading.get_ident())
        self.histories.append(history)
        time.sleep(self.seconds)
        return {"x": 1 + number % 2}


async def test_a_slow_search_is_asked_off_the_event_loop(tmp_path: Path) -> None:
    import threading

    import anyio

    plugin = Slow(0.3)
    async with open_store(tmp_path / "log.db") as store:
        scheduler, exp = await _scheduler_with(store, tmp_path, plugin)
        first = await scheduler._next_trial(exp)  # how slow it is is not known yet: inline
        assert first is not None and plugin.threads == [threading.get_ident()]
        first.state, first.objective = TrialState.COMPLETED, 0.5
        ticks = 0

        async def tick() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            second = await scheduler._next_trial(exp)
            tg.cancel_scope.cancel()
        assert second is not None and second.number == 1
        assert plugin.threads[1] != threading.get_ident()
        assert ticks >= 10  # the loop went on while the search thought
        # It saw the history as it was when asked: a copy, with the first trial's result.
        assert isinstance(plugin.histories[1], list)
        assert [(v.number, v.objective) for v in plugin.histories[1]] == [(0, 0.5)]

        # An experiment cancelled while its search thinks gets no trial from the answer.
        async with anyio.create_task_group() as tg:
            async def cancel_soon() -> None:
                await anyio.sleep(0.1)
                exp.cancelling = True

            tg.start_soon(cancel_soon)
            assert await scheduler._next_trial(exp) is None
        assert [r["number"] for r in await store.trials(exp.id)] == [0, 1]


@pytest.mark.parametrize(("value", "why"), [
    (np.int64(1), "'x': np.int64(1) is a numpy.int64, not a plain int, float or str"),
    (True, "'x': True is a builtins.bool, not a plain int, float or str"),
    (7, "'x': 7 is not one of (1, 2)"),
])
async def test_a_value_the_log_cannot_store_or_outside_the_space_fails_the_experiment(
    tmp_path: Path, value: object, why: str,
) -> None:
    # A numpy integer once got past the scheduler and raised out of the log's write: the daemon
    # exited, and restarted into the same answer.
    exp, rows = await _ask(tmp_path, [cast(Answer, {"x": value})])
    assert not rows
    assert exp.failure is not None and exp.failure.startswith(
        f"search plugin 'random' failed: {why}")


async def test_an_active_parameter_without_a_value_fails_the_experiment(tmp_path: Path) -> None:
    exp, rows = await _ask(tmp_path, [cast(Answer, {"y": 1})])
    assert not rows
    assert exp.failure == "search plugin 'random' failed: no value for the active parameter 'x'"
