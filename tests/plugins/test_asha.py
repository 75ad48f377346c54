"""The built-in ``asha`` stopping plugin: the contract, and hand-made curves at known rungs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from gpusched_plugins.asha import AshaStopping

from gpusched.plugin_api import Goal, PluginOptionsError, StoppingPlugin, TrialState, TrialView
from gpusched.testing import StoppingPluginContract

NAN = float("nan")


class TestAshaContract(StoppingPluginContract):
    @pytest.fixture
    def stopping_plugin_class(self) -> type[StoppingPlugin]:
        return AshaStopping


class TestAshaContractWithRungsInReach(TestAshaContract):
    """Rungs 1, 2, 4, 8 and max_t 8: the contract's curves do get stopped."""

    @pytest.fixture
    def stopping_plugin_options(self) -> Mapping[str, Any]:
        return {"reduction_factor": 2, "max_t": 8, "brackets": 2}


def curve(number: int, values: Sequence[float], steps: Sequence[int] | None = None,
          state: TrialState = TrialState.RUNNING) -> TrialView:
    steps = list(steps) if steps is not None else list(range(1, len(values) + 1))
    return TrialView(number, {}, state, metric_values=tuple(values), metric_steps=tuple(steps))


def asha(goal: Goal = Goal.MAXIMIZE, **options: Any) -> AshaStopping:
    return AshaStopping(metric="score", goal=goal, options={"reduction_factor": 3, **options})


def decide(plugin: AshaStopping, values: Sequence[float], others: Sequence[TrialView], *,
           steps: Sequence[int] | None = None, batch: int = 1, number: int = 99) -> str | None:
    """Ask about a trial whose last ``batch`` reports carrying the metric are the new ones."""
    trial = curve(number, values, steps)
    new = [{"training_iteration": s, "score": v}
           for s, v in zip(trial.metric_steps[-batch:], values[-batch:], strict=True)]
    return plugin.should_stop(trial, new, others)


def flat(number: int, value: float, until: int = 9,
         state: TrialState = TrialState.COMPLETED) -> TrialView:
    return curve(number, [value] * until, state=state)


# Six trials that reached rung 9 (states mixed: all count), with these values there.
AT_NINE = [flat(i, v, state=s) for i, (v, s) in enumerate([
    (0.3, TrialState.COMPLETED), (0.35, TrialState.STOPPED), (0.5, TrialState.RUNNING),
    (0.55, TrialState.COMPLETED), (0.6, TrialState.FAILED), (0.2, TrialState.COMPLETED)])]


def test_default_rungs_follow_ray_and_optuna() -> None:
    plugin = AshaStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert (plugin.grace_period, plugin.reduction_factor, plugin.max_t) == (1, 4, 100)
    assert plugin.rungs == ((1, 4, 16, 64),)
    assert asha().rungs == ((1, 3, 9, 27, 81),)
    assert asha(grace_period=2, max_t=54).rungs == ((2, 6, 18, 54),)
    assert asha(brackets=3).rungs == ((1, 3, 9, 27, 81), (3, 9, 27, 81), (9, 27, 81))


def test_a_trial_outside_the_top_third_at_a_rung_is_stopped() -> None:
    plugin = asha()
    assert decide(plugin, [0.9] * 8 + [0.41], AT_NINE) == (
        "asha: score 0.41 at rung 9 is not in the top 1/3 of 7 trials there (cutoff 0.55)")
    # 7 values: the best 7 // 3 = 2 continue; a tie with the cutoff continues.
    assert decide(plugin, [0.9] * 8 + [0.56], AT_NINE) is None
    assert decide(plugin, [0.9] * 8 + [0.55], AT_NINE) is None
    assert decide(plugin, [0.0] * 8 + [0.7], AT_NINE) is None  # only the value at 9 counts


def test_decisions_happen_only_when_a_rung_is_reached() -> None:
    plugin = asha()
    # Good at rungs 1 and 3, dreadful afterwards: only the report at step 9 stops it.
    values = [0.9, 0.9, 0.9, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    answers = [decide(plugin, values[:n], AT_NINE) for n in range(1, len(values) + 1)]
    assert [n for n, answer in enumerate(answers, start=1) if answer] == [9]
    assert "0 at rung 9" in (answers[8] or "")
    # Bad at rung 1 already: stopped there, at the first report.
    assert "at rung 1 is not in the top 1/3 of 7" in (decide(plugin, [0.1], AT_NINE) or "")
    assert decide(plugin, [0.1, 0.1], AT_NINE) is None  # step 2 is no rung


def test_the_value_at_the_rung_counts_not_the_best_so_far() -> None:
    others = [flat(i, 0.5, until=3) for i in range(5)]
    reason = decide(asha(), [0.9, 0.9, 0.1], others)
    assert reason == ("asha: score 0.1 at rung 3 is not in the top 1/3 of 6 trials there "
                      "(cutoff 0.5)")


def test_too_few_trials_at_a_rung_let_it_continue() -> None:
    plugin = asha()
    lone = decide(plugin, [0.9, 0.9, 0.0], [])
    assert lone is None  # first at the rung
    ahead = [flat(0, 0.8, until=3)]
    assert decide(plugin, [0.9, 0.9, 0.0], ahead) is None  # 2 values < eta: no waiting
    two_ahead = [flat(0, 0.8, until=3), flat(1, 0.7, until=3)]
    assert "top 1/3 of 3 trials there (cutoff 0.8)" in (
        decide(plugin, [0.9, 0.9, 0.75], two_ahead) or "")
    assert decide(plugin, [0.9, 0.9, 0.85], two_ahead) is None  # the best of 3 goes on


def test_only_trials_that_reached_the_rung_compete() -> None:
    plugin = asha()
    behind = [curve(i, [0.9, 0.9], state=TrialState.RUNNING) for i in range(5)]  # at step 2
    assert decide(plugin, [0.1, 0.1, 0.1], behind) is None
    # A trial that reported at 1 and 5 reached rung 3: its value at step 5 counts there.
    skipped = [curve(i, [0.0, 0.9], steps=[1, 5]) for i in range(2)]
    assert "(cutoff 0.9)" in (decide(plugin, [0.5, 0.5, 0.5], skipped) or "")
    # NaN is not a value: the first finite report at or past the rung counts.
    with_nan = [curve(i, [0.0, NAN, 0.9], steps=[1, 3, 4]) for i in range(2)]
    assert "(cutoff 0.9)" in (decide(plugin, [0.5, 0.5, 0.5], with_nan) or "")
    # The trial itself in `others` is not counted twice.
    me = curve(99, [0.5, 0.5, 0.5])
    assert decide(plugin, [0.5, 0.5, 0.5], [me, flat(1, 0.9, until=3)]) is None


def test_a_report_that_passes_rungs_is_ranked_at_the_highest() -> None:
    plugin = asha()
    # Rung 3: everyone else at 0.9; rung 9: everyone else at 0.1. The jump from step 1 to 10
    # is ranked at rung 9 only (as Ray Tune does), and wins there.
    others = [curve(i, [0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]) for i in range(6)]
    assert decide(plugin, [0.9, 0.5], others, steps=[1, 10]) is None
    loses = [curve(i, [0.9] * 9) for i in range(6)]
    assert decide(plugin, [0.9, 0.5], loses, steps=[1, 10]) == (
        "asha: score 0.5 at step 10 (rung 9) is not in the top 1/3 of 7 trials there "
        "(cutoff 0.9)")


def test_each_report_of_a_batch_is_judged_in_order() -> None:
    plugin = asha()
    others = [flat(i, 0.5) for i in range(6)]
    # Steps 2, 3, 4 in one batch: judged at rung 3 with the value at step 3.
    assert "0.1 at rung 3" in (decide(plugin, [0.9, 0.9, 0.1, 0.9], others, batch=3) or "")
    assert decide(plugin, [0.9, 0.1, 0.9, 0.1], others, batch=3) is None
    # A batch without the metric, or with NaN only, decides nothing new.
    trial = curve(99, [0.9, 0.9, 0.1])
    assert plugin.should_stop(trial, [{"training_iteration": 4, "loss": 1.0}], others) is None
    assert plugin.should_stop(trial, [{"score": NAN}], others) is None


def test_minimize_keeps_the_lowest() -> None:
    plugin = asha(Goal.MINIMIZE)
    others = [flat(i, v, until=3) for i, v in enumerate([0.3, 0.4, 0.5, 0.6, 0.7])]
    assert decide(plugin, [0.0, 0.0, 0.45], others) == (
        "asha: score 0.45 at rung 3 is not in the top 1/3 of 6 trials there (cutoff 0.4)")
    assert decide(plugin, [1.0, 1.0, 0.35], others) is None


def test_trials_stop_at_max_t() -> None:
    plugin = asha(max_t=10)
    assert decide(plugin, [0.5] * 9, []) is None
    assert decide(plugin, [0.5] * 10, []) == "asha: reached max_t 10"
    assert decide(plugin, [0.5, 0.5], [], steps=[1, 12]) == "asha: reached max_t 10"
    # Asked again about a batch without the metric, it still says so.
    trial = curve(99, [0.5] * 10)
    assert plugin.should_stop(trial, [{"loss": 1.0}], []) == "asha: reached max_t 10"
    # max_t comes before the rung it may sit on (rung 9 with max_t 9).
    at_nine = asha(max_t=9)
    assert decide(at_nine, [0.9] * 8 + [0.0], AT_NINE) == "asha: reached max_t 9"
    assert AshaStopping(metric="score", goal=Goal.MAXIMIZE, options={}).should_stop(
        curve(1, [0.5] * 100), [{"score": 0.5}], []) == "asha: reached max_t 100"


def test_a_trial_stops_at_max_t_whatever_its_metric() -> None:
    # "Every trial stops once it reports training_iteration >= max_t", as in Ray Tune: also
    # one whose reports lack the metric, or carry only NaN (which the view leaves out).
    plugin = asha(max_t=10)
    silent = TrialView(7, {}, TrialState.RUNNING, last_report={"training_iteration": 12})
    assert plugin.should_stop(silent, [{"training_iteration": 12, "loss": 1.0}], []) == (
        "asha: reached max_t 10")
    nan = TrialView(7, {}, TrialState.RUNNING, last_report={"training_iteration": 10,
                                                            "score": NAN})
    assert plugin.should_stop(nan, [{"training_iteration": 10, "score": NAN}], []) == (
        "asha: reached max_t 10")
    # Restored from the log (NaN stored as null), asked about a batch without the metric.
    restored = TrialView(7, {}, TrialState.RUNNING, last_report={"training_iteration": 11,
                                                                 "score": None})
    assert plugin.should_stop(restored, [], []) == "asha: reached max_t 10"
    early = TrialView(7, {}, TrialState.RUNNING, last_report={"training_iteration": 9})
    assert plugin.should_stop(early, [{"training_iteration": 9}], []) is None  # not yet


def _diverged(plugin: AshaStopping, step: int, others: Sequence[TrialView],
              value: Any = NAN, number: int = 99) -> str | None:
    """Ask about a trial that has reported only ``value`` (NaN, an infinity) up to ``step``."""
    report = {"training_iteration": step, "score": value}
    trial = TrialView(number, {}, TrialState.RUNNING, last_report=report)
    return plugin.should_stop(trial, [report], others)


def test_a_diverged_trial_ranks_last_where_a_value_would_be_ranked() -> None:
    plugin = asha()
    # Only NaN so far: at rung 9, against six trials there, it is the worst of seven.
    assert _diverged(plugin, 9, AT_NINE) == (
        "asha: no finite score by rung 9, only NaN or infinite values: ranked last of the 7"
        " trials there, where the top 1/3 go on (cutoff 0.55)")
    # Between rungs it is judged at the highest rung it reached; infinities alike.
    assert "by step 10 (rung 9)" in (_diverged(plugin, 10, AT_NINE, float("inf")) or "")
    assert "ranked last of the 7" in (_diverged(plugin, 9, AT_NINE, float("-inf")) or "")
    # Too few values at its rung to rank it: it goes on, as a finite value would.
    assert _diverged(plugin, 9, AT_NINE[:1]) is None
    assert "ranked last of the 3" in (_diverged(plugin, 9, AT_NINE[:2]) or "")
    # Before its first rung nothing is decided (grace period).
    assert _diverged(asha(grace_period=3), 2, AT_NINE) is None
    # Minimize: the worst is +inf.
    assert "ranked last of the 7" in (_diverged(asha(Goal.MINIMIZE), 9, AT_NINE) or "")


def test_only_a_trial_without_any_finite_value_is_ranked_as_diverged() -> None:
    plugin = asha()
    # One finite value: NaN reports are ignored, as before (its value at the rung counts).
    trial = curve(99, [0.9], steps=[1])
    assert plugin.should_stop(trial, [{"training_iteration": 9, "score": NAN}], AT_NINE) is None
    # Never reported the metric, or only as text: left alone until max_t.
    assert _diverged(plugin, 9, AT_NINE, value="0.5") is None
    silent = TrialView(99, {}, TrialState.RUNNING, last_report={"training_iteration": 9})
    assert plugin.should_stop(silent, [{"training_iteration": 9, "loss": 1.0}], AT_NINE) is None
    # The log's null for a NaN is taken as one.
    assert "ranked last" in (_diverged(plugin, 9, AT_NINE, value=None) or "")


def test_brackets_split_the_trials_by_number() -> None:
    plugin = asha(brackets=2)
    even = [flat(i, 0.9, until=3) for i in (0, 2, 4, 6)]
    odd = [flat(i, 0.1, until=3) for i in (1, 3, 5, 7)]
    # Trial 98 (bracket 0, rungs 1, 3, ...) meets only the even trials.
    assert "at rung 3 of bracket 0 is not in the top 1/3 of 5" in (
        decide(plugin, [0.5] * 3, even + odd, number=98) or "")
    # Trial 99 (bracket 1, rungs 3, 9, ...) meets only the odd ones, and has no rung at 1.
    assert decide(plugin, [0.5] * 3, even + odd, number=99) is None
    assert decide(plugin, [0.0], [flat(i, 0.9) for i in (1, 3, 5, 7)], number=99) is None
    assert "at rung 3 of bracket 1" in (
        decide(plugin, [0.0] * 3, even + odd, number=99) or "")
    # Trials resumed from another experiment (numbers -N ... -1) have a bracket too.
    assert plugin.bracket_of(curve(-1, [])) == 1


def test_the_answer_depends_only_on_the_views() -> None:
    trial = curve(99, [0.9] * 8 + [0.41])
    batch = [{"training_iteration": 9, "score": 0.41}]
    answers = {asha().should_stop(trial, batch, AT_NINE) for _ in range(3)}
    assert len(answers) == 1 and None not in answers


@pytest.mark.parametrize(("options", "message"), [
    ({"eta": 3}, "unknown option(s) eta (known: brackets, grace_period, max_t, reduction_factor)"),
    ({"grace_period": 0}, "grace_period must be a whole number >= 1 (got 0)"),
    ({"reduction_factor": 1}, "reduction_factor must be a whole number >= 2 (got 1)"),
    ({"reduction_factor": 2.5}, "reduction_factor must be a whole number >= 2 (got 2.5)"),
    ({"max_t": "100"}, "max_t must be a whole number >= 1 (got '100')"),
    ({"brackets": True}, "brackets must be a whole number >= 1 (got True)"),
    ({"grace_period": 10, "max_t": 5}, "max_t (5) must be at least grace_period (10)"),
    ({"brackets": 6, "max_t": 100, "reduction_factor": 3},
     "brackets must be at most 5: bracket 5 would start at rung 1 * 3^5, past max_t 100"),
])
def test_bad_options_are_refused_with_what_to_write(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginOptionsError) as error:
        AshaStopping(metric="score", goal=Goal.MAXIMIZE, options=options)
    assert str(error.value) == message


def test_whole_floats_are_accepted() -> None:
    plugin = AshaStopping(metric="score", goal=Goal.MAXIMIZE,
                          options={"grace_period": 2.0, "max_t": 32.0, "reduction_factor": 2})
    assert plugin.rungs == ((2, 4, 8, 16, 32),)
