"""The built-in ``median`` and ``percentile`` stopping plugins, on hand-made curves."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from gpusched_plugins.percentile import MedianStopping, PercentileStopping

from gpusched.plugin_api import Goal, PluginOptionsError, TrialState, TrialView


def curve(number: int, values: Sequence[float], state: TrialState = TrialState.COMPLETED,
          steps: Sequence[int] | None = None) -> TrialView:
    steps = list(steps) if steps is not None else list(range(1, len(values) + 1))
    return TrialView(number, {}, state, objective=values[-1] if values else None,
                     metric_values=tuple(values), metric_steps=tuple(steps))


# Five completed trials; at step 3 their values are 0.3, 0.4, 0.5, 0.6, 0.7 (median 0.5).
DONE = [curve(i, [0.1 * i, 0.1 * i + 0.1, 0.1 * i + 0.3, 0.9]) for i in range(5)]


def decide(plugin: Any, values: Sequence[float], others: Sequence[TrialView] = DONE) -> str | None:
    trial = curve(99, values, TrialState.RUNNING)
    return str(plugin.should_stop(trial, [{"score": values[-1]}], others) or "") or None


def test_median_stops_a_trial_below_the_median_at_the_same_step() -> None:
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert decide(median, [0.2, 0.3, 0.45]) == (
        "median stopping: best score 0.45 by step 3 is below the median 0.5 of 5 completed trials")
    assert decide(median, [0.2, 0.3, 0.55]) is None  # above the median
    assert decide(median, [0.6, 0.3, 0.45]) is None  # its best so far counts


def test_minimize_mirrors_the_rule() -> None:
    median = MedianStopping(metric="loss", goal=Goal.MINIMIZE, options={})
    assert "above the median 0.5" in (decide(median, [0.9, 0.8, 0.55]) or "")
    assert decide(median, [0.9, 0.8, 0.45]) is None


def test_percentile_keeps_the_top_share() -> None:
    keep_top_quarter = PercentileStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    # The 75th percentile of 0.3..0.7 is 0.6: 0.55 is not in the top quarter.
    assert "75th percentile 0.6" in (decide(keep_top_quarter, [0.1, 0.2, 0.55]) or "")
    lenient = PercentileStopping(metric="score", goal=Goal.MAXIMIZE, options={"percentile": 90})
    assert decide(lenient, [0.1, 0.2, 0.35]) is None  # above the 10th percentile (0.34)


def test_grace_period_and_min_trials_hold_it_back() -> None:
    waits = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={"grace_period": 4})
    assert decide(waits, [0.0, 0.0, 0.0]) is None  # step 3 < 4
    assert decide(waits, [0.0, 0.0, 0.0, 0.0]) is not None
    few = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={"min_trials": 6})
    assert decide(few, [0.0, 0.0, 0.0]) is None  # only 5 completed trials
    # Running, stopped and failed trials, and those with no value that early, do not count.
    others = [*DONE[:4], curve(7, [0.9], TrialState.RUNNING), curve(8, [0.9], TrialState.STOPPED),
              curve(9, [0.9], steps=[5])]
    assert decide(MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={}),
                  [0.0, 0.0, 0.0], others) is None


def test_the_value_at_the_last_step_at_or_before_is_used() -> None:
    sparse = [curve(i, [0.1 * i], steps=[2]) for i in range(5)]  # reported at step 2 only
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert "median 0.2" in (decide(median, [0.0, 0.0, 0.1], sparse) or "")


@pytest.mark.parametrize(("options", "message"), [
    ({"percentile": 0}, "percentile must be between 0 and 100, exclusive"),
    ({"percentile": "high"}, "percentile must be a number from 0 to 100"),
    ({"grace_period": -1}, "grace_period must be a whole number >= 0"),
    ({"min_trials": 2.5}, "min_trials must be a whole number >= 1"),
    ({"patience": 3}, "unknown option(s) patience (known: grace_period, min_trials, percentile)"),
])
def test_bad_options_are_refused_with_what_to_write(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginOptionsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PercentileStopping(metric="score", goal=Goal.MAXIMIZE, options=options)


def test_median_takes_no_percentile() -> None:
    with pytest.raises(PluginOptionsError, match="unknown option"):
        MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={"percentile": 50})


def _diverged(plugin: Any, step: int, value: Any = float("nan"),
              others: Sequence[TrialView] = DONE) -> str | None:
    """Ask about a trial that has reported only ``value`` (NaN, an infinity) up to ``step``:
    the daemon's view keeps no value of it, the batch does."""
    report = {"training_iteration": step, "score": value}
    trial = TrialView(99, {}, TrialState.RUNNING, last_report=report)
    answer: str | None = plugin.should_stop(trial, [report], others)
    return answer


def test_a_diverged_trial_is_judged_as_the_worst_value() -> None:
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert _diverged(median, 3) == (
        "median stopping: no finite score by step 3 (only NaN or infinite values), worse than"
        " any: the median is 0.5 of 5 completed trials")
    assert _diverged(median, 3, float("inf")) is not None  # an infinity is no result either
    assert _diverged(median, 3, None) is not None  # as the log stores NaN
    low = PercentileStopping(metric="score", goal=Goal.MINIMIZE, options={"percentile": 75})
    assert "the 75th percentile" in (_diverged(low, 3, float("-inf")) or "")


def test_a_diverged_trial_waits_for_grace_period_and_min_trials() -> None:
    waits = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={"grace_period": 4})
    assert _diverged(waits, 3) is None
    assert _diverged(waits, 4) is not None
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert _diverged(median, 3, others=DONE[:4]) is None  # 4 completed trials < min_trials
    assert _diverged(median, 3, others=[curve(i, [0.5], steps=[5]) for i in range(5)]) is None


def test_only_a_trial_without_any_finite_value_is_judged_as_diverged() -> None:
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    # A finite best so far (above the median): a NaN report changes nothing.
    good = curve(99, [0.6], TrialState.RUNNING, steps=[1])
    assert median.should_stop(good, [{"training_iteration": 3, "score": float("nan")}],
                              DONE) is None
    # The metric never reported, or only as text: left alone.
    assert _diverged(median, 3, "0.9") is None
    silent = TrialView(99, {}, TrialState.RUNNING, last_report={"training_iteration": 3})
    assert median.should_stop(silent, [{"training_iteration": 3, "loss": 1.0}], DONE) is None


def test_trials_stopped_at_the_experiments_bound_count_as_full_curves() -> None:
    # With Ray Tune's usual `stop: {training_iteration: N}`, every trial ends `stopped` by the
    # bound: median stopping then never had a completed trial to compare with.
    at_bound = [replace(t, state=TrialState.STOPPED, at_bound=True) for t in DONE]
    early = [replace(t, state=TrialState.STOPPED) for t in DONE]
    median = MedianStopping(metric="score", goal=Goal.MAXIMIZE, options={})
    assert decide(median, [0.2, 0.3, 0.45], at_bound) == (
        "median stopping: best score 0.45 by step 3 is below the median 0.5 of 5 completed trials")
    assert decide(median, [0.2, 0.3, 0.45], early) is None  # stopped early: cut-short curves
    assert at_bound[0].ran_its_course and not early[0].ran_its_course
