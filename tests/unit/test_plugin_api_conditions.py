"""Conditional parameters in the plugin API: ``Param.when``, the ``SearchSpace`` activity
helpers every plugin shares, and ``Combinations`` (the distinct points of a conditional grid)."""

from __future__ import annotations

import itertools
from types import MappingProxyType

import pytest

from gpusched.plugin_api import Param, ParamType, ParamValue, SearchSpace
from tests.plugins.conditional_toy import distinct_points

_C, _D, _I = ParamType.CATEGORICAL, ParamType.DOUBLE, ParamType.INTEGER

SPACE = SearchSpace((
    Param("opt", _C, values=("sgd", "adam", "rmsprop")),
    Param("lr", ParamType.DISCRETE, values=(1, 2)),
    Param("mom", _I, low=0, high=2, when={"opt": ("sgd", "rmsprop")}),
    Param("nest", _C, values=("y", "n"), when={"mom": (1, 2)}),
    Param("beta", ParamType.DISCRETE, values=(0.9, 0.99), when={"opt": ("adam",)}),
    Param("both", _D, low=0.0, high=1.0, when={"opt": ("sgd",), "lr": (2,)}),
))
AXES: list[tuple[ParamValue, ...]] = [("sgd", "adam", "rmsprop"), (1, 2), (0, 1, 2), ("y", "n"),
                                      (0.9, 0.99), (0.0, 0.5, 1.0)]


def names(params: tuple[Param, ...]) -> list[str]:
    return [p.name for p in params]


def test_when_is_read_only_with_tuples_and_compares_by_value() -> None:
    p = Param("m", _D, low=0.0, high=1.0, when={"opt": ["sgd"]})  # type: ignore[dict-item]
    assert isinstance(p.when, MappingProxyType) and p.when == {"opt": ("sgd",)}
    assert p == Param("m", _D, low=0.0, high=1.0, when={"opt": ("sgd",)})
    assert p != Param("m", _D, low=0.0, high=1.0)
    assert hash(p) == hash(Param("m", _D, low=0.0, high=1.0, when={"opt": ("sgd",)}))
    assert Param("x", _D, low=0.0, high=1.0).when == {}


def test_conditions_hold_compares_numbers_as_numbers_but_never_booleans() -> None:
    p = Param("c", _D, low=0.0, high=1.0, when={"n": (1, 3)})
    assert p.conditions_hold({"n": 3}) and p.conditions_hold({"n": 3.0})
    assert not p.conditions_hold({"n": True}) and not p.conditions_hold({"n": 2})
    assert not p.conditions_hold({})
    assert Param("free", _D, low=0.0, high=1.0).conditions_hold({})


def test_active_follows_conditions_in_file_order() -> None:
    assert names(SPACE.active({"opt": "sgd", "lr": 2, "mom": 1, "nest": "y", "both": 0.1})) == [
        "opt", "lr", "mom", "nest", "both"]
    assert names(SPACE.active({"opt": "adam", "lr": 1, "beta": 0.9})) == ["opt", "lr", "beta"]
    # Every name given, as a plugin that ignores conditions would: the inactive ones drop out,
    # and a child of an inactive parent is inactive whatever the parent's value says.
    full: dict[str, ParamValue] = {"opt": "adam", "lr": 2, "mom": 2, "nest": "n",
                                   "beta": 0.99, "both": 0.5}
    assert names(SPACE.active(full)) == ["opt", "lr", "beta"]
    assert SPACE.restrict(full) == {"opt": "adam", "lr": 2, "beta": 0.99}
    assert SPACE.restrict({**full, "stranger": 1}) == {"opt": "adam", "lr": 2, "beta": 0.99}


def test_active_on_a_partial_assignment_grows_as_values_come() -> None:
    assert names(SPACE.active({})) == ["opt", "lr"]
    assert names(SPACE.active({"opt": "rmsprop"})) == ["opt", "lr", "mom"]
    assert names(SPACE.active({"opt": "rmsprop", "mom": 0})) == ["opt", "lr", "mom"]
    assert names(SPACE.active({"opt": "rmsprop", "mom": 2})) == ["opt", "lr", "mom", "nest"]
    assert SPACE.is_active("nest", {"opt": "sgd", "mom": 1})
    assert not SPACE.is_active("nest", {"opt": "adam", "mom": 1})


def test_from_unit_sets_the_active_parameters_only() -> None:
    assert SPACE.from_unit([0.1, 0.9, 0.9, 0.9, 0.9, 0.9]) == {
        "opt": "sgd", "lr": 2, "mom": 2, "nest": "n", "both": 0.9}
    assert SPACE.from_unit([0.5, 0.1, 0.9, 0.9, 0.1, 0.9]) == {"opt": "adam", "lr": 1,
                                                               "beta": 0.9}
    plain = SearchSpace((Param("a", _D, low=0.0, high=1.0), Param("b", _I, low=0, high=4)))
    assert not plain.conditional and SPACE.conditional
    assert plain.from_unit([0.25, 0.5]) == {"a": 0.25, "b": 2}


def test_requirements_include_the_ancestors_and_groups_split_by_them() -> None:
    assert SPACE.requirements(SPACE.params[3]) == {"mom": (1, 2), "opt": ("sgd", "rmsprop")}
    assert SPACE.requirements(SPACE.params[5]) == {"opt": ("sgd",), "lr": (2,)}
    assert SPACE.requirements(SPACE.params[0]) == {}
    assert [names(g) for g in SPACE.groups()] == [
        ["opt", "lr"], ["mom"], ["nest"], ["beta"], ["both"]]
    together = SearchSpace((
        Param("opt", _C, values=("a", "b")),
        Param("x", _D, low=0.0, high=1.0, when={"opt": ("a",)}),
        Param("y", _I, low=0, high=3, when={"opt": ("a",)}),
        Param("z", _D, low=0.0, high=1.0, when={"opt": ("b",)}),
    ))
    assert [names(g) for g in together.groups()] == [["opt"], ["x", "y"], ["z"]]


def test_contradicting_conditions_leave_an_empty_requirement() -> None:
    space = SearchSpace((
        Param("opt", _C, values=("a", "b")),
        Param("x", _C, values=("u", "v"), when={"opt": ("a",)}),
        Param("never", _D, low=0.0, high=1.0, when={"opt": ("b",), "x": ("u",)}),
    ))
    assert space.requirements(space.params[2]) == {"opt": (), "x": ("u",)}


@pytest.mark.parametrize(("when", "message"), [
    ({"later": ("a",)}, "'later', which is not an earlier parameter"),
    ({"self": ("a",)}, "'self', which is not an earlier parameter"),
    ({"d": (0.5,)}, "'d' is a double"),
])
def test_a_hand_built_space_refuses_impossible_conditions(
    when: dict[str, tuple[ParamValue, ...]], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SearchSpace((Param("d", _D, low=0.0, high=1.0),
                     Param("self", _C, values=("a",), when=when),
                     Param("later", _C, values=("a",))))


def test_combinations_number_each_distinct_assignment_once() -> None:
    comb = SPACE.combinations(AXES)
    points = [comb.point(i) for i in range(len(comb))]
    expected = distinct_points(SPACE, AXES)
    assert len(comb) == len(expected) == 34  # sgd 20, rmsprop 10, adam 4
    assert sorted(map(repr, points)) == sorted(map(repr, expected))
    for i, point in enumerate(points):
        positions = {k: AXES[SPACE.names().index(k)].index(v) for k, v in point.items()}
        assert comb.index(positions) == i
        inactive = {name: 0 for name in SPACE.names() if name not in point}
        assert comb.index({**positions, **inactive}) == i  # inactive positions are ignored
    # Nested loops in file order: the first parameter varies slowest.
    assert points[:3] == [{"opt": "sgd", "lr": 1, "mom": 0},
                          {"opt": "sgd", "lr": 1, "mom": 1, "nest": "y"},
                          {"opt": "sgd", "lr": 1, "mom": 1, "nest": "n"}]
    assert comb.index({"opt": 0, "lr": 0}) is None  # mom is active and has no position
    with pytest.raises(IndexError):
        comb.point(len(comb))


def test_combinations_without_conditions_are_the_mixed_radix_product() -> None:
    plain = SearchSpace((Param("a", _C, values=("x", "y")), Param("b", _I, low=0, high=2),
                         Param("c", ParamType.DISCRETE, values=(1, 2))))
    axes: list[tuple[ParamValue, ...]] = [("x", "y"), (0, 1, 2), (1, 2)]
    comb = plain.combinations(axes)
    assert len(comb) == 12
    product = [dict(zip("abc", combo, strict=True)) for combo in itertools.product(*axes)]
    assert [comb.point(i) for i in range(12)] == product


def test_combinations_count_a_huge_product_quickly() -> None:
    # 3 branches x 6 integers of 1000 values: 1e18 distinct points, counted without listing.
    params = [Param("branch", _C, values=("a", "b", "c"))]
    params += [Param(f"{b}{i}", _I, low=1, high=1000, when={"branch": (b,)})
               for b in "abc" for i in range(6)]
    axes = [("a", "b", "c"), *([tuple(range(1, 1001))] * 18)]
    comb = SearchSpace(tuple(params)).combinations(axes)
    assert len(comb) == 3 * 1000**6
    assert comb.point(len(comb) - 1) == {"branch": "c", **{f"c{i}": 1000 for i in range(6)}}
