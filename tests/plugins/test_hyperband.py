"""The ``hyperband`` search plugin: KerasTuner's brackets, promotions, purity over the log."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest
from gpusched_plugins._brackets import Schedule
from gpusched_plugins.hyperband import Hyperband

from gpusched.plugin_api import (
    WAIT,
    Goal,
    Param,
    ParamType,
    PluginOptionsError,
    SearchSpace,
    Suggestion,
    TrialState,
    TrialView,
)

SPACE = SearchSpace((
    Param("x", ParamType.DOUBLE, low=0.0, high=1.0),
    Param("opt", ParamType.CATEGORICAL, values=("sgd", "adam")),
))


def _plugin(goal: Goal = Goal.MAXIMIZE, seed: int = 7, **options: Any) -> Hyperband:
    return Hyperband(SPACE, goal=goal, seed=seed, options=options)


def _score(params: Mapping[str, Any], budget: float) -> float:
    """Higher x is better, and more budget helps everyone."""
    return float(params["x"]) + 0.01 * budget


def _ended(view: TrialView, objective: float | None, state: TrialState) -> TrialView:
    return dataclasses.replace(view, state=state, objective=objective)


def simulate(
    plugin: Hyperband, *, workers: int = 1, seed: int = 0,
    fails: Callable[[int], bool] = lambda n: False, max_trials: int = 10_000,
    asked: list[tuple[tuple[TrialView, ...], object]] | None = None,
    prior: Sequence[TrialView] = (),
) -> list[TrialView]:
    """Drive ``plugin`` as the daemon does: ask whenever a worker is free, end a running trial
    (a random one, seeded) when none is or the plugin waits, until it says None. ``asked``
    collects each question (the history as it stood) and its answer. ``prior``: an earlier
    experiment's trials (``resume_from``), put before the history in each question."""
    rng = random.Random(seed)
    history: list[TrialView] = []
    running: list[int] = []
    while len(history) < max_trials:
        answer = None
        if len(running) < workers:
            answer = plugin.suggest(len(history), (*prior, *history))
            if asked is not None:
                asked.append((tuple(history), answer))
            if answer is None and not running:
                break
        if isinstance(answer, Suggestion):
            number = len(history)
            history.append(TrialView(number, dict(answer.params), TrialState.RUNNING,
                                     budget=answer.budget, continues=answer.continues))
            running.append(number)
            continue
        assert running, "the plugin waits with nothing running"
        number = running.pop(rng.randrange(len(running)))
        view = history[number]
        assert view.budget is not None
        if fails(number):
            history[number] = _ended(view, None, TrialState.FAILED)
        else:
            history[number] = _ended(view, _score(view.params, view.budget),
                                     TrialState.COMPLETED)
    return history


# -- KerasTuner's arithmetic ------------------------------------------------------------------

# (size, epochs) of each rung, brackets from s_max down to 0, computed by hand with KerasTuner's
# _get_size (ceil(ceil(1 + log_f(max)) / (s + 1) * f**(s - r))) and _get_epochs
# (ceil(max / f**(s - r))).
KERAS_TUNER = {
    (81, 3): [[(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
              [(34, 3), (12, 9), (4, 27), (2, 81)],
              [(15, 9), (5, 27), (2, 81)],
              [(8, 27), (3, 81)],
              [(5, 81)]],
    (100, 3): [[(98, 2), (33, 4), (11, 12), (4, 34), (2, 100)],
               [(41, 4), (14, 12), (5, 34), (2, 100)],
               [(18, 12), (6, 34), (2, 100)],
               [(9, 34), (3, 100)],
               [(6, 100)]],
    (10, 3): [[(12, 2), (4, 4), (2, 10)], [(6, 4), (2, 10)], [(4, 10)]],
    (9, 3): [[(9, 1), (3, 3), (1, 9)], [(5, 3), (2, 9)], [(3, 9)]],
    (8, 2): [[(8, 1), (4, 2), (2, 4), (1, 8)], [(6, 2), (3, 4), (2, 8)],
             [(4, 4), (2, 8)], [(4, 8)]],
    (1, 3): [[(1, 1)]],
}


@pytest.mark.parametrize(("max_epochs", "factor"), sorted(KERAS_TUNER))
def test_rungs_are_keras_tuners(max_epochs: int, factor: int) -> None:
    schedule = Schedule(max_epochs, factor)
    got = [[(schedule.size(s, r), schedule.epochs(s, r)) for r in range(s + 1)]
           for s in range(schedule.num_brackets - 1, -1, -1)]
    assert got == KERAS_TUNER[(max_epochs, factor)]
    assert schedule.trials() == sum(n for bracket in got for n, _ in bracket)


def test_exact_log_where_keras_tuners_float_is_off() -> None:
    # math.log(15625, 5) is 6.000000000000001, so KerasTuner's ceil(1 + log) is 8, not 7: one
    # trial more in bracket 0 (the only such cases up to max_epochs 100000, for factors 2..10,
    # are 5**6, 6**6 and 7**5).
    assert math.ceil(1 + math.log(15625, 5)) == 8
    assert Schedule(15625, 5).size(0, 0) == 7
    assert Schedule(125, 5).size(0, 0) == math.ceil(1 + math.log(125, 5)) == 4


def test_min_epochs_drops_the_most_aggressive_brackets() -> None:
    assert Schedule(81, 3, min_epochs=9).num_brackets == 3
    assert Schedule(81, 3, min_epochs=9).epochs(2, 0) == 9
    assert _plugin(max_epochs=81, min_epochs=9, hyperband_iterations=2).size() == 2 * (
        15 + 5 + 2 + 8 + 3 + 5)


# -- one whole run ----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [1, 4])
def test_a_full_run_has_every_bracket_and_promotes_the_top_third(workers: int) -> None:
    plugin = _plugin(max_epochs=9)
    history = simulate(plugin, workers=workers, seed=workers)
    assert len(history) == plugin.size() == 23
    assert all(t.state is TrialState.COMPLETED for t in history)
    fresh = [t for t in history if t.continues is None]
    assert [t.budget for t in fresh] == [1] * 9 + [3] * 5 + [9] * 3
    rung0 = fresh[:9]
    promoted = [t for t in history if t.continues in {r.number for r in rung0}]
    assert {t.budget for t in promoted} == {3}
    top3 = sorted(rung0, key=lambda t: -(t.objective or 0))[:3]
    assert {t.continues for t in promoted} == {t.number for t in top3}
    for t in promoted:  # a promotion goes on with the params of the trial it continues
        assert t.params == history[t.continues or 0].params
    final = [t for t in history if t.continues in {p.number for p in promoted}]
    assert [t.budget for t in final] == [9]
    best_of_rung1 = max(promoted, key=lambda t: t.objective or 0)
    assert final[0].continues == best_of_rung1.number


def test_minimize_promotes_the_lowest() -> None:
    history = simulate(_plugin(Goal.MINIMIZE, max_epochs=9))
    rung0 = [t for t in history if t.continues is None][:9]
    promoted = {t.continues for t in history if t.continues in {r.number for r in rung0}}
    assert promoted == {t.number for t in sorted(rung0, key=lambda t: t.objective or 0)[:3]}


def test_after_the_last_bracket_it_says_none_and_iterations_repeat() -> None:
    plugin = _plugin(max_epochs=9, hyperband_iterations=2)
    history = simulate(plugin, workers=3)
    assert len(history) == 46
    assert plugin.suggest(len(history), tuple(history)) is None
    fresh_budgets = [t.budget for t in history if t.continues is None]
    assert fresh_budgets == ([1] * 9 + [3] * 5 + [9] * 3) * 2


# -- asynchronous promotion -------------------------------------------------------------------


def _rung(objectives: list[float | None], budget: int = 1) -> list[TrialView]:
    """Trials 0.. of the first rung; None: still running."""
    return [TrialView(n, {"x": 0.5, "opt": "sgd"},
                      TrialState.RUNNING if o is None else TrialState.COMPLETED,
                      objective=o, budget=budget) for n, o in enumerate(objectives)]


def test_the_first_promotion_comes_before_the_rung_has_ended() -> None:
    plugin = _plugin(max_epochs=9)
    # 6 of 9 ended: the 3 running could still be the top 3, nothing to promote; the next
    # bracket opens instead of leaving the GPU idle.
    history = _rung([0.1, 0.9, 0.3, 0.4, 0.5, 0.6, None, None, None])
    answer = plugin.suggest(9, history)
    assert isinstance(answer, Suggestion) and answer.continues is None and answer.budget == 3
    # 7 of 9 ended: at most 2 of the top 3 are still running, so the best ended one is in it.
    history = _rung([0.1, 0.9, 0.3, 0.4, 0.5, 0.6, 0.2, None, None])
    answer = plugin.suggest(9, history)
    assert isinstance(answer, Suggestion)
    assert (answer.continues, answer.budget) == (1, 3)
    assert answer.params == history[1].params


def test_the_last_open_bracket_waits_then_goes_on() -> None:
    plugin = _plugin(max_epochs=3)  # brackets s=1 (3 at 1 epoch, 1 at 3) and s=0 (2 at 3)
    assert [[plugin.schedule.size(s, r) for r in range(s + 1)] for s in (1, 0)] == [[3, 1], [2]]
    history = [*_rung([0.2, None, None]),
               TrialView(3, {"x": 0.1, "opt": "sgd"}, TrialState.RUNNING, budget=3),
               TrialView(4, {"x": 0.1, "opt": "sgd"}, TrialState.RUNNING, budget=3)]
    assert plugin.suggest(5, history) is WAIT
    history[1] = _ended(history[1], 0.8, TrialState.COMPLETED)
    assert plugin.suggest(5, history) is WAIT  # trial 2 may still beat both
    history[2] = _ended(history[2], 0.5, TrialState.COMPLETED)
    answer = plugin.suggest(5, history)
    assert isinstance(answer, Suggestion) and (answer.continues, answer.budget) == (1, 3)


# -- failures ---------------------------------------------------------------------------------


def test_a_failed_trial_is_never_promoted_and_a_short_rung_shrinks_the_next() -> None:
    plugin = _plugin(max_epochs=9)
    history = simulate(plugin, workers=2, fails=lambda n: n in range(1, 8))
    rung0 = [t for t in history if t.continues is None][:9]
    assert [t.state for t in rung0].count(TrialState.COMPLETED) == 2
    rung1 = [t for t in history if t.continues in {r.number for r in rung0}]
    assert sorted(t.continues or 0 for t in rung1) == [0, 8]  # the only two that completed
    assert all(history[t.continues or 0].state is TrialState.COMPLETED for t in rung1)
    assert plugin.suggest(len(history), tuple(history)) is None  # every bracket is done


# -- purity -----------------------------------------------------------------------------------


def test_a_fresh_instance_gives_the_same_answer_at_every_point_of_a_run() -> None:
    asked: list[tuple[tuple[TrialView, ...], object]] = []
    simulate(_plugin(max_epochs=9, hyperband_iterations=2), workers=4, seed=3, asked=asked)
    answers = {type(a).__name__ for _, a in asked}
    assert answers == {"Suggestion", "Wait", "NoneType"}  # every kind of answer was checked
    for past, answer in asked:
        # A restarted daemon: a new instance, the same log.
        restarted = _plugin(max_epochs=9, hyperband_iterations=2)
        assert restarted.suggest(len(past), past) == answer


def test_same_seed_same_search_other_seed_other_configurations() -> None:
    one = simulate(_plugin(max_epochs=9, seed=1), workers=3)
    two = simulate(_plugin(max_epochs=9, seed=1), workers=3)
    other = simulate(_plugin(max_epochs=9, seed=2), workers=3)
    assert one == two
    assert [t.params for t in one] != [t.params for t in other]
    assert [(t.budget, t.continues is None) for t in one] == [
        (t.budget, t.continues is None) for t in other]


def test_resumed_trials_are_in_no_bracket() -> None:
    prior = (TrialView(-1, {"x": 0.9, "opt": "sgd"}, TrialState.COMPLETED, objective=5.0),)
    resumed, fresh = (_plugin(max_epochs=9).suggest(0, h) for h in (prior, ()))
    assert isinstance(resumed, Suggestion) and isinstance(fresh, Suggestion)
    assert (resumed.budget, resumed.continues) == (fresh.budget, fresh.continues) == (1, None)


def test_a_resumed_experiment_draws_other_fresh_configurations() -> None:
    # resume_from with the same seed: the fresh configurations were the earlier run's again.
    earlier = simulate(_plugin(max_epochs=9, seed=1), workers=2)
    prior = [TrialView(i - len(earlier), t.params, TrialState.COMPLETED, objective=1.0)
             for i, t in enumerate(earlier)]
    again = simulate(_plugin(max_epochs=9, seed=1), workers=2, prior=prior)
    fresh = [t.params for t in earlier if t.continues is None]
    assert not {tuple(sorted(p.items())) for p in fresh} & {
        tuple(sorted(t.params.items())) for t in again if t.continues is None}


# -- options ----------------------------------------------------------------------------------


def test_budget_flag_default_none_and_refusals() -> None:
    assert _plugin().budget_flag == "--epochs"
    assert _plugin(budget_flag="--steps").budget_flag == "--steps"
    assert _plugin(budget_flag=None).budget_flag is None
    with pytest.raises(PluginOptionsError, match="budget_flag"):
        _plugin(budget_flag="epochs now")
    with pytest.raises(PluginOptionsError, match="also a parameter"):
        _plugin(budget_flag="--x")


@pytest.mark.parametrize(("options", "message"), [
    ({"factor": 1}, "factor must be a whole number >= 2"),
    ({"max_epochs": 2.5}, "max_epochs must be a whole number"),
    ({"hyperband_iterations": 0}, "hyperband_iterations must be a whole number >= 1"),
    ({"min_epochs": 20, "max_epochs": 10}, "min_epochs must be a whole number from 1 to 10"),
    ({"max_epoch": 10}, "unknown option"),
    ({"max_epochs": 10**9, "factor": 2, "hyperband_iterations": 1000}, "runs .* trials"),
])
def test_bad_options_say_what_to_do(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginOptionsError, match=message):
        _plugin(**options)
