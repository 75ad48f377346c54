"""The built-in ``grid`` search."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from gpusched_plugins.grid_search import GridSearch

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    ParamValue,
    PluginOptionsError,
    Scale,
    SearchSpace,
    TrialState,
    TrialView,
)

LETTER = Param("letter", ParamType.CATEGORICAL, values=("x", "y"))
N = Param("n", ParamType.INTEGER, low=1, high=3)
SMALL = SearchSpace((LETTER, N))
ORDER = [("x", 1), ("x", 2), ("x", 3), ("y", 1), ("y", 2), ("y", 3)]


def make(*params: Param, seed: int = 0, **options: Any) -> GridSearch:
    space = SearchSpace(params) if params else SMALL
    return GridSearch(space, goal=Goal.MAXIMIZE, seed=seed, options=options)


def trial(number: int, state: TrialState = TrialState.COMPLETED, **params: ParamValue) -> TrialView:
    return TrialView(number, params, state)


def run(plugin: GridSearch, history: Sequence[TrialView] = ()) -> list[Mapping[str, ParamValue]]:
    """Every point the plugin proposes until it runs out, as the daemon would ask."""
    trials = list(history)
    out = []
    while (point := plugin.suggest(len(trials), trials)) is not None:
        out.append(point)
        trials.append(TrialView(len(trials), point, TrialState.RUNNING))
    return out


def axis(param: Param, **options: Any) -> list[ParamValue]:
    return [point[param.name] for point in run(make(param, **options))]


def test_file_order_with_the_first_parameter_slowest() -> None:
    assert [(p["letter"], p["n"]) for p in run(make())] == ORDER


def test_exhausted_grid_answers_none_and_size_counts_points() -> None:
    plugin = make()
    assert plugin.size() == 6
    history = [trial(i, letter=a, n=b) for i, (a, b) in enumerate(ORDER)]
    assert plugin.suggest(6, history) is None


@pytest.mark.parametrize("state", list(TrialState))
def test_a_used_point_is_never_proposed_again_whatever_its_state(state: TrialState) -> None:
    assert make().suggest(1, [trial(0, state, letter="x", n=1)]) == {"letter": "x", "n": 2}


def test_the_first_unused_point_fills_a_gap() -> None:
    history = [trial(0, letter="x", n=1), trial(1, letter="x", n=3)]
    assert make().suggest(2, history) == {"letter": "x", "n": 2}


def test_foreign_trials_are_ignored() -> None:
    history = [trial(0, letter="z", n=1), trial(1, letter="x"), trial(2, letter="x", n=2.5)]
    assert make().suggest(3, history) == {"letter": "x", "n": 1}


def test_floats_that_made_a_round_trip_still_match() -> None:
    lr = Param("lr", ParamType.DOUBLE, low=1e-3, high=1.0, scale=Scale.LOG)
    first, second, _ = axis(lr, points_per_double=3)
    nudged = float(first) * (1 + 1e-12)  # as if through a lossy store
    assert make(lr, points_per_double=3).suggest(1, [trial(0, lr=nudged)]) == {"lr": second}


def test_double_without_step_gets_points_per_double_values_on_its_scale() -> None:
    lin = Param("d", ParamType.DOUBLE, low=0.0, high=1.0)
    assert axis(lin) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])  # default 5 points
    log = Param("lr", ParamType.DOUBLE, low=1e-3, high=1.0, scale=Scale.LOG)
    assert axis(log, points_per_double=4) == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    rlog = Param("m", ParamType.DOUBLE, low=0.9, high=0.999, scale=Scale.REVERSE_LOG)
    # The mirror of log: the middle is low + high - sqrt(low * high), above the arithmetic mean.
    middle = 0.9 + 0.999 - math.sqrt(0.9 * 0.999)
    assert middle > (0.9 + 0.999) / 2
    assert axis(rlog, points_per_double=3) == pytest.approx([0.9, middle, 0.999])


def test_steps_ignore_points_per_double() -> None:
    step = Param("d", ParamType.DOUBLE, low=0.0, high=1.0, step=0.25)
    assert axis(step, points_per_double=2) == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])
    ints = axis(Param("i", ParamType.INTEGER, low=0, high=10, step=5))
    assert ints == [0, 5, 10] and all(type(v) is int for v in ints)
    assert axis(Param("k", ParamType.DISCRETE, values=(4, 1, 2))) == [4, 1, 2]


def test_too_large_a_grid_is_refused_quickly() -> None:
    huge = Param("i", ParamType.INTEGER, low=1, high=10**12)
    started = time.monotonic()
    with pytest.raises(PluginOptionsError, match="more than the limit of 1,000,000"):
        make(huge)
    assert time.monotonic() - started < 1.0  # counted, not listed
    one_million = Param("i", ParamType.INTEGER, low=1, high=10**6)
    assert make(one_million).size() == 10**6


def test_shuffle_visits_the_same_points_in_a_seeded_order() -> None:
    space = (Param("a", ParamType.INTEGER, low=0, high=9),
             Param("b", ParamType.INTEGER, low=0, high=9))
    plain = run(make(*space))
    shuffled = run(make(*space, seed=1, shuffle=True))
    assert shuffled != plain
    assert sorted(map(sorted, (p.items() for p in shuffled))) == sorted(
        map(sorted, (p.items() for p in plain))
    )
    assert run(make(*space, seed=1, shuffle=True)) == shuffled
    assert run(make(*space, seed=2, shuffle=True)) != shuffled


@pytest.mark.parametrize(("options", "match"), [
    ({"points_per_double": 1}, "points_per_double"),
    ({"points_per_double": True}, "points_per_double"),
    ({"points_per_double": "5"}, "points_per_double"),
    ({"shuffle": "yes"}, "shuffle"),
    ({"pionts_per_double": 3}, "unknown grid option.*pionts_per_double"),
])
def test_bad_options_are_refused(options: dict[str, Any], match: str) -> None:
    with pytest.raises(PluginOptionsError, match=match):
        make(**options)


def test_a_conditional_grid_past_two_to_the_63_points_is_refused_not_overflowed() -> None:
    # 70 switches, each turning on a parameter of its own: 4**70 points. len() of that once
    # raised OverflowError instead of the grid's refusal.
    params: list[Param] = []
    for i in range(70):
        params.append(Param(f"s{i}", ParamType.CATEGORICAL, values=("on", "off")))
        params.append(Param(f"c{i}", ParamType.DISCRETE, values=(1, 2, 3),
                            when={f"s{i}": ("on",)}))
    with pytest.raises(PluginOptionsError, match=r"the grid has [\d,]+ points"):
        make(*params)


def test_inner_points_of_a_double_are_the_decimals_they_stand_for() -> None:
    # exp(log(...)) left them a few units in the last place off: 0.009999999999999995, which
    # the trial got as its flag.
    lr = Param("lr", ParamType.DOUBLE, low=1e-3, high=1.0, scale=Scale.LOG)
    assert axis(lr, points_per_double=4) == [0.001, 0.01, 0.1, 1.0]
    assert axis(lr, points_per_double=7)[2::2] == [0.01, 0.1, 1.0]
    x = Param("x", ParamType.DOUBLE, low=0.1, high=0.7)
    assert axis(x) == [0.1, 0.25, 0.4, 0.55, 0.7]  # not 0.5499999999999999
    # Points no decimal of 15 digits tells apart stay as they were, all of them.
    narrow = Param("n", ParamType.DOUBLE, low=1.0, high=1.0 + 1e-15)
    assert axis(narrow, points_per_double=4) == list(narrow.grid(4))
    # A trial logged with the old value used the point.
    old = trial(0, lr=0.009999999999999995)
    assert [p["lr"] for p in run(make(lr, points_per_double=4), [old])] == [0.001, 0.1, 1.0]
