"""The top-level settings of an experiment file, checked: gathered settings → spec fields.

:func:`check` returns the keyword arguments of :class:`~gpusched.spec.ExperimentSpec`; every
problem goes to the collector, and the caller refuses the file if there is any.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import partial
from types import MappingProxyType
from typing import Any

from gpusched._spec_aip import Entry
from gpusched._spec_check import (
    INT_MAX,
    Problems,
    at,
    boolean,
    choice,
    describe,
    freeze,
    json_int,
    key_text,
    number,
    text,
    whole,
    words,
)
from gpusched._spec_env import RESERVED_ENV, env_name, env_value
from gpusched._spec_params import check_params
from gpusched._spec_points import check_points
from gpusched.models import Goal, ObjectiveRule
from gpusched.plugin_api import SearchSpace
from gpusched.units import parse_duration, parse_memory_mib

__all__ = ["check", "RESERVED_ENV", "NAME", "AIP_METRIC"]

NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
"""An experiment's name: short, and safe in a path, a URL and a shell (never a leading ``-``)."""

AIP_METRIC = "training/hptuning/metric"
"""The metric of a file in AI Platform's spelling without ``hyperparameterMetricTag``: AI
Platform's default for it, and the tag ``cloudml-hypertune`` writes when given none."""

_PLUGIN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*")
_PLUGIN_RULE = "must be a plugin name such as 'random' or 'grid'"
_GOALS = {"maximize": Goal.MAXIMIZE, "max": Goal.MAXIMIZE,
          "minimize": Goal.MINIMIZE, "min": Goal.MINIMIZE}  # fmt: skip
_OBJECTIVES = {"last": ObjectiveRule.LAST, "best": ObjectiveRule.BEST}
# AI Platform's ALGORITHM_UNSPECIFIED is its Bayesian optimisation (a Gaussian process): gp.
_AIP_ALGORITHMS = {"ALGORITHM_UNSPECIFIED": "gp", "GRID_SEARCH": "grid",
                   "RANDOM_SEARCH": "random"}  # fmt: skip
_SEED_MAX = 2**63 - 1  # SQLite's integers are 64-bit; numpy wants seeds >= 0
_COUNTS: Mapping[str, tuple[int, int | None]] = {  # setting: (least value, default)
    "max_trials": (1, None),
    "max_parallel_trials": (1, None),
    "max_failed_trials": (1, None),
    "max_retries_per_trial": (0, 0),
    "max_consecutive_failed_trials": (1, 3),
}


class _Reader:
    """Reads gathered settings: a null or missing setting is its default, unchecked."""

    def __init__(self, p: Problems, settings: Mapping[str, Entry]) -> None:
        self.p = p
        self.settings = settings

    def value(self, key: str) -> Any:
        return self.settings[key].value if key in self.settings else None

    def place(self, key: str) -> str:
        return self.settings[key].place if key in self.settings else key

    def read(self, key: str, default: Any, check: Callable[[Problems, str, Any], Any]) -> Any:
        raw = self.value(key)
        return default if raw is None else check(self.p, self.place(key), raw)


def no_such_folder(folder: str) -> str | None:
    """The problem with ``folder`` as a workdir, seen with this process's rights: None when
    it is a folder this process may enter (a per-user daemon's trials run with its rights)."""
    if not os.path.isdir(folder):
        return f"no such directory: {folder}"
    if not os.access(folder, os.X_OK):
        return (f"{folder}: a folder you may not enter (no x permission for you), and a trial"
                " starts in its workdir: `chmod u+x` it, or give another workdir")
    return None


def check(
    p: Problems, settings: Mapping[str, Entry], *, base_dir: str, default_name: str,
    check_workdir: bool, aip: bool = False, home: str | None = None,
    workdir_check: Callable[[str], str | None] = no_such_folder,
) -> dict[str, Any]:
    """Every spec field from ``settings``, as keyword arguments of ``ExperimentSpec``; ``aip``:
    the file is an AI Platform config (see ``_identity``); ``home``: the submitter's home, for
    ``~`` in ``workdir`` (None: this process's); ``workdir_check``: with ``check_workdir``,
    what is wrong with the workdir, or None (a root daemon checks another user's with that
    user's rights)."""
    r = _Reader(p, settings)
    out = _identity(r, base_dir=base_dir, default_name=default_name,
                    check_workdir=workdir_check if check_workdir else None, aip=aip, home=home)
    out.update(_limits(r, aip=aip))
    out.update(_search(p, settings.get("search"), settings.get("algorithm"), aip=aip))
    out.update(_early_stopping(p, settings.get("early_stopping")))
    out["stop"] = r.read("stop", MappingProxyType({}), _stop)
    before = len(p)
    if r.value("params") is None:
        p.add(r.place("params"), "required: the hyperparameters to search")
    else:
        out["params"] = check_params(p, r.place("params"), r.value("params"))
    # Points are judged against the parameters only when all of these are valid: against
    # some of them, a point's problems would be guesses.
    space = SearchSpace(out["params"]) if "params" in out and len(p) == before else None
    out["points_to_evaluate"] = r.read(
        "points_to_evaluate", (),
        partial(check_points, space=space, max_trials=out["max_trials"]))
    return out


def _identity(r: _Reader, *, base_dir: str, default_name: str,
              check_workdir: Callable[[str], str | None] | None, aip: bool,
              home: str | None = None) -> dict[str, Any]:
    """What runs and what it is judged by: name, command, workdir, env, metric, goal...

    ``check_workdir``: what is wrong with the workdir, or None (None: not checked). ``aip``:
    the file is an AI Platform config, where ``hyperparameterMetricTag`` is optional and
    defaults to :data:`AIP_METRIC`; in ours, ``metric`` is required.
    """
    p = r.p
    name_rule = "must be 1-64 letters, digits, _ . - (not starting with . or -)"
    out: dict[str, Any] = {
        "name": r.read("name", default_name, partial(text, pattern=NAME, rule=name_rule)),
        "command": _command(p, r.settings, aip=aip),
        "workdir": r.read("workdir", base_dir, partial(_workdir, base_dir=base_dir, home=home)),
        "env": r.read("env", MappingProxyType({}), _env),
    }
    if check_workdir is not None and out["workdir"] is not None and (
            problem := check_workdir(out["workdir"])) is not None:
        p.add(r.place("workdir"), problem)
    if r.value("metric") is None and not aip:
        p.add(r.place("metric"), "required: the name of the reported metric to optimise")
    out["metric"] = r.read("metric", AIP_METRIC if aip else None, text)
    out["goal"] = r.read("goal", Goal.MAXIMIZE, _goal)
    out["objective"] = r.read("objective", ObjectiveRule.LAST,
                              partial(choice, table=_OBJECTIVES, names="last, best"))
    out["resume_from"] = r.read("resume_from", None, text)
    return out


def _limits(r: _Reader, *, aip: bool = False) -> dict[str, Any]:
    """How many trials, on what, for how long, and how failures end the experiment; ``aip``:
    an AI Platform config, whose ``maxFailedTrials`` is its only failure budget."""
    out: dict[str, Any] = {}
    for key, (least, default) in _COUNTS.items():
        raw = r.value(key)
        if key == "max_failed_trials" and _is_zero(raw) and r.settings[key].aip:
            out[key] = None  # AI Platform: maxFailedTrials 0 means "not set"
        else:
            out[key] = r.read(key, default, partial(whole, low=least))
    consecutive = "max_consecutive_failed_trials"
    if aip and r.value(consecutive) is None and isinstance(out["max_failed_trials"], int):
        # AI Platform has no rule of failures in a row: with maxFailedTrials set, a job fails
        # only when that many have failed. A streak can never reach it before the total does.
        out[consecutive] = out["max_failed_trials"]
    # AI Platform's masterConfig.acceleratorConfig.count, when our own is not written.
    accelerators = r.read("accelerators", None, _gpu_count)
    out["gpus_per_trial"] = r.read("gpus_per_trial",
                                   1.0 if accelerators is None else float(accelerators), _gpus)
    out["gpu_memory_mib"] = r.read("gpu_memory", None, partial(_amount, parse=parse_memory_mib))
    if out["gpu_memory_mib"] is not None and out["gpus_per_trial"] == 0:
        r.p.add(r.place("gpu_memory"), "a CPU-only trial (gpus_per_trial: 0) gets no GPU memory")
    out["trial_timeout_s"] = r.read("trial_timeout", None, partial(_amount, parse=parse_duration))
    out["time_budget_s"] = r.read("time_budget", None, partial(_amount, parse=parse_duration))
    out["fail_fast"] = r.read("fail_fast", False, boolean)
    out["priority"] = r.read("priority", 0, partial(whole, low=-INT_MAX))
    return out


def _gpu_count(p: Problems, place: str, raw: Any) -> int | None:
    """AI Platform's ``acceleratorConfig.count``: a whole number, also as its API writes an
    int64 in JSON (``'2'``), which a config copied from ``gcloud ... describe`` keeps."""
    return whole(p, place, json_int(raw), low=0)


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


def _goal(p: Problems, place: str, raw: Any) -> Goal | None:
    if isinstance(raw, str) and raw.upper() == "GOAL_TYPE_UNSPECIFIED":
        p.add(place, "GOAL_TYPE_UNSPECIFIED is not a goal: write MAXIMIZE or MINIMIZE")
        return None
    return choice(p, place, raw, _GOALS, "maximize, minimize")


def _command(p: Problems, settings: Mapping[str, Entry], *, aip: bool = False
             ) -> tuple[str, ...] | None:
    entry = settings.get("command")
    if entry is None or entry.value is None:
        # An AI Platform or Vertex config has no command: it is given on the command line.
        hint = (" (an AI Platform or Vertex AI config? `gpusched submit --aip FILE -- python -m"
                " trainer.task` runs it with that command)") if aip else ""
        p.add("command", f"required: the trainer's command, a string or a list{hint}")
        return None
    parts = words(p, entry.place, entry.value, split=True)
    args = settings.get("args")
    extra = () if args is None or args.value is None else words(p, args.place, args.value)
    if parts is not None and not parts:
        p.add(entry.place, "must not be empty")
    elif parts is not None and not parts[0]:
        p.add(at(entry.place, 0), "the program must not be empty")
    elif parts is not None and extra is not None:
        kept, dropped = _without_given_options(extra, given=parts[1:])
        if dropped and args is not None:
            names = ", ".join(sorted({d.split("=", 1)[0] for d in dropped if d.startswith("--")}))
            p.warn(args.place, f"{' '.join(dropped)} left out: the command gives {names} too,"
                               " and the command line wins, as with gcloud")
        return parts + kept
    return None


def _without_given_options(args: tuple[str, ...], *, given: tuple[str, ...]
                           ) -> tuple[tuple[str, ...], list[str]]:
    """``args`` (AI Platform's ``trainingInput.args``) less each long option that ``given`` (the
    command's own arguments) has too, with its value (``--epochs 4`` or ``--epochs=4``): gcloud
    lets the arguments on its command line replace the file's, and a trainer's argparse would
    take the file's, written after them. Returns what is kept and what was left out.

    Whether an option takes a value is read from the command's own use of it: ``--epochs 10``
    or ``--epochs=10`` does, a ``--verbose`` followed by another option or by nothing does not
    (the file's ``--verbose data.csv`` keeps its ``data.csv``). A value may be a negative
    number (``--shift -3``)."""
    names: set[str] = set()
    valued: set[str] = set()
    for i, arg in enumerate(given):
        if arg.startswith("--") and arg != "--":
            name, eq, _ = arg.partition("=")
            names.add(name)
            if eq or (i + 1 < len(given) and _is_value(given[i + 1])):
                valued.add(name)
    kept: list[str] = []
    dropped: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":  # what follows is positional: the trainer's own
            kept.extend(args[i:])
            break
        name, eq, _ = arg.partition("=")
        if arg.startswith("--") and name in names:
            dropped.append(arg)
            if not eq and name in valued and i + 1 < len(args) and _is_value(args[i + 1]):
                i += 1
                dropped.append(args[i])
        else:
            kept.append(arg)
        i += 1
    return tuple(kept), dropped


_NEGATIVE = re.compile(r"-\.?[0-9]")


def _is_value(word: str) -> bool:
    """Whether ``word``, after an option, is its value: not an option itself (a negative
    number is a value)."""
    return not word.startswith("-") or _NEGATIVE.match(word) is not None


def _workdir(p: Problems, place: str, raw: Any, *, base_dir: str, home: str | None = None
             ) -> str | None:
    folder = text(p, place, raw)
    if folder is None:
        return None
    if home is not None and (folder == "~" or folder.startswith("~/")):
        # The submitter's ~, not the daemon's (a root daemon parses every user's file).
        folder = home + folder[1:]
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(folder)))


def _env(p: Problems, place: str, raw: Any) -> Mapping[str, str] | None:
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping of variable names to values (got {describe(raw)})")
        return None
    env: dict[str, str] = {}
    for key, item in raw.items():
        if not isinstance(key, str):
            p.add(place, f"keys must be text (got {describe(key)})")
            continue
        name, value = env_name(p, at(place, key), key), env_value(p, at(place, key), item)
        if name is not None and value is not None:
            env[name] = value
    return MappingProxyType(env)


def _gpus(p: Problems, place: str, raw: Any) -> float | None:
    """0, a whole number of GPUs, or a share 1/k (k = 2..16) of one GPU: k trials share it."""
    share = re.fullmatch(r"\s*1\s*/\s*([0-9]{1,3})\s*", raw) if isinstance(raw, str) else None
    if share is not None and int(share.group(1)) > 0:
        raw = 1 / int(share.group(1))
    value = number(p, place, raw)
    if value is None:
        return None
    if value == 0 or (value >= 1 and float(value).is_integer() and value <= INT_MAX):
        return float(value)
    for k in range(2, 17):
        if abs(value - 1 / k) <= 1e-6:
            return 1 / k  # exactly 1/k, so that k trials fill one GPU
    p.add(place, "must be 0 (CPU only), a whole number of GPUs, or a share 1/k of one GPU such "
                 f"as 0.5, 0.25 or 1/3 (k up to 16) (got {describe(raw)})")
    return None


def _amount(
    p: Problems, place: str, raw: Any, *, parse: Callable[[Any], float]
) -> float | None:
    """A positive duration or memory size, in the parser's unit."""
    try:
        value = parse(raw)
    except ValueError as exc:
        p.add(place, str(exc))
        return None
    if value <= 0:
        p.add(place, f"must be greater than 0 (got {describe(raw)})")
        return None
    return value


def _plugin(p: Problems, place: str, raw: Any) -> str | None:
    return text(p, place, raw, pattern=_PLUGIN, rule=_PLUGIN_RULE)


def _algorithm(p: Problems, place: str, raw: Any) -> str | None:
    """A search plugin's name; AI Platform's algorithm names are read as ours."""
    name = _plugin(p, place, raw)
    return _AIP_ALGORITHMS.get(name.upper(), name) if name is not None else None


def _split(p: Problems, place: str, raw: Any, head: str) -> tuple[Any, dict[str, Any], Any]:
    """A plugin setting: a bare name, or ``{head: NAME, ...options}`` → (name, options, raw)."""
    if isinstance(raw, str):
        return raw, {}, raw
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a plugin name, or a mapping {{{head}: NAME, ...options}} "
                     f"(got {describe(raw)})")
        return None, {}, None
    return raw.get(head), {k: v for k, v in raw.items() if k != head}, raw


def _search(
    p: Problems, entry: Entry | None, aip_algorithm: Entry | None, *, aip: bool = False,
) -> dict[str, Any]:
    """``search: grid`` or ``search: {algorithm: grid, seed: 3, ...options}`` (+ AI Platform's
    ``algorithm``; giving both is a problem). Named nowhere: ``random``, or in an AI Platform
    config (``aip``) AI Platform's own default, its Bayesian optimisation (``gp``), so that a
    user's ``hptuning_config.yaml`` searches here as it searched there."""
    place = entry.place if entry else "search"
    algorithm, raw = None, None
    options: dict[str, Any] = {}
    if entry is not None and entry.value is not None:
        algorithm, options, raw = _split(p, place, entry.value, "algorithm")
    seed = options.pop("seed", None)
    where = place if isinstance(raw, str) else at(place, "algorithm")
    if algorithm is not None:
        name = _algorithm(p, where, algorithm)
    else:
        name = _AIP_ALGORITHMS["ALGORITHM_UNSPECIFIED"] if aip else "random"
    if aip_algorithm is not None and algorithm is not None:
        p.add(aip_algorithm.place, f"the same setting as {where}: give it once")
    elif aip_algorithm is not None and aip_algorithm.value is not None:
        name = _algorithm(p, aip_algorithm.place, aip_algorithm.value)
    seed_place = at(place, "seed")
    return {
        "search_algorithm": name,
        "search_seed": None if seed is None else whole(p, seed_place, seed, low=0, high=_SEED_MAX),
        "search_options": freeze(p, place, options),
    }


def _early_stopping(p: Problems, entry: Entry | None) -> dict[str, Any]:
    """``early_stopping: median`` or ``{policy: median, ...options}``; AI Platform's
    ``enableTrialEarlyStopping: true`` is the median policy."""
    if entry is None or entry.value is None:
        return {"early_stopping_policy": None, "early_stopping_options": MappingProxyType({})}
    if entry.aip:
        enabled = boolean(p, entry.place, entry.value)
        return {"early_stopping_policy": "median" if enabled else None,
                "early_stopping_options": MappingProxyType({})}
    policy, options, raw = _split(p, entry.place, entry.value, "policy")
    where = entry.place if isinstance(raw, str) else at(entry.place, "policy")
    if raw is not None and policy is None:
        p.add(where, "required: the name of a stopping plugin, such as 'median'")
    return {
        "early_stopping_policy": None if policy is None else _plugin(p, where, policy),
        "early_stopping_options": freeze(p, entry.place, options),
    }


def _stop(p: Problems, place: str, raw: Any) -> Mapping[str, float] | None:
    """``{metric or reported key: bound}``: a trial stops once a value reaches its bound."""
    if not isinstance(raw, Mapping):
        p.add(place, f"must be a mapping of reported keys to numbers (got {describe(raw)})")
        return None
    bounds: dict[str, float] = {}
    for key, item in raw.items():
        name = key_text(p, place, key)
        bound = number(p, at(place, key), item)
        if name is not None and bound is not None:
            bounds[name] = bound
    return MappingProxyType(bounds)
