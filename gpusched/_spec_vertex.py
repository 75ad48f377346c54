"""Vertex AI's spelling of a search: a ``HyperparameterTuningJob``, as ``gcloud ai hp-tuning-jobs
create --config=FILE`` takes it (``studySpec:``, ``trialJobSpec:``, ``maxTrialCount``, ...).

Each reader returns what it found as ``(setting, place, value)``: the setting in our spelling,
where the file wrote it, and the value to read there (translated where Vertex's words differ
from ours, such as ``BEST_MEASUREMENT``). ``_spec_aip.gather`` makes them AI Platform entries,
so the rest of the parser reads such a file as an AI Platform config (its default metric aside:
a ``studySpec`` must name its metric, as on Vertex). The parameters are read by
``_spec_params``, which knows Vertex's ParameterSpec (``parameterId``, ``doubleValueSpec``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gpusched._spec_check import Problems, at, describe, unknown_key
from gpusched._spec_env import env_name, env_value

__all__ = ["VERTEX_KEYS", "IGNORED_JOB_KEYS", "Found", "study_spec", "trial_job_spec",
           "display_name"]

Found = tuple[str, str, Any]
"""``(setting, place, value)``: one setting a reader found."""

VERTEX_KEYS: Mapping[str, str] = {
    "maxTrialCount": "max_trials",
    "parallelTrialCount": "max_parallel_trials",
    "maxFailedTrialCount": "max_failed_trials",  # 0: Vertex decides, read as AI Platform's 0
}
"""A HyperparameterTuningJob's counts → the setting each one is (``displayName`` is the name,
read apart: see :func:`display_name`)."""

IGNORED_JOB_KEYS = frozenset({"labels", "encryptionSpec"})
"""Fields of a HyperparameterTuningJob about Google's project, read and ignored next to a
``studySpec``."""

_STUDY_KEYS = (
    "metrics", "parameters", "algorithm", "measurementSelectionType", "observationNoise",
    "medianAutomatedStoppingSpec", "decayCurveStoppingSpec", "convexAutomatedStoppingSpec",
    "convexStopConfig", "studyStoppingConfig",
)  # fmt: skip
_MEASUREMENTS = {"best_measurement": "best", "last_measurement": "last",
                 "measurement_selection_type_unspecified": "last"}  # Vertex: unset is LAST
_OTHER_STOPPING = ("decayCurveStoppingSpec", "convexAutomatedStoppingSpec", "convexStopConfig")
_METRIC_KEYS = ("metricId", "goal", "safetyConfig")
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


def study_spec(p: Problems, value: Any) -> list[Found]:
    """The settings of a ``studySpec`` (Vertex's StudySpec); its problems, each at its place."""
    place = "studySpec"
    if value is None:
        return []
    if not isinstance(value, Mapping):
        p.add(place, f"must be a mapping (got {describe(value)})")
        return []
    found: list[Found] = []
    for key, item in value.items():
        where = at(place, key)
        if key not in _STUDY_KEYS:
            hint = " (this mapping takes Vertex AI's StudySpec keys)"
            p.add(place, unknown_key(key, _STUDY_KEYS) + hint)
        elif item is None or key == "observationNoise":  # Vertex's tuning jobs ignore it too
            continue
        elif key == "metrics":
            found.extend(_metrics(p, where, item))
        elif key == "parameters":
            found.append(("params", where, item))
        elif key == "algorithm":
            found.append(("algorithm", where, item))  # GRID_SEARCH etc.: read as AI Platform's
        elif key == "measurementSelectionType":
            found.extend(_measurement(p, where, item))
        elif key == "medianAutomatedStoppingSpec":
            found.extend(_median(p, where, item))
        elif key in _OTHER_STOPPING:
            p.add(where, "not supported: gpusched stops trials early by the median rule alone"
                         " (write medianAutomatedStoppingSpec: {} for it, or leave early"
                         " stopping out)")
        else:  # studyStoppingConfig
            p.add(where, "not supported: the search ends after maxTrialCount trials (or at"
                         " time_budget: DURATION, if you add one); leave it out")
    return found


def _metrics(p: Problems, place: str, raw: Any) -> list[Found]:
    """``[{metricId, goal}]``: exactly one metric, as gpusched optimises one."""
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a list of one {{metricId: NAME, goal: MAXIMIZE or MINIMIZE}} "
                     f"(got {describe(raw)})")
        return []
    if len(raw) != 1:
        p.add(place, f"must list exactly one metric (got {len(raw)}): gpusched optimises one;"
                     " keep that one here (the trainer may report the others all the same)")
        return []
    where, metric = at(place, 0), raw[0]
    if not isinstance(metric, Mapping):
        p.add(where, f"must be a mapping {{metricId: NAME, goal: MAXIMIZE or MINIMIZE}} "
                     f"(got {describe(metric)})")
        return []
    for key in metric:
        if key not in _METRIC_KEYS:
            p.add(where, unknown_key(key, _METRIC_KEYS))
    if metric.get("safetyConfig") is not None:
        p.add(at(where, "safetyConfig"), "not supported: gpusched has no safety metrics; leave"
                                         " it out")
    found: list[Found] = []
    for key, setting, need in (("metricId", "metric", "the name of the reported metric"),
                               ("goal", "goal", "MAXIMIZE or MINIMIZE")):
        if metric.get(key) is None:
            p.add(at(where, key), f"required: {need}")
        else:
            found.append((setting, at(where, key), metric[key]))
    return found


def _measurement(p: Problems, place: str, raw: Any) -> list[Found]:
    """``BEST_MEASUREMENT`` / ``LAST_MEASUREMENT`` → ``objective: best`` / ``last``."""
    if isinstance(raw, str) and raw.lower() in _MEASUREMENTS:
        return [("objective", place, _MEASUREMENTS[raw.lower()])]
    p.add(place, f"must be one of BEST_MEASUREMENT, LAST_MEASUREMENT (got {describe(raw)})")
    return []


def _median(p: Problems, place: str, raw: Any) -> list[Found]:
    """``medianAutomatedStoppingSpec: {}`` → ``early_stopping: median`` (as AI Platform's
    ``enableTrialEarlyStopping: true``)."""
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping, such as {{}} (got {describe(raw)})")
        return []
    for key, item in raw.items():
        if key != "useElapsedDuration":
            p.add(place, unknown_key(key, ("useElapsedDuration",)))
        elif item is True:
            p.add(at(place, key), "not supported: trials are compared at the same"
                                  " training_iteration, not after the same time; leave it out")
        elif item is not None and not isinstance(item, bool):
            p.add(at(place, key), f"must be true or false (got {describe(item)})")
    return [("early_stopping", place, True)]


def trial_job_spec(p: Problems, value: Any) -> list[Found]:
    """What of a ``trialJobSpec`` (Vertex's CustomJobSpec) gpusched uses, from its first worker
    pool (the chief, which runs the trainer): ``machineSpec.acceleratorCount``, the GPUs each
    trial had there (``gpus_per_trial``'s default), the trainer's ``args`` (appended to the
    command, as AI Platform's ``trainingInput.args``) and its container's ``env`` (the
    experiment's ``env``). The rest is about Google's machines: ignored."""
    place = "trialJobSpec"
    if value is None:
        return []
    if not isinstance(value, Mapping):
        p.add(place, f"must be a mapping (got {describe(value)})")
        return []
    pools, where = value.get("workerPoolSpecs"), at(place, "workerPoolSpecs")
    if pools is not None and not isinstance(pools, list | tuple):
        p.add(where, f"must be a list of worker pools (got {describe(pools)})")
        return []
    chief, where = (pools[0] if pools else None), at(where, 0)
    if chief is not None and not isinstance(chief, Mapping):
        p.add(where, f"must be a mapping such as {{machineSpec: ..., containerSpec: ...}} "
                     f"(got {describe(chief)})")
    if not isinstance(chief, Mapping):
        return []
    found: list[Found] = []
    machine = chief.get("machineSpec")
    if isinstance(machine, Mapping) and machine.get("acceleratorCount") is not None:
        found.append(("accelerators", at(at(where, "machineSpec"), "acceleratorCount"),
                      machine["acceleratorCount"]))
    for task in ("pythonPackageSpec", "containerSpec"):
        spec = chief.get(task)
        if isinstance(spec, Mapping) and spec.get("args") is not None:
            found.append(("args", at(at(where, task), "args"), spec["args"]))
        if isinstance(spec, Mapping) and spec.get("env") is not None:
            env = _env(p, at(at(where, task), "env"), spec["env"])
            if env is not None:
                found.append(("env", at(at(where, task), "env"), env))
    return found


def _env(p: Problems, place: str, raw: Any) -> dict[str, str] | None:
    """A container's ``env: [{name: NAME, value: TEXT}]`` (Vertex's EnvVar list) as the
    experiment's ``env`` mapping; each problem at its entry's place. A value's ``$(NAME)`` is
    expanded from the entries before it, and ``$$`` is ``$``, as Vertex does (Kubernetes'
    rules); a reference to any other variable stays as written, with a warning: Vertex would
    have expanded its own (``AIP_MODEL_DIR``...) there, gpusched does not."""
    example = "[{name: NAME, value: TEXT}]"
    if not isinstance(raw, list | tuple):
        p.add(place, f"must be a list such as {example} (got {describe(raw)})")
        return None
    env: dict[str, str] = {}
    first: dict[str, int] = {}
    for i, item in enumerate(raw):
        where = at(place, i)
        if not isinstance(item, Mapping):
            p.add(where, f"must be a mapping {{name: NAME, value: TEXT}} (got {describe(item)})")
            continue
        for key in item:
            if key not in ("name", "value"):
                p.add(where, unknown_key(key, ("name", "value")))
        if item.get("name") is None:
            p.add(at(where, "name"), "required: the variable's name")
            name = None
        else:
            name = env_name(p, at(where, "name"), item["name"])
        if item.get("value") is None:  # required by Vertex's API: "" is written ""
            p.add(at(where, "value"), "required: the variable's value (\"\" for none)")
            value = None
        else:
            value = env_value(p, at(where, "value"), item["value"])
        if name is not None and name in first:
            p.add(at(where, "name"), f"{name!r} is already set by {at(place, first[name])}:"
                                     " give it once")
        elif name is not None and value is not None:
            first[name] = i
            env[name] = _expand(p, at(where, "value"), value, env)
    return env


_REFERENCE = re.compile(r"\$(\$|\(([^)]*)\))")


def _expand(p: Problems, place: str, value: str, known: Mapping[str, str]) -> str:
    """``value`` with ``$(NAME)`` replaced from ``known`` and ``$$`` made ``$`` (Kubernetes'
    expansion, which Vertex AI applies to a container's env); an unknown ``$(NAME)`` is kept,
    and said in a warning."""
    unknown: list[str] = []

    def one(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name = match.group(2)
        if name in known:
            return known[name]
        unknown.append(name)
        return match.group(0)

    expanded = _REFERENCE.sub(one, value)
    if unknown:
        names = ", ".join(f"$({name})" for name in dict.fromkeys(unknown))
        p.warn(place, f"{names} left as written: only a variable listed before it here is"
                      " expanded (Vertex AI also expands its own, such as $(AIP_MODEL_DIR);"
                      " gpusched sets those for each trial: read them in the trainer)")
    return expanded


def display_name(value: Any) -> Any:
    """A ``displayName`` as an experiment's name: Vertex allows any text (``digits tuning``),
    ours is a word of letters, digits, ``_ . -``, so other characters become ``-``
    (``digits-tuning``, as a file's stem does when it names one; said in no warning, which a
    ``--name`` given after would make wrong). Anything but text is left for the name's own
    check to refuse."""
    if not isinstance(value, str):
        return value
    return _NAME_CHARS.sub("-", value).lstrip(".-")[:64] or value
