"""Conditional parameters at scale: a space's requirements and the checks of an experiment file
stay linear in it (chains of conditions thousands long; chains of two-parent conditions, which
once took time exponential in their length), and the checks over a parameter list stay bounded
however it is written (long value lists, YAML anchors, many unknown names)."""

from __future__ import annotations

from typing import Any

import pytest

from gpusched import _spec_when
from gpusched.errors import SpecError
from gpusched.plugin_api import Param, ParamType, SearchSpace
from gpusched.spec import ExperimentSpec, parse_experiment, parse_experiment_text


def cat(name: str, **when: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": "categorical", "values": ["a", "b"]}
    return out | {"when": when} if when else out


def chain(n: int) -> list[dict[str, Any]]:
    """p0, then each parameter set when the one before it is 'a'."""
    return [cat("p0"), *(cat(f"p{i}", **{f"p{i - 1}": "a"}) for i in range(1, n))]


def two_parent_chain(n: int) -> list[dict[str, Any]]:
    """Each parameter set when both the two before it are 'a': 2**n paths up from the last."""
    return [cat("p0"), cat("p1", p0="a"),
            *(cat(f"p{i}", **{f"p{i - 1}": "a", f"p{i - 2}": "a"}) for i in range(2, n))]


def parse(params: list[Any]) -> ExperimentSpec:
    return parse_experiment({"command": "t", "metric": "m", "params": params}, base_dir="/tmp")


def problems(params: list[Any]) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(params)
    return [str(p) for p in info.value.problems]


# --- requirements, groups and the check that conditions can hold -------------------------------


def test_a_two_parent_chain_of_40_parses_with_its_requirements() -> None:
    # Asking each parent for its own requirements walked every path: 24 parameters took about
    # a second, 32 half a minute, 40 some 25 minutes (on the daemon's event loop).
    space = parse(two_parent_chain(40)).space()
    last = space.params[-1]
    assert list(space.requirements(last).items()) == [(f"p{i}", ("a",)) for i in range(38, -1, -1)]
    assert space.requirements(space.params[2]) == {"p1": ("a",), "p0": ("a",)}
    assert [[p.name for p in group] for group in space.groups()] == [[f"p{i}"] for i in range(40)]


def test_a_chain_of_2000_conditions_is_deeper_than_any_recursion() -> None:
    space = parse(chain(2000)).space()
    need = space.requirements(space.params[-1])
    assert list(need) == [f"p{i}" for i in range(1998, -1, -1)]
    assert set(need.values()) == {("a",)}
    assert len(space.groups()) == 2000


def test_groups_compare_requirements_only_where_conditions_differ() -> None:
    # x and y ask alike; z asks more of the same parents; w has the same ancestors as x, y and
    # z but asks differently, though to the same effect as x and y once its parent's own need
    # is taken in.
    space = SearchSpace((
        Param("opt", ParamType.CATEGORICAL, values=("a", "b")),
        Param("n", ParamType.INTEGER, low=0, high=3, when={"opt": ("a",)}),
        Param("x", ParamType.DOUBLE, low=0.0, high=1.0, when={"n": (1, 2)}),
        Param("y", ParamType.DOUBLE, low=0.0, high=1.0, when={"n": (2, 1)}),
        Param("z", ParamType.DOUBLE, low=0.0, high=1.0, when={"n": (1,)}),
        Param("w", ParamType.DOUBLE, low=0.0, high=1.0, when={"n": (1, 2), "opt": ("a", "b")}),
    ))
    assert [[p.name for p in group] for group in space.groups()] == [
        ["opt"], ["n"], ["x", "y", "w"], ["z"]]


def test_contradictions_deep_in_long_chains_are_found_where_they_arise() -> None:
    params = [*chain(2000), cat("x", p1999="a", p0="b"), cat("y", x="a")]
    assert problems(params) == [
        "params[2000].when: can never hold: 'p0' would have to be 'b' here and 'a' for 'p1999' "
        "to be set"]
    params = two_parent_chain(40)
    params[-1]["when"] = {"p38": "a", "p37": "b"}
    assert problems(params) == [
        "params[39].when: can never hold: 'p37' would have to be 'b' here and 'a' for 'p38' to "
        "be set"]


def test_values_with_nothing_in_common_though_each_two_have() -> None:
    n = {"name": "n", "type": "integer", "min": 1, "max": 3}
    params = [n, cat("c1", n=[1, 2]), cat("c2", n=[2, 3], c1="a"), cat("c3", n=[1, 3], c2="a"),
              cat("apart", n=[1, 3])]
    assert problems(params) == [
        "params[3].when: can never hold: 'n' would have to be one of 1, 3 here and 2 for 'c2' "
        "to be set"]


def test_many_contradictions_the_first_ten_explained() -> None:
    params = [cat("opt"), *(cat(f"x{i}", opt="a") for i in range(12)),
              *(cat(f"y{i}", opt="b", **{f"x{i}": "a"}) for i in range(12))]
    found = problems(params)
    assert len(found) == 12
    assert found[0] == ("params[13].when: can never hold: 'opt' would have to be 'b' here and "
                        "'a' for 'x0' to be set")
    assert found[9].startswith("params[22].when: can never hold: 'opt' would have to be")
    assert found[10:] == [
        f"params[{i}].when: can never hold: it and its parents ask one parameter for values that "
        f"have nothing in common (the first 10 such problems say which)" for i in (23, 24)]


# --- other checks over a parameter list ----------------------------------------------------------


def test_a_condition_may_list_thousands_of_a_parents_values() -> None:
    values = [f"v{i}" for i in range(20_000)]
    numbers = list(range(20_000))
    spec = parse([{"name": "c", "type": "categorical", "values": values},
                  {"name": "d", "type": "discrete", "values": numbers},
                  {**cat("x"), "when": {"c": values[::-1], "d": [float(v) for v in numbers]}}])
    assert spec.params[2].when == {"c": tuple(values[::-1]), "d": tuple(numbers)}
    assert all(type(v) is int for v in spec.params[2].when["d"])  # the parent's own spelling


def test_anchors_that_repeat_a_long_list_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_spec_when, "_MAX_VALUES", 1000)
    values = ", ".join(f"v{i}" for i in range(400))
    text = ("command: t\nmetric: m\nparams:\n"
            f"  - {{name: a, type: categorical, values: &v [{values}]}}\n"
            "  - {name: b, type: double, min: 0, max: 1, when: {a: *v}}\n"
            "  - {name: c, type: categorical, values: *v}\n")
    with pytest.raises(SpecError) as info:
        parse_experiment_text(text, source="x.yaml", base_dir="/tmp")
    assert [str(p) for p in info.value.problems] == [
        "params[2]: the parameters list more than 1,000 values (YAML anchors that repeat a long "
        "list?)"]


def test_only_the_first_unknown_parents_get_a_guess() -> None:
    params = [cat("optimizer"), *(cat(f"x{i}", optimzer="a") for i in range(25))]
    found = problems(params)
    guessed = "no parameter named 'optimzer' (did you mean 'optimizer'?)"
    assert found == [f"params[{i + 1}].when.optimzer: " + (
        guessed if i < 20 else "no parameter named 'optimzer'") for i in range(25)]
