"""What of a refused experiment file parsed, for the checks that only the daemon can make.

The parser (``spec.py``) lists every problem it finds in a file; what only the daemon can judge
(are the plugins the file names installed, do they take their options, does ``resume_from``
name an ended experiment, is ``gpus_per_trial`` within the owner's limit: ``Scheduler.submit``)
would otherwise wait until the parser has nothing left to say. So a refused file's
:class:`~gpusched.errors.SpecError` carries a :class:`PartialRead` of those settings, each as
it parsed, with its place; the daemon judges what it can of them, and :meth:`PartialRead.merge`
lists its problems among the parser's, where the parser would have listed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from gpusched._spec_aip import Entry
from gpusched._spec_check import at
from gpusched.errors import Problem
from gpusched.models import Goal

__all__ = ["CHECK_ORDER", "PluginRead", "PartialRead", "partial_read", "written_places"]

CHECK_ORDER = (
    "name", "command", "workdir", "env", "metric", "goal", "objective", "resume_from",
    "max_trials", "max_parallel_trials", "max_failed_trials", "max_retries_per_trial",
    "max_consecutive_failed_trials", "gpus_per_trial", "gpu_memory", "trial_timeout",
    "time_budget", "fail_fast", "priority", "search", "early_stopping", "stop", "params",
    "points_to_evaluate",
)  # fmt: skip
"""The settings in the order the parser checks them (``_spec_fields.check``), which is the
order of its problems (after those of the file as a whole: unknown keys, settings given twice,
a ``--set`` that cannot be applied)."""

# AI Platform's `algorithm` is the search setting, `args` part of the command, and the
# GPUs of `masterConfig.acceleratorConfig` gpus_per_trial's default.
_RANKS = {setting: rank for rank, setting in enumerate(CHECK_ORDER)} | {
    "algorithm": CHECK_ORDER.index("search"), "args": CHECK_ORDER.index("command"),
    "accelerators": CHECK_ORDER.index("gpus_per_trial")}


@dataclass(frozen=True)
class PluginRead:
    """A plugin that a refused file names, its name and options as they parsed."""

    name: str
    name_at: str  # where the file names it
    options_at: str  # where its options are (a problem with them is listed there)
    options: Mapping[str, Any] | None  # None: they did not parse


@dataclass(frozen=True, kw_only=True)
class PartialRead:
    """The settings of a refused file that only the daemon can judge, as they parsed: None
    where one is not set or did not parse (the parser's problem says why). A default counts
    as set, as it does at submit (no ``search`` is ``random``)."""

    search: PluginRead | None
    stopping: tuple[PluginRead, ...]  # early_stopping's policy, then stop's bounds
    metric: str | None
    goal: Goal | None
    gpus_per_trial: float | None
    resume_from: str | None
    # setting -> where the file writes it (else its own name)
    places: Mapping[str, str] = field(repr=False)

    def place(self, setting: str) -> str:
        """Where the file writes ``setting`` (``resumePreviousJobId``), else its name."""
        return self.places.get(setting, setting)

    def merge(self, parsed: Sequence[Problem], judged: Sequence[Problem]) -> list[Problem]:
        """The parser's problems (``parsed``, in its order) with the daemon's (``judged``)
        among them, each after the last of the parser's about a setting that the parser
        checks before its own or with it: where the parser would have listed it."""
        merged = [(self._rank(problem.place), problem) for problem in parsed]
        for problem in sorted(judged, key=lambda problem: self._rank(problem.place)):
            rank = self._rank(problem.place)
            after = [i for i, (other, _) in enumerate(merged) if other <= rank]
            merged.insert(after[-1] + 1 if after else 0, (rank, problem))
        return [problem for _, problem in merged]

    def _rank(self, place: str) -> int:
        """The rank in :data:`CHECK_ORDER` of the setting that ``place`` is in; -1 for a
        place in none (the file as a whole, a mapping around settings, a ``--set``)."""
        within = [(len(where), _RANKS[setting]) for setting, where in self.places.items()
                  if place == where or place.startswith((f"{where}.", f"{where}["))]
        return max(within)[1] if within else -1


def written_places(settings: Mapping[str, Entry]) -> dict[str, str]:
    """Setting -> where the file wrote it; ``gpus_per_trial`` is where the file gave the GPUs
    when it did not write it itself (AI Platform's or Vertex's accelerator count)."""
    places = {k: e.place for k, e in settings.items()}
    if "gpus_per_trial" not in places and "accelerators" in places:
        places["gpus_per_trial"] = places["accelerators"]
    return places


def partial_read(settings: Mapping[str, Entry], fields: Mapping[str, Any],
                 problems: Sequence[Problem]) -> PartialRead:
    """The :class:`PartialRead` of a refused file: its gathered ``settings`` (our spelling ->
    where and what the file wrote), the spec ``fields`` that the parser's checks made of them
    (None where one did not parse) and the parser's ``problems``."""
    written = written_places(settings)
    places = {setting: written.get(setting, setting) for setting in _RANKS}

    def parsed(place: str) -> bool:  # no problem with what is at ``place``, nor within it
        return not any(p.place == place or p.place.startswith((f"{place}.", f"{place}["))
                       for p in problems)

    def plugin(name: str, name_at: str, options_at: str, options: Any) -> PluginRead:
        return PluginRead(name, name_at, options_at, options if parsed(options_at) else None)

    stopping = []
    if (policy := fields.get("early_stopping_policy")) is not None:
        where = places["early_stopping"]
        stopping.append(plugin(policy, _name_at(settings["early_stopping"], "policy"), where,
                               fields.get("early_stopping_options")))
    if stop := fields.get("stop"):  # bounds, the plugin a `stop:` mapping is the options of
        stopping.append(plugin("bounds", places["stop"], places["stop"], stop))
    search = fields.get("search_algorithm")
    return PartialRead(
        search=None if search is None else plugin(
            search, _search_name_at(settings), places["search"], fields.get("search_options")),
        stopping=tuple(stopping),
        metric=fields.get("metric"),
        goal=fields.get("goal"),
        gpus_per_trial=fields.get("gpus_per_trial"),
        resume_from=fields.get("resume_from"),
        places=MappingProxyType(places),
    )


def _name_at(entry: Entry, key: str) -> str:
    """Where a plugin setting names its plugin: the setting itself when it is the bare name
    (``search: tpe``, AI Platform's ``enableTrialEarlyStopping: true``), else its ``key``."""
    return at(entry.place, key) if isinstance(entry.value, Mapping) else entry.place


def _search_name_at(settings: Mapping[str, Entry]) -> str:
    """Where the search is named: ``search`` (or its ``algorithm``), else AI Platform's
    ``algorithm``, else nowhere (the default, ``random`` or an AI Platform config's ``gp``, is
    named at ``search``)."""
    entry, aip = settings.get("search"), settings.get("algorithm")
    if entry is not None and (not isinstance(entry.value, Mapping)
                              or entry.value.get("algorithm") is not None):
        return _name_at(entry, "algorithm")
    return aip.place if aip is not None else "search"
