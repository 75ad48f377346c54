"""Where each setting of an experiment file is written, in any spelling.

A file may use our keys, AI Platform's HyperparameterSpec keys (at the top, under
``hyperparameters:``, or under ``trainingInput: {hyperparameters: ...}``), or a mix of them; or
Vertex AI's HyperparameterTuningJob (``studySpec:``, read by ``_spec_vertex``).
:func:`gather` reads every spelling into one table keyed by our spelling, remembering where each
value was written (problems name that place); ``_spec_set.apply_overrides`` then edits the
table (``--set``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpusched._spec_check import Problems, at, describe, json_int, unknown_key
from gpusched._spec_vertex import (
    IGNORED_JOB_KEYS,
    VERTEX_KEYS,
    display_name,
    study_spec,
    trial_job_spec,
)

__all__ = ["NATIVE_KEYS", "HP_KEYS", "IGNORED_TRAINING_INPUT", "LEGACY_GPU_MACHINES", "WRAPPERS",
           "VERTEX_PARTS", "Entry", "Settings", "gather"]

NATIVE_KEYS = (
    "name", "command", "workdir", "env", "metric", "goal", "objective", "max_trials",
    "max_parallel_trials", "gpus_per_trial", "gpu_memory", "trial_timeout", "time_budget",
    "max_failed_trials",
    "max_retries_per_trial", "max_consecutive_failed_trials", "fail_fast", "search",
    "early_stopping", "stop", "resume_from", "priority", "params", "points_to_evaluate",
)  # fmt: skip
"""The top-level keys of an experiment file in our spelling (SPEC section 3)."""

HP_KEYS: Mapping[str, str] = {
    "goal": "goal",
    "params": "params",
    "hyperparameterMetricTag": "metric",
    "maxTrials": "max_trials",
    "maxParallelTrials": "max_parallel_trials",
    "maxFailedTrials": "max_failed_trials",
    "enableTrialEarlyStopping": "early_stopping",
    "resumePreviousJobId": "resume_from",
    "algorithm": "algorithm",  # one setting with `search.algorithm`; spec.py merges the two
}
"""AI Platform's HyperparameterSpec keys → the setting each one is."""

IGNORED_TRAINING_INPUT = frozenset({
    "scaleTier", "masterType", "masterConfig", "workerType", "workerConfig", "workerCount",
    "parameterServerType", "parameterServerConfig", "parameterServerCount", "evaluatorType",
    "evaluatorConfig", "evaluatorCount", "packageUris", "pythonModule", "region", "jobDir",
    "runtimeVersion", "pythonVersion", "encryptionConfig", "scheduling", "network",
    "serviceAccount", "useChiefInTfConfig", "enableWebAccess",
})  # fmt: skip
"""TrainingInput fields about Google's machines, not the search: read and ignored, so that an
existing config file runs unchanged (``args`` is appended to the command, and
``masterConfig.acceleratorConfig.count``, or a legacy GPU ``masterType``'s GPUs, is
``gpus_per_trial``'s default)."""

LEGACY_GPU_MACHINES: Mapping[str, int] = {
    "standard_gpu": 1, "complex_model_m_gpu": 4, "complex_model_l_gpu": 8,
    "standard_p100": 1, "complex_model_m_p100": 4,
    "standard_v100": 1, "large_model_v100": 1, "complex_model_m_v100": 4,
    "complex_model_l_v100": 8,
}  # fmt: skip
"""AI Platform's legacy machine types with GPUs (``masterType: complex_model_m_gpu``) → the
GPUs each came with: ``gpus_per_trial``'s default, as ``acceleratorConfig.count`` is for a
Compute Engine machine type (no other machine type is read as "no GPU": gpusched runs on
GPUs)."""

_JOB_KEYS = frozenset({"jobId", "labels"})  # next to `trainingInput` in a Job resource: ignored
WRAPPERS = ("trainingInput", "hyperparameters")
_COUNTS = frozenset({"maxTrials", "maxParallelTrials", "maxFailedTrials"})
VERTEX_PARTS = {"studySpec": study_spec, "trialJobSpec": trial_job_spec}  # Vertex's parts: readers
_TOP_KEYS = (*NATIVE_KEYS, *HP_KEYS, *WRAPPERS, *VERTEX_PARTS, *VERTEX_KEYS, "displayName")


@dataclass(frozen=True)
class Entry:
    """One setting as the file wrote it: its place, raw value, and whether AI Platform's
    spelling was used (some values read differently then: ``maxFailedTrials: 0`` means unset)."""

    place: str
    value: Any
    aip: bool = False


Settings = dict[str, Entry]


def gather(p: Problems, data: Any) -> Settings:
    """Every setting of ``data`` keyed by our spelling; unknown keys and duplicates are problems."""
    settings: Settings = {}
    if not isinstance(data, Mapping):
        p.add("", f"the experiment must be a mapping of keys to values (got {describe(data)})")
        return settings
    mixed = _mixed(p, data)
    for key, value in data.items():
        if key == "trainingInput":
            _training_input(p, settings, value)
        elif key == "hyperparameters":
            _hyperparameters(p, settings, key, value)
        elif key in VERTEX_PARTS:
            for setting, place, item in [] if mixed else VERTEX_PARTS[key](p, value):
                _put(p, settings, setting, Entry(place, item, aip=True))
        elif key in NATIVE_KEYS:
            _put(p, settings, key, Entry(key, value))
        elif key in HP_KEYS:
            _put(p, settings, HP_KEYS[key], Entry(key, _count(key, value), aip=True))
        elif key in VERTEX_KEYS:
            _put(p, settings, VERTEX_KEYS[key], Entry(key, json_int(value), aip=True))
        elif not ((key in _JOB_KEYS and "trainingInput" in data) or key == "displayName"
                  or (key in IGNORED_JOB_KEYS and "studySpec" in data)):
            p.add("", unknown_key(key, _TOP_KEYS))
    if "name" not in settings and data.get("displayName") is not None:  # `name` wins
        _put(p, settings, "name", Entry("displayName", display_name(data["displayName"]),
                                        aip=True))
    if isinstance(data.get("studySpec"), Mapping) and not mixed:
        _study_requires(p, settings, data["studySpec"])
    return settings


def _count(key: str, value: Any) -> Any:
    """A HyperparameterSpec's count as the API reads it: protobuf's JSON takes a quoted
    integer (``maxTrials: "20"``) too."""
    return json_int(value) if key in _COUNTS else value


def _mixed(p: Problems, data: Mapping[Any, Any]) -> bool:
    """Whether ``data`` writes its search both AI Platform's way and Vertex AI's (a problem:
    the two would be read as one search, some settings from each)."""
    vertex = [key for key in VERTEX_PARTS if data.get(key) is not None]
    aip = [key for key in WRAPPERS if data.get(key) is not None]
    if vertex and aip:
        p.add(vertex[0], f"Vertex AI's {vertex[0]} and AI Platform's {aip[0]} in one file: "
                         f"write the search one way (keep {vertex[0]}, or {aip[0]})")
    return bool(vertex and aip)


def _study_requires(p: Problems, settings: Settings, study: Mapping[Any, Any]) -> None:
    """A ``studySpec`` names its metric and parameters, as Vertex requires (without a metric,
    an AI Platform config's default one would be tried, which no Vertex trainer reports)."""
    if study.get("metrics") is None and "metric" not in settings:
        p.add("studySpec.metrics", "required: the metric to optimise, as"
                                   " [{metricId: NAME, goal: MAXIMIZE or MINIMIZE}]")
    if "params" not in settings:  # the spec's own "required" problem, at this place
        settings["params"] = Entry("studySpec.parameters", None, aip=True)


def _put(p: Problems, settings: Settings, setting: str, entry: Entry) -> None:
    if entry.value is None:  # `key:` with no value is as good as absent: the default
        return
    if setting in settings:
        p.add(entry.place, f"the same setting as {settings[setting].place}: give it once")
    else:
        settings[setting] = entry


def _training_input(p: Problems, settings: Settings, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        p.add("trainingInput", f"must be a mapping (got {describe(value)})")
        return
    for key, item in value.items():
        if key == "hyperparameters":
            _hyperparameters(p, settings, "trainingInput.hyperparameters", item)
        elif key == "args":
            _put(p, settings, "args", Entry("trainingInput.args", item, aip=True))
        elif key == "masterConfig":
            _master_config(p, settings, item)
        elif key not in IGNORED_TRAINING_INPUT:
            known = ("hyperparameters", "args", *sorted(IGNORED_TRAINING_INPUT))
            p.add("trainingInput", unknown_key(key, known))
    machine = value.get("masterType")
    gpus = LEGACY_GPU_MACHINES.get(machine.lower()) if isinstance(machine, str) else None
    if gpus is not None and "accelerators" not in settings:  # acceleratorConfig's count wins
        _put(p, settings, "accelerators", Entry("trainingInput.masterType", gpus, aip=True))


def _master_config(p: Problems, settings: Settings, value: Any) -> None:
    """``masterConfig`` is about Google's machines, but for the GPUs it gives each trial
    (``acceleratorConfig.count``): those are ``gpus_per_trial``'s default (a trainer written
    for 4 GPUs, a MirroredStrategy say, would otherwise get one). The rest is ignored."""
    accelerators = value.get("acceleratorConfig") if isinstance(value, Mapping) else None
    if isinstance(accelerators, Mapping) and "count" in accelerators:
        place = "trainingInput.masterConfig.acceleratorConfig.count"
        _put(p, settings, "accelerators", Entry(place, accelerators["count"], aip=True))


def _hyperparameters(p: Problems, settings: Settings, place: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, Mapping):
        p.add(place, f"must be a mapping (got {describe(value)})")
        return
    for key, item in value.items():
        if key in HP_KEYS:
            _put(p, settings, HP_KEYS[key], Entry(at(place, key), _count(key, item), aip=True))
        else:
            hint = " (this mapping takes AI Platform's HyperparameterSpec keys)"
            p.add(place, unknown_key(key, HP_KEYS) + hint)
