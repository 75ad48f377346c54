"""ExperimentRun (SPEC 5): a trial's objective, the failure rules, and when to start more."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.experiment import ExperimentRun, TrialRun, objective_of
from gpusched.models import ExperimentState, Goal, ObjectiveRule, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import DEFAULT_MAX_TRIALS, parse_experiment

PARAMS: list[dict[str, Any]] = [
    {"name": "opt", "type": "categorical", "values": ["sgd", "adam", "lamb"]},
    {"name": "layers", "type": "discrete", "values": [1, 2]},
]


def run(tmp_path: Path, **settings: Any) -> ExperimentRun:
    data = {"name": "exp", "command": "python train.py", "metric": "acc", "params": PARAMS,
            **settings}
    spec = parse_experiment(data, base_dir=tmp_path)
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    return ExperimentRun("e1", 1, spec, 0, search, [], state=ExperimentState.RUNNING)


def add(exp: ExperimentRun, *states: TrialState) -> list[TrialRun]:
    """Append trials with these states, numbered on from the last one."""
    out = []
    for state in states:
        trial = TrialRun(number=len(exp.trials), params={}, state=state)
        exp.trials[trial.number] = trial
        if state is TrialState.RUNNING:
            exp.live[trial.number] = trial  # as the scheduler does when it launches one
        out.append(trial)
    return out


F, C = TrialState.FAILED, TrialState.COMPLETED


# --- objective_of ---------------------------------------------------------------------------


def test_last_is_the_last_finite_value() -> None:
    assert objective_of([0.1, 0.9, 0.4], ObjectiveRule.LAST, Goal.MAXIMIZE) == 0.4
    assert objective_of([0.1, 0.4, math.nan], ObjectiveRule.LAST, Goal.MAXIMIZE) == 0.4
    assert objective_of([0.1, 0.4, math.inf], ObjectiveRule.LAST, Goal.MINIMIZE) == 0.4


def test_best_follows_the_goal() -> None:
    values = [0.5, 0.9, math.nan, 0.1, 0.4]
    assert objective_of(values, ObjectiveRule.BEST, Goal.MAXIMIZE) == 0.9
    assert objective_of(values, ObjectiveRule.BEST, Goal.MINIMIZE) == 0.1
    assert objective_of([-math.inf, 2.0], ObjectiveRule.BEST, Goal.MINIMIZE) == 2.0


@pytest.mark.parametrize("values", [[], [math.nan], [math.nan, math.inf, -math.inf]])
@pytest.mark.parametrize("rule", list(ObjectiveRule))
def test_no_finite_value_means_no_objective(values: list[float], rule: ObjectiveRule) -> None:
    assert objective_of(values, rule, Goal.MAXIMIZE) is None


# --- failure rules --------------------------------------------------------------------------


def test_without_max_failed_trials_the_first_trial_failing_fails_the_experiment(
    tmp_path: Path
) -> None:
    exp = run(tmp_path)
    (first,) = add(exp, F)
    why = exp.failure_rule(first, None)
    assert why == ("the first trial, e1/0, failed; set max_failed_trials to go on after"
                   " failures, as AI Platform does")


def test_without_max_failed_trials_a_later_failure_is_tolerated(tmp_path: Path) -> None:
    exp = run(tmp_path)
    trials = add(exp, C, F, C, F)
    assert exp.failure_rule(trials[1], None) is None
    assert exp.failure_rule(trials[3], None) is None


def test_with_max_failed_trials_the_first_failure_is_not_special(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=3)
    trials = add(exp, F)
    assert exp.failure_rule(trials[0], None) is None
    trials += add(exp, C, F)
    assert exp.failure_rule(trials[2], None) is None
    trials += add(exp, C, F)
    why = exp.failure_rule(trials[4], None)
    assert why == "3 trials failed (max_failed_trials: 3)"


def test_running_and_queued_trials_do_not_count_as_failures(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=2, max_consecutive_failed_trials=2)
    trials = add(exp, C, F, TrialState.RUNNING, TrialState.QUEUED)
    assert exp.failure_rule(trials[1], None) is None


def test_consecutive_failures_fail_the_experiment(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100, max_consecutive_failed_trials=3)
    trials = add(exp, C, F, F)
    assert exp.failure_rule(trials[2], None) is None
    trials += add(exp, F)
    why = exp.failure_rule(trials[3], None)
    assert why == "3 trials failed in a row (max_consecutive_failed_trials: 3)"


def test_a_success_breaks_the_streak(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100, max_consecutive_failed_trials=3)
    trials = add(exp, C, F, F, C, F, F)
    assert exp.failure_rule(trials[5], None) is None


def test_the_default_streak_is_three(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100)
    assert exp.spec.max_consecutive_failed_trials == 3
    trials = add(exp, C, F, F, F)
    assert exp.failure_rule(trials[3], None) is not None


def test_fail_fast_fails_at_the_first_failure(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100, fail_fast=True)
    trials = add(exp, C, C, F)
    assert exp.failure_rule(trials[2], None) == "trial e1/2 failed and fail_fast is set"


def test_a_fatal_error_fails_the_experiment_with_its_reason(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100)
    trials = add(exp, C, F)
    why = exp.failure_rule(trials[1], "dataset is missing")
    assert why == "trial e1/1 raised a fatal error: dataset is missing"


# --- how many trials, and when --------------------------------------------------------------


def test_max_parallel_trials_bounds_running_trials(tmp_path: Path) -> None:
    exp = run(tmp_path, max_trials=10, max_parallel_trials=2)
    assert exp.wants_more()
    add(exp, TrialState.RUNNING)
    assert exp.wants_more()
    add(exp, TrialState.RUNNING)
    assert not exp.wants_more()
    exp.trials[0].state = C
    assert exp.wants_more()
    assert exp.running_count() == 1


def test_max_trials_bounds_all_trials(tmp_path: Path) -> None:
    exp = run(tmp_path, max_trials=2)
    add(exp, C)
    assert exp.wants_more()
    add(exp, C)
    assert not exp.wants_more()
    assert exp.all_ended()


def test_a_requeued_trial_runs_again_even_at_max_trials(tmp_path: Path) -> None:
    exp = run(tmp_path, max_trials=2, max_parallel_trials=1)
    add(exp, C, TrialState.INTERRUPTED)
    exp.requeued.append(1)
    assert exp.wants_more()
    assert not exp.all_ended()
    add(exp, TrialState.RUNNING)
    assert not exp.wants_more()  # the parallel limit still holds


def test_no_new_trial_is_suggested_while_an_ended_trials_outcome_is_recorded(
    tmp_path: Path,
) -> None:
    # Its processes are gone (its GPU is released at once) but its outcome is not in the log
    # yet: the search would not see it, and a failure rule could still end the experiment.
    exp = run(tmp_path, max_trials=5, max_parallel_trials=2)
    (ending,) = add(exp, TrialState.RUNNING)
    ending.processes_gone = True
    assert exp.running_count() == 0  # its parallel slot is free...
    assert exp.gpu_share_in_use() == 1.0  # ...but for fair share it still holds its GPU
    assert exp.wants_more()  # it has more to run (so it must not be taken for finished)...
    assert not exp.can_start_now()  # ...but not now
    exp.requeued.append(0)  # a trial to run again has its params already: it may start
    assert exp.can_start_now()
    exp.requeued.clear()
    del exp.live[0]  # recorded (the scheduler forgets it once its end is in the log)
    assert exp.can_start_now()


@pytest.mark.parametrize("change", ["exhausted", "cancelling", "failure", "completed"])
def test_no_more_trials_once_the_experiment_is_ending(tmp_path: Path, change: str) -> None:
    exp = run(tmp_path, max_trials=5)
    assert exp.wants_more()
    if change == "exhausted":
        exp.exhausted = True
    elif change == "cancelling":
        exp.cancelling = True
    elif change == "failure":
        exp.failure = "3 trials failed in a row"
    else:
        exp.state = ExperimentState.COMPLETED
    assert not exp.wants_more()


def test_max_trials_defaults_to_the_grid_size(tmp_path: Path) -> None:
    exp = run(tmp_path, search={"algorithm": "grid"})
    assert exp.max_trials == 3 * 2
    add(exp, *[C] * 5)
    assert exp.wants_more()
    add(exp, C)
    assert not exp.wants_more()


def test_an_explicit_max_trials_wins_over_the_grid(tmp_path: Path) -> None:
    assert run(tmp_path, search={"algorithm": "grid"}, max_trials=4).max_trials == 4


def test_max_trials_defaults_to_ten_for_a_random_search(tmp_path: Path) -> None:
    exp = run(tmp_path, search={"algorithm": "random"})
    assert exp.max_trials == DEFAULT_MAX_TRIALS == 10


def test_gpu_share_and_repr(tmp_path: Path) -> None:
    exp = run(tmp_path, gpus_per_trial=0.5)
    add(exp, TrialState.RUNNING, TrialState.RUNNING, C)
    assert exp.gpu_share_in_use() == 1.0
    assert repr(exp) == "<ExperimentRun e1 running trials=3 running=2>"


def test_history_is_prior_then_own_trials_by_number(tmp_path: Path) -> None:
    exp = run(tmp_path)
    exp.trials[1] = TrialRun(number=1, params={"opt": "adam"}, state=C, objective=0.5,
                             metric_values=[0.2, 0.5], metric_steps=[1, 2])
    exp.trials[0] = TrialRun(number=0, params={"opt": "sgd"}, state=F)
    prior = exp.trials[1].view()
    exp.prior = [prior]
    history = exp.history()
    assert [v.number for v in history] == [1, 0, 1]
    assert history[2].metric_values == (0.2, 0.5)
    assert history[2].finished
    assert not history[1].finished


def test_a_trial_view_is_reused_until_the_trial_changes_and_is_read_only() -> None:
    trial = TrialRun(number=0, params={"lr": 0.1}, state=TrialState.RUNNING)
    first = trial.view()
    assert trial.view() is first  # nothing changed: the same snapshot, not a rebuilt one
    trial.reports += 1
    trial.metric_values.append(0.5)
    trial.metric_steps.append(1)
    trial.last_report = {"acc": 0.5}
    second = trial.view()
    assert second is not first and second.metric_values == (0.5,)
    assert second.last_report == {"acc": 0.5} and first.metric_values == ()
    trial.state, trial.objective = TrialState.COMPLETED, 0.5
    third = trial.view()
    assert third.state is TrialState.COMPLETED and third.objective == 0.5 and third.finished
    with pytest.raises(TypeError):
        third.params["lr"] = 1.0  # type: ignore[index]  # a plugin cannot poison the cache
    with pytest.raises(TypeError):
        third.last_report["acc"] = 1.0  # type: ignore[index]
    assert trial.params == {"lr": 0.1}


def test_history_is_a_lazy_sequence_that_builds_only_the_views_read(tmp_path: Path) -> None:
    exp = run(tmp_path)
    for n in (2, 0, 1):  # inserted out of order: the history is still by number
        exp.trials[n] = TrialRun(number=n, params={"opt": "sgd"}, state=C, objective=n / 10)
    history = exp.history()
    assert len(history) == 3
    assert all(t._view is None for t in exp.trials.values())  # nothing built yet
    assert history[-1].number == 2
    assert [t._view is not None for _, t in sorted(exp.trials.items())] == [False, False, True]
    assert [v.number for v in history[0:2]] == [0, 1]
    assert [v.objective for v in history] == [0.0, 0.1, 0.2]
    assert history.index(history[1]) == 1
    with pytest.raises(IndexError):
        history[3]
    with pytest.raises(IndexError):
        history[-4]
    assert repr(history) == "<History prior=0 trials=3>"
