"""The experiment file: both spellings, every problem and its place, --set, units, round trip."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from gpusched._spec_read import MAX_FILE_BYTES
from gpusched.errors import SpecError
from gpusched.models import Goal, ObjectiveRule
from gpusched.plugin_api import Param, ParamType, Scale
from gpusched.spec import (
    ExperimentSpec,
    load_aip_file,
    load_experiment_file,
    parse_duration,
    parse_experiment,
    parse_memory_mib,
)

SPEC_EXAMPLE = """\
name: digits-mlp
command: python train.py --epochs 20     # a string (split like a shell) or a list
workdir: .                               # relative to the file; default: the file's folder
env: {OMP_NUM_THREADS: "2"}
metric: val_accuracy
goal: maximize
objective: last
max_trials: 30
max_parallel_trials: 4
gpus_per_trial: 1
gpu_memory: 10GiB
trial_timeout: 2h
max_failed_trials: 5
max_retries_per_trial: 0
max_consecutive_failed_trials: 3
fail_fast: false
search: {algorithm: random, seed: 0}
early_stopping: {policy: median}
stop: {training_iteration: 100, val_accuracy: 0.99}
resume_from: EXP
priority: 0
params:
  - {name: learning_rate, type: double, min: 1.0e-4, max: 1.0e-1, scale: log}
  - {name: hidden, type: integer, min: 32, max: 512}
  - {name: layers, type: discrete, values: [1, 2, 3]}
  - {name: optimizer, type: categorical, values: [sgd, adam]}
"""

AIP_CONFIG = """\
trainingInput:
  scaleTier: CUSTOM
  masterType: complex_model_m_gpu
  args: [--epochs, 5]
  hyperparameters:
    goal: MINIMIZE
    hyperparameterMetricTag: val_loss
    maxTrials: 40
    maxParallelTrials: 2
    maxFailedTrials: 0
    enableTrialEarlyStopping: true
    resumePreviousJobId: job_1
    algorithm: GRID_SEARCH
    params:
      - parameterName: learning_rate
        type: DOUBLE
        minValue: 1e-4
        maxValue: 0.1
        scaleType: UNIT_LOG_SCALE
      - parameterName: momentum
        type: DOUBLE
        minValue: 0.5
        maxValue: 0.99
        scaleType: UNIT_REVERSE_LOG_SCALE
      - parameterName: units
        type: INTEGER
        minValue: 16
        maxValue: 256
        scaleType: UNIT_LINEAR_SCALE
      - parameterName: layers
        type: DISCRETE
        discreteValues: [4, 1, 2]
        scaleType: NONE
      - parameterName: optimizer
        type: CATEGORICAL
        categoricalValues: [sgd, adam]
"""


def minimal(**extra: Any) -> dict[str, Any]:
    """The smallest valid experiment, plus ``extra`` keys."""
    data: dict[str, Any] = {
        "command": "python train.py",
        "metric": "acc",
        "params": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1}],
    }
    data.update(extra)
    return data


def parse(data: Any) -> ExperimentSpec:
    return parse_experiment(data, base_dir="/work/exp", source="exp.yaml")


def problems(data: Any) -> list[str]:
    """Every problem ``data`` has, as the user reads them."""
    with pytest.raises(SpecError) as info:
        parse(data)
    return [str(p) for p in info.value.problems]


def param_problems(*params: Any) -> list[str]:
    return problems(minimal(params=list(params)))


def write(folder: Path, text: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


# --- the SPEC example and defaults -------------------------------------------------------------


def test_spec_example_reads_every_setting(tmp_path: Path) -> None:
    spec = load_experiment_file(write(tmp_path, SPEC_EXAMPLE))
    assert spec.name == "digits-mlp"
    assert spec.command == ("python", "train.py", "--epochs", "20")
    assert spec.workdir == str(tmp_path)
    assert dict(spec.env) == {"OMP_NUM_THREADS": "2"}
    assert (spec.metric, spec.goal, spec.objective) == ("val_accuracy", Goal.MAXIMIZE,
                                                         ObjectiveRule.LAST)
    assert (spec.max_trials, spec.max_parallel_trials, spec.gpus_per_trial) == (30, 4, 1.0)
    assert (spec.gpu_memory_mib, spec.trial_timeout_s) == (10240.0, 7200.0)
    assert (spec.max_failed_trials, spec.max_retries_per_trial,
            spec.max_consecutive_failed_trials, spec.fail_fast) == (5, 0, 3, False)
    assert (spec.search_algorithm, spec.search_seed, dict(spec.search_options)) == ("random", 0, {})
    assert (spec.early_stopping_policy, dict(spec.early_stopping_options)) == ("median", {})
    assert dict(spec.stop) == {"training_iteration": 100, "val_accuracy": 0.99}
    assert (spec.resume_from, spec.priority) == ("EXP", 0)
    assert spec.params == (
        Param("learning_rate", ParamType.DOUBLE, low=1e-4, high=0.1, scale=Scale.LOG),
        Param("hidden", ParamType.INTEGER, low=32, high=512),
        Param("layers", ParamType.DISCRETE, values=(1, 2, 3)),
        Param("optimizer", ParamType.CATEGORICAL, values=("sgd", "adam")),
    )
    assert spec.space().names() == ("learning_rate", "hidden", "layers", "optimizer")


def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal()), name="my first exp.json")
    spec = load_experiment_file(path)
    assert spec.name == "my-first-exp"  # the file's stem, made a valid name
    assert spec.workdir == str(tmp_path)
    assert spec.env == {} and spec.stop == {} and spec.search_options == {}
    assert (spec.goal, spec.objective) == (Goal.MAXIMIZE, ObjectiveRule.LAST)
    assert (spec.max_trials, spec.max_parallel_trials, spec.max_failed_trials) == (None,) * 3
    assert (spec.gpus_per_trial, spec.gpu_memory_mib, spec.trial_timeout_s) == (1.0, None, None)
    assert spec.time_budget_s is None
    assert (spec.max_retries_per_trial, spec.max_consecutive_failed_trials) == (0, 3)
    assert (spec.fail_fast, spec.priority, spec.resume_from) == (False, 0, None)
    assert (spec.search_algorithm, spec.search_seed, spec.early_stopping_policy) == (
        "random", None, None)


def test_null_means_default() -> None:
    keys = ["name", "workdir", "env", "goal", "objective", "max_trials", "max_parallel_trials",
            "gpus_per_trial", "gpu_memory", "trial_timeout", "time_budget", "max_failed_trials",
            "max_retries_per_trial", "max_consecutive_failed_trials", "fail_fast", "search",
            "early_stopping", "stop", "resume_from", "priority"]
    assert parse(minimal(**dict.fromkeys(keys))) == parse(minimal())


def test_parse_experiment_names_and_workdir() -> None:
    spec = parse_experiment(minimal(workdir="runs/../data"), base_dir="/srv/x")
    assert (spec.name, spec.workdir) == ("experiment", "/srv/x/data")
    assert parse_experiment(minimal(), base_dir="/a", source="dir/mnist.yml").name == "mnist"
    assert parse(minimal(workdir="/abs/dir")).workdir == "/abs/dir"


def test_workdir_expands_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/someone")
    assert parse(minimal(workdir="~/runs")).workdir == "/home/someone/runs"


def parsed_in_home(tmp_path: Path, text: str, overrides: Sequence[str] = ()) -> ExperimentSpec:
    """``text`` parsed as a file in ``tmp_path/files`` by a submitter whose home is
    ``tmp_path/home`` (which holds ``runs``)."""
    from gpusched.spec import parse_experiment_text

    (tmp_path / "home" / "runs").mkdir(parents=True)
    (tmp_path / "files").mkdir()
    return parse_experiment_text(text, source="e.yaml", base_dir=tmp_path / "files",
                                 home=str(tmp_path / "home"), overrides=overrides)


@pytest.mark.parametrize(("line", "workdir"), [
    ("workdir: ~", "home"),  # YAML's null elsewhere: here, the submitter's home folder
    ("workdir: '~'", "home"),
    ("workdir: ~/runs", "home/runs"),
    ("workdir: ~  # home", "home"),
    ("workdir:", "files"),  # empty: the default, the file's folder
    ("workdir: null", "files"),
])
def test_a_bare_tilde_workdir_in_a_file_is_the_home_folder(
    tmp_path: Path, line: str, workdir: str
) -> None:
    spec = parsed_in_home(tmp_path, f"{line}\ncommand: train\nmetric: m\ngpu_memory: ~\n"
                                    "params: [{name: x, type: discrete, values: [1]}]\n")
    assert spec.workdir == str(tmp_path / workdir)
    assert spec.gpu_memory_mib is None  # elsewhere a bare `~` is YAML's null still


@pytest.mark.parametrize(("override", "workdir"), [
    ("workdir=~", "home"), ("workdir= ~ ", "home"), ("workdir=~/runs", "home/runs"),
    ("workdir=", "files"),
])
def test_a_tilde_workdir_given_with_set_is_the_home_folder(
    tmp_path: Path, override: str, workdir: str
) -> None:
    # zsh (and quotes) leave `--set workdir=~` to us: it was YAML's null, the file's folder.
    text = "command: train\nmetric: m\nparams: [{name: x, type: discrete, values: [1]}]\n"
    assert parsed_in_home(tmp_path, text, [override]).workdir == str(tmp_path / workdir)


def test_command_forms() -> None:
    assert parse(minimal(command="python 'my script.py' --x=1")).command == (
        "python", "my script.py", "--x=1")
    assert parse(minimal(command=["python", "t.py", "--epochs", 20, 0.5, True])).command == (
        "python", "t.py", "--epochs", "20", "0.5", "true")


def test_env_values_become_text() -> None:
    spec = parse(minimal(env={"A": 1, "B": 0.5, "C": True, "D": "x", "E": ""}))
    assert dict(spec.env) == {"A": "1", "B": "0.5", "C": "true", "D": "x", "E": ""}


@pytest.mark.parametrize(
    ("written", "expected"),
    [(0, 0.0), (1, 1.0), (2, 2.0), (8.0, 8.0), (0.5, 0.5), (0.25, 0.25), (0.3333333, 1 / 3),
     ("1/3", 1 / 3), (1 / 16, 1 / 16), ("1 / 4", 0.25)],
)
def test_gpus_per_trial_accepted(written: Any, expected: float) -> None:
    assert parse(minimal(gpus_per_trial=written)).gpus_per_trial == expected


@pytest.mark.parametrize("written", [0.3, -1, 1.5, 1 / 17, 0.34, True, "half", "1/0", [1]])
def test_gpus_per_trial_refused(written: Any) -> None:
    (problem,) = problems(minimal(gpus_per_trial=written))
    assert problem.startswith("gpus_per_trial: must be")


def test_search_and_early_stopping_forms() -> None:
    spec = parse(minimal(search="grid", early_stopping="median"))
    assert (spec.search_algorithm, spec.search_seed, spec.early_stopping_policy) == (
        "grid", None, "median")
    spec = parse(minimal(search={"algorithm": "tpe", "seed": 7, "n_startup": 5,
                                 "weights": [1, {"a": 2}]},
                         early_stopping={"policy": "asha", "grace": 2}))
    assert (spec.search_algorithm, spec.search_seed) == ("tpe", 7)
    assert spec.search_options == {"n_startup": 5, "weights": (1, {"a": 2})}
    assert (spec.early_stopping_policy, dict(spec.early_stopping_options)) == ("asha",
                                                                               {"grace": 2})
    assert parse(minimal(search={"seed": 1})).search_algorithm == "random"


# --- parameters of every type ------------------------------------------------------------------


def test_parameter_examples_of_every_type() -> None:
    spec = parse(minimal(params=[
        {"name": "lr", "type": "double", "min": 1, "max": 2, "step": 0.25},
        {"name": "mom", "type": "Double", "min": 0.5, "max": 0.99, "scale": "reverse_log"},
        {"name": "n", "type": "INTEGER", "min": 2, "max": 64, "scale": "LOG", "step": 2},
        {"name": "k", "type": "int", "min": 1.0, "max": 3e1},
        {"name": "drop", "type": "discrete", "values": [0.5, 0.1, 0.25]},
        {"name": "opt", "type": "categorical", "values": ["b", "a", 3, 0.5, True]},
    ]))
    lr, mom, n, k, drop, opt = spec.params
    assert lr == Param("lr", ParamType.DOUBLE, low=1.0, high=2.0, step=0.25)
    assert mom.scale is Scale.REVERSE_LOG
    assert (n.low, n.high, n.step, n.scale) == (2, 64, 2, Scale.LOG)
    assert (k.low, k.high) == (1, 30) and isinstance(k.low, int)
    assert drop.values == (0.1, 0.25, 0.5)  # stored sorted
    assert opt.values == ("b", "a", "3", "0.5", "true")  # as written, as text
    assert lr.grid(0) == (1.0, 1.25, 1.5, 1.75, 2.0)


def test_yaml_1_2_scalars(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace("min: 1.0e-4", "min: 1e-4").replace(
        "values: [sgd, adam]", "values: [yes, no, on, off]").replace("max_trials: 30",
                                                                     "max_trials: 010")
    spec = load_experiment_file(write(tmp_path, text))
    assert spec.params[0].low == 1e-4
    assert spec.params[3].values == ("yes", "no", "on", "off")
    assert spec.max_trials == 10


# --- AI Platform spellings ---------------------------------------------------------------------


def test_aip_wrapped_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    spec = load_aip_file(write(tmp_path, AIP_CONFIG, "hptuning_config.yaml"),
                         ["python", "-m", "trainer.task"])
    assert spec.name == "hptuning_config"
    assert spec.command == ("python", "-m", "trainer.task", "--epochs", "5")
    assert spec.workdir == str(tmp_path)
    assert (spec.metric, spec.goal, spec.max_trials, spec.max_parallel_trials) == (
        "val_loss", Goal.MINIMIZE, 40, 2)
    assert spec.max_failed_trials is None  # AI Platform's 0 means unset
    assert (spec.early_stopping_policy, spec.resume_from) == ("median", "job_1")
    assert spec.search_algorithm == "grid"
    assert [p.scale for p in spec.params] == [Scale.LOG, Scale.REVERSE_LOG, Scale.LINEAR,
                                              Scale.LINEAR, Scale.LINEAR]
    assert spec.params[3].values == (1, 2, 4)
    assert spec.params[4] == Param("optimizer", ParamType.CATEGORICAL, values=("sgd", "adam"))


def test_aip_bare_and_under_hyperparameters_read_alike(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    inner = AIP_CONFIG.split("  hyperparameters:\n", 1)[1]
    bare = "\n".join(line[4:] for line in inner.splitlines())
    under = "hyperparameters:\n" + "\n".join(line[2:] for line in inner.splitlines())
    # (Its masterType's 4 GPUs aside: only trainingInput can say that.)
    gpuless = AIP_CONFIG.replace("complex_model_m_gpu", "n1-standard-8")
    wrapped = load_aip_file(write(tmp_path, gpuless, "a.yaml"), ["t"], name="x")
    for text in (bare, under):
        spec = load_aip_file(write(tmp_path, text, "b.yaml"), ["t", "--epochs", "5"], name="x")
        assert spec == wrapped


def test_an_aip_masters_gpu_count_is_each_trials(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # A trainer written for 4 GPUs on AI Platform (a MirroredStrategy) once got one here:
    # masterConfig was ignored whole.
    monkeypatch.chdir(tmp_path)
    master = ("  masterConfig:\n    imageUri: gcr.io/x/y\n"
              "    acceleratorConfig: {count: 4, type: NVIDIA_TESLA_T4}\n")
    text = AIP_CONFIG.replace("  args: [--epochs, 5]\n", master)
    assert load_aip_file(write(tmp_path, text), ["t"]).gpus_per_trial == 4
    assert load_aip_file(write(tmp_path, text), ["t"], overrides=["gpus_per_trial=1"]
                         ).gpus_per_trial == 1  # ours, written, wins
    plain = AIP_CONFIG.replace("complex_model_m_gpu", "n1-standard-8")
    assert load_aip_file(write(tmp_path, plain), ["t"]).gpus_per_trial == 1
    assert load_aip_file(write(tmp_path, text.replace("count: 4", "count: 0")), ["t"]
                         ).gpus_per_trial == 0
    # As AI Platform's API writes an int64 (gcloud ... describe): text.
    assert load_aip_file(write(tmp_path, text.replace("count: 4", "count: '2'")), ["t"]
                         ).gpus_per_trial == 2
    bad = write(tmp_path, text.replace("count: 4", "count: 1.5"))
    with pytest.raises(SpecError) as info:
        load_aip_file(bad, ["t"])
    assert [str(p) for p in info.value.problems] == [
        "trainingInput.masterConfig.acceleratorConfig.count: must be a whole number (got 1.5)"]


@pytest.mark.parametrize(("machine", "gpus"), [
    ("standard_gpu", 1), ("complex_model_m_gpu", 4), ("complex_model_l_gpu", 8),
    ("standard_p100", 1), ("complex_model_m_p100", 4), ("standard_v100", 1),
    ("large_model_v100", 1), ("complex_model_m_v100", 4), ("COMPLEX_MODEL_L_V100", 8),
    ("n1-standard-8", 1),  # a Compute Engine type: its GPUs are acceleratorConfig's
    ("complex_model_m", 1),  # no GPU there: not read as "no GPU" here (gpusched runs on GPUs)
])
def test_a_legacy_gpu_machine_types_gpus_are_each_trials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, machine: str, gpus: int) -> None:
    # scaleTier: CUSTOM with masterType: complex_model_m_gpu ran the trainer on 4 K80s; it
    # once got one GPU here.
    monkeypatch.chdir(tmp_path)
    text = AIP_CONFIG.replace("complex_model_m_gpu", machine)
    spec = load_aip_file(write(tmp_path, text), ["t"])
    assert spec.gpus_per_trial == gpus
    if gpus != 1:
        assert spec.written_at("accelerators") == "trainingInput.masterType"
        assert load_aip_file(write(tmp_path, text), ["t"], overrides=["gpus_per_trial=1"]
                             ).gpus_per_trial == 1  # ours wins
    config = "  masterConfig: {acceleratorConfig: {count: 2}}\n"
    assert load_aip_file(write(tmp_path, text.replace("  args", config + "  args")),
                         ["t"]).gpus_per_trial == 2  # acceleratorConfig's count wins


@pytest.mark.parametrize("case", [
    # The command line wins, as gcloud's arguments after `--` replace the file's: the file's
    # --epochs 4, written after the command's, once won in the trainer's argparse.
    (["--epochs", "4", "--lr", "0.1"], ["t", "--epochs", "10"],
     ("t", "--epochs", "10", "--lr", "0.1"), "--epochs 4"),
    (["--epochs=4", "--verbose"], ["t", "--epochs=10"], ("t", "--epochs=10", "--verbose"),
     "--epochs=4"),
    (["--verbose", "--epochs", "4"], ["t", "--verbose"], ("t", "--verbose", "--epochs", "4"),
     "--verbose"),
    (["--epochs", "4"], ["t"], ("t", "--epochs", "4"), None),
    # The command's --verbose takes no value: the file's next word is no value of it. A value
    # may be a negative number.
    (["--verbose", "data/train.csv"], ["t", "--verbose"], ("t", "--verbose", "data/train.csv"),
     "--verbose"),
    (["--shift", "-3", "--epochs", "10"], ["t", "--shift", "2"],
     ("t", "--shift", "2", "--epochs", "10"), "--shift -3"),
    (["--", "--epochs"], ["t", "--epochs", "1"], ("t", "--epochs", "1", "--", "--epochs"), None),
])
def test_the_commands_options_replace_the_files_args(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        case: tuple[list[str], list[str], tuple[str, ...], str | None]) -> None:
    file_args, command, expected, left_out = case
    monkeypatch.chdir(tmp_path)
    text = AIP_CONFIG.replace("  args: [--epochs, 5]", f"  args: {json.dumps(file_args)}")
    spec = load_aip_file(write(tmp_path, text), command)
    assert spec.command == expected
    said = [w for w in spec.warnings() if w.startswith("trainingInput.args: ")]
    if left_out is None:
        assert said == []
    else:
        assert said == [f"trainingInput.args: {left_out} left out: the command gives"
                        f" {left_out.split()[0].split('=')[0]} too, and the command line wins,"
                        " as with gcloud"]


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [("ALGORITHM_UNSPECIFIED", "gp"), ("GRID_SEARCH", "grid"), ("RANDOM_SEARCH", "random"),
     ("grid_search", "grid"), ("tpe", "tpe")],
)
def test_aip_algorithm_names(algorithm: str, expected: str) -> None:
    assert parse(minimal(algorithm=algorithm)).search_algorithm == expected
    assert parse(minimal(search={"algorithm": algorithm})).search_algorithm == expected


def test_aip_early_stopping_flag_and_failed_trials() -> None:
    assert parse(minimal(enableTrialEarlyStopping=False)).early_stopping_policy is None
    assert parse(minimal(maxFailedTrials=2)).max_failed_trials == 2
    assert problems(minimal(max_failed_trials=0)) == [
        "max_failed_trials: must be at least 1 (got 0)"]
    assert problems(minimal(enableTrialEarlyStopping="median")) == [
        "enableTrialEarlyStopping: must be true or false (got 'median')"]


def test_aip_max_failed_trials_is_the_only_failure_budget() -> None:
    # With maxFailedTrials: 5, three failures in a row once failed the experiment: our own
    # max_consecutive_failed_trials default (3), which AI Platform has not and cannot spell.
    assert parse(minimal(maxFailedTrials=5)).max_consecutive_failed_trials == 5
    assert parse(minimal(hyperparameters={"maxFailedTrials": 2})).max_consecutive_failed_trials \
        == 2
    # Written, it holds; unset or 0 (AI Platform's "not set"), the default rule stays, as does
    # a file of ours with max_failed_trials.
    assert parse(minimal(maxFailedTrials=5, max_consecutive_failed_trials=2)
                 ).max_consecutive_failed_trials == 2
    assert parse(minimal(maxFailedTrials=0)).max_consecutive_failed_trials == 3
    assert parse(minimal(maxTrials=4)).max_consecutive_failed_trials == 3
    assert parse(minimal(max_failed_trials=5)).max_consecutive_failed_trials == 3
    round_trip(parse(minimal(maxFailedTrials=5)))


AIP_UNTAGGED = AIP_CONFIG.replace("    hyperparameterMetricTag: val_loss\n", "")
"""An AI Platform config without hyperparameterMetricTag: optional in its HyperparameterSpec."""
HYPERTUNE_TAG = "training/hptuning/metric"  # AI Platform's default, and cloudml-hypertune's


def test_aip_metric_defaults_to_the_hypertune_tag(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert "hyperparameterMetricTag" not in AIP_UNTAGGED
    spec = load_aip_file(write(tmp_path, AIP_UNTAGGED), ["python", "-m", "trainer.task"])
    assert (spec.metric, spec.goal, spec.max_trials) == (HYPERTUNE_TAG, Goal.MINIMIZE, 40)
    round_trip(spec)
    # `--aip` with a file in our keys; and a file of ours that writes settings AI Platform's
    # way: wrapped, under `hyperparameters:` or at the top.
    ours = json.dumps({"params": minimal()["params"]})
    assert load_aip_file(write(tmp_path, ours), ["t"]).metric == HYPERTUNE_TAG
    wrapped = load_experiment_file(write(tmp_path, "command: t\n" + AIP_UNTAGGED))
    assert wrapped.metric == HYPERTUNE_TAG
    assert parse(minimal(metric=None, hyperparameters={"goal": "MAXIMIZE"})).metric == (
        HYPERTUNE_TAG)
    assert parse(minimal(metric=None, maxTrials=3)).metric == HYPERTUNE_TAG
    # A tag, or our `metric`, still says which; `--set` can give it too.
    assert parse(minimal(metric=None, maxTrials=3, hyperparameterMetricTag="a")).metric == "a"
    assert parse(minimal(metric="b", maxTrials=3)).metric == "b"
    aip = write(tmp_path, AIP_UNTAGGED)
    assert load_aip_file(aip, ["t"], overrides=["metric=c"]).metric == "c"
    with pytest.raises(SpecError, match="hyperparameterMetricTag: must not be empty"):
        load_aip_file(aip, ["t"], overrides=["hyperparameterMetricTag=''"])


def test_our_spelling_still_requires_the_metric(tmp_path: Path) -> None:
    required = "metric: required: the name of the reported metric to optimise"
    assert problems(minimal(metric=None)) == [required]
    assert problems({"command": "t", "params": minimal()["params"]}) == [required]
    # An override spelt AI Platform's way does not make a file of ours an AI Platform config.
    path = write(tmp_path, json.dumps(minimal(metric=None)))
    assert file_problems(path, overrides=["maxTrials=3"]) == [required]


AIP_UNNAMED_SEARCH = AIP_CONFIG.replace("    algorithm: GRID_SEARCH\n", "")
"""An AI Platform config without ``algorithm``: AI Platform then runs its Bayesian
optimisation (ALGORITHM_UNSPECIFIED)."""


def test_an_aip_config_without_an_algorithm_searches_as_ai_platform_does(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # It once got gpusched's own default, random: a user's hptuning_config.yaml searched
    # differently here than on AI Platform.
    monkeypatch.chdir(tmp_path)
    assert "algorithm" not in AIP_UNNAMED_SEARCH
    path = write(tmp_path, AIP_UNNAMED_SEARCH)
    assert load_aip_file(path, ["t"]).search_algorithm == "gp"
    assert parse(minimal(maxTrials=3)).search_algorithm == "gp"  # ours, one key theirs
    assert parse(minimal(maxTrials=3, search={"seed": 4})).search_algorithm == "gp"
    # Named, in either spelling or by `--set`, it is what it says; a file of ours keeps random.
    assert load_aip_file(path, ["t"], overrides=["algorithm=RANDOM_SEARCH"]).search_algorithm == (
        "random")
    assert load_aip_file(path, ["t"], overrides=["search=tpe"]).search_algorithm == "tpe"
    assert parse(minimal()).search_algorithm == "random"
    assert load_experiment_file(write(tmp_path, json.dumps(minimal())),
                                overrides=["maxTrials=3"]).search_algorithm == "random"


@pytest.mark.parametrize(
    ("ours", "theirs", "value"),
    [("metric", "hyperparameterMetricTag", "acc"), ("max_trials", "maxTrials", 3),
     ("max_parallel_trials", "maxParallelTrials", 2),
     ("max_failed_trials", "maxFailedTrials", 2),
     ("early_stopping", "enableTrialEarlyStopping", True),
     ("resume_from", "resumePreviousJobId", "j")],
)
def test_same_setting_in_both_spellings(ours: str, theirs: str, value: Any) -> None:
    data = minimal(**{ours: value if ours != "early_stopping" else "median"})
    data["trainingInput"] = {"hyperparameters": {theirs: value}}
    assert problems(data) == [
        f"trainingInput.hyperparameters.{theirs}: the same setting as {ours}: give it once"]


def test_same_setting_twice_at_every_level() -> None:
    data = minimal(goal="max", hyperparameters={"goal": "MAXIMIZE", "params": []},
                   search={"algorithm": "grid"}, algorithm="GRID_SEARCH")
    assert problems(data) == [
        "hyperparameters.goal: the same setting as goal: give it once",
        "hyperparameters.params: the same setting as params: give it once",
        "algorithm: the same setting as search.algorithm: give it once",
    ]


def test_parameter_key_in_both_spellings() -> None:
    assert param_problems({"name": "a", "parameterName": "a", "type": "double", "min": 0,
                           "max": 1, "maxValue": 2}) == [
        "params[0].parameterName: the same setting as name: give it once",
        "params[0].maxValue: the same setting as max: give it once",
    ]


# --- every problem, with its place -------------------------------------------------------------

TOP_LEVEL_PROBLEMS = [
    ({"max_trial": 3}, "unknown key 'max_trial' (did you mean 'max_trials'?)"),
    ({"MaxTrials": 3}, "unknown key 'MaxTrials' (did you mean 'maxTrials'?)"),
    ({7: 3}, "unknown key 7 (keys are text)"),
    ({"labels": {"a": "b"}}, "unknown key 'labels'"),
    ({"name": "-x"}, "name: must be 1-64 letters, digits, _ . - (not starting with . or -) "
                     "(got '-x')"),
    ({"name": "a" * 65}, "name: must be 1-64 letters, digits, _ . - (not starting with . or -) "
                         "(got 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...')"),
    ({"command": ""}, "command: must not be empty"),
    ({"command": []}, "command: must not be empty"),
    ({"command": "python 'open"}, "command: cannot be split like a shell line: No closing "
                                  "quotation"),
    ({"command": ["python", None]}, "command[1]: must be text or a number (got null)"),
    ({"command": ["", "x"]}, "command[0]: the program must not be empty"),
    ({"command": ["a", "b\0"]}, "command[1]: must not contain NUL characters"),
    ({"command": "a b\0"}, "command[1]: must not contain NUL characters"),
    ({"command": {"a": 1}}, "command: must be a string or a list of strings (got a mapping)"),
    ({"command": None}, "command: required: the trainer's command, a string or a list"),
    ({"workdir": 3}, "workdir: must be text (got 3)"),
    ({"env": ["A=1"]}, "env: must be a mapping of variable names to values (got a list)"),
    ({"env": {"1A": "x"}}, "env.1A: must be a variable name: letters, digits and _, not "
                           "starting with a digit (got '1A')"),
    ({"env": {1: "x"}}, "env: keys must be text (got 1)"),
    ({"stop": {None: 1}}, "stop: keys must be text (got null)"),
    ({"stop": {"": 1}}, "stop.: must not be empty"),
    ({"env": {"A": None}}, "env.A: must be text or a number (got null)"),
    ({"env": {"CUDA_VISIBLE_DEVICES": "0"}},
     "env.CUDA_VISIBLE_DEVICES: is set by gpusched for each trial and cannot be set here"),
    ({"env": {"GPUSCHED_TRIAL": "0"}},
     "env.GPUSCHED_TRIAL: is set by gpusched for each trial and cannot be set here"),
    ({"metric": None}, "metric: required: the name of the reported metric to optimise"),
    ({"metric": ""}, "metric: must not be empty"),
    ({"goal": "up"}, "goal: must be one of maximize, minimize (got 'up')"),
    ({"goal": "GOAL_TYPE_UNSPECIFIED"},
     "goal: GOAL_TYPE_UNSPECIFIED is not a goal: write MAXIMIZE or MINIMIZE"),
    ({"objective": "mean"}, "objective: must be one of last, best (got 'mean')"),
    ({"max_trials": 0}, "max_trials: must be at least 1 (got 0)"),
    ({"max_trials": 2.5}, "max_trials: must be a whole number (got 2.5)"),
    ({"max_trials": True}, "max_trials: must be a number (got true)"),
    ({"max_trials": "ten"}, "max_trials: must be a number (got 'ten')"),
    ({"max_trials": 2**40}, "max_trials: must be at most 2147483647 (got 1099511627776)"),
    ({"maxTrials": 0}, "maxTrials: must be at least 1 (got 0)"),
    ({"max_parallel_trials": 0}, "max_parallel_trials: must be at least 1 (got 0)"),
    ({"max_retries_per_trial": -1}, "max_retries_per_trial: must be at least 0 (got -1)"),
    ({"max_consecutive_failed_trials": 0},
     "max_consecutive_failed_trials: must be at least 1 (got 0)"),
    ({"gpu_memory": "10G"}, "gpu_memory: ambiguous memory unit 'G' in '10G': write GiB (powers "
                            "of 1024) or GB (powers of 1000)"),
    ({"gpu_memory": 0}, "gpu_memory: must be greater than 0 (got 0)"),
    ({"gpu_memory": "1GiB", "gpus_per_trial": 0},
     "gpu_memory: a CPU-only trial (gpus_per_trial: 0) gets no GPU memory"),
    ({"time_budget": 0}, "time_budget: must be greater than 0 (got 0)"),
    ({"trial_timeout": "soon"}, "trial_timeout: not a duration: 'soon' (write seconds, or e.g. "
                                "'90s', '30m', '2h', '1h30m')"),
    ({"trial_timeout": "0s"}, "trial_timeout: must be greater than 0 (got '0s')"),
    ({"fail_fast": "yes"}, "fail_fast: must be true or false (got 'yes')"),
    ({"search": ["grid"]}, "search: must be a plugin name, or a mapping {algorithm: NAME, "
                           "...options} (got a list)"),
    ({"search": {"algorithm": "no such"}}, "search.algorithm: must be a plugin name such as "
                                           "'random' or 'grid' (got 'no such')"),
    ({"search": {"seed": -1}}, "search.seed: must be at least 0 (got -1)"),
    ({"search": {"seed": True}}, "search.seed: must be a number (got true)"),
    ({"search": {"x": {1, 2}}}, "search.x: must be plain data: text, numbers, lists, mappings "
                                "(got a set)"),
    ({"search": {"x": {1: 2}}}, "search.x: keys must be text (got 1)"),
    ({"search": {"x": math.nan}}, "search.x: must be a finite number (got nan)"),
    ({"early_stopping": {"grace": 1}},
     "early_stopping.policy: required: the name of a stopping plugin, such as 'median'"),
    ({"early_stopping": 3}, "early_stopping: must be a plugin name, or a mapping {policy: NAME, "
                            "...options} (got 3)"),
    ({"stop": [1]}, "stop: must be a mapping of reported keys to numbers (got a list)"),
    ({"stop": {"acc": True}}, "stop.acc: must be a number (got true)"),
    ({"stop": {"acc": math.inf}}, "stop.acc: must be a finite number (got inf)"),
    ({"resume_from": 5}, "resume_from: must be text (got 5)"),
    ({"priority": 1.5}, "priority: must be a whole number (got 1.5)"),
    ({"params": None}, "params: required: the hyperparameters to search"),
    ({"params": []}, "params: must list at least one parameter"),
    ({"params": {"lr": 1}}, "params: must be a list of parameters (got a mapping)"),
    ({"trainingInput": {"scaletier": "BASIC"}},
     "trainingInput: unknown key 'scaletier' (did you mean 'scaleTier'?)"),
    ({"trainingInput": []}, "trainingInput: must be a mapping (got a list)"),
    ({"hyperparameters": {"maxTrial": 1}}, "hyperparameters: unknown key 'maxTrial' (did you mean "
     "'maxTrials'?) (this mapping takes AI Platform's HyperparameterSpec keys)"),
    ({"hyperparameters": "x"}, "hyperparameters: must be a mapping (got 'x')"),
    ({"trainingInput": {"args": "--x"}},
     "trainingInput.args: must be a string or a list of strings (got '--x')"),
]


@pytest.mark.parametrize(("patch", "expected"), TOP_LEVEL_PROBLEMS)
def test_top_level_problem(patch: dict[Any, Any], expected: str) -> None:
    assert problems({**minimal(), **patch}) == [expected]


PARAM_PROBLEMS = [
    ({"name": "a", "type": "double", "min": 3, "max": 1}, "params[0].max: must be greater than "
                                                          "min (got 1 <= 3)"),
    ({"parameterName": "a", "type": "DOUBLE", "minValue": 3, "maxValue": 3},
     "params[0].maxValue: must be greater than minValue (got 3 <= 3)"),
    ({"name": "a", "type": "double", "max": 1}, "params[0].min: required for a double parameter"),
    ({"parameterName": "a", "type": "INTEGER", "minValue": 1},
     "params[0].maxValue: required for an integer parameter"),
    ({"name": "a", "type": "integer", "min": 0.5, "max": 4},
     "params[0].min: must be a whole number for an integer parameter (got 0.5)"),
    ({"name": "a", "type": "integer", "min": 0, "max": 2**60},
     "params[0].max: must be at most 9007199254740992 (got 1152921504606846976)"),
    ({"name": "a", "type": "double", "min": "0", "max": 1}, "params[0].min: must be a number "
                                                           "(got '0')"),
    ({"name": "a", "type": "double", "min": -math.inf, "max": 1},
     "params[0].min: must be a finite number (got -inf)"),
    ({"name": "a", "type": "double", "min": -1e308, "max": 1e308},
     "params[0].max: the range max - min is too wide for a float"),
    ({"name": "a", "type": "double", "min": 0, "max": 1, "scale": "log"},
     "params[0].min: must be greater than 0 on a log scale (got 0)"),
    ({"name": "a", "type": "double", "min": -1, "max": 1, "scale": "reverse_log"},
     "params[0].min: must be greater than 0 on a reverse_log scale (got -1)"),
    ({"name": "a", "type": "integer", "min": 0, "max": 9, "scale": "log"},
     "params[0].min: must be at least 1 for an integer parameter on a log scale (got 0)"),
    ({"name": "a", "type": "double", "min": 0, "max": 1, "scale": "cubic"},
     "params[0].scale: must be one of linear, log, reverse_log (got 'cubic')"),
    ({"name": "a", "type": "double", "min": 0, "max": 1, "step": 0},
     "params[0].step: must be greater than 0 (got 0)"),
    ({"name": "a", "type": "double", "min": 0, "max": 1, "step": 1.5},
     "params[0].step: must not be larger than the range max - min (got 1.5 > 1)"),
    ({"name": "a", "type": "integer", "min": 0, "max": 9, "step": 0.5},
     "params[0].step: must be a whole number for an integer parameter (got 0.5)"),
    ({"name": "a", "type": "double", "min": 0, "max": 1, "values": [1]},
     "params[0].values: only for discrete and categorical parameters"),
    ({"name": "a", "type": "discrete", "values": [1], "min": 0},
     "params[0].min: only for double and integer parameters"),
    ({"name": "a", "type": "categorical", "values": ["x"], "scale": "log"},
     "params[0].scale: only for double, integer and discrete parameters"),
    ({"name": "a", "type": "discrete", "values": [1, 2, 1.0]},
     "params[0].values[2]: duplicate of values[0] (1.0)"),
    ({"name": "a", "type": "discrete", "values": [1, True]},
     "params[0].values[1]: must be a number (got true)"),
    ({"name": "a", "type": "discrete", "values": []}, "params[0].values: must list at least one "
                                                      "value"),
    ({"name": "a", "type": "discrete", "values": 3}, "params[0].values: must be a list (got 3)"),
    ({"name": "a", "type": "discrete"}, "params[0].values: required for a discrete parameter"),
    ({"parameterName": "a", "type": "CATEGORICAL"},
     "params[0].categoricalValues: required for a categorical parameter"),
    ({"name": "a", "type": "categorical", "values": ["x", None]},
     "params[0].values[1]: must be text or a number (got null)"),
    ({"name": "a", "type": "categorical", "values": ["1", 1]},
     "params[0].values[1]: duplicate of values[0] (1)"),
    ({"name": "a", "type": "categorical", "discreteValues": ["x"]},
     "params[0].discreteValues: discreteValues is for discrete parameters, and this one is "
     "categorical"),
    ({"name": "a"}, "params[0].type: required: double, integer, discrete or categorical"),
    ({"name": "a", "type": "PARAMETER_TYPE_UNSPECIFIED"}, "params[0].type: must be one of "
     "double, integer, discrete, categorical (got 'PARAMETER_TYPE_UNSPECIFIED')"),
    ({"type": "discrete", "values": [1]}, "params[0].name: required"),
    ({"type": "CATEGORICAL", "categoricalValues": ["x"]}, "params[0].parameterName: required"),
    ({"name": "--lr", "type": "discrete", "values": [1]}, "params[0].name: must start with a "
     "letter or _ and hold only letters, digits, _ . - (it is a flag) (got '--lr')"),
    ({"name": "a", "type": "discrete", "values": [1], "mn": 0},
     "params[0]: unknown key 'mn' (did you mean 'min'?)"),
    ("lr", "params[0]: must be a mapping such as {name: lr, type: double, ...} (got 'lr')"),
]


@pytest.mark.parametrize(("param", "expected"), PARAM_PROBLEMS)
def test_parameter_problem(param: Any, expected: str) -> None:
    assert param_problems(param) == [expected]


def test_duplicate_parameter_names() -> None:
    assert param_problems({"name": "a", "type": "discrete", "values": [1]},
                          {"parameterName": "a", "type": "CATEGORICAL",
                           "categoricalValues": ["x"]}) == [
        "params[1]: duplicate name 'a' (also params[0])"]


def test_every_problem_is_listed_at_once() -> None:
    found = problems({
        "command": "", "max_trial": 3, "goal": "up", "gpus_per_trial": 0.3,
        "params": [{"name": "a", "type": "double", "min": 3, "max": 1}, {"name": "b"}],
    })
    assert found == [
        "unknown key 'max_trial' (did you mean 'max_trials'?)",
        "command: must not be empty",
        "metric: required: the name of the reported metric to optimise",
        "goal: must be one of maximize, minimize (got 'up')",
        "gpus_per_trial: must be 0 (CPU only), a whole number of GPUs, or a share 1/k of one GPU "
        "such as 0.5, 0.25 or 1/3 (k up to 16) (got 0.3)",
        "params[0].max: must be greater than min (got 1 <= 3)",
        "params[1].type: required: double, integer, discrete or categorical",
    ]


def test_error_message_names_the_source_and_counts() -> None:
    with pytest.raises(SpecError) as info:
        parse({"metric": 1})
    assert str(info.value).splitlines()[0] == "exp.yaml: 3 problems in the experiment"
    assert info.value.source == "exp.yaml"


@pytest.mark.parametrize("data", [None, [], "x", 3])
def test_not_a_mapping(data: Any) -> None:
    (problem,) = problems(data)
    assert problem.startswith("the experiment must be a mapping of keys to values (got ")


def test_a_flood_of_problems_is_cut_short() -> None:
    found = param_problems({"name": "a", "type": "discrete", "values": [None] * 500})
    assert len(found) == 201
    assert found[-1] == "more problems were found but are not listed"


def test_self_referencing_options_are_a_problem() -> None:
    loop: list[Any] = []
    loop.append(loop)
    assert problems(minimal(search={"x": loop})) == [
        "search.x: is too large or nested too deeply (or refers to itself)"]


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    # Nine levels of nine references: 9**9 leaves if walked naively.
    levels = ["  a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"  a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = "command: t\nmetric: m\nparams: [{name: a, type: discrete, values: [1]}]\nsearch:\n"
    path = write(tmp_path, text + "\n".join(levels) + "\n")
    assert file_problems(path) == [
        "search.a4: is too large or nested too deeply (or refers to itself)"]


# --- reading files -----------------------------------------------------------------------------


def file_problems(path: Path, **kwargs: Any) -> list[str]:
    with pytest.raises(SpecError) as info:
        load_experiment_file(path, **kwargs)
    assert info.value.source == str(path)
    return [str(p) for p in info.value.problems]


def test_file_problems(tmp_path: Path) -> None:
    assert file_problems(tmp_path / "none.yaml") == ["no such file"]
    assert file_problems(tmp_path) == ["is a directory, not an experiment file"]
    empty = write(tmp_path, "# nothing\n")
    assert file_problems(empty) == [
        "is empty: write the experiment's settings (see docs/experiment-file.md)"]
    bad = write(tmp_path, "command: x\nmetric: a: b\n")
    assert file_problems(bad) == [
        "line 2, column 10: not valid YAML: mapping values are not allowed here"]
    twice = write(tmp_path, "metric: a\ncommand: x\nmetric: b\n")
    assert file_problems(twice) == [
        "line 3, column 1: not valid YAML: duplicate key 'metric' (first on line 1)"]
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"metric: caf\xe9\n")
    assert file_problems(latin) == ["is not UTF-8 text (byte 11 is not)"]
    tagged = write(tmp_path, "metric: !!timestamp soon\n")
    assert file_problems(tagged)[0].startswith("cannot be read as YAML (AttributeError")


def test_a_huge_or_endless_file_is_refused_after_a_bounded_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.yaml"
    huge.write_text("# x\n" * (MAX_FILE_BYTES // 4 + 1))
    (problem,) = file_problems(huge)
    assert problem.startswith("is over 1024 KiB: that is not an experiment file")
    (problem,) = file_problems(Path("/dev/zero"))  # never ends: read only as far as the cap
    assert "is over 1024 KiB" in problem


def test_workdir_must_exist_when_loading_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal(workdir="missing")))
    assert file_problems(path) == [f"workdir: no such directory: {tmp_path / 'missing'}"]
    (tmp_path / "sub").mkdir()
    path = write(tmp_path, json.dumps(minimal(workdir="sub")))
    assert load_experiment_file(path).workdir == str(tmp_path / "sub")


def test_aip_command_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, "hyperparameterMetricTag: a\ncommand: x\nparams: "
                           "[{parameterName: b, type: DISCRETE, discreteValues: [1]}]\n")
    with pytest.raises(SpecError) as info:
        load_aip_file(path, [])
    assert [str(p) for p in info.value.problems] == [
        "command: the command is given after `--`: leave it out here",
        "command: required: give the trainer's command after `--`",
    ]


def test_an_aip_config_submitted_without_aip_is_told_how(tmp_path: Path) -> None:
    # It said only "command: required", though the file is plainly an AI Platform config.
    path = write(tmp_path, "trainingInput:\n  hyperparameters:\n    goal: MAXIMIZE\n    params:"
                           " [{parameterName: b, type: DISCRETE, discreteValues: [1]}]\n")
    with pytest.raises(SpecError) as info:
        load_experiment_file(path)
    assert [str(p) for p in info.value.problems] == [
        "command: required: the trainer's command, a string or a list (an AI Platform or Vertex"
        " AI config? `gpusched submit --aip FILE -- python -m trainer.task` runs it with that"
        " command)"]


# --- --set and --name --------------------------------------------------------------------------


@pytest.fixture
def aip_file(tmp_path: Path) -> Path:
    return write(tmp_path, "command: python train.py\n" + AIP_CONFIG)


def test_overrides_replace_either_spelling(aip_file: Path) -> None:
    spec = load_experiment_file(aip_file, overrides=[
        "max_trials=5", "maxParallelTrials=3", "search.seed=3", "search.algorithm=random",
        "early_stopping.policy=asha", "early_stopping.grace=2", "params[learning_rate].max=0.5",
        "params[0].minValue=1e-5", "params.2.min=8", "params[optimizer].values=[sgd, adam, rms]",
        "params[layers].values[0]=8", "env.FOO=1", "trial_timeout=1h", "trial_timeout=",
        "trainingInput.hyperparameters.goal=maximize",
    ], name="renamed")
    assert (spec.name, spec.max_trials, spec.max_parallel_trials) == ("renamed", 5, 3)
    assert (spec.search_algorithm, spec.search_seed) == ("random", 3)
    assert (spec.early_stopping_policy, dict(spec.early_stopping_options)) == ("asha",
                                                                               {"grace": 2})
    assert (spec.params[0].low, spec.params[0].high, spec.params[2].low) == (1e-5, 0.5, 8)
    assert spec.params[3].values == (1, 2, 8)
    assert spec.params[4].values == ("sgd", "adam", "rms")
    assert (dict(spec.env), spec.trial_timeout_s, spec.goal) == ({"FOO": "1"}, None,
                                                                 Goal.MAXIMIZE)


def test_overrides_expand_bare_plugin_names(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal(search="grid", early_stopping="median")))
    spec = load_experiment_file(path, overrides=["search.points=4", "early_stopping.min=2"])
    assert (spec.search_algorithm, dict(spec.search_options)) == ("grid", {"points": 4})
    assert (spec.early_stopping_policy, dict(spec.early_stopping_options)) == ("median",
                                                                               {"min": 2})


def test_override_adds_a_parameter(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal(command=["python", "t.py"])))
    spec = load_experiment_file(path, overrides=[
        "params[1]={name: n, type: integer, min: 1, max: 4}", "command[0]=python3"])
    assert spec.params[1] == Param("n", ParamType.INTEGER, low=1, high=4)
    assert spec.command == ("python3", "t.py")


def test_an_empty_override_removes_a_key_or_an_item(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal(
        env={"FOO": "1", "BAR": "2"}, search={"algorithm": "random", "seed": 3},
        stop={"val_loss": 0.1, "training_iteration": 5},
        params=[{"name": "lr", "type": "double", "min": 0.001, "max": 0.1},
                {"name": "wd", "type": "double", "min": 0, "max": 0.1},
                {"name": "n", "type": "discrete", "values": [1, 2, 3]}])))
    spec = load_experiment_file(path, overrides=[
        "env.FOO=", "env.NOPE=", "search.seed=", "stop.val_loss=", "params[wd]=",
        "params[1].values[0]=", "params[lr].when.n=", "early_stopping.grace="])
    assert (dict(spec.env), spec.search_seed, dict(spec.stop)) == ({"BAR": "2"}, None,
                                                                   {"training_iteration": 5})
    assert [(p.name, p.values) for p in spec.params] == [("lr", ()), ("n", (2, 3))]
    assert (spec.params[0].when, spec.early_stopping_policy) == ({}, None)


def test_override_problems(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps(minimal()))
    assert file_problems(path, overrides=[
        "max_trials", "=3", "a..b=1", "max_trial=4", "max_trials=[", "params[zz].max=1",
        "name.x=1", "command[0]=x", "params[1]=", "max_trials=0",
    ], name="bad name") == [
        "--set max_trials: must be KEY=VALUE, e.g. max_trials=5, search.seed=3 or "
        "params[lr].max=0.1",
        "--set =3: must be KEY=VALUE, e.g. max_trials=5, search.seed=3 or params[lr].max=0.1",
        "--set a..b=1: must be KEY=VALUE, e.g. max_trials=5, search.seed=3 or "
        "params[lr].max=0.1",
        "--set max_trial: unknown key 'max_trial' (did you mean 'max_trials'?)",
        "--set max_trials: the value is not valid YAML: line 1, column 2: expected the node "
        "content, but found '<stream end>' (while parsing a flow node)",
        "--set params[zz].max: no item 'zz' (give a parameter's name, or an index from 0 to 1)",
        "--set name.x: name takes a single value: write --set name=VALUE",
        "--set command[0]: command is 'python train.py', not a mapping or list to set 0 in",
        "--set params[1]: nothing to remove: 1 is one past the end of the list",
        "--name: must be 1-64 letters, digits, _ . - (not starting with . or -) "
        "(got 'bad name')",
        "max_trials: must be at least 1 (got 0)",
    ]


# --- durations and memory sizes ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("2h", 7200), ("30m", 1800), ("90s", 90), ("1h30m", 5400), ("1.5h", 5400), (45, 45),
     (2.5, 2.5), ("45", 45), (" 1h 30m ", 5400), ("2 hours", 7200), ("1d", 86400),
     ("500ms", 0.5), ("10 MIN", 600), (".5h", 1800)],
)
def test_parse_duration(text: Any, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "h", "1h30", "soon", "1e3s", "-5s", -1, math.nan, math.inf, True, None, [1],
             10**400, "1 fortnight"],
)
def test_parse_duration_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "mib"),
    [("10GiB", 10240), ("512MiB", 512), ("10GB", 10e9 / 2**20), ("1.5GiB", 1536), (100, 100),
     (0.5, 0.5), ("10Gi", 10240), ("1TiB", 2**20), ("2048 kib", 2), ("1 gib", 1024),
     ("64", 64), ("1048576B", 1)],
)
def test_parse_memory_mib(text: Any, mib: float) -> None:
    assert parse_memory_mib(text) == pytest.approx(mib)


@pytest.mark.parametrize("text", ["10G", "10m", "", "GiB", "10 XB", "-1GiB", -1, True, None,
                                  math.inf, "1e3MiB"])
def test_parse_memory_mib_refuses(text: Any) -> None:
    with pytest.raises(ValueError, match="memory"):
        parse_memory_mib(text)


# --- the spec as a value -----------------------------------------------------------------------


def round_trip(spec: ExperimentSpec) -> None:
    data = spec.to_dict()
    again = ExperimentSpec.from_dict(json.loads(json.dumps(data, allow_nan=False)))
    assert again == spec
    assert again.to_dict() == data


def test_round_trip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    round_trip(load_experiment_file(write(tmp_path, SPEC_EXAMPLE)))
    round_trip(load_aip_file(write(tmp_path, AIP_CONFIG, "aip.yaml"), ["train"]))
    round_trip(parse(minimal(
        gpus_per_trial="1/3", search={"algorithm": "tpe", "w": [1, {"a": None}]},
        early_stopping={"policy": "asha", "grace": 1.5}, gpu_memory="1.5GiB",
        params=[{"name": "n", "type": "integer", "min": 1, "max": 9, "step": 2, "scale": "log"},
                {"name": "d", "type": "discrete", "values": [3, 1.5], "scale": "log"}])))


def test_to_dict_is_our_spelling() -> None:
    data = parse(minimal(hyperparameterMetricTag="x", metric=None, goal="MIN",
                         gpus_per_trial=0.5, trial_timeout="1m")).to_dict()  # null = unset
    assert (data["metric"], data["goal"], data["gpus_per_trial"], data["trial_timeout"]) == (
        "x", "minimize", 0.5, 60.0)
    assert data["search"] == {"algorithm": "gp"}  # AI Platform's default (its metric tag is used)
    assert data["early_stopping"] is None
    assert data["params"] == [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1,
                               "scale": "linear"}]


def test_from_dict_checks_again() -> None:
    data = parse(minimal()).to_dict()
    data["max_trials"] = -1
    with pytest.raises(SpecError, match="max_trials: must be at least 1"):
        ExperimentSpec.from_dict(data)


def test_spec_is_immutable() -> None:
    spec = parse(minimal(env={"A": "1"}, search={"algorithm": "x", "w": [1]}))
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.env["A"] = "2"  # type: ignore[index]
    assert spec.search_options["w"] == (1,)
    assert hash(spec) == hash(parse(minimal(env={"A": "1"}, search={"algorithm": "x", "w": [1]})))


def test_direct_construction_freezes_its_inputs() -> None:
    env = {"A": "1"}
    spec = ExperimentSpec(name="x", command=["t"], workdir="/", metric="m", env=env,  # type: ignore[arg-type]
                          params=[Param("a", ParamType.DISCRETE, values=(1,))])  # type: ignore[arg-type]
    env["A"] = "2"
    assert spec.env == {"A": "1"}
    assert spec.command == ("t",) and isinstance(spec.params, tuple)


def test_json_as_pythons_json_dump_and_jq_tab_write_it_is_read() -> None:
    # json.dump writes a character past U+FFFF as a surrogate pair, which YAML once read as two
    # lone halves (accepted, then every trial failed to start); a tab-indented JSON file was
    # refused by YAML's scanner.
    from gpusched.spec import parse_experiment_text

    exp = {"command": ["python", "t.py"], "metric": "acc", "env": {"E": "😀"},
           "params": [{"name": "x", "type": "categorical", "values": ["😀", "b"]}]}
    for text in (json.dumps(exp), json.dumps(exp, indent="\t")):
        spec = parse_experiment_text(text, source="e.json", base_dir="/tmp")
        assert dict(spec.env) == {"E": "😀"} and spec.params[0].values == ("😀", "b")


@pytest.mark.parametrize(("field", "place"), [
    ('"command": ["t", "\\ud83d"]', "command[1]"),
    ('"env": {"E": "\\ude00"}', "env.E"),
])
def test_a_lone_surrogate_is_refused_with_its_place(field: str, place: str) -> None:
    from gpusched.spec import parse_experiment_text

    command = "" if field.startswith('"command"') else '"command": "t", '
    text = (f'{{{command}"metric": "acc", {field},'
            ' "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}')
    with pytest.raises(SpecError) as info:
        parse_experiment_text(text, source="e.json", base_dir="/tmp")
    (problem,) = info.value.problems
    assert (problem.place, problem.message.split(" (")[0]) == (place, "contains a lone surrogate")


@pytest.mark.parametrize("search", ["grid", "{algorithm: grid}"])
def test_an_algorithm_override_replaces_the_search_however_the_file_wrote_it(search: str) -> None:
    # With `search: grid` (a bare name) the override once clashed: "the same setting as
    # search: give it once".
    from gpusched.spec import parse_experiment_text

    text = (f"command: python t.py\nmetric: acc\nsearch: {search}\n"
            "params: [{name: x, type: discrete, values: [1, 2]}]\n")
    spec = parse_experiment_text(text, source="e.yaml", base_dir="/tmp",
                                 overrides=["algorithm=RANDOM_SEARCH"])
    assert spec.search_algorithm == "random"


def test_a_json_file_with_a_key_given_twice_is_refused() -> None:
    # The JSON reading (for tab-indented files) once took the last of two keys silently.
    from gpusched._spec_yaml import parse_file_text

    for text in ('{"name": "a", "max_trials": 5, "max_trials": 50}',
                 '{\n\t"name": "a",\n\t"name": "b"\n}'):
        with pytest.raises(SpecError):
            parse_file_text(text, "e.json")


@pytest.mark.parametrize(("metric", "goal", "warned"), [
    ("val_loss", None, True), ("mse", None, True), ("top1_error", None, True),
    ("val_loss", "maximize", False), ("val_loss", "minimize", False),
    ("accuracy", None, False), ("mAP", None, False), ("cross_entropy_loss", None, True),
])
def test_a_loss_maximized_by_default_is_warned_of(
    tmp_path: Path, metric: str, goal: str | None, warned: bool
) -> None:
    # A missing goal silently maximized a loss: a whole search the wrong way, nothing failing.
    from gpusched.spec import parse_experiment_text

    text = (f"command: t\nmetric: {metric}\n" + (f"goal: {goal}\n" if goal else "")
            + "params: [{name: x, type: discrete, values: [1]}]\n")
    spec = parse_experiment_text(text, source="e.yaml", base_dir=tmp_path)
    assert bool(spec.warnings()) is warned
    if warned:
        assert spec.warnings()[0].startswith(f"metric '{metric}' looks like something to")
    assert not ExperimentSpec.from_dict(spec.to_dict()).warnings()  # not part of the spec


def test_a_stop_key_that_misspells_an_auto_filled_one_is_warned_of_at_submit(
    tmp_path: Path,
) -> None:
    # `stop: {training_iteraton: 2}` stops nothing, and only a trial's end would say so.
    from gpusched.spec import parse_experiment_text

    text = ("command: t\nmetric: acc\nstop: {training_iteraton: 2, acc: 0.9}\n"
            "params: [{name: x, type: discrete, values: [1]}]\n")
    spec = parse_experiment_text(text, source="e.yaml", base_dir=tmp_path)
    (warning,) = spec.warnings()
    assert warning.startswith("stop: 'training_iteraton' looks like a misspelling of"
                              " 'training_iteration'")
    assert warning.endswith("write 'training_iteration'")
    fine = parse_experiment_text(text.replace("iteraton", "iteration"), source="e.yaml",
                                 base_dir=tmp_path)
    assert not fine.warnings()
