"""The gpusched plugin contract, run over this package's plugins as installed: looked up by
their entry-point names, exactly as the daemon finds them."""

from __future__ import annotations

from typing import Any

import pytest

from gpusched.plugin_api import Goal, TrialState, TrialView
from gpusched.plugins import load_stopping_plugin
from gpusched.testing import SearchPluginContract, StoppingPluginContract


class TestHalton(SearchPluginContract):
    plugin_name = "halton"


class TestHaltonSkipping(SearchPluginContract):
    plugin_name = "halton"

    @pytest.fixture
    def search_plugin_options(self) -> dict[str, Any]:
        return {"skip": 100}


class TestFloor(StoppingPluginContract):
    plugin_name = "floor"


class TestFloorWithAFloor(StoppingPluginContract):
    """With a floor the contract's curves do cross, so both answers occur."""

    plugin_name = "floor"

    @pytest.fixture
    def stopping_plugin_options(self) -> dict[str, Any]:
        return {"floor": 0.6, "grace_period": 2}


def test_floor_stops_only_a_trial_that_stays_below_it() -> None:
    floor = load_stopping_plugin("floor")(metric="acc", goal=Goal.MAXIMIZE,
                                          options={"floor": 0.5, "grace_period": 3})

    def view(*values: float) -> TrialView:
        return TrialView(0, {}, TrialState.RUNNING, None, values, tuple(range(1, len(values) + 1)))

    assert floor.should_stop(view(0.1, 0.2), [], []) is None  # still in its grace period
    assert floor.should_stop(view(0.1, 0.2, 0.6), [], []) is None
    assert floor.should_stop(view(0.1, 0.2, 0.3), [], []) == (
        "floor: best acc 0.3 after 3 reports is still below the floor 0.5")
