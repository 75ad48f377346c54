"""``Combinations`` on spaces as large as an experiment file may be (10,000 parameters, chains
of conditions as long as the space): no recursion per parameter, a linear set-up, and no walk
that repeats itself for every path to a shared ancestor or for every value of a wide axis."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from gpusched.plugin_api import Combinations, Param, ParamType, ParamValue, SearchSpace

_C, _I = ParamType.CATEGORICAL, ParamType.INTEGER
_AB: tuple[ParamValue, ...] = ("a", "b")


def chain(n: int, parents: int) -> SearchSpace:
    """p0 <- p1 <- ... : each p_i is active when the ``parents`` before it are all "a"."""
    return SearchSpace(tuple(
        Param(f"p{i}", _C, values=_AB,
              when={f"p{i - k}": ("a",) for k in range(1, parents + 1) if i - k >= 0})
        for i in range(n)))


def nested_loops(space: SearchSpace, axes: Sequence[Sequence[ParamValue]]
                 ) -> list[dict[str, ParamValue]]:
    """Brute force for small spaces: nested loops in file order, one only where active."""
    out: list[dict[str, ParamValue]] = []

    def walk(i: int, values: dict[str, ParamValue]) -> None:
        if i == len(space.params):
            out.append(values)
        elif not space.params[i].conditions_hold(values):
            walk(i + 1, values)
        else:
            for value in axes[i]:
                walk(i + 1, {**values, space.params[i].name: value})

    walk(0, {})
    return out


def check_indices(comb: Combinations, axes: Sequence[Sequence[ParamValue]],
                  space: SearchSpace, indices: Sequence[int]) -> None:
    axis_of = dict(zip(space.names(), axes, strict=True))
    for i in indices:
        point = comb.point(i)
        assert comb.index({k: axis_of[k].index(v) for k, v in point.items()}) == i


@pytest.mark.parametrize(("n", "parents"), [(2000, 1), (10_000, 1), (40, 2), (10_000, 2)])
def test_a_long_chain_of_conditions_counts_and_numbers_its_points(n: int, parents: int) -> None:
    # A chain as long as the space once recursed once per parameter (RecursionError near 1,000).
    space = chain(n, parents)
    axes = [_AB] * n
    comb = space.combinations(axes)
    # The active parameters are "a" up to the first "b" (or all "a"): n + 1 assignments, in
    # nested-loop order the longest first.
    assert len(comb) == n + 1

    def first_b_at(k: int) -> dict[str, ParamValue]:
        return {**{f"p{i}": "a" for i in range(k)}, f"p{k}": "b"}

    assert comb.point(0) == {f"p{i}": "a" for i in range(n)}
    assert [comb.point(i) for i in (1, 2, 3)] == [first_b_at(n - 1), first_b_at(n - 2),
                                                  first_b_at(n - 3)]
    assert comb.point(n) == {"p0": "b"}
    check_indices(comb, axes, space, [0, 1, 2, n // 2, n])
    assert comb.index({f"p{i}": 0 for i in range(n - 1)}) is None  # p{n-1} is active


@pytest.mark.parametrize("values", [("a", "b"), ("a", "b", "c")])
def test_a_two_parent_chain_matches_brute_force(values: tuple[ParamValue, ...]) -> None:
    # Every parameter reaches p0 by 2^n paths: nothing may walk them one by one.
    n = 40
    space = SearchSpace(tuple(
        Param(f"p{i}", _C, values=values,
              when={f"p{i - 1}": ("a", "b"), f"p{i - 2}": ("a",)} if i >= 2 else
              {"p0": ("a",)} if i == 1 else {})
        for i in range(n)))
    axes = [values] * n
    comb = space.combinations(axes)
    expected = nested_loops(space, axes)
    assert len(comb) == len(expected)
    assert [comb.point(i) for i in range(len(comb))] == expected
    check_indices(comb, axes, space, range(len(comb)))


def test_many_parents_of_one_parameter_are_counted_without_listing_their_values() -> None:
    # 40 switches and one parameter active when all are "a": 2^40 + 1 assignments. Keyed on
    # the switches' values, the count would visit each of their 2^40 combinations.
    switches = [Param(f"s{i}", _C, values=_AB) for i in range(40)]
    child = Param("c", _C, values=("x", "y"), when={f"s{i}": ("a",) for i in range(40)})
    space = SearchSpace((*switches, child))
    axes = [*([_AB] * 40), ("x", "y")]
    comb = space.combinations(axes)
    assert len(comb) == 2**40 + 1
    all_a: dict[str, ParamValue] = {f"s{i}": "a" for i in range(40)}
    assert comb.point(0) == {**all_a, "c": "x"}
    assert comb.point(1) == {**all_a, "c": "y"}
    assert comb.point(2) == {**all_a, "s39": "b"}
    assert comb.point(len(comb) - 1) == {f"s{i}": "b" for i in range(40)}
    check_indices(comb, axes, space, [0, 1, 2, 3, 2**39, len(comb) - 1])


def test_values_no_condition_tells_apart_are_counted_once() -> None:
    # A chain of integers of 100 values, each active when the one before is 0: the 99 other
    # values of a parent leave the rest of the chain inactive alike.
    n, width = 1000, 100
    space = SearchSpace(tuple(
        Param(f"p{i}", _I, low=0, high=width - 1, when={f"p{i - 1}": (0,)} if i else {})
        for i in range(n)))
    axes = [tuple(range(width))] * n
    comb = space.combinations(axes)
    assert len(comb) == n * (width - 1) + 1
    assert comb.point(0) == {f"p{i}": 0 for i in range(n)}
    assert comb.point(1) == {**{f"p{i}": 0 for i in range(n - 1)}, f"p{n - 1}": 1}
    assert comb.point(len(comb) - 1) == {"p0": width - 1}
    check_indices(comb, axes, space, [0, 1, width, len(comb) // 3, len(comb) - 1])


def test_ten_thousand_parameters_without_conditions_are_the_mixed_radix_product() -> None:
    # The set-up once compared every parameter with every earlier one (seconds at 10,000), and
    # the first point() looped over the rest of the space for every parameter.
    n = 10_000
    space = SearchSpace(tuple(Param(f"p{i}", _C, values=_AB) for i in range(n)))
    two = {0, 1, n // 2, n - 2, n - 1}  # two values on these axes, one on the others
    axes = [_AB if i in two else ("a",) for i in range(n)]
    comb = space.combinations(axes)
    assert len(comb) == 2**5
    every_a = {f"p{i}": "a" for i in range(n)}
    assert comb.point(0) == every_a
    assert comb.point(1) == {**every_a, f"p{n - 1}": "b"}
    assert comb.point(2) == {**every_a, f"p{n - 2}": "b"}
    assert comb.point(2**4) == {**every_a, "p0": "b"}
    assert comb.point(2**5 - 1) == {**every_a, **{f"p{i}": "b" for i in two}}
    check_indices(comb, axes, space, range(2**5))
    wide = space.combinations([_AB] * n)
    assert wide.index({f"p{i}": 1 for i in range(n)}) == 2**n - 1


def test_one_parent_of_ten_thousand_parameters() -> None:
    # While p0 is "b", every other parameter is inactive: point() once walked the rest of the
    # space again for each of them.
    n = 10_000
    space = SearchSpace((Param("p0", _C, values=_AB), *(
        Param(f"p{i}", _C, values=("x",), when={"p0": ("a",)}) for i in range(1, n))))
    axes = [_AB, *([("x",)] * (n - 1))]
    comb = space.combinations(axes)
    assert len(comb) == 2
    assert comb.point(0) == {"p0": "a", **{f"p{i}": "x" for i in range(1, n)}}
    assert comb.point(1) == {"p0": "b"}
    assert comb.index({"p0": 1}) == 1


def test_a_boolean_is_not_taken_for_the_number_one() -> None:
    # True == 1 and hash(True) == hash(1): counts keyed on a parent's values once shared one
    # entry between them, though a condition on 1 does not hold for True.
    space = SearchSpace((Param("n", ParamType.DISCRETE, values=(1, True)),
                         Param("c", _C, values=("x", "y"), when={"n": (1,)})))
    axes: list[tuple[ParamValue, ...]] = [(1, True), ("x", "y")]
    comb = space.combinations(axes)
    assert [comb.point(i) for i in range(len(comb))] == nested_loops(space, axes) == [
        {"n": 1, "c": "x"}, {"n": 1, "c": "y"}, {"n": True}]
