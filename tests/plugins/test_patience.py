"""The built-in ``patience`` stopping plugin: the contract, and flat, improving, noisy curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from gpusched_plugins.patience import PatienceStopping

from gpusched.plugin_api import Goal, PluginOptionsError, StoppingPlugin, TrialState, TrialView
from gpusched.testing import StoppingPluginContract

NAN = float("nan")


class TestPatienceContract(StoppingPluginContract):
    @pytest.fixture
    def stopping_plugin_class(self) -> type[StoppingPlugin]:
        return PatienceStopping


class TestPatienceContractImpatient(TestPatienceContract):
    """``patience: 1`` stops the contract's curves."""

    @pytest.fixture
    def stopping_plugin_options(self) -> Mapping[str, Any]:
        return {"patience": 1, "min_delta": 0.1}


def patience(goal: Goal = Goal.MAXIMIZE, **options: Any) -> PatienceStopping:
    return PatienceStopping(metric="score", goal=goal, options=options)


def decide(plugin: PatienceStopping, values: Sequence[float],
           steps: Sequence[int] | None = None) -> str | None:
    steps = list(steps) if steps is not None else list(range(1, len(values) + 1))
    trial = TrialView(7, {}, TrialState.RUNNING, metric_values=tuple(values),
                      metric_steps=tuple(steps))
    return plugin.should_stop(trial, [{"score": values[-1]}] if values else [], ())


def first_stop(plugin: PatienceStopping, values: Sequence[float]) -> int | None:
    """The number of reports after which the plugin first says stop (None: never)."""
    return next((n for n in range(1, len(values) + 1) if decide(plugin, values[:n])), None)


def test_a_flat_curve_stops_after_patience_reports() -> None:
    plugin = patience()
    assert (plugin.patience, plugin.min_delta, plugin.grace_period) == (5, 0.0, 0)
    assert decide(plugin, [0.5] * 5) is None
    assert decide(plugin, [0.5] * 6) == (
        "patience: best score 0.5 at step 1, no improvement > 0 in the 5 reports since")
    assert first_stop(patience(patience=2), [0.5] * 10) == 3


def test_an_improving_curve_runs_on() -> None:
    assert first_stop(patience(patience=1), [0.01 * i for i in range(50)]) is None
    assert first_stop(patience(Goal.MINIMIZE, patience=1), [1 - 0.01 * i for i in range(50)]) \
        is None


def test_a_noisy_curve_stops_patience_reports_after_its_best() -> None:
    noisy = [0.1, 0.3, 0.25, 0.28, 0.35, 0.3, 0.33, 0.34, 0.32, 0.31, 0.36]
    plugin = patience()
    assert first_stop(plugin, noisy) == 10  # best 0.35 at step 5, then 5 reports below it
    assert decide(plugin, noisy[:10]) == (
        "patience: best score 0.35 at step 5, no improvement > 0 in the 5 reports since")
    assert first_stop(patience(patience=6), noisy) is None  # 0.36 at step 11 comes in time


def test_min_delta_ignores_small_gains() -> None:
    creeping = [0.5 + 0.001 * i for i in range(12)]
    assert first_stop(patience(), creeping) is None
    strict = patience(min_delta=0.01)
    assert first_stop(strict, creeping) == 6
    assert decide(strict, creeping[:6]) == (
        "patience: best score 0.5 at step 1, no improvement > 0.01 in the 5 reports since")
    # A gain larger than min_delta resets the count.
    assert first_stop(strict, [0.5, 0.5, 0.5, 0.52, 0.52, 0.52, 0.52, 0.52, 0.52]) == 9


def test_minimize_looks_for_lower_values() -> None:
    plugin = patience(Goal.MINIMIZE, patience=3)
    loss = [1.0, 0.8, 0.6, 0.7, 0.9, 0.65, 0.61]
    assert first_stop(plugin, loss) == 6
    assert decide(plugin, loss[:6]) == (
        "patience: best score 0.6 at step 3, no improvement > 0 in the 3 reports since")
    # Rising values are no improvement when minimizing.
    assert first_stop(plugin, [0.1, 0.2, 0.3, 0.4]) == 4


def test_steps_are_training_iterations_and_grace_period_holds_it_back() -> None:
    plugin = patience(patience=2)
    assert decide(plugin, [0.5, 0.5, 0.5], steps=[10, 20, 30]) == (
        "patience: best score 0.5 at step 10, no improvement > 0 in the 2 reports since")
    waits = patience(patience=2, grace_period=40)
    assert decide(waits, [0.5, 0.5, 0.5], steps=[10, 20, 30]) is None
    # The reports before grace_period still count once it is over.
    assert "in the 3 reports since" in (decide(waits, [0.5] * 4, steps=[10, 20, 30, 40]) or "")


def test_nan_is_not_a_report() -> None:
    plugin = patience(patience=3)
    assert decide(plugin, [0.5, NAN, NAN, 0.5, 0.5]) is None  # 2 finite reports since the best
    assert decide(plugin, [0.5, NAN, 0.5, 0.5, 0.5]) is not None
    assert decide(plugin, [NAN, 0.5]) is None
    assert decide(plugin, []) is None


def test_a_trial_with_only_nan_stops_after_patience_reports() -> None:
    # The view keeps no value of it (the daemon drops NaN): only the batch shows them.
    plugin = patience(patience=3)

    def ask(step: int, value: Any = NAN, **options: Any) -> str | None:
        report = {"training_iteration": step, "score": value}
        trial = TrialView(7, {}, TrialState.RUNNING, last_report=report)
        return (patience(**options) if options else plugin).should_stop(trial, [report], [])

    assert ask(3) is None
    assert ask(4) == "patience: no finite score by step 4, only NaN or infinite values"
    assert ask(4, float("inf")) is not None and ask(4, None) is not None
    assert ask(4, patience=3, grace_period=6) is None
    assert ask(6, patience=3, grace_period=6) is not None
    # Never reported the metric, or as text: nothing to judge.
    assert ask(9, "0.5") is None
    silent = TrialView(7, {}, TrialState.RUNNING, last_report={"training_iteration": 9})
    assert plugin.should_stop(silent, [{"training_iteration": 9, "loss": 1.0}], []) is None


def test_other_trials_do_not_matter() -> None:
    trial = TrialView(7, {}, TrialState.RUNNING, metric_values=(0.5,) * 6,
                      metric_steps=tuple(range(1, 7)))
    other = TrialView(8, {}, TrialState.COMPLETED, 0.9, (0.9,), (1,))
    plugin = patience()
    assert plugin.should_stop(trial, [], [other]) == plugin.should_stop(trial, [], ())


@pytest.mark.parametrize(("options", "message"), [
    ({"wait": 3}, "unknown option(s) wait (known: grace_period, min_delta, patience)"),
    ({"patience": 0}, "patience must be a whole number >= 1 (got 0)"),
    ({"patience": 2.5}, "patience must be a whole number >= 1 (got 2.5)"),
    ({"min_delta": -0.1}, "min_delta must be a number >= 0 (got -0.1)"),
    ({"min_delta": "0.1"}, "min_delta must be a number >= 0 (got '0.1')"),
    ({"min_delta": float("inf")}, "min_delta must be a number >= 0 (got inf)"),
    ({"grace_period": -1}, "grace_period must be a whole number >= 0 (got -1)"),
    ({"grace_period": False}, "grace_period must be a whole number >= 0 (got False)"),
])
def test_bad_options_are_refused_with_what_to_write(options: dict[str, Any], message: str) -> None:
    with pytest.raises(PluginOptionsError) as error:
        PatienceStopping(metric="score", goal=Goal.MAXIMIZE, options=options)
    assert str(error.value) == message
