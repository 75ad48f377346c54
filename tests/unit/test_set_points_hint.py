"""`--set` into a list past its end says what the list takes: the indexes of
`points_to_evaluate` and how to add a point; a parameter's name, or an index, in `params`;
an index in any other list."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from gpusched.errors import SpecError
from gpusched.spec import parse_experiment_text

PARAMS: list[dict[str, Any]] = [
    {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", "rmsprop"]},
    {"name": "lr", "type": "double", "min": 1e-4, "max": 0.1},
]
ADAM = {"optimizer": "adam", "lr": 0.001}
SGD = {"optimizer": "sgd", "lr": 0.01}
EXAMPLE = ("a mapping of parameter names to values such as"
           " --set 'points_to_evaluate[{n}]={{lr: 0.01, optimizer: adam}}'")


def problems(overrides: Sequence[str], points: list[Any] | None = None) -> list[str]:
    data: dict[str, Any] = {"command": "python t.py", "metric": "acc", "params": PARAMS}
    if points is not None:
        data["points_to_evaluate"] = points
    with pytest.raises(SpecError) as refused:
        parse_experiment_text(json.dumps(data), source="x.yaml", base_dir="/tmp",
                              overrides=overrides)
    return [str(p) for p in refused.value.problems]


@pytest.mark.parametrize(("points", "key", "listed"), [
    ([ADAM, SGD], "5", "2 points, [0] to [1]"),
    ([ADAM], "3", "1 point, [0]"),
    ([], "1", "no point yet"),
    (None, "1", "no point yet"),  # a file without the setting: the same empty list
    ([ADAM, SGD], "adam", "2 points, [0] to [1]"),  # a point has no name to give
])
def test_a_point_past_the_end_names_the_indexes_and_how_to_add_one(
        points: list[Any] | None, key: str, listed: str) -> None:
    n = len(points or [])
    assert problems([f"points_to_evaluate[{key}].lr=0.05"], points) == [
        f"--set points_to_evaluate[{key}].lr: no point '{key}': points_to_evaluate lists"
        f" {listed}; [{n}]={{...}} adds one, " + EXAMPLE.format(n=n)]


def test_the_params_list_still_takes_a_name_or_an_index() -> None:
    assert problems(["params[zz].max=1"]) == [
        "--set params[zz].max: no item 'zz' (give a parameter's name, or an index from 0 to 2)"]


def test_another_list_takes_an_index_alone() -> None:
    assert problems(["params[optimizer].values[9]=adam"]) == [
        "--set params[optimizer].values[9]: no item '9' (give an index from 0 to 3)"]


def test_a_point_is_not_found_by_a_parameter_called_name() -> None:
    # Only parameters have names: a point whose hyperparameter `name` is 'a' is no `[a]`.
    data = {"command": "python t.py", "metric": "acc", "points_to_evaluate": [{"name": "a"}],
            "params": [{"name": "name", "type": "categorical", "values": ["a", "b"]}]}
    with pytest.raises(SpecError, match=r"no point 'a': points_to_evaluate lists 1 point"):
        parse_experiment_text(json.dumps(data), source="x.yaml", base_dir="/tmp",
                              overrides=["points_to_evaluate[a].name=b"])
