"""The plugin contract, run over every plugin installed in this environment's entry points."""

from __future__ import annotations

import pytest

from gpusched.plugin_api import SearchPlugin, StoppingPlugin
from gpusched.plugins import find_plugins, load_search_plugin, load_stopping_plugin
from gpusched.testing import SearchPluginContract, StoppingPluginContract


def test_the_built_ins_are_found() -> None:
    # Guards the parametrization below against silently checking nothing.
    assert {"random", "grid"} <= set(find_plugins("search"))
    assert {"bounds"} <= set(find_plugins("stopping"))


class TestEverySearchPlugin(SearchPluginContract):
    @pytest.fixture(params=sorted(find_plugins("search")))
    def search_plugin_class(self, request: pytest.FixtureRequest) -> type[SearchPlugin]:
        return load_search_plugin(request.param)


class TestEveryStoppingPlugin(StoppingPluginContract):
    @pytest.fixture(params=sorted(find_plugins("stopping")))
    def stopping_plugin_class(self, request: pytest.FixtureRequest) -> type[StoppingPlugin]:
        return load_stopping_plugin(request.param)


class TestBoundsWithBounds(StoppingPluginContract):
    """``bounds`` with no options never stops; check it again with bounds that the contract's
    reports do reach, for both goals."""

    plugin_name = "bounds"

    @pytest.fixture
    def stopping_plugin_options(self) -> dict[str, float]:
        return {"score": 0.6, "training_iteration": 8}


class TestGridShuffled(SearchPluginContract):
    plugin_name = "grid"

    @pytest.fixture
    def search_plugin_options(self) -> dict[str, object]:
        return {"shuffle": True, "points_per_double": 3}


class TestHyperbandPromoting(SearchPluginContract):
    """With ``max_epochs: 9`` the contract's trials fill a first rung and get promoted (and,
    with the running ones left, the last bracket waits): the checks see continuations too."""

    plugin_name = "hyperband"
    steps = 30

    @pytest.fixture
    def search_plugin_options(self) -> dict[str, object]:
        return {"max_epochs": 9, "factor": 3}
