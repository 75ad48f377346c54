"""The built-in ``random`` search."""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

import numpy as np
import pytest
from gpusched_plugins.random_search import RandomSearch, draw_entropy

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
from gpusched.testing import rebuilt

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


def _handed_over(points: Sequence[Mapping[str, ParamValue]], *, failed: int = 0
                 ) -> list[TrialView]:
    """An earlier experiment's trials as the daemon hands them over for ``resume_from``: those
    that finished with a result (every third of the first ``3 * failed`` failed), -N ... -1."""
    kept = [p for i, p in enumerate(points) if i >= 3 * failed or i % 3]
    return [TrialView(i - len(kept), p, TrialState.COMPLETED, float(i))
            for i, p in enumerate(kept)]


def _key(params: Mapping[str, ParamValue]) -> tuple[tuple[str, ParamValue], ...]:
    return tuple(sorted(params.items()))


def test_a_resumed_experiment_does_not_draw_the_earlier_ones_points_again() -> None:
    # The same file plus resume_from, so the same seed: trial n drew what the earlier
    # experiment's trial n had, trial for trial.
    earlier = [make(0).suggest(n, ()) for n in range(20)]
    prior = _handed_over(earlier)
    resumed = [make(0).suggest(n, prior) for n in range(20)]
    assert not {_key(p) for p in earlier} & {_key(p) for p in resumed}
    # The documented draw.
    entropy = draw_entropy(0, 3, prior)
    assert entropy[:3] == (0, 3, 20)
    assert resumed[3] == SPACE.from_unit(np.random.default_rng(list(entropy)).random(3).tolist())
    # Earlier trials that failed are not handed over: N falls short of the earlier size, and
    # draws as trial N + n would meet the earlier experiment's last trials again.
    short = [make(0).suggest(n, _handed_over(earlier, failed=3)) for n in range(20)]
    assert not {_key(p) for p in earlier} & {_key(p) for p in short}
    # A chain of resumes of one size: the third experiment does not draw the second's points.
    third = [make(0).suggest(n, _handed_over(resumed)) for n in range(20)]
    assert not {_key(p) for p in resumed + earlier} & {_key(p) for p in third}


def test_a_resumed_experiment_draws_the_same_at_every_number_and_after_a_restart() -> None:
    prior = _handed_over([make(5).suggest(n, ()) for n in range(7)], failed=1)
    history: list[TrialView] = list(prior)
    answers = []
    for number in range(12):
        answers.append(make(5).suggest(number, history))
        history.append(TrialView(number, answers[-1], TrialState.RUNNING))
    # Asked at a later number, with the experiment's own trials after the earlier ones; asked
    # a fresh instance with views rebuilt from the log (read-only mappings, other objects).
    assert [make(5).suggest(n, history) for n in range(12)] == answers
    assert [make(5).suggest(n, [rebuilt(t) for t in history[:len(prior) + n]])
            for n in range(12)] == answers
    # Without an earlier experiment the draws are (seed, number)'s, as they always were.
    own = history[len(prior):]
    assert make(5).suggest(12, own) == make(5).suggest(12, ())


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


@pytest.mark.parametrize(("low", "high"), [(1e-20, 1.0), (1e308, 1.7e308), (5e-324, 1e-300),
                                           (1e-300, 1.7976931348623157e308)])
def test_reverse_log_ranges_the_file_checker_accepts_give_values(low: float, high: float) -> None:
    # lo + hi - x lost lo under hi's last digit (log(0) at the top: a ValueError from suggest)
    # or overflowed (1e308 + 1.7e308: every draw NaN).
    space = SearchSpace((Param("x", ParamType.DOUBLE, low=low, high=high,
                               scale=Scale.REVERSE_LOG),))
    for number in range(200):
        value = make(space=space).suggest(number, ())["x"]
        assert space.params[0].problem_with(value) is None


def _extreme_number(rng: random.Random, *, positive: bool) -> float:
    """A number from anywhere in a float's range, the ends included."""
    if rng.random() < 0.3:
        magnitude = rng.choice([5e-324, 1e-300, 1e-20, 1e-9, 0.5, 1.0, 7.0, 1e5, 1e300, 1e308,
                                1.7e308, 1.7976931348623157e308])
    else:
        magnitude = 10 ** rng.uniform(-300, 308)
    return magnitude if positive or rng.random() < 0.5 else -magnitude


def _random_range(rng: random.Random) -> Param | None:
    """A numeric parameter the spec's checks accept (min < max, a finite range, min > 0 on a
    log scale, min >= 1 for a log-scaled integer, 0 < step <= the range), or None."""
    scale = rng.choice(list(Scale))
    step: float | None = None
    if rng.random() < 0.5:
        ends = [_extreme_number(rng, positive=scale is not Scale.LINEAR) for _ in range(2)]
        low, high = min(ends), max(ends)
        if rng.random() < 0.3:  # a narrow range, down to one float apart
            high = low + abs(low) * 10 ** rng.uniform(-15, 0) if rng.random() < 0.8 else \
                math.nextafter(low, math.inf)
        if not (high > low and math.isfinite(high - low)):
            return None
        if rng.random() < 0.3 and high - low > 1e-9 * max(abs(low), abs(high)):
            step = (high - low) / rng.choice([1, 2, 3, 7, 10, 1000])  # not at float resolution
            if not step > 0:  # underflowed
                return None
        return Param("x", ParamType.DOUBLE, low=low, high=high, scale=scale, step=step)
    ilow = rng.choice([1, 2, 1000, 2**40, 2**52]) if scale is not Scale.LINEAR else \
        rng.choice([-2**53, -1000, -1, 0, 5])
    ihigh = min(ilow + rng.choice([1, 2, 3, 10, 999, 10**6, 2**40, 2**53]), 2**53)
    istep = rng.choice([None, None, 1, 2, 3, 7, 1000])
    if ihigh <= ilow or (istep is not None and istep > ihigh - ilow):
        return None
    return Param("x", ParamType.INTEGER, low=ilow, high=ihigh, scale=scale, step=istep)


def test_from_unit_and_to_unit_never_raise_and_stay_in_the_range() -> None:
    rng = random.Random(4)
    checked = 0
    while checked < 3000:
        param = _random_range(rng)
        if param is None:
            continue
        checked += 1
        for u in (0.0, 5e-324, 1e-12, rng.random(), 0.5, 1 - 1e-12, 1 - 2**-53, 1.0):
            value = param.from_unit(u)
            assert param.problem_with(value) is None, (param, u)
            unit = param.to_unit(value)
            assert 0.0 <= unit <= 1.0, (param, value, unit)
            assert param.problem_with(param.from_unit(unit)) is None, (param, value, unit)
