"""A ``discrete`` parameter's value written as text (``"1"``, quoted in YAML) is "must be a
number", as for an ``integer`` or a ``double``: in ``points_to_evaluate`` and in conditions
(``when:``), not "'1' is not a value of 'd' (1, 2.5, 4)", which lists the very value refused."""

from __future__ import annotations

from typing import Any

import pytest

from gpusched.errors import SpecError
from gpusched.spec import parse_experiment

D = {"name": "d", "type": "discrete", "values": [1, 2.5, 4]}


def problems(params: list[dict[str, Any]], **settings: Any) -> list[str]:
    with pytest.raises(SpecError) as refused:
        parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                          "params": params, **settings}, base_dir="/tmp")
    return [str(p) for p in refused.value.problems]


@pytest.mark.parametrize(("value", "said"), [
    ("1", "must be a number (got '1')"),
    ("2.5", "must be a number (got '2.5')"),
    (None, "must be a number (got null)"),
    ([1], "must be a number (got a list)"),
    # A number, but not one of its values: the values are listed.
    (3, "3 is not a value of 'd' (1, 2.5, 4)"),
])
def test_a_point_names_what_is_wrong_with_its_value(value: Any, said: str) -> None:
    points = [{"d": 1}, {"d": 2.5}, {"d": 4.0}, {"d": value}]
    assert problems([D], points_to_evaluate=points) == [f"points_to_evaluate[3].d: {said}"]


@pytest.mark.parametrize(("when", "said"), [
    ({"d": "1"}, "params[1].when.d: must be a number (got '1')"),
    ({"d": [1, "4"]}, "params[1].when.d[1]: must be a number (got '4')"),
    ({"d": 3}, "params[1].when.d: 3 is not a value of 'd' (1, 2.5, 4)"),
    ({"d": True}, "params[1].when.d: true is not a value of 'd' (1, 2.5, 4)"),  # as before
])
def test_a_condition_on_a_discrete_parent_says_the_same(when: Any, said: str) -> None:
    child = {"name": "c", "type": "double", "min": 0.0, "max": 1.0, "when": when}
    assert problems([D, child]) == [said]


def test_numbers_are_taken_in_the_parameters_own_spelling() -> None:
    child = {"name": "c", "type": "double", "min": 0.0, "max": 1.0, "when": {"d": [1.0, 4]}}
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "params": [D, child], "points_to_evaluate": [{"d": 2.5}]},
                            base_dir="/tmp")
    assert spec.params[1].when == {"d": (1, 4)}
    assert spec.points_to_evaluate == ({"d": 2.5},)
