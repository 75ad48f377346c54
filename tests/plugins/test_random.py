"""The built-in ``random`` search."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gpusched_plugins.random_search import RandomSearch

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    PluginOptionsError,
    Scale,
    SearchSpace,
    TrialState,
    TrialView,
)

SPACE = SearchSpace((
    Param("lr", ParamType.DOUBLE, low=1e-4, high=1e-1, scale=Scale.LOG),
    Param("n", ParamType.INTEGER, low=1, high=8),
    Param("opt", ParamType.CATEGORICAL, values=("sgd", "adam")),
))


def make(seed: int = 0, space: SearchSpace = SPACE, **options: object) -> RandomSearch:
    return RandomSearch(space, goal=Goal.MAXIMIZE, seed=seed, options=options)


def test_suggestion_is_the_documented_function_of_seed_and_number() -> None:
    for seed, number in [(0, 0), (0, 7), (123, 3)]:
        point = np.random.default_rng([seed, number]).random(len(SPACE)).tolist()
        assert make(seed).suggest(number, ()) == SPACE.from_unit(point)


def test_known_values_stay_the_same() -> None:
    # A pinned draw: if numpy ever changed its default generator's stream, resumed
    # experiments would silently diverge, and this test says so.
    assert make(0).suggest(0, ()) == {"lr": pytest.approx(0.008144886973076106), "n": 3,
                                      "opt": "sgd"}
    assert make(0).suggest(1, ()) == {"lr": pytest.approx(0.04668919368886341), "n": 5,
                                      "opt": "adam"}


def test_history_is_ignored() -> None:
    history = [TrialView(i, {"lr": 0.01, "n": 1, "opt": "sgd"}, TrialState.FAILED)
               for i in range(5)]
    assert make().suggest(5, history) == make().suggest(5, ())


def test_seeds_and_numbers_give_different_points() -> None:
    points = {tuple(make(seed).suggest(n, ()).values()) for seed in range(3) for n in range(20)}
    assert len(points) == 60


def test_never_runs_out() -> None:
    tiny = SearchSpace((Param("c", ParamType.CATEGORICAL, values=("only",)),))
    plugin = make(space=tiny)
    assert all(plugin.suggest(n, ()) == {"c": "only"} for n in range(50))


def test_scales_are_honoured() -> None:
    plugin = make(7)
    draws = [plugin.suggest(n, ()) for n in range(2000)]
    # On a log scale half the draws fall below the geometric middle of the range.
    below = sum(float(d["lr"]) < math.sqrt(1e-4 * 1e-1) for d in draws) / len(draws)
    assert 0.45 < below < 0.55
    assert {d["n"] for d in draws} == set(range(1, 9))
    assert {d["opt"] for d in draws} == {"sgd", "adam"}


def test_options_are_refused_by_name() -> None:
    with pytest.raises(PluginOptionsError, match=r"takes no options.*points_per_double"):
        make(points_per_double=3)


def test_a_negative_seed_is_refused() -> None:
    with pytest.raises(PluginOptionsError, match="seed"):
        make(-1)
