"""Conditional parameters in the experiment file: ``when:``, AI Platform's
``conditionalParameterSpecs``, every problem with its place, --set, and the stored form."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpusched import _spec_set
from gpusched.errors import SpecError
from gpusched.plugin_api import Param, ParamType
from gpusched.spec import ExperimentSpec, load_aip_file, load_experiment_file, parse_experiment

OPT = {"name": "optimizer", "type": "categorical", "values": ["sgd", "adam", "rmsprop"]}
LAYERS = {"name": "layers", "type": "integer", "min": 1, "max": 5, "step": 2}
KERNEL = {"name": "kernel", "type": "discrete", "values": [1, 3, 5]}
LR = {"name": "lr", "type": "double", "min": 1e-4, "max": 0.1, "scale": "log"}


def double(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": "double", "min": 0.0, "max": 1.0, **extra}


def parse(params: list[Any], **top: Any) -> ExperimentSpec:
    return parse_experiment({"command": "train", "metric": "m", "params": params, **top},
                            base_dir="/tmp")


def problems(params: list[Any], **top: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        parse(params, **top)
    return [str(p) for p in info.value.problems]


def whens(spec: ExperimentSpec) -> dict[str, dict[str, tuple[Any, ...]]]:
    return {p.name: dict(p.when) for p in spec.params if p.when}


# --- what is accepted --------------------------------------------------------------------------


def test_one_value_a_list_of_any_and_several_parents() -> None:
    spec = parse([OPT, LAYERS, KERNEL,
                  double("momentum", when={"optimizer": "sgd"}),
                  double("rho", when={"optimizer": ["sgd", "rmsprop"]}),
                  double("beta", when={"optimizer": "adam", "layers": [3, 5], "kernel": 3.0})])
    assert whens(spec) == {
        "momentum": {"optimizer": ("sgd",)},
        "rho": {"optimizer": ("sgd", "rmsprop")},
        "beta": {"optimizer": ("adam",), "layers": (3, 5), "kernel": (3,)},
    }
    assert spec.space().conditional


def test_categorical_condition_values_are_read_as_the_parent_stores_them() -> None:
    # A categorical's numbers and booleans are text; a condition on it reads them alike.
    spec = parse([{"name": "width", "type": "categorical", "values": [32, 64, True]},
                  double("x", when={"width": [64, "32", True]})])
    assert whens(spec) == {"x": {"width": ("64", "32", "true")}}


def test_a_nested_condition_on_a_conditional_parent() -> None:
    spec = parse([OPT, {"name": "nesterov", "type": "categorical", "values": ["on", "off"],
                        "when": {"optimizer": "sgd"}},
                  double("dampening", when={"nesterov": "off"})])
    space = spec.space()
    assert [p.name for p in space.active({"optimizer": "adam", "nesterov": "off"})] == [
        "optimizer"]
    assert space.is_active("dampening", {"optimizer": "sgd", "nesterov": "off"})


def test_a_null_when_is_no_condition() -> None:
    assert parse([OPT, double("x", when=None)]).params[1].when == {}


def test_ai_platform_children_are_flattened_after_their_parent() -> None:
    aip = [{
        "parameterName": "optimizer", "type": "CATEGORICAL", "categoricalValues": ["sgd", "adam"],
        "conditionalParameterSpecs": [
            {"parameterSpec": {"parameterName": "momentum", "type": "DOUBLE", "minValue": 0,
                               "maxValue": 0.9},
             "parentCategoricalValues": {"values": ["sgd"]}},
            {"parameterSpec": {
                "parameterName": "layers", "type": "INTEGER", "minValue": 1, "maxValue": 4,
                "conditionalParameterSpecs": [
                    {"parameterSpec": {"parameterName": "width", "type": "DISCRETE",
                                       "discreteValues": [8, 16]},
                     "parentIntValues": {"values": [3, 4]}},
                    {"parameterSpec": {"parameterName": "act", "type": "CATEGORICAL",
                                       "categoricalValues": ["relu"]},
                     "parentIntValues": {"values": [1]}},
                ]},
             "parentCategoricalValues": {"values": ["adam"]}},
        ]},
        {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.001, "maxValue": 0.1,
         "scaleType": "UNIT_LOG_SCALE"},
        {"parameterName": "drop", "type": "DISCRETE", "discreteValues": [0.1, 0.5],
         "conditionalParameterSpecs": [
             {"parameterSpec": {"name": "keep", "type": "double", "min": 0, "max": 1},
              "parentDiscreteValues": {"values": [0.5]}}]},
    ]
    spec = parse(aip)
    assert [p.name for p in spec.params] == ["optimizer", "momentum", "layers", "width", "act",
                                             "lr", "drop", "keep"]
    assert whens(spec) == {"momentum": {"optimizer": ("sgd",)},
                           "layers": {"optimizer": ("adam",)}, "width": {"layers": (3, 4)},
                           "act": {"layers": (1,)}, "keep": {"drop": (0.5,)}}


def test_ai_platform_child_with_its_own_when_has_both_conditions() -> None:
    aip = [OPT, LAYERS | {"conditionalParameterSpecs": [
        {"parameterSpec": double("x", when={"optimizer": "adam"}),
         "parentIntValues": {"values": [5]}}]}]
    assert whens(parse(aip)) == {"x": {"layers": (5,), "optimizer": ("adam",)}}


def test_stored_form_round_trips_and_is_our_spelling() -> None:
    aip = [{"parameterName": "optimizer", "type": "CATEGORICAL",
            "categoricalValues": ["sgd", "adam"],
            "conditionalParameterSpecs": [
                {"parameterSpec": {"parameterName": "momentum", "type": "DOUBLE",
                                   "minValue": 0, "maxValue": 0.9},
                 "parentCategoricalValues": {"values": ["sgd"]}}]}]
    spec = parse(aip)
    stored = json.loads(json.dumps(spec.to_dict()))
    assert stored["params"][1] == {"name": "momentum", "type": "double", "min": 0.0,
                                   "max": 0.9, "scale": "linear", "when": {"optimizer": ["sgd"]}}
    assert "when" not in stored["params"][0]
    assert ExperimentSpec.from_dict(stored) == spec


def test_set_can_add_and_change_a_condition(tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text("command: t\nmetric: m\nparams:\n"
                    "  - {name: optimizer, type: categorical, values: [sgd, adam]}\n"
                    "  - {name: momentum, type: double, min: 0, max: 1, when: {optimizer: sgd}}\n")
    spec = load_experiment_file(path, overrides=["params[momentum].when.optimizer=[sgd, adam]"])
    assert spec.params[1].when == {"optimizer": ("sgd", "adam")}
    spec = load_experiment_file(path, overrides=["params[momentum].when="])
    assert spec.params[1].when == {}


NESTED = """\
command: t
metric: m
params:
  - parameterName: opt
    type: CATEGORICAL
    categoricalValues: [sgd, adam]
    conditionalParameterSpecs:
      - parameterSpec: {parameterName: mom, type: DOUBLE, minValue: 0.1, maxValue: 0.9}
        parentCategoricalValues: {values: [sgd]}
      - parameterSpec:
          parameterName: sched
          type: CATEGORICAL
          categoricalValues: [cos, step]
          conditionalParameterSpecs:
            - parameterSpec: {parameterName: gamma, type: DOUBLE, minValue: 0.1, maxValue: 0.9}
              parentCategoricalValues: {values: [step]}
        parentCategoricalValues: {values: [adam]}
"""


def nested_set(tmp_path: Path, *overrides: str, text: str = NESTED) -> ExperimentSpec:
    path = tmp_path / "exp.yaml"
    path.write_text(text)
    return load_experiment_file(path, overrides=list(overrides))


def nested_set_problems(tmp_path: Path, *overrides: str, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        nested_set(tmp_path, *overrides, text=text)
    return [str(p) for p in info.value.problems]


def test_set_reads_either_spelling_in_a_nested_child(tmp_path: Path) -> None:
    spec = nested_set(tmp_path, "params[0].conditionalParameterSpecs[0].parameterSpec.max=0.5",
                      "params[0].conditionalParameterSpecs[1].parameterSpec.values[0]=linear",
                      "params[0].conditionalParameterSpecs[0].parentCategoricalValues.values=adam")
    assert spec.params[1] == Param("mom", ParamType.DOUBLE, low=0.1, high=0.5,
                                   when={"opt": ("adam",)})
    assert spec.params[2].values == ("linear", "step")


def test_set_names_a_nested_child_at_any_depth(tmp_path: Path) -> None:
    spec = nested_set(tmp_path, "params[mom].max=0.5", "params.gamma.min=0.2",
                      "params[opt].conditionalParameterSpecs[sched].parameterSpec"
                      ".conditionalParameterSpecs[gamma].parameterSpec.max=0.3")
    assert [(p.name, p.low, p.high) for p in spec.params] == [
        ("opt", None, None), ("mom", 0.1, 0.5), ("sched", None, None), ("gamma", 0.2, 0.3)]


def test_set_removes_a_nested_child_with_its_condition(tmp_path: Path) -> None:
    spec = nested_set(tmp_path, "params[gamma]=", "params[opt].conditionalParameterSpecs[mom]=")
    assert [p.name for p in spec.params] == ["opt", "sched"]
    assert whens(spec) == {"sched": {"opt": ("adam",)}}


def test_set_adds_a_first_nested_child_to_a_parameter_without_any(tmp_path: Path) -> None:
    text = ("command: t\nmetric: m\nparams:\n  - parameterName: opt\n    type: CATEGORICAL\n"
            "    categoricalValues: [sgd, adam]\n")
    child = ("{parameterSpec: {parameterName: mom, type: DOUBLE, minValue: 0, maxValue: 1},"
             " parentCategoricalValues: {values: [sgd]}}")
    spec = nested_set(tmp_path, f"params[opt].conditionalParameterSpecs[0]={child}", text=text)
    assert [p.name for p in spec.params] == ["opt", "mom"]
    assert whens(spec) == {"mom": {"opt": ("sgd",)}}


def test_a_nested_name_given_twice_is_a_problem_and_a_top_level_name_comes_first(
    tmp_path: Path,
) -> None:
    twice = NESTED.replace("parameterName: gamma", "parameterName: mom")
    assert nested_set_problems(tmp_path, "params[mom].max=0.5", text=twice) == [
        "--set params[mom].max: 'mom' names more than one nested parameter: "
        "params[0].conditionalParameterSpecs[0].parameterSpec and params[0]"
        ".conditionalParameterSpecs[1].parameterSpec.conditionalParameterSpecs[0].parameterSpec; "
        "give the place of the one you mean",
        "params[0].conditionalParameterSpecs[1].parameterSpec.conditionalParameterSpecs[0]"
        ".parameterSpec: duplicate name 'mom' "
        "(also params[0].conditionalParameterSpecs[0].parameterSpec)",
    ]
    top = NESTED + "  - {name: mom, type: double, min: 0, max: 1}\n"
    assert nested_set_problems(tmp_path, "params[mom].max=x", text=top)[0] == (
        "params[1].max: must be a number (got 'x')")


def test_aip_file_with_conditions_through_load_aip_file(tmp_path: Path) -> None:
    config = tmp_path / "hptuning_config.yaml"
    config.write_text(
        "trainingInput:\n  hyperparameters:\n    hyperparameterMetricTag: acc\n"
        "    params:\n"
        "      - parameterName: optimizer\n        type: CATEGORICAL\n"
        "        categoricalValues: [sgd, adam]\n"
        "        conditionalParameterSpecs:\n"
        "          - parameterSpec: {parameterName: momentum, type: DOUBLE, minValue: 0.0,\n"
        "                            maxValue: 0.99}\n"
        "            parentCategoricalValues: {values: [sgd]}\n")
    spec = load_aip_file(config, ["python", "t.py"])
    assert [p.name for p in spec.params] == ["optimizer", "momentum"]
    assert spec.params[1].when == {"optimizer": ("sgd",)}


# --- every problem, with its place -------------------------------------------------------------


@pytest.mark.parametrize(("when", "expected"), [
    ({"optimzer": "sgd"},
     "params[4].when.optimzer: no parameter named 'optimzer' (did you mean 'optimizer'?)"),
    ({"x": "sgd"}, "params[4].when.x: a parameter cannot depend on itself"),
    ({"lr": 0.01}, "params[4].when.lr: 'lr' is a double, which cannot be conditioned on (a value "
                   "equal to the one written would almost never be drawn): make it discrete, "
                   "categorical or integer"),
    ({"later": 1}, "params[4].when.later: 'later' comes after this parameter: a condition can "
                   "only name a parameter listed before it (move 'later' up)"),
    ({"optimizer": "nadam"},
     "params[4].when.optimizer: 'nadam' is not a value of 'optimizer' ('sgd', 'adam', "
     "'rmsprop')"),
    ({"optimizer": ["sgd", "sgd"]},
     "params[4].when.optimizer[1]: duplicate of optimizer[0] ('sgd')"),
    ({"optimizer": []}, "params[4].when.optimizer: must list at least one value of 'optimizer'"),
    ({"optimizer": {"a": 1}}, "params[4].when.optimizer: a mapping is not a value of "
                              "'optimizer' ('sgd', 'adam', 'rmsprop')"),
    ({"layers": 2}, "params[4].when.layers: 2 is not on the step of 'layers' (1, 3, ...)"),
    ({"layers": 7}, "params[4].when.layers: 7 is outside the range of 'layers' (1..5)"),
    ({"layers": 2.5}, "params[4].when.layers: must be a whole number: 'layers' is an integer "
                      "(got 2.5)"),
    ({"layers": "3"}, "params[4].when.layers: must be a number (got '3')"),
    ({"kernel": 2}, "params[4].when.kernel: 2 is not a value of 'kernel' (1, 3, 5)"),
    ({"kernel": True}, "params[4].when.kernel: true is not a value of 'kernel' (1, 3, 5)"),
    ({}, "params[4].when: must name at least one parameter, e.g. {optimizer: sgd} or "
         "{optimizer: [sgd, rmsprop]} (leave `when` out for a parameter that is always set)"),
    ("optimizer", "params[4].when: must be a mapping of earlier parameters to their values, "
                  "e.g. {optimizer: sgd} or {optimizer: [sgd, rmsprop]} (got 'optimizer')"),
    ({3: "x"}, "params[4].when: keys must be text (got 3)"),
])
def test_condition_problem(when: Any, expected: str) -> None:
    later = {"name": "later", "type": "integer", "min": 0, "max": 3}
    assert problems([OPT, LAYERS, KERNEL, LR, double("x", when=when), later]) == [expected]


def test_conditions_that_can_never_hold_together() -> None:
    params = [OPT, {"name": "nesterov", "type": "categorical", "values": ["on", "off"],
                    "when": {"optimizer": "sgd"}},
              double("never", when={"optimizer": "adam", "nesterov": "on"}),
              double("child", when={"optimizer": "adam"})]
    assert problems(params) == [
        "params[2].when: can never hold: 'optimizer' would have to be 'adam' here and 'sgd' "
        "for 'nesterov' to be set"]
    # Through two parents, and not said again for a descendant of the contradiction.
    params = [OPT,
              {"name": "a", "type": "categorical", "values": ["u"], "when": {"optimizer": "sgd"}},
              {"name": "b", "type": "categorical", "values": ["v"],
               "when": {"optimizer": ["adam", "rmsprop"]}},
              {"name": "c", "type": "categorical", "values": ["w"], "when": {"a": "u", "b": "v"}},
              double("d", when={"c": "w"})]
    assert problems(params) == [
        "params[3].when: can never hold: 'optimizer' would have to be 'sgd' for 'a' to be set "
        "and one of 'adam', 'rmsprop' for 'b' to be set"]


def test_a_refused_parent_says_its_problem_once() -> None:
    # The parent's own problem is the one listed; its children's conditions are not blamed.
    bad_parent = {"name": "optimizer", "type": "categorical", "values": []}
    assert problems([bad_parent, double("x", when={"optimizer": "sgd"})]) == [
        "params[0].values: must list at least one value"]


def test_the_same_parent_twice_through_both_spellings() -> None:
    aip = [OPT | {"conditionalParameterSpecs": [
        {"parameterSpec": double("x", when={"optimizer": "adam"}),
         "parentCategoricalValues": {"values": ["sgd"]}}]}]
    assert problems(aip) == [
        "params[0].conditionalParameterSpecs[0].parameterSpec.when.optimizer: a second "
        "condition on 'optimizer': give it once (a list of values means any of them)"]


@pytest.mark.parametrize(("child", "expected"), [
    ({"parameterSpec": double("x")},
     ["params[0].conditionalParameterSpecs[0]: required: one of parentCategoricalValues, "
      "parentDiscreteValues, parentIntValues (the parent's values that enable this "
      "parameter)"]),
    ({"parentCategoricalValues": {"values": ["sgd"]}},
     ["params[0].conditionalParameterSpecs[0].parameterSpec: required: the conditional "
      "parameter"]),
    ({"parameterSpec": double("x"), "parentCategoricalValues": {"values": ["sgd"]},
      "parentIntValues": {"values": [1]}},
     ["params[0].conditionalParameterSpecs[0]: give only one of parentCategoricalValues, "
      "parentDiscreteValues, parentIntValues (got parentCategoricalValues and "
      "parentIntValues)"]),
    ({"parameterSpec": double("x"), "parentIntValues": {"values": [1]}},
     ["params[0].conditionalParameterSpecs[0].parentIntValues.values: parentIntValues is for "
      "an integer parent, and 'optimizer' is categorical: write parentCategoricalValues"]),
    ({"parameterSpec": double("x"), "parentCategoricalValues": ["sgd"]},
     ["params[0].conditionalParameterSpecs[0].parentCategoricalValues: must be a mapping "
      "{values: [...]} (got a list)"]),
    ({"parameterSpec": double("x"), "parentCategoricalValues": {"values": ["sgd", "x"]}},
     ["params[0].conditionalParameterSpecs[0].parentCategoricalValues.values[1]: 'x' is not "
      "a value of 'optimizer' ('sgd', 'adam', 'rmsprop')"]),
    ({"parameterSpec": double("x"), "parentCategoricalValues": {"values": ["sgd"], "v": 1},
      "extra": 1},
     ["params[0].conditionalParameterSpecs[0]: unknown key 'extra'",
      "params[0].conditionalParameterSpecs[0].parentCategoricalValues: unknown key 'v'"]),
    ({"parameterSpec": {"name": "x", "type": "double", "min": 1, "max": 0},
      "parentCategoricalValues": {"values": ["sgd"]}},
     ["params[0].conditionalParameterSpecs[0].parameterSpec.max: must be greater than min "
      "(got 0 <= 1)"]),
    ("momentum", ["params[0].conditionalParameterSpecs[0]: must be a mapping {parameterSpec: "
                  "..., parentCategoricalValues: {values: [...]}} (got 'momentum')"]),
])
def test_ai_platform_child_problem(child: Any, expected: list[str]) -> None:
    assert problems([OPT | {"conditionalParameterSpecs": [child]}]) == expected


@pytest.mark.parametrize(("when", "expected"), [
    ({"parentIntValues": {"values": [1]}},
     "params[0].conditionalParameterSpecs[0].parentIntValues.values: parentIntValues is for an "
     "integer parent, and 'optimizer' is categorical: write parentCategoricalValues"),
    ({"parentCategoricalValues": {"values": ["sgd", "nag"]}},
     "params[0].conditionalParameterSpecs[0].parentCategoricalValues.values[1]: 'nag' is not a "
     "value of 'optimizer' ('sgd', 'adam', 'rmsprop')"),
])
def test_a_child_with_a_problem_of_its_own_still_has_its_condition_checked(
    when: dict[str, Any], expected: str
) -> None:
    # "Every problem": a bad maxValue does not hide a wrong parent*Values.
    child = {"parameterName": "momentum", "type": "DOUBLE", "minValue": 0, "maxValue": -0.99}
    children = [{"parameterSpec": child, **when}]
    assert problems([OPT | {"conditionalParameterSpecs": children}]) == [
        "params[0].conditionalParameterSpecs[0].parameterSpec.maxValue: must be greater than "
        "minValue (got -0.99 <= 0)",
        expected]
    # ... and so does ours: a refused parameter's `when` names a parameter that is not there.
    assert problems([OPT, double("x", min=2, when={"optimiser": "sgd"})]) == [
        "params[1].max: must be greater than min (got 1.0 <= 2)",
        "params[1].when.optimiser: no parameter named 'optimiser' (did you mean 'optimizer'?)"]


def test_children_must_be_a_list_and_anchors_cannot_loop() -> None:
    assert problems([OPT | {"conditionalParameterSpecs": "momentum"}]) == [
        "params[0].conditionalParameterSpecs: must be a list of {parameterSpec: ..., "
        "parentCategoricalValues: ...} (got 'momentum')"]
    loop: dict[str, Any] = {"name": "a", "type": "categorical", "values": ["x"]}
    loop["conditionalParameterSpecs"] = [
        {"parameterSpec": loop, "parentCategoricalValues": {"values": ["x"]}}]
    found = problems([loop])
    assert any("is nested too deeply (or refers to itself)" in f for f in found), found


def test_a_parameter_without_conditions_stays_as_it_was() -> None:
    spec = parse([OPT, LR])
    assert spec.params == (Param("optimizer", ParamType.CATEGORICAL,
                                 values=("sgd", "adam", "rmsprop")), spec.params[1])
    assert not spec.space().conditional


def test_a_nested_name_in_a_file_whose_children_hold_themselves_is_found_quickly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 300 aliases of a child whose list holds itself: looking for a name walked millions of
    # children (21 s and 700 MB on the daemon's event loop) before it was bounded.
    kids = ", ".join(["*k"] * 300)
    text = ("command: t\nmetric: m\nparams:\n  - parameterName: a\n    type: CATEGORICAL\n"
            "    categoricalValues: [x]\n    conditionalParameterSpecs: &c [ &k {"
            "parentCategoricalValues: [x], parameterSpec: {parameterName: foo, type: CATEGORICAL,"
            f" categoricalValues: [x], conditionalParameterSpecs: *c}}}}, {kids} ]\n")
    looked_at: list[object] = []
    named = _spec_set._named

    def counting(param: object, name: str) -> bool:
        looked_at.append(param)
        return named(param, name)

    monkeypatch.setattr(_spec_set, "_named", counting)
    problems = nested_set_problems(tmp_path, "params[foo].categoricalValues=[y]", text=text)
    assert any("'foo' names more than one nested parameter" in p for p in problems)
    assert len(looked_at) < 1000  # the second match ends the search (it was millions)
