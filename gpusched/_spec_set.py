"""``--set KEY=VALUE``: a setting given on the command line, in any spelling a file may use.

An override edits the table of settings that ``_spec_aip.gather`` read from the file: it
replaces a setting whichever spelling the file used for it (``--set max_trials=5`` on a file
with ``maxTrials: 30``), and reaches into lists by name or index (``params[lr].max=0.1``, also
written ``studySpec.parameters[lr].doubleValueSpec.maxValue``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gpusched._spec_aip import HP_KEYS, NATIVE_KEYS, VERTEX_PARTS, WRAPPERS, Entry, Settings
from gpusched._spec_check import Problems, at, describe, unknown_key
from gpusched._spec_params import PARAM_KEYS, VALUE_SPECS
from gpusched._spec_vertex import VERTEX_KEYS
from gpusched._spec_when import CHILDREN

__all__ = ["apply_overrides", "parse_path"]

_NESTED = frozenset({"command", "env", "search", "early_stopping", "stop", "params",
                     "points_to_evaluate"})
_LISTS = frozenset({"params", "points_to_evaluate"})  # a --set into one that is not there: []

# The parts of a studySpec that --set may name in Vertex's spelling: those read as they are
# written. The rest (metrics, measurementSelectionType, ...) read as other words; ours say it.
_STUDY_PATHS = {"parameters": "params", "algorithm": "algorithm"}
_VERTEX_SET = {**VERTEX_KEYS, "displayName": "name"}
_VERTEX_SET_HINT = (
    "only studySpec.parameters and studySpec.algorithm are set in Vertex AI's spelling; set the"
    " rest in ours: metric=NAME, goal=minimize, objective=best, early_stopping=median,"
    " gpus_per_trial=N (the trainer's arguments go after --)")
_FIRST = re.compile(r"[^.\[\]]+")
_INDEX = re.compile(r"[0-9]{1,9}")  # a list index in a --set path
_NEXT = re.compile(r"\.([^.\[\]]+)|\[([^\[\]]+)\]")


def parse_path(key: str) -> list[str] | None:
    """``params[lr].max`` → ``["params", "lr", "max"]``; None when it is not a key path."""
    match = _FIRST.match(key)
    if match is None:
        return None
    path, pos = [match.group()], match.end()
    while pos < len(key):
        match = _NEXT.match(key, pos)
        if match is None:
            return None
        path.append(match.group(1) or match.group(2))
        pos = match.end()
    while len(path) > 1 and path[0] in WRAPPERS:  # trainingInput.hyperparameters.maxTrials
        path.pop(0)
    if len(path) > 1 and path[0] == "studySpec" and path[1] in _STUDY_PATHS:
        path[:2] = [_STUDY_PATHS[path[1]]]  # studySpec.parameters[lr] is params[lr]
    return path


def apply_overrides(
    p: Problems, settings: Settings, overrides: Sequence[str], load: Callable[[str], Any]
) -> None:
    """Apply ``--set KEY=VALUE`` items in order; ``load`` reads VALUE (YAML), raising ValueError.

    An override replaces the setting whichever spelling the file used for it, so
    ``--set max_trials=5`` on a file with ``maxTrials: 30`` is no "given twice" problem.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        place = f"--set {key}"
        path = parse_path(key)
        if not sep or path is None:
            p.add(f"--set {item}", "must be KEY=VALUE, e.g. max_trials=5, search.seed=3 or "
                                   "params[lr].max=0.1")
            continue
        try:
            # `--set workdir=~` (zsh and quotes leave the ~ to us) is the home folder, as a
            # bare `workdir: ~` in a file is; YAML would read it as null: the default.
            value = "~" if path == ["workdir"] and raw.strip() == "~" else load(raw)
        except ValueError as exc:
            p.add(place, f"the value is not valid YAML: {exc}")
            continue
        _override(p, settings, path, value, place)


def _override(p: Problems, settings: Settings, path: list[str], value: Any, place: str) -> None:
    head, rest = path[0], path[1:]
    setting = head if head in NATIVE_KEYS else HP_KEYS.get(head) or _VERTEX_SET.get(head)
    if setting is None and head in VERTEX_PARTS:
        p.add(place, _VERTEX_SET_HINT)
        return
    if setting is None:
        p.add(place, unknown_key(head, (*NATIVE_KEYS, *HP_KEYS, *_VERTEX_SET)))
        return
    # `search.algorithm` and AI Platform's `algorithm` are one setting: setting one drops the other.
    if setting == "search" and rest in ([], ["algorithm"]):
        settings.pop("algorithm", None)
    search = settings.get("search")
    if setting == "algorithm" and search is not None and isinstance(search.value, Mapping):
        kept = {k: v for k, v in search.value.items() if k != "algorithm"}
        settings["search"] = Entry(search.place, kept, search.aip)
    elif setting == "algorithm" and search is not None and isinstance(search.value, str):
        del settings["search"]  # `search: grid` is nothing but its algorithm
    if not rest:
        settings[setting] = Entry(head, value, aip=head != setting)
        return
    if setting not in _NESTED:
        p.add(place, f"{head} takes a single value: write --set {head}=VALUE")
        return
    old = settings.get(setting)
    if value is None and old is None:  # removing from a setting that is not there: nothing to do
        return
    container = _container(setting, old)
    if container is None:  # only a value that is there can be the wrong shape
        shown = describe(None if old is None else old.value)
        p.add(place, f"{head} is {shown}, not a mapping or list to set {'.'.join(rest)} in")
        return
    if _set_in(p, place, container, rest, value, kind=_KIND_OF.get(setting)):
        if old is not None and isinstance(old.value, Mapping | list | tuple):
            settings[setting] = Entry(old.place, container, old.aip)  # places stay as written
        else:
            settings[setting] = Entry(head, container)


def _container(setting: str, old: Entry | None) -> dict[Any, Any] | list[Any] | None:
    """A copy of the setting to set a key in, or a new one; bare-string forms become mappings."""
    value = None if old is None else old.value
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, list | tuple):
        return list(value)
    if value is None:
        return [] if setting in _LISTS else {}
    if setting == "search" and isinstance(value, str):
        return {"algorithm": value}
    if setting == "early_stopping" and isinstance(value, str):
        return {"policy": value}
    if setting == "early_stopping" and old is not None and old.aip and isinstance(value, bool):
        return {"policy": "median"} if value else {}
    return None


# What a container on a --set path is, for naming list items and reading spelling aliases: the
# `params` list, a parameter mapping, a `conditionalParameterSpecs` list, or one item of that
# list (a mapping of `parameterSpec` and `parentXValues`, which is no parameter itself); or the
# `points_to_evaluate` list, whose items are named by index alone.
_PARAMS, _PARAM, _CHILDREN, _CHILD = "params", "param", "children", "child"
_POINTS = "points"
_KIND_OF = {"params": _PARAMS, "points_to_evaluate": _POINTS}  # settings that are such lists
_NAMED = frozenset({_PARAMS, _CHILDREN})  # lists whose items a parameter's name names
_SEARCH_DEPTH = 32  # as deep as _spec_when reads children: deeper is a YAML anchor loop
_SEARCH_PARAMS = 10_000  # as many parameters as _spec_when reads: anchors can repeat a tree


def _below(kind: str | None, slot: Any) -> str | None:
    """The kind of the value at ``slot`` in a container of ``kind`` (None: nothing special)."""
    if kind == _PARAMS:
        return _PARAM
    if kind == _PARAM and slot == CHILDREN:
        return _CHILDREN
    if kind == _CHILDREN:
        return _CHILD
    if kind == _CHILD and slot == "parameterSpec":
        return _PARAM
    return None


def _set_in(
    p: Problems, place: str, container: dict[Any, Any] | list[Any], path: list[str], value: Any,
    *, kind: str | None,
) -> bool:
    """Set ``path`` in ``container`` (a private copy), copying what lies on the way; ``kind``
    says what the container is (see _below). A null ``value`` removes what ``path`` names: a
    mapping's key, or a list's item, so ``--set env.FOO=`` drops FOO rather than making it null."""
    key = path[0]
    remove = value is None and len(path) == 1
    if isinstance(container, list):
        slot: Any = _find(container, key, kind)
        if slot is None and kind == _PARAMS:  # `params[momentum]` for a nested AI Platform child
            found = _nested(container, key)
            if len(found) > 1:
                first, second = (_show(steps) for steps in found)
                p.add(place, f"{key!r} names more than one nested parameter: {first} and "
                             f"{second}; give the place of the one you mean")
                return False
            if found:  # removing it removes the whole child, not just its parameterSpec
                steps = found[0][:-1] if remove else found[0]
                return _set_in(p, place, container, [*steps, *path[1:]], value, kind=kind)
        if slot is None:
            p.add(place, _no_item(key, len(container), kind))
            return False
        if slot == len(container) and remove:
            p.add(place, f"nothing to remove: {key} is one past the end of the list")
            return False
        if slot == len(container):  # one past the end: --set params[4]={...} adds a parameter
            container.append(None)
    else:
        slot = key
        spec = _spec_of(container, key) if kind == _PARAM else None
        if spec is not None:  # `max` of a Vertex parameter: its doubleValueSpec.maxValue
            inner = [spec, _IN_SPEC[PARAM_KEYS[key]], *path[1:]]
            return _set_in(p, place, container, inner, value, kind=kind)
        spellings = [k for k in container if kind == _PARAM and k in PARAM_KEYS
                     and PARAM_KEYS.get(k) == PARAM_KEYS.get(key)]
        if len(path) == 1:  # `max` replaces `maxValue` too
            for other in spellings:
                del container[other]
        elif spellings:  # descend into `discreteValues` for `values[1]`
            slot = spellings[0]
    if remove:
        if isinstance(container, list):
            del container[slot]
        else:
            container.pop(slot, None)
        return True
    if len(path) == 1:
        container[slot] = value
        return True
    child = container[slot] if isinstance(container, list) else container.get(slot)
    if child is None and value is None:  # nothing there to remove from
        return True
    if child is None and _INDEX.fullmatch(path[1]):
        copy: dict[Any, Any] | list[Any] | None = []  # `x[0]={...}` where no list is yet
    else:
        copy = _container("", None if child is None else Entry("", child))
    if copy is None:
        p.add(place, f"{key} is {describe(child)}, not a mapping or list")
        return False
    if not _set_in(p, place, copy, path[1:], value, kind=_below(kind, slot)):
        return False
    container[slot] = copy
    return True


_IN_SPEC = {"min": "minValue", "max": "maxValue", "values": "values"}  # ours → a value spec's


def _spec_of(param: Mapping[Any, Any], key: str) -> str | None:
    """The value spec (``doubleValueSpec``...) that holds ``key`` (``max``, ``maxValue``,
    ``values``...) in a parameter written Vertex's way; None in another spelling."""
    if PARAM_KEYS.get(key) not in _IN_SPEC:
        return None
    return next((spec for spec in VALUE_SPECS if isinstance(param.get(spec), Mapping)), None)


def _no_item(key: str, size: int, kind: str | None) -> str:
    """Why ``key`` names no item of a list of ``size`` items of ``kind``, and what does."""
    if kind in _NAMED:
        return f"no item {key!r} (give a parameter's name, or an index from 0 to {size})"
    if kind != _POINTS:
        return f"no item {key!r} (give an index from 0 to {size})"
    listed = ("no point yet" if size == 0 else "1 point, [0]" if size == 1
              else f"{size} points, [0] to [{size - 1}]")
    return (f"no point {key!r}: points_to_evaluate lists {listed}; [{size}]={{...}} adds one,"
            " a mapping of parameter names to values such as"
            f" --set 'points_to_evaluate[{size}]={{lr: 0.01, optimizer: adam}}'")


def _find(items: list[Any], key: str, kind: str | None) -> int | None:
    """The index ``key`` names: a number up to one past the end, or, in a list of parameters,
    the name of one (in a ``conditionalParameterSpecs`` list, the name in an item's
    ``parameterSpec``)."""
    if _INDEX.fullmatch(key):
        return int(key) if int(key) <= len(items) else None
    if kind not in _NAMED:  # a point or a value has no name: `[lr]` is no index either
        return None
    children = kind == _CHILDREN
    for index, item in enumerate(items):
        param = item.get("parameterSpec") if children and isinstance(item, Mapping) else item
        if _named(param, key):
            return index
    return None


def _named(param: Any, name: str) -> bool:
    return isinstance(param, Mapping) and name in (param.get("name"), param.get("parameterName"),
                                                   param.get("parameterId"))


def _nested(params: list[Any], name: str) -> list[list[str]]:
    """The path (from ``params``) to the ``parameterSpec`` of every AI Platform child named
    ``name``, at any depth, shallowest first. Bounded like _spec_when, since a YAML anchor can
    make the nesting loop or repeat."""
    found: list[list[str]] = []
    queue = [([str(index)], param) for index, param in enumerate(params)]
    visited = 0
    for steps, param in queue:  # grows as it goes: breadth first
        children = param.get(CHILDREN) if isinstance(param, Mapping) else None
        if not isinstance(children, list | tuple) or len(steps) > 3 * _SEARCH_DEPTH:
            continue
        for index, child in enumerate(children):
            # Every child looked at counts, not only those queued: a few aliases of a list
            # that holds itself make millions of them (seconds and gigabytes, once).
            visited += 1
            if visited > _SEARCH_PARAMS:
                return found
            spec = child.get("parameterSpec") if isinstance(child, Mapping) else None
            here = [*steps, CHILDREN, str(index), "parameterSpec"]
            if _named(spec, name):
                found.append(here)
                if len(found) == 2:  # two are enough to say the name is ambiguous
                    return found
            queue.append((here, spec))
    return found


def _show(steps: list[str]) -> str:
    """``["0", "conditionalParameterSpecs", "1", "parameterSpec"]`` as a --set key."""
    place = "params"
    for step in steps:
        place = at(place, int(step) if step.isdigit() else step)
    return place
