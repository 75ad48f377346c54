"""Experiment files → validated, immutable :class:`ExperimentSpec` (SPEC section 3).

An experiment file is YAML (or JSON) in our spelling, in AI Platform's HyperparameterSpec
spelling, or a mix; docs/experiment-file.md is the user's reference. A bad file is refused with
one :class:`~gpusched.errors.SpecError` that lists every problem, each with its place in the file;
when the file's settings could be read, it carries (``read``) those that only the daemon can
judge, as far as they parsed, so that one submit reports the daemon's problems too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gpusched import _spec_fields
from gpusched._spec_aip import Entry, gather
from gpusched._spec_check import Problems, thaw
from gpusched._spec_partial import partial_read, written_places
from gpusched._spec_read import read_text
from gpusched._spec_set import apply_overrides
from gpusched._spec_stop_keys import stop_key_near_misses
from gpusched._spec_yaml import load_text, parse_file_text
from gpusched.errors import SpecError
from gpusched.models import Goal, ObjectiveRule
from gpusched.plugin_api import Param, ParamType, ParamValue, Scale, SearchSpace
from gpusched.units import parse_duration, parse_memory_mib

__all__ = [
    "ExperimentSpec",
    "parse_experiment",
    "parse_experiment_text",
    "load_experiment_file",
    "load_aip_file",
    "parse_duration",
    "parse_memory_mib",
    "DEFAULT_MAX_TRIALS",
]

DEFAULT_MAX_TRIALS = 10
"""Trials run when ``max_trials`` is not set and the search is not a grid (a grid runs whole)."""


def _frozen() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, kw_only=True)
class ExperimentSpec:
    """A validated experiment: what ``gpusched submit`` sends and the daemon runs.

    Build one with :func:`load_experiment_file`, :func:`parse_experiment` or :meth:`from_dict`;
    the constructor itself checks nothing. Mappings are read-only and lists are tuples (plugin
    options included), so a spec can be shared freely. ``None`` means "the default" where the
    default depends on the daemon: ``max_trials`` (the search's size, else
    :data:`DEFAULT_MAX_TRIALS`, with ``points_to_evaluate`` counted as
    ``ExperimentRun.max_trials`` says), ``max_parallel_trials`` (as many as the GPUs allow),
    ``max_failed_trials`` (unlimited, but the experiment fails if its first trial does).
    """

    name: str
    command: tuple[str, ...]  # the trainer; each trial appends one --NAME=VALUE per parameter
    workdir: str  # absolute
    env: Mapping[str, str] = field(default_factory=_frozen, hash=False)
    metric: str
    goal: Goal = Goal.MAXIMIZE
    objective: ObjectiveRule = ObjectiveRule.LAST
    max_trials: int | None = None
    max_parallel_trials: int | None = None
    gpus_per_trial: float = 1.0  # 0, a whole number, or 1/k (k = 2..16): k trials share a GPU
    gpu_memory_mib: float | None = None
    trial_timeout_s: float | None = None
    time_budget_s: float | None = None  # the whole experiment's wall time, from its start
    max_failed_trials: int | None = None
    max_retries_per_trial: int = 0
    max_consecutive_failed_trials: int = 3
    fail_fast: bool = False
    search_algorithm: str = "random"
    search_seed: int | None = None  # None: the daemon draws one at submit and records it
    search_options: Mapping[str, Any] = field(default_factory=_frozen, hash=False)
    early_stopping_policy: str | None = None
    early_stopping_options: Mapping[str, Any] = field(default_factory=_frozen, hash=False)
    stop: Mapping[str, float] = field(default_factory=_frozen, hash=False)
    resume_from: str | None = None
    priority: int = 0
    params: tuple[Param, ...]
    # The first trials' params, before the search's own (docs/experiment-file.md): each holds
    # a value for exactly the parameters active under it.
    points_to_evaluate: tuple[Mapping[str, ParamValue], ...] = field(default=(), hash=False)

    def __post_init__(self) -> None:
        # Direct construction may pass dicts and lists: store read-only copies all the same.
        for name in ("env", "search_options", "early_stopping_options", "stop"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, MappingProxyType(dict(value)))
        object.__setattr__(self, "command", tuple(self.command))
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "points_to_evaluate", tuple(
            point if isinstance(point, MappingProxyType) else MappingProxyType(dict(point))
            for point in self.points_to_evaluate))

    def space(self) -> SearchSpace:
        """The search space: the parameters in the file's order (made once: the scheduler asks
        for it at every suggestion, to check the answer and keep its active parameters)."""
        made: SearchSpace | None = self.__dict__.get("_space")
        if made is None:
            made = SearchSpace(self.params)
            object.__setattr__(self, "_space", made)  # a cache, not a field: frozen all the same
        return made

    def warnings(self) -> tuple[str, ...]:
        """What looks wrong in the file as it was read, though it is valid (a loss maximized
        by default): ``gpusched submit`` prints them. Not part of the spec: none after
        :meth:`from_dict`."""
        found: tuple[str, ...] = self.__dict__.get("_warnings", ())
        return found

    def written_at(self, setting: str) -> str | None:
        """Where the file wrote ``setting`` (one of ours, such as ``resume_from``, or AI
        Platform's ``algorithm``), as it spelt it
        (``trainingInput.hyperparameters.resumePreviousJobId``), for a problem the daemon
        finds there; None when it did not write it, and after :meth:`from_dict`."""
        places: Mapping[str, str] = self.__dict__.get("_places", {})
        return places.get(setting)

    def place(self, setting: str) -> str:
        """:meth:`written_at`, else ``setting`` itself."""
        return self.written_at(setting) or setting

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able experiment file in our spelling; :meth:`from_dict` reads it back equal.

        Durations are seconds and memory MiB; unset settings are ``null``.
        """
        search: dict[str, Any] = {"algorithm": self.search_algorithm}
        if self.search_seed is not None:
            search["seed"] = self.search_seed
        search.update(thaw(self.search_options))
        early = None
        if self.early_stopping_policy is not None:
            early = {"policy": self.early_stopping_policy, **thaw(self.early_stopping_options)}
        gpus = self.gpus_per_trial
        return {
            "name": self.name,
            "command": list(self.command),
            "workdir": self.workdir,
            "env": dict(self.env),
            "metric": self.metric,
            "goal": self.goal.value,
            "objective": self.objective.value,
            "max_trials": self.max_trials,
            "max_parallel_trials": self.max_parallel_trials,
            "gpus_per_trial": int(gpus) if float(gpus).is_integer() else gpus,
            "gpu_memory": self.gpu_memory_mib,
            "trial_timeout": self.trial_timeout_s,
            "time_budget": self.time_budget_s,
            "max_failed_trials": self.max_failed_trials,
            "max_retries_per_trial": self.max_retries_per_trial,
            "max_consecutive_failed_trials": self.max_consecutive_failed_trials,
            "fail_fast": self.fail_fast,
            "search": search,
            "early_stopping": early,
            "stop": dict(self.stop),
            "resume_from": self.resume_from,
            "priority": self.priority,
            "params": [_param_dict(p) for p in self.params],
            "points_to_evaluate": [dict(point) for point in self.points_to_evaluate] or None,
        }

    @classmethod
    def from_dict(cls, d: Any) -> ExperimentSpec:
        """The spec that :meth:`to_dict` wrote (checked again: a stored spec may be stale).

        Its ``workdir`` is absolute; were it not, it would be taken from ``/``, never from
        whatever the reading process's current directory happens to be.
        """
        return parse_experiment(d, base_dir="/")


def _param_dict(param: Param) -> dict[str, Any]:
    out: dict[str, Any] = {"name": param.name, "type": param.type.value}
    if param.is_numeric_range:
        out.update(min=param.low, max=param.high, scale=param.scale.value)
        if param.step is not None:
            out["step"] = param.step
    else:
        out["values"] = list(param.values)
        if param.type is ParamType.DISCRETE and param.scale is not Scale.LINEAR:
            out["scale"] = param.scale.value  # AI Platform allows it; kept so it round-trips
    if param.when:  # always lists: one value is a list of one
        out["when"] = {parent: list(values) for parent, values in param.when.items()}
    return out


def parse_experiment(data: Any, *, base_dir: str | Path, source: str = "",
                     home: str | None = None) -> ExperimentSpec:
    """Validate already-loaded experiment ``data`` (a mapping, in either spelling).

    A relative ``workdir`` is taken from ``base_dir`` (the default workdir is ``base_dir``);
    ``name`` defaults to ``source``'s file stem (or ``experiment``). ``source`` names the file in
    the error. Raises :class:`SpecError` listing every problem, each with its place.
    """
    return _parse(data, base_dir=Path(base_dir), source=source, home=home)


def parse_experiment_text(
    text: str, *, source: str, base_dir: str | Path, overrides: Sequence[str] = (),
    name: str | None = None, command: Sequence[str] | None = None, home: str | None = None,
    workdir_check: Callable[[str], str | None] | None = None,
) -> ExperimentSpec:
    """An experiment file's ``text``, as ``gpusched submit`` reads it and the daemon parses it:
    YAML (or JSON), then ``--set KEY=VALUE`` ``overrides`` in order, then ``name``.

    ``source`` names the file in errors and gives the default name. A relative ``workdir`` is
    taken from ``base_dir`` (the file's folder; the default workdir); it must exist. With a
    ``command`` (``submit --aip FILE -- COMMAND``) the text is an AI Platform
    ``hptuning_config.yaml`` (or a Vertex AI tuning config, ``studySpec``) run with that
    command. ``home``: the submitter's home folder, for
    a ``~`` in ``workdir`` (None: this process's ``$HOME``). ``workdir_check``: what is wrong
    with the workdir, or None when it can be used (None: it must be a folder this process
    sees; a root daemon checks another user's with that user's rights). Raises
    :class:`SpecError` listing every problem, each with its place.
    """
    data = parse_file_text(text, source)
    return _parse(data, base_dir=Path(base_dir), source=source, overrides=overrides, name=name,
                  command=None if command is None else tuple(command), check_workdir=True,
                  home=home, workdir_check=workdir_check)


def load_experiment_file(
    path: str | Path, *, overrides: Sequence[str] = (), name: str | None = None
) -> ExperimentSpec:
    """Read an experiment file, apply ``--set KEY=VALUE`` ``overrides`` in order, then ``name``.

    ``workdir`` is relative to the file's folder and defaults to it; it must exist.
    """
    path = Path(path)
    return parse_experiment_text(read_text(path), source=str(path),
                                 base_dir=path.absolute().parent, overrides=overrides, name=name)


def load_aip_file(
    path: str | Path,
    command: Sequence[str],
    *,
    overrides: Sequence[str] = (),
    name: str | None = None,
) -> ExperimentSpec:
    """Read an AI Platform ``hptuning_config.yaml`` (or a Vertex AI tuning config, with its
    ``studySpec``) and run it with ``command`` (after ``--``).

    The HyperparameterSpec may be bare, under ``hyperparameters:`` or under
    ``trainingInput: {hyperparameters: ...}`` (whose ``args`` are appended to ``command``); the
    workdir is the current directory.
    """
    path = Path(path)
    return parse_experiment_text(read_text(path), source=str(path), base_dir=Path.cwd(),
                                 overrides=overrides, name=name, command=command)


def _load_value(text: str) -> Any:
    return load_text(text) if text.strip() else None


def _parse(
    data: Any,
    *,
    base_dir: Path,
    source: str,
    overrides: Sequence[str] = (),
    name: str | None = None,
    command: tuple[str, ...] | None = None,
    check_workdir: bool = False,
    home: str | None = None,
    workdir_check: Callable[[str], str | None] | None = None,
) -> ExperimentSpec:
    p = Problems()
    settings = gather(p, data)
    if not isinstance(data, Mapping):  # nothing else to say about a list or a number
        raise SpecError(p.items, source)
    # An AI Platform config (`submit --aip`, or a file that writes any setting AI Platform's
    # way) reads as AI Platform does where the two differ: a missing metric is its default.
    # An override's spelling does not make one of a file in ours.
    aip = command is not None or any(entry.aip for entry in settings.values())
    apply_overrides(p, settings, overrides, _load_value)
    if name is not None:
        settings["name"] = Entry("--name", name)
    if command is not None:
        if "command" in settings:
            p.add(settings["command"].place, "the command is given after `--`: leave it out here")
        if command:
            settings["command"] = Entry("command", list(command))
        else:
            p.add("command", "required: give the trainer's command after `--`")
    fields = _spec_fields.check(p, settings, base_dir=os.path.abspath(base_dir),
                                default_name=_default_name(source), check_workdir=check_workdir,
                                aip=aip, home=home,
                                workdir_check=workdir_check or _spec_fields.no_such_folder)
    if p.items:
        # With what of the file parsed, so that the daemon can add its own problems now.
        raise SpecError(p.items, source, read=partial_read(settings, fields, p.items))
    spec = ExperimentSpec(**fields)
    # Not fields (a spec read back from the log has none): where the file wrote each setting.
    object.__setattr__(spec, "_places", written_places(settings))
    warned: list[str] = list(p.warnings)
    if "goal" not in settings and _LOSS_LIKE.search(spec.metric):
        # Optuna minimizes by default and KerasTuner reads a loss from its name: a search that
        # maximizes a loss runs every trial the wrong way, and nothing fails to say so.
        warned.append(
            f"metric '{spec.metric}' looks like something to minimize, but goal is maximize"
            " (the default when none is given): add `goal: minimize` if lower is better, or"
            " `goal: maximize` to say so")
    # `stop: {training_iteraton: 50}` would stop nothing, and only a trial's end could say so.
    warned.extend(stop_key_near_misses(spec.stop, spec.metric))
    if warned:
        object.__setattr__(spec, "_warnings", tuple(warned))
    return spec


# A metric named like these is lower-is-better (KerasTuner's rule reads "loss" alone).
_LOSS_LIKE = re.compile(r"(?i)loss|error|(?<![a-z])(err|mse|mae|rmse|mape|nll|ppl|perplexity"
                        r"|wer|cer|regret)(?![a-z])")


def _default_name(source: str) -> str:
    """The file's stem, made a valid name (``my exp.yaml`` → ``my-exp``), else ``experiment``."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", Path(source).stem if source else "").lstrip(".-")
    return stem[:64] or "experiment"
