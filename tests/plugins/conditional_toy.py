"""A conditional toy problem shared by the searchers' tests.

Three optimisers with their own parameters (one shared by two of them, one grandchild of a
categorical, an integer that only one optimiser has) and one parameter all of them share. The
minimum, 0, is at ``opt=adam, beta=0.9, layers=3, shared=0.3``; the other branches bottom out
at 0.4 (``rmsprop``) and 0.6 (``sgd``), so a searcher has to find the right branch *and* tune
the parameters that only exist there.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

from gpusched.plugin_api import (
    Param,
    ParamType,
    ParamValue,
    Scale,
    SearchPlugin,
    SearchSpace,
    Suggestion,
    TrialState,
    TrialView,
    Wait,
    as_suggestion,
)

__all__ = ["SPACE", "toy", "run", "trial_of", "best_value", "assert_exactly_active",
           "distinct_points"]

_C, _D, _I = ParamType.CATEGORICAL, ParamType.DOUBLE, ParamType.INTEGER

SPACE = SearchSpace((
    Param("opt", _C, values=("sgd", "adam", "rmsprop")),
    Param("shared", _D, low=0.0, high=1.0),
    Param("momentum", _D, low=0.0, high=0.99, when={"opt": ("sgd", "rmsprop")}),
    Param("nesterov", _C, values=("on", "off"), when={"opt": ("sgd",)}),
    Param("damping", _D, low=0.0, high=1.0, when={"nesterov": ("off",)}),
    Param("beta", _D, low=0.5, high=0.999, scale=Scale.REVERSE_LOG, when={"opt": ("adam",)}),
    Param("layers", _I, low=1, high=6, when={"opt": ("adam",)}),
))

_BASE = {"sgd": 0.6, "rmsprop": 0.4, "adam": 0.0}


def assert_exactly_active(params: Mapping[str, ParamValue]) -> None:
    """Fail unless ``params`` sets every active parameter of :data:`SPACE` and no other."""
    wanted = sorted(p.name for p in SPACE.active(params))
    assert sorted(params) == wanted, f"{dict(params)} should set exactly {wanted}"


def toy(params: Mapping[str, ParamValue]) -> float:
    """The objective (to minimise); it refuses a point with an inactive or a missing parameter,
    so every test that optimises it also checks what the searcher proposed."""
    assert_exactly_active(params)
    opt = str(params["opt"])
    value = _BASE[opt] + (float(params["shared"]) - 0.3) ** 2
    if opt in ("sgd", "rmsprop"):
        value += (float(params["momentum"]) - 0.9) ** 2
    if opt == "sgd":
        value += 0.0 if params["nesterov"] == "on" else 0.1 + 0.1 * float(params["damping"])
    if opt == "adam":
        value += 4 * (float(params["beta"]) - 0.9) ** 2 + 0.02 * (int(params["layers"]) - 3) ** 2
    return value


def trial_of(number: int, answer: Mapping[str, ParamValue] | Suggestion,
             state: TrialState = TrialState.COMPLETED) -> TrialView:
    """The trial that ran ``answer`` (its budget and continues kept) and ended in ``state``
    with the toy's value, if that state has a result."""
    suggestion = as_suggestion(answer)
    value = toy(suggestion.params) if state is TrialState.COMPLETED else None
    return TrialView(number, dict(suggestion.params), state, value,
                     budget=suggestion.budget, continues=suggestion.continues)


def run(plugin: SearchPlugin, trials: int) -> list[TrialView]:
    """Ask for one trial at a time, as a daemon with one worker does; return the history."""
    history: list[TrialView] = []
    for number in range(trials):
        answer = plugin.suggest(number, tuple(history))
        if answer is None or isinstance(answer, Wait):  # WAIT: every trial here has ended
            break
        history.append(trial_of(number, answer))
    return history


def best_value(history: list[TrialView]) -> float:
    """The lowest objective of ``history``."""
    return min(t.objective for t in history if t.objective is not None)


def distinct_points(space: SearchSpace, axes: Sequence[Sequence[ParamValue]]
                    ) -> list[dict[str, ParamValue]]:
    """Brute force, to check cleverer code against: the product of the axes with the inactive
    values dropped (``SearchSpace.restrict``) and duplicates removed, in product order."""
    out: list[dict[str, ParamValue]] = []
    for combo in itertools.product(*axes):
        point = space.restrict(dict(zip(space.names(), combo, strict=True)))
        if point not in out:
            out.append(point)
    return out
