"""The plugin contract catches the plugins it is there to catch.

Each bad plugin here passed every check of an earlier contract and failed in a real daemon; the
contract's checks (gpusched.testing.plugin_contract) are called directly on it, with the
fixture values pytest would give them, and must fail. A good twin of each must pass, so that a
check that fails everything does not pass for teeth.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from gpusched.plugin_api import (
    Goal,
    Param,
    ParamType,
    ParamValue,
    Scale,
    SearchPlugin,
    SearchSpace,
    TrialState,
    TrialView,
)
from gpusched.testing import SearchPluginContract
from gpusched.testing.plugin_contract import CONTRACT_SPACES, check_value

Factory = Callable[[], SearchPlugin]
CONTRACT = SearchPluginContract()


def factory(cls: type[SearchPlugin], space: SearchSpace, goal: Goal = Goal.MAXIMIZE) -> Factory:
    """Fresh, identically configured instances, as the contract's ``new_plugin`` fixture."""
    return lambda: cls(space, goal=goal, seed=3, options={})


def draw(space: SearchSpace, seed: int, number: int, shift: float = 0.0) -> dict[str, ParamValue]:
    """A pure random point for ``(seed, number)``, moved by ``shift`` (mod 1) in the cube."""
    rng = np.random.default_rng([seed, number])
    return space.from_unit([(u + shift) % 1.0 for u in rng.random(len(space)).tolist()])


class Plain(SearchPlugin):
    """Random search done right: plain values, pure, takes any history."""

    summary = "random, right"

    def suggest(self, number: int, history: Sequence[TrialView]) -> Mapping[str, ParamValue]:
        return draw(self.space, self.seed, number)


# -- 1. values of the parameter's own plain type ---------------------------------------------


class NumpyDiscrete(SearchPlugin):
    """Hands over discrete values as numpy integers, as one that indexes a numpy array of the
    values does: ``np.int64(3) in (1, 3, 5)`` is true, but the log cannot store it."""

    summary = "numpy discrete values"

    def suggest(self, number: int, history: Sequence[TrialView]) -> dict[str, Any]:
        params: dict[str, Any] = draw(self.space, self.seed, number)
        for p in self.space:
            if p.type is ParamType.DISCRETE and p.name in params:
                params[p.name] = np.int64(params[p.name])
        return params


def test_numpy_values_fail_the_space_check() -> None:
    space = CONTRACT_SPACES["mixed"]
    with pytest.raises(AssertionError) as failed:
        CONTRACT.test_suggestions_lie_inside_the_space(factory(NumpyDiscrete, space), space)
    said = str(failed.value)
    assert "kernel=np.int64(" in said and "(numpy.int64)" in said and "return int(x)" in said
    CONTRACT.test_suggestions_lie_inside_the_space(factory(Plain, space), space)


D = Param("lr", ParamType.DOUBLE, low=0.0, high=1.0)
I = Param("layers", ParamType.INTEGER, low=1, high=4)  # noqa: E741
STEPPED = Param("wd", ParamType.DOUBLE, low=0.0, high=1.0, step=0.25)
K = Param("kernel", ParamType.DISCRETE, values=(1, 3, 5))
F = Param("rate", ParamType.DISCRETE, values=(0.5, 1.0))
C = Param("opt", ParamType.CATEGORICAL, values=("sgd", "adam"))
LOG = Param("width", ParamType.INTEGER, low=1, high=8, scale=Scale.LOG)


@pytest.mark.parametrize(("param", "value"), [
    (D, 0.5), (D, 0), (D, 1), (D, 1.0), (I, 1), (I, 4), (LOG, 8), (STEPPED, 0.75),
    (K, 1), (K, 5), (F, 0.5), (F, 1.0), (C, "adam"),
])
def test_check_value_takes_plain_values_of_the_right_type(param: Param, value: object) -> None:
    assert check_value(param, value) is None


@pytest.mark.parametrize(("param", "value", "said"), [
    # numpy scalars, even where they equal a listed value or are a float subclass
    (K, np.int64(3), "kernel=np.int64(3) (numpy.int64) is not a plain int, float or str:"
                     " return int(x)"),
    (I, np.int64(2), "(numpy.int64) is not a plain int, float or str: return int(x)"),
    (D, np.float64(0.5), "(numpy.float64) is not a plain int, float or str: return float(x)"),
    (F, np.float64(0.5), "return float(x)"),
    (C, np.str_("sgd"), "(numpy.str_) is not a plain int, float or str: return str(x)"),
    # bools are ints to Python, not to a trial log
    (K, True, "kernel=True (bool) is not a plain int, float or str: return int(x)"),
    (I, True, "layers=True (bool) is not a plain int"),
    (D, False, "lr=False (bool) is not a plain int"),
    # a listed value of another type: the trial would get --kernel=3.0
    (K, 3.0, "kernel=3.0 (float) is not one of (1, 3, 5) with its listed type: return int(x)"),
    (F, 1, "rate=1 (int) is not one of (0.5, 1.0) with its listed type: return float(x)"),
    (K, "3", "kernel='3' (str) is not one of (1, 3, 5)"),
    (K, 4, "kernel=4 (int) is not one of (1, 3, 5)"),
    (C, "rmsprop", "opt='rmsprop' (str) is not one of ('sgd', 'adam')"),
    (I, 2.0, "layers=2.0 (float): an integer parameter takes an int: return int(x)"),
    (D, "0.5", "lr='0.5' (str): a double parameter takes a float (or an int): return float(x)"),
    (I, 5, "layers=5 (int) is outside [1, 4]"),
    pytest.param(I, 10**400, "is outside [1, 4]", id="past-floats"),  # no OverflowError
    (D, float("nan"), "lr=nan (float) is outside"),
    (STEPPED, 0.3, "wd=0.3 (float) is not on the step 0.25 from 0.0"),
    (D, None, "lr=None (NoneType) is not a plain int, float or str: return float(x)"),
    (K, np.array([3]), "kernel=array([3]) (numpy.ndarray) is not a plain"),
])
def test_check_value_says_what_is_wrong_and_what_to_return(
    param: Param, value: object, said: str
) -> None:
    problem = check_value(param, value)
    assert problem is not None and said in problem, problem


# -- 2. a daemon restarted after a crash -----------------------------------------------------


def pending_counting(*states: TrialState) -> type[SearchPlugin]:
    """A search that moves away from its pending trials (those of the experiment in
    ``states``), as a constant liar does: its answer depends on how many there are."""

    class Pending(SearchPlugin):
        summary = "moves by its pending trials"

        def suggest(self, number: int, history: Sequence[TrialView]) -> dict[str, ParamValue]:
            pending = sum(1 for t in history if t.number >= 0 and t.state in states)
            return draw(self.space, self.seed, number, shift=0.37 * pending)

    return Pending


@pytest.mark.parametrize("name", sorted(CONTRACT_SPACES))
def test_a_plugin_blind_to_interrupted_trials_fails_the_restart_check(name: str) -> None:
    # After a crash, the trials that ran are `interrupted`: counting only running and queued
    # ones as pending, the restarted plugin suggests other points than the one that lived on.
    # The earlier check handed both the interrupted history, and this plugin passed it.
    space = CONTRACT_SPACES[name]
    blind = pending_counting(TrialState.RUNNING, TrialState.QUEUED)
    with pytest.raises(AssertionError, match=r"one restarted .* `interrupted`"):
        CONTRACT.test_a_daemon_restarted_mid_search_suggests_the_same(factory(blind, space))
    right = pending_counting(TrialState.RUNNING, TrialState.QUEUED, TrialState.INTERRUPTED)
    CONTRACT.test_a_daemon_restarted_mid_search_suggests_the_same(factory(right, space))


# -- 3. resume_from trials that do not fit the space -----------------------------------------


class Trusting(SearchPlugin):
    """Reads every finished trial into the unit cube, trusting its params to fit the space
    (``to_unit`` raises on a value that is not listed, a missing name raises KeyError); it
    moves towards the best one."""

    summary = "trusts the history"

    def suggest(self, number: int, history: Sequence[TrialView]) -> dict[str, ParamValue]:
        best: list[float] | None = None
        best_objective = -np.inf
        for t in history:
            if t.finished and t.objective is not None:
                active = self.space.active(t.params)
                point = [p.to_unit(t.params[p.name]) if p in active else 0.5
                         for p in self.space]
                if t.objective > best_objective:
                    best, best_objective = point, t.objective
        if best is None:
            return draw(self.space, self.seed, number)
        rng = np.random.default_rng([self.seed, number])
        return self.space.from_unit([(u + rng.normal(0, 0.1)) % 1.0 for u in best])


class Careful(Trusting):
    """The same search, ignoring the trials whose params do not fit the space."""

    summary = "ignores what does not fit"

    def suggest(self, number: int, history: Sequence[TrialView]) -> dict[str, ParamValue]:
        fitting = [t for t in history if fits(self.space, t.params)]
        return super().suggest(number, fitting)


def fits(space: SearchSpace, params: Mapping[str, object]) -> bool:
    """Whether ``params`` holds exactly the active names of ``space``, each value inside."""
    active = space.active(params)
    return set(params) == {p.name for p in active} and all(
        check_value(p, params[p.name]) is None for p in active)


@pytest.mark.parametrize("name", sorted(CONTRACT_SPACES))
@pytest.mark.parametrize("goal", [Goal.MAXIMIZE, Goal.MINIMIZE])
def test_a_plugin_trusting_resumed_params_fails_the_misfit_check(name: str, goal: Goal) -> None:
    space = CONTRACT_SPACES[name]
    # What the earlier contract checked it on: trials of an earlier experiment that fit.
    CONTRACT.test_trials_of_an_earlier_experiment_are_taken_purely(
        factory(Trusting, space, goal), space)
    with pytest.raises(pytest.fail.Exception,
                       match=r"(?s)given trials of an earlier experiment .* It raises for a"
                             r" trial with: .*(missing|not in its list)"):
        CONTRACT.test_trials_of_an_earlier_experiment_that_do_not_fit_the_space_are_ignored(
            factory(Trusting, space, goal), space)
    CONTRACT.test_trials_of_an_earlier_experiment_that_do_not_fit_the_space_are_ignored(
        factory(Careful, space, goal), space)
