"""Vertex AI's HyperparameterTuningJob (``gcloud ai hp-tuning-jobs create --config=FILE``): read
as the same search as its AI Platform spelling, every problem at the place the file wrote it,
and ``--set`` in Vertex's spelling."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gpusched.errors import SpecError
from gpusched.models import Goal, ObjectiveRule
from gpusched.plugin_api import Param, ParamType, Scale
from gpusched.spec import ExperimentSpec, load_aip_file, load_experiment_file, parse_experiment

VERTEX_CONFIG = """\
displayName: digits tuning
maxTrialCount: 20
parallelTrialCount: 2
maxFailedTrialCount: 4
labels: {team: vision}
studySpec:
  metrics:
    - metricId: accuracy
      goal: MAXIMIZE
  algorithm: GRID_SEARCH
  measurementSelectionType: BEST_MEASUREMENT
  medianAutomatedStoppingSpec: {useElapsedDuration: false}
  observationNoise: HIGH
  parameters:
    - parameterId: learning_rate
      doubleValueSpec: {minValue: 0.0001, maxValue: 0.1, defaultValue: 0.01}
      scaleType: UNIT_LOG_SCALE
    - parameterId: momentum
      doubleValueSpec: {minValue: 0.5, maxValue: 0.99}
      scaleType: UNIT_REVERSE_LOG_SCALE
    - parameterId: num_layers
      integerValueSpec: {minValue: 1, maxValue: 4}
      scaleType: UNIT_LINEAR_SCALE
      conditionalParameterSpecs:
        - parameterSpec:
            parameterId: width
            discreteValueSpec: {values: [64, 128]}
          parentIntValues: {values: [3, 4]}
    - parameterId: batch_size
      discreteValueSpec: {values: [128, 32, 64], defaultValue: 64}
      scaleType: SCALE_TYPE_UNSPECIFIED
    - parameterId: optimizer
      categoricalValueSpec: {values: [sgd, adam]}
      conditionalParameterSpecs:
        - parameterSpec:
            parameterId: nesterov
            categoricalValueSpec: {values: ["on", "off"]}
          parentCategoricalValues: {values: [sgd]}
        - parameterSpec:
            parameterId: beta1
            discreteValueSpec: {values: [0.9, 0.99]}
            conditionalParameterSpecs:
              - parameterSpec:
                  parameterId: amsgrad
                  categoricalValueSpec: {values: ["yes", "no"]}
                parentDiscreteValues: {values: [0.99]}
          parentCategoricalValues: {values: [adam]}
trialJobSpec:
  serviceAccount: trainer@my-project.iam.gserviceaccount.com
  workerPoolSpecs:
    - machineSpec:
        machineType: n1-standard-8
        acceleratorType: NVIDIA_TESLA_T4
        acceleratorCount: 2
      replicaCount: 1
      diskSpec: {bootDiskType: pd-ssd, bootDiskSizeGb: 100}
      pythonPackageSpec:
        executorImageUri: us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-12.py310:latest
        packageUris: [gs://my-bucket/trainer-0.1.tar.gz]
        pythonModule: trainer.task
        args: [--epochs, "10"]
    - machineSpec: {machineType: n1-standard-8}
      replicaCount: 2
      pythonPackageSpec:
        executorImageUri: us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-12.py310:latest
        packageUris: [gs://my-bucket/trainer-0.1.tar.gz]
        pythonModule: trainer.task
        args: [--worker]
"""

# The same search in AI Platform's spelling (with our `objective`, which it cannot spell).
AIP_CONFIG = """\
objective: best
trainingInput:
  scaleTier: CUSTOM
  masterConfig: {acceleratorConfig: {count: 2, type: NVIDIA_TESLA_T4}}
  args: [--epochs, "10"]
  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: accuracy
    maxTrials: 20
    maxParallelTrials: 2
    maxFailedTrials: 4
    enableTrialEarlyStopping: true
    algorithm: GRID_SEARCH
    params:
      - {parameterName: learning_rate, type: DOUBLE, minValue: 0.0001, maxValue: 0.1,
         scaleType: UNIT_LOG_SCALE}
      - {parameterName: momentum, type: DOUBLE, minValue: 0.5, maxValue: 0.99,
         scaleType: UNIT_REVERSE_LOG_SCALE}
      - parameterName: num_layers
        type: INTEGER
        minValue: 1
        maxValue: 4
        scaleType: UNIT_LINEAR_SCALE
        conditionalParameterSpecs:
          - parameterSpec: {parameterName: width, type: DISCRETE, discreteValues: [64, 128]}
            parentIntValues: {values: [3, 4]}
      - {parameterName: batch_size, type: DISCRETE, discreteValues: [128, 32, 64]}
      - parameterName: optimizer
        type: CATEGORICAL
        categoricalValues: [sgd, adam]
        conditionalParameterSpecs:
          - parameterSpec: {parameterName: nesterov, type: CATEGORICAL,
                            categoricalValues: ["on", "off"]}
            parentCategoricalValues: {values: [sgd]}
          - parameterSpec:
              parameterName: beta1
              type: DISCRETE
              discreteValues: [0.9, 0.99]
              conditionalParameterSpecs:
                - parameterSpec: {parameterName: amsgrad, type: CATEGORICAL,
                                  categoricalValues: ["yes", "no"]}
                  parentDiscreteValues: {values: [0.99]}
            parentCategoricalValues: {values: [adam]}
"""

COMMAND = ["python", "-m", "trainer.task"]


def write(folder: Path, text: str, name: str = "vertex.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``submit --aip`` runs in the current folder: this test's."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def load(folder: Path, text: str, *overrides: str, name: str | None = None) -> ExperimentSpec:
    return load_aip_file(write(folder, text), COMMAND, overrides=overrides, name=name)


def problems_of(folder: Path, text: str, *overrides: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        load(folder, text, *overrides)
    return [str(p) for p in info.value.problems]


def study(**extra: Any) -> dict[str, Any]:
    """The smallest valid studySpec, plus ``extra`` keys."""
    return {"metrics": [{"metricId": "acc", "goal": "MAXIMIZE"}],
            "parameters": [{"parameterId": "lr", "doubleValueSpec": {"minValue": 0.001,
                                                                    "maxValue": 0.1}}],
            **extra}


def problems(data: dict[str, Any]) -> list[str]:
    """The problems of a file of ours (a command) holding ``data``."""
    with pytest.raises(SpecError) as info:
        parse_experiment({"command": "python train.py", **data}, base_dir="/work/exp",
                         source="exp.yaml")
    return [str(p) for p in info.value.problems]


# --- the same search as AI Platform's ----------------------------------------------------------


def test_a_vertex_config_is_the_search_its_ai_platform_spelling_is(here: Path) -> None:
    vertex = load(here, VERTEX_CONFIG, name="x")
    assert vertex == load_aip_file(write(here, AIP_CONFIG, "hptuning_config.yaml"), COMMAND,
                                   name="x")
    assert vertex.command == (*COMMAND, "--epochs", "10")  # the chief's args, not a worker's
    assert (vertex.metric, vertex.goal, vertex.objective) == ("accuracy", Goal.MAXIMIZE,
                                                              ObjectiveRule.BEST)
    assert (vertex.max_trials, vertex.max_parallel_trials, vertex.max_failed_trials) == (20, 2, 4)
    assert vertex.max_consecutive_failed_trials == 4  # its only failure budget, as on Vertex
    assert (vertex.search_algorithm, vertex.early_stopping_policy) == ("grid", "median")
    assert vertex.gpus_per_trial == 2
    assert vertex.workdir == str(here)
    assert vertex.params == (
        Param("learning_rate", ParamType.DOUBLE, low=0.0001, high=0.1, scale=Scale.LOG),
        Param("momentum", ParamType.DOUBLE, low=0.5, high=0.99, scale=Scale.REVERSE_LOG),
        Param("num_layers", ParamType.INTEGER, low=1, high=4),
        Param("width", ParamType.DISCRETE, values=(64, 128), when={"num_layers": (3, 4)}),
        Param("batch_size", ParamType.DISCRETE, values=(32, 64, 128)),
        Param("optimizer", ParamType.CATEGORICAL, values=("sgd", "adam")),
        Param("nesterov", ParamType.CATEGORICAL, values=("on", "off"),
              when={"optimizer": ("sgd",)}),
        Param("beta1", ParamType.DISCRETE, values=(0.9, 0.99), when={"optimizer": ("adam",)}),
        Param("amsgrad", ParamType.CATEGORICAL, values=("yes", "no"), when={"beta1": (0.99,)}),
    )
    # Where each setting was written: the daemon's own problems name these places.
    assert [vertex.written_at(s) for s in ("metric", "goal", "algorithm", "early_stopping")] == [
        "studySpec.metrics[0].metricId", "studySpec.metrics[0].goal", "studySpec.algorithm",
        "studySpec.medianAutomatedStoppingSpec"]
    assert vertex.written_at("max_trials") == "maxTrialCount"
    assert vertex.written_at("params") == "studySpec.parameters"


def test_the_display_name_names_the_experiment(here: Path) -> None:
    spec = load(here, VERTEX_CONFIG)
    assert spec.name == "digits-tuning"  # Vertex allows any text; a name is a word
    assert spec.warnings() == ()
    assert load(here, VERTEX_CONFIG.replace("digits tuning", "'.. a/b: c'")).name == "a-b-c"
    assert load(here, VERTEX_CONFIG, name="other").name == "other"
    assert load(here, VERTEX_CONFIG, "name=other").name == "other"
    assert load(here, "name: ours\n" + VERTEX_CONFIG).name == "ours"  # ours, written, wins
    assert load(here, VERTEX_CONFIG.replace("displayName: digits tuning\n", "")).name == (
        "vertex")  # the file's stem, as for any file without a name


def test_what_vertex_leaves_unset_reads_as_vertex_reads_it(here: Path) -> None:
    text = (
        "studySpec:\n  metrics: [{metricId: loss, goal: MINIMIZE}]\n"
        "  parameters: [{parameterId: lr, doubleValueSpec: {minValue: 0.001, maxValue: 0.1}}]\n")
    spec = load(here, text)
    assert (spec.metric, spec.goal) == ("loss", Goal.MINIMIZE)
    assert spec.warnings() == ()  # a loss minimized: no "looks like something to minimize"
    assert spec.search_algorithm == "gp"  # ALGORITHM_UNSPECIFIED: its Bayesian optimisation
    assert spec.objective is ObjectiveRule.LAST  # MEASUREMENT_SELECTION_TYPE_UNSPECIFIED
    assert (spec.max_failed_trials, spec.max_consecutive_failed_trials) == (None, 3)
    assert (spec.early_stopping_policy, spec.gpus_per_trial) == (None, 1)
    # maxFailedTrialCount 0: "Vertex decides", as AI Platform's maxFailedTrials 0 is unset.
    assert load(here, text + "maxFailedTrialCount: 0\n").max_failed_trials is None
    unspecified = text.replace("  parameters", "  measurementSelectionType:"
                               " MEASUREMENT_SELECTION_TYPE_UNSPECIFIED\n"
                               "  algorithm: ALGORITHM_UNSPECIFIED\n  parameters")
    spec = load(here, unspecified)
    assert (spec.objective, spec.search_algorithm) == (ObjectiveRule.LAST, "gp")
    assert load(here, text.replace("MINIMIZE}]", "MINIMIZE}]\n  measurementSelectionType:"
                                                 " last_measurement")).objective is (
        ObjectiveRule.LAST)
    container = text + ("trialJobSpec:\n  workerPoolSpecs:\n    - machineSpec: {machineType: x}\n"
                        "      containerSpec: {imageUri: gcr.io/p/t, args: [--data, /d]}\n")
    spec = load(here, container)
    assert (spec.command, spec.gpus_per_trial) == ((*COMMAND, "--data", "/d"), 1)


def test_integers_quoted_as_googles_json_writes_int64s_are_read(here: Path) -> None:
    # `gcloud ai hp-tuning-jobs describe --format=json` prints int64s in quotes (protobuf's
    # JSON form), and Vertex reads its own output back: so do we.
    as_numbers = {
        "maxTrialCount": 20, "parallelTrialCount": 2, "maxFailedTrialCount": 4,
        "studySpec": study(parameters=[
            {"parameterId": "layers", "integerValueSpec": {"minValue": 1, "maxValue": 4,
                                                           "defaultValue": 2},
             "conditionalParameterSpecs": [
                 {"parameterSpec": {"parameterId": "width",
                                    "discreteValueSpec": {"values": [64, 128]}},
                  "parentIntValues": {"values": [3, 4]}}]}]),
        "trialJobSpec": {"workerPoolSpecs": [{"machineSpec": {"acceleratorCount": 2},
                                              "replicaCount": 1}]},
    }
    quoted = json.loads(json.dumps(as_numbers).replace('"maxValue": 4', '"maxValue": "4"')
                        .replace('"minValue": 1', '"minValue": "1"')
                        .replace('"defaultValue": 2', '"defaultValue": "2"')
                        .replace("[3, 4]", '["3", "4"]')
                        .replace('"maxTrialCount": 20', '"maxTrialCount": "20"')
                        .replace('"acceleratorCount": 2', '"acceleratorCount": "2"')
                        .replace('"replicaCount": 1', '"replicaCount": "1"'))
    assert '"4"' in json.dumps(quoted) and '"20"' in json.dumps(quoted)
    spec = load(here, json.dumps(quoted))
    assert spec == load(here, json.dumps(as_numbers))
    assert spec.params[0] == Param("layers", ParamType.INTEGER, low=1, high=4)
    assert spec.params[1].when == {"layers": (3, 4)}
    assert (spec.max_trials, spec.gpus_per_trial) == (20, 2)
    # AI Platform's counts too; text that is no integer is still refused, at its place.
    aip = AIP_CONFIG.replace("maxTrials: 20", "maxTrials: '20'")
    assert load_aip_file(write(here, aip, "hptuning_config.yaml"), COMMAND).max_trials == 20
    refused = json.dumps(quoted).replace('"minValue": "1"', '"minValue": "1.5"')
    assert problems_of(here, refused) == [
        "studySpec.parameters[0].integerValueSpec.minValue: must be a number (got '1.5')"]
    assert problems_of(here, json.dumps(quoted).replace('"20"', '"twenty"')) == [
        "maxTrialCount: must be a number (got 'twenty')"]


def test_the_trainers_container_env_is_the_experiments_env(here: Path) -> None:
    pool = ("trialJobSpec:\n  workerPoolSpecs:\n    - machineSpec: {machineType: x}\n"
            "      containerSpec:\n        imageUri: gcr.io/p/t\n"
            "        env: [{name: DATA, value: /data}, {name: EMPTY, value: ''}]\n")
    text = ("studySpec:\n  metrics: [{metricId: acc, goal: MAXIMIZE}]\n"
            "  parameters: [{parameterId: lr,"
            " doubleValueSpec: {minValue: 0.001, maxValue: 0.1}}]\n")
    spec = load(here, text + pool)
    assert dict(spec.env) == {"DATA": "/data", "EMPTY": ""}
    assert spec.written_at("env") == "trialJobSpec.workerPoolSpecs[0].containerSpec.env"
    python_package = pool.replace("containerSpec", "pythonPackageSpec")
    assert dict(load(here, text + python_package).env) == {"DATA": "/data", "EMPTY": ""}
    assert problems_of(here, "env: {X: y}\n" + text + pool) == [
        "trialJobSpec.workerPoolSpecs[0].containerSpec.env: the same setting as env: give it"
        " once"]


ENV = "trialJobSpec.workerPoolSpecs[0].containerSpec.env"
ENV_PROBLEMS = [
    ("DATA", f"{ENV}: must be a list such as [{{name: NAME, value: TEXT}}] (got 'DATA')"),
    (["DATA=/d"], f"{ENV}[0]: must be a mapping {{name: NAME, value: TEXT}} (got 'DATA=/d')"),
    ([{"value": "/d"}], f"{ENV}[0].name: required: the variable's name"),
    ([{"name": "A"}], f"{ENV}[0].value: required: the variable's value (\"\" for none)"),
    ([{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
     f"{ENV}[1].name: 'A' is already set by {ENV}[0]: give it once"),
    ([{"name": "A", "valueFrom": "x", "value": "1"}],
     f"{ENV}[0]: unknown key 'valueFrom' (did you mean 'value'?)"),
    # Each checked as `env` is, at the place the list writes it.
    ([{"name": ["A"], "value": "x"}], f"{ENV}[0].name: must be text (got a list)"),
    ([{"name": {"a": 1}, "value": "x"}], f"{ENV}[0].name: must be text (got a mapping)"),
    ([{"name": 5, "value": "x"}], f"{ENV}[0].name: must be text (got 5)"),
    ([{"name": "1A", "value": "x"}], f"{ENV}[0].name: must be a variable name: letters, digits"
                                     " and _, not starting with a digit (got '1A')"),
    ([{"name": "CUDA_VISIBLE_DEVICES", "value": "0"}],
     f"{ENV}[0].name: is set by gpusched for each trial and cannot be set here"),
    ([{"name": "OK", "value": "fine"}, {"name": "A", "value": [1]}],
     f"{ENV}[1].value: must be text or a number (got a list)"),
]


@pytest.mark.parametrize(("env", "expected"), ENV_PROBLEMS)
def test_a_bad_container_env_is_named_where_it_is_written(env: Any, expected: str) -> None:
    data = {"studySpec": study(),
            "trialJobSpec": {"workerPoolSpecs": [{"containerSpec": {"env": env}}]}}
    assert problems(data) == [expected]


def test_a_nul_in_a_container_env_value_is_named_at_the_value() -> None:
    data = {"studySpec": study(), "trialJobSpec": {"workerPoolSpecs": [
        {"containerSpec": {"env": [{"name": "A", "value": "a\0b"}]}}]}}
    [found] = problems(data)
    assert found.startswith(f"{ENV}[0].value: ")


def test_a_container_env_expands_references_as_vertex_does(here: Path) -> None:
    # Kubernetes' rules, which Vertex applies: $(NAME) of an entry before it, $$ for $.
    env = [{"name": "DATA", "value": "/data"}, {"name": "TRAIN", "value": "$(DATA)/train"},
           {"name": "LITERAL", "value": "$$(DATA) costs $5"},
           {"name": "LATER", "value": "$(AFTER)"}, {"name": "AFTER", "value": "x"},
           {"name": "OUT", "value": "$(AIP_MODEL_DIR)/out"}]
    text = json.dumps({"studySpec": study(),
                       "trialJobSpec": {"workerPoolSpecs": [{"containerSpec": {"env": env}}]}})
    spec = load(here, text)
    assert dict(spec.env) == {"DATA": "/data", "TRAIN": "/data/train",
                              "LITERAL": "$(DATA) costs $5", "LATER": "$(AFTER)", "AFTER": "x",
                              "OUT": "$(AIP_MODEL_DIR)/out"}
    assert spec.warnings() == (
        f"{ENV}[3].value: $(AFTER) left as written: only a variable listed before it here is"
        " expanded (Vertex AI also expands its own, such as $(AIP_MODEL_DIR); gpusched sets"
        " those for each trial: read them in the trainer)",
        f"{ENV}[5].value: $(AIP_MODEL_DIR) left as written: only a variable listed before it"
        " here is expanded (Vertex AI also expands its own, such as $(AIP_MODEL_DIR); gpusched"
        " sets those for each trial: read them in the trainer)")


def test_a_plain_submit_of_a_vertex_file_reads_it_as_an_ai_platform_config(
        tmp_path: Path) -> None:
    text = ("command: python train.py\nstudySpec:\n  metrics: [{metricId: acc, goal: MAXIMIZE}]\n"
            "  parameters: [{parameterId: n, integerValueSpec: {minValue: 1, maxValue: 3}}]\n"
            "maxTrialCount: 3\n")
    spec = load_experiment_file(write(tmp_path, text))
    assert (spec.search_algorithm, spec.max_trials, spec.metric) == ("gp", 3, "acc")
    assert spec.params == (Param("n", ParamType.INTEGER, low=1, high=3),)


# --- problems, each where the file wrote it ----------------------------------------------------


VERTEX_PROBLEMS = [
    ({"studySpec": study(metrics=[{"metricId": "acc", "goal": "MAXIMIZE"},
                                  {"metricId": "loss", "goal": "MINIMIZE"}])},
     "studySpec.metrics: must list exactly one metric (got 2): gpusched optimises one; keep"
     " that one here (the trainer may report the others all the same)"),
    ({"studySpec": study(metrics=[])},
     "studySpec.metrics: must list exactly one metric (got 0): gpusched optimises one; keep"
     " that one here (the trainer may report the others all the same)"),
    ({"studySpec": study(metrics={"metricId": "acc"})},
     "studySpec.metrics: must be a list of one {metricId: NAME, goal: MAXIMIZE or MINIMIZE}"
     " (got a mapping)"),
    ({"studySpec": study(metrics=[{"goal": "MAXIMIZE"}])},
     "studySpec.metrics[0].metricId: required: the name of the reported metric"),
    ({"studySpec": study(metrics=[{"metricId": "acc"}])},
     "studySpec.metrics[0].goal: required: MAXIMIZE or MINIMIZE"),
    ({"studySpec": study(metrics=[{"metricId": "acc", "goal": "GOAL_TYPE_UNSPECIFIED"}])},
     "studySpec.metrics[0].goal: GOAL_TYPE_UNSPECIFIED is not a goal: write MAXIMIZE or"
     " MINIMIZE"),
    ({"studySpec": study(metrics=[{"metricID": "acc", "goal": "MAXIMIZE", "metricId": "a"}])},
     "studySpec.metrics[0]: unknown key 'metricID' (did you mean 'metricId'?)"),
    ({"studySpec": study(metrics=[{"metricId": "a", "goal": "MAXIMIZE", "safetyConfig": {}}])},
     "studySpec.metrics[0].safetyConfig: not supported: gpusched has no safety metrics; leave"
     " it out"),
    ({"studySpec": {"parameters": study()["parameters"]}},
     "studySpec.metrics: required: the metric to optimise, as [{metricId: NAME, goal: MAXIMIZE"
     " or MINIMIZE}]"),
    ({"studySpec": {"metrics": study()["metrics"]}},
     "studySpec.parameters: required: the hyperparameters to search"),
    ({"studySpec": study(parameters=[{"parameterId": "lr",
                                      "doubleValueSpec": {"minValue": 0, "maxValue": 1},
                                      "integerValueSpec": {"minValue": 0, "maxValue": 1}}])},
     "studySpec.parameters[0]: give only one of doubleValueSpec, integerValueSpec,"
     " discreteValueSpec, categoricalValueSpec (got doubleValueSpec and integerValueSpec)"),
    ({"studySpec": study(parameters=[
        {"parameterId": "lr", "doubleValueSpec": {"minValue": 0.1, "maxValue": 0.01}}])},
     "studySpec.parameters[0].doubleValueSpec.maxValue: must be greater than minValue"
     " (got 0.01 <= 0.1)"),
    ({"studySpec": study(parameters=[
        study()["parameters"][0],
        {"parameterId": "n", "integerValueSpec": {"minValue": 4, "maxValue": 4}}])},
     "studySpec.parameters[1].integerValueSpec.maxValue: must be greater than minValue"
     " (got 4 <= 4)"),
    ({"studySpec": study(parameters=[{"parameterId": "lr"}])},
     "studySpec.parameters[0]: required: one of doubleValueSpec, integerValueSpec,"
     " discreteValueSpec, categoricalValueSpec (the parameter's range or values)"),
    ({"studySpec": study(parameters=[{"parameterId": "lr",
                                      "doubleValueSpec": {"minValue": 0}}])},
     "studySpec.parameters[0].doubleValueSpec.maxValue: required for a double parameter"),
    ({"studySpec": study(parameters=[{"doubleValueSpec": {"minValue": 0, "maxValue": 1}}])},
     "studySpec.parameters[0].parameterId: required"),
    ({"studySpec": study(parameters=[{"parameterId": "lr", "doubleValueSpec": 3}])},
     "studySpec.parameters[0].doubleValueSpec: must be a mapping such as {minValue: 0,"
     " maxValue: 1} (got 3)"),
    ({"studySpec": study(parameters=[{"parameterId": "c", "categoricalValueSpec": ["a"]}])},
     "studySpec.parameters[0].categoricalValueSpec: must be a mapping such as {values: [...]}"
     " (got a list)"),
    ({"studySpec": study(parameters=[{"parameterId": "c",
                                      "discreteValueSpec": {"values": [1], "minValue": 0}}])},
     "studySpec.parameters[0].discreteValueSpec: unknown key 'minValue'"),
    ({"studySpec": study(parameters=[{"parameterId": "c",
                                      "categoricalValueSpec": {"values": ["a", "a"]}}])},
     "studySpec.parameters[0].categoricalValueSpec.values[1]: duplicate of values[0] ('a')"),
    ({"studySpec": study(parameters=[{"parameterId": "n", "scaleType": "UNIT_LOG_SCALE",
                                      "integerValueSpec": {"minValue": 0, "maxValue": 3}}])},
     "studySpec.parameters[0].integerValueSpec.minValue: must be at least 1 for an integer"
     " parameter on a log scale (got 0)"),
    ({"studySpec": study(parameters=[{"parameterId": "lr", "doubleValueSpecs": {}}])},
     ["studySpec.parameters[0]: unknown key 'doubleValueSpecs' (did you mean"
      " 'doubleValueSpec'?)",
      "studySpec.parameters[0]: required: one of doubleValueSpec, integerValueSpec,"
      " discreteValueSpec, categoricalValueSpec (the parameter's range or values)"]),
    ({"studySpec": study(parameters=[{
        "parameterId": "o", "categoricalValueSpec": {"values": ["a", "b"]},
        "conditionalParameterSpecs": [{
            "parameterSpec": {"parameterId": "m", "doubleValueSpec": {"minValue": 1,
                                                                      "maxValue": 0}},
            "parentCategoricalValues": {"values": ["a"]}}]}])},
     "studySpec.parameters[0].conditionalParameterSpecs[0].parameterSpec.doubleValueSpec"
     ".maxValue: must be greater than minValue (got 0 <= 1)"),
    ({"studySpec": study(parameters=[{
        "parameterId": "o", "categoricalValueSpec": {"values": ["a", "b"]},
        "conditionalParameterSpecs": [{
            "parameterSpec": {"parameterId": "m", "doubleValueSpec": {"minValue": 0,
                                                                      "maxValue": 1}},
            "parentIntValues": {"values": [1]}}]}])},
     "studySpec.parameters[0].conditionalParameterSpecs[0].parentIntValues.values:"
     " parentIntValues is for an integer parent, and 'o' is categorical: write"
     " parentCategoricalValues"),
    ({"studySpec": study(algorith="GRID_SEARCH")},
     "studySpec: unknown key 'algorith' (did you mean 'algorithm'?) (this mapping takes Vertex"
     " AI's StudySpec keys)"),
    ({"studySpec": study(measurementSelectionType="MEAN_MEASUREMENT")},
     "studySpec.measurementSelectionType: must be one of BEST_MEASUREMENT, LAST_MEASUREMENT"
     " (got 'MEAN_MEASUREMENT')"),
    ({"studySpec": study(decayCurveStoppingSpec={"useElapsedDuration": False})},
     "studySpec.decayCurveStoppingSpec: not supported: gpusched stops trials early by the"
     " median rule alone (write medianAutomatedStoppingSpec: {} for it, or leave early"
     " stopping out)"),
    ({"studySpec": study(convexAutomatedStoppingSpec={"maxStepCount": 10})},
     "studySpec.convexAutomatedStoppingSpec: not supported: gpusched stops trials early by the"
     " median rule alone (write medianAutomatedStoppingSpec: {} for it, or leave early"
     " stopping out)"),
    ({"studySpec": study(studyStoppingConfig={"maxNumTrialsNoProgress": 5})},
     "studySpec.studyStoppingConfig: not supported: the search ends after maxTrialCount trials"
     " (or at time_budget: DURATION, if you add one); leave it out"),
    ({"studySpec": study(medianAutomatedStoppingSpec={"useElapsedDuration": True})},
     "studySpec.medianAutomatedStoppingSpec.useElapsedDuration: not supported: trials are"
     " compared at the same training_iteration, not after the same time; leave it out"),
    ({"studySpec": study(medianAutomatedStoppingSpec=True)},
     "studySpec.medianAutomatedStoppingSpec: must be a mapping, such as {} (got true)"),
    ({"studySpec": study(medianAutomatedStoppingSpec={}), "enableTrialEarlyStopping": True},
     "enableTrialEarlyStopping: the same setting as studySpec.medianAutomatedStoppingSpec:"
     " give it once"),
    ({"studySpec": study(), "metric": "acc"},
     "metric: the same setting as studySpec.metrics[0].metricId: give it once"),
    ({"studySpec": study(), "maxTrialCont": 3},
     "unknown key 'maxTrialCont' (did you mean 'maxTrialCount'?)"),
    ({"studySpec": study(), "maxTrialCount": 0}, "maxTrialCount: must be at least 1 (got 0)"),
    ({"studySpec": study(), "parallelTrialCount": 1, "maxParallelTrials": 2},
     "maxParallelTrials: the same setting as parallelTrialCount: give it once"),
    ({"studySpec": study(), "trialJobSpec": {"workerPoolSpecs": {"machineSpec": {}}}},
     "trialJobSpec.workerPoolSpecs: must be a list of worker pools (got a mapping)"),
    ({"studySpec": study(), "trialJobSpec": {"workerPoolSpecs": [
        {"machineSpec": {"acceleratorCount": 1.5}}]}},
     "trialJobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount: must be a whole number"
     " (got 1.5)"),
    ({"studySpec": study(), "trialJobSpec": {"workerPoolSpecs": [
        {"containerSpec": {"args": "--epochs 3"}}]}},
     "trialJobSpec.workerPoolSpecs[0].containerSpec.args: must be a string or a list of"
     " strings (got '--epochs 3')"),
    ({"studySpec": study(), "displayName": "???"},
     "displayName: must be 1-64 letters, digits, _ . - (not starting with . or -) (got '???')"),
    ({"studySpec": "x"}, "studySpec: must be a mapping (got 'x')"),
]


@pytest.mark.parametrize(("data", "expected"), VERTEX_PROBLEMS)
def test_a_problem_is_named_where_the_vertex_config_writes_it(
        data: dict[str, Any], expected: str | list[str]) -> None:
    found = problems(data)
    if data.get("studySpec") == "x":  # nothing read: what it would have given is missing
        assert found[0] == expected
    else:
        assert found == ([expected] if isinstance(expected, str) else expected)


def test_a_search_written_both_ways_is_refused(here: Path) -> None:
    both = VERTEX_CONFIG + AIP_CONFIG.split("objective: best\n", 1)[1]
    found = problems_of(here, both)
    assert found[0] == (
        "studySpec: Vertex AI's studySpec and AI Platform's trainingInput in one file: write"
        " the search one way (keep studySpec, or trainingInput)")
    # The job's counts are Vertex's too: written twice, each is said where it is.
    assert found[1:] == [
        f"trainingInput.hyperparameters.{theirs}: the same setting as {ours}: give it once"
        for theirs, ours in (("maxTrials", "maxTrialCount"),
                             ("maxParallelTrials", "parallelTrialCount"),
                             ("maxFailedTrials", "maxFailedTrialCount"))]
    found = problems({"studySpec": study(), "hyperparameters": {"maxTrials": 3},
                      "metric": "acc", "params": study()["parameters"]})
    assert found == [
        "studySpec: Vertex AI's studySpec and AI Platform's hyperparameters in one file: write"
        " the search one way (keep studySpec, or hyperparameters)"]


def test_every_problem_of_a_vertex_config_is_listed_at_once(here: Path) -> None:
    text = (VERTEX_CONFIG.replace("maxValue: 0.99}", "maxValue: 0.4}")
            .replace("goal: MAXIMIZE", "goal: UP").replace("acceleratorCount: 2",
                                                           "acceleratorCount: -1"))
    assert problems_of(here, text) == [
        "studySpec.metrics[0].goal: must be one of maximize, minimize (got 'UP')",
        "trialJobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount: must be at least 0"
        " (got -1)",
        "studySpec.parameters[1].doubleValueSpec.maxValue: must be greater than minValue"
        " (got 0.4 <= 0.5)",
    ]


# --- --set in Vertex's spelling ----------------------------------------------------------------


def test_set_names_a_vertex_parameter_in_either_spelling(here: Path) -> None:
    spec = load(here, VERTEX_CONFIG,
                "studySpec.parameters[learning_rate].doubleValueSpec.maxValue=0.5",
                "params[momentum].max=0.9",  # ours: its doubleValueSpec.maxValue
                "params[num_layers].minValue=2",
                "params[batch_size].values[0]=256",
                "params[amsgrad].values=[true, false]",  # nested, named at any depth
                "params[optimizer].conditionalParameterSpecs[nesterov].parameterSpec.values=[x]",
                "studySpec.parameters[5]={parameterId: wd, doubleValueSpec: {minValue: 0,"
                " maxValue: 0.1}}",
                "studySpec.algorithm=RANDOM_SEARCH", "maxTrialCount=3", "parallelTrialCount=1",
                "displayName=quick")
    by_name = {p.name: p for p in spec.params}
    assert (by_name["learning_rate"].high, by_name["momentum"].high) == (0.5, 0.9)
    assert by_name["num_layers"].low == 2
    assert by_name["batch_size"].values == (32, 64, 256)
    assert by_name["amsgrad"].values == ("true", "false")
    assert by_name["nesterov"].values == ("x",)
    assert by_name["wd"] == Param("wd", ParamType.DOUBLE, low=0.0, high=0.1)
    assert (spec.search_algorithm, spec.max_trials, spec.max_parallel_trials, spec.name) == (
        "random", 3, 1, "quick")
    # An empty value removes: the maxValue inside the spec, which the problem then names.
    assert problems_of(here, VERTEX_CONFIG, "params[learning_rate].max=") == [
        "studySpec.parameters[0].doubleValueSpec.maxValue: required for a double parameter"]
    assert load(here, VERTEX_CONFIG, "maxFailedTrialCount=0").max_failed_trials is None


def test_set_says_how_to_set_what_vertex_spells_otherwise(here: Path) -> None:
    hint = ("only studySpec.parameters and studySpec.algorithm are set in Vertex AI's"
            " spelling; set the rest in ours: metric=NAME, goal=minimize, objective=best,"
            " early_stopping=median, gpus_per_trial=N (the trainer's arguments go after --)")
    assert problems_of(here, VERTEX_CONFIG, "studySpec.metrics[0].metricId=acc",
                       "trialJobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount=1",
                       "maxTrialCont=3") == [
        f"--set studySpec.metrics[0].metricId: {hint}",
        f"--set trialJobSpec.workerPoolSpecs[0].machineSpec.acceleratorCount: {hint}",
        "--set maxTrialCont: unknown key 'maxTrialCont' (did you mean 'maxTrialCount'?)"]
    spec = load(here, VERTEX_CONFIG, "metric=val_acc", "objective=last", "gpus_per_trial=1")
    assert (spec.metric, spec.objective, spec.gpus_per_trial) == ("val_acc", ObjectiveRule.LAST,
                                                                  1)


def test_a_vertex_spec_round_trips_in_our_spelling(here: Path) -> None:
    spec = load(here, VERTEX_CONFIG)
    data = spec.to_dict()
    assert ExperimentSpec.from_dict(json.loads(json.dumps(data))) == spec
    assert [p["name"] for p in data["params"]] == [
        "learning_rate", "momentum", "num_layers", "width", "batch_size", "optimizer",
        "nesterov", "beta1", "amsgrad"]
