"""The built-in ``bounds`` stopping plugin (the experiment file's ``stop:`` mapping)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from gpusched_plugins.bounds import BoundsStopping

from gpusched.plugin_api import Goal, PluginOptionsError, TrialState, TrialView

TRIAL = TrialView(0, {}, TrialState.RUNNING)


def stop(
    options: Mapping[str, Any], reports: Sequence[Mapping[str, Any]],
    *, metric: str = "val_accuracy", goal: Goal = Goal.MAXIMIZE,
) -> str | None:
    return BoundsStopping(metric=metric, goal=goal, options=options).should_stop(
        TRIAL, reports, ()
    )


def test_maximized_metric_stops_at_or_above_its_bound() -> None:
    bounds = {"val_accuracy": 0.99}
    assert stop(bounds, [{"val_accuracy": 0.991}]) == (
        "stop bound reached: val_accuracy=0.991 >= 0.99"
    )
    assert stop(bounds, [{"val_accuracy": 0.99}]) is not None
    assert stop(bounds, [{"val_accuracy": 0.98}]) is None


def test_minimized_metric_stops_at_or_below_its_bound() -> None:
    bounds = {"loss": 0.1}
    assert stop(bounds, [{"loss": 0.05}], metric="loss", goal=Goal.MINIMIZE) == (
        "stop bound reached: loss=0.05 <= 0.1"
    )
    assert stop(bounds, [{"loss": 0.2}], metric="loss", goal=Goal.MINIMIZE) is None


def test_other_keys_mean_at_least_whatever_the_goal() -> None:
    for goal in Goal:
        bounds = {"training_iteration": 100}
        assert stop(bounds, [{"training_iteration": 100}], metric="loss", goal=goal) == (
            "stop bound reached: training_iteration=100 >= 100"
        )
        assert stop(bounds, [{"training_iteration": 99}], metric="loss", goal=goal) is None


def test_the_first_bound_reached_is_reported() -> None:
    bounds = {"training_iteration": 3, "val_accuracy": 0.9}
    reports = [{"training_iteration": 1, "val_accuracy": 0.5},
               {"training_iteration": 2, "val_accuracy": 0.95},
               {"training_iteration": 3, "val_accuracy": 0.97}]
    assert stop(bounds, reports) == "stop bound reached: val_accuracy=0.95 >= 0.9"


@pytest.mark.parametrize("report", [
    {}, {"loss": 5.0}, {"val_accuracy": None}, {"val_accuracy": "0.999"},
    {"val_accuracy": True}, {"val_accuracy": float("nan")},
])
def test_missing_or_non_numeric_values_are_ignored(report: dict[str, Any]) -> None:
    assert stop({"val_accuracy": 0.99}, [report]) is None


def test_no_bounds_never_stop() -> None:
    assert stop({}, [{"val_accuracy": 1.0, "training_iteration": 10**9}]) is None


@pytest.mark.parametrize("bad", ["0.99", True, None, float("nan"), [1]])
def test_non_numeric_bounds_are_refused(bad: object) -> None:
    with pytest.raises(PluginOptionsError, match="val_accuracy"):
        BoundsStopping(metric="val_accuracy", goal=Goal.MAXIMIZE, options={"val_accuracy": bad})
