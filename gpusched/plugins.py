"""Finding, loading and starting search and stopping plugins.

Plugins are registered under the entry-point groups ``gpusched.search`` and ``gpusched.stopping``
(gpusched's own built-ins included, see docs/plugins.md). Finding and loading are separate steps:

- :func:`find_plugins` reads installed metadata only and imports no plugin code, so listing the
  names in an error message or at submit can never fail because one plugin is broken; nor
  because one installed distribution's metadata is: its entry points are read on their own, and
  one that cannot be parsed (a malformed ``entry_points.txt``, plugin or not) is left out and
  listed by :func:`unreadable_distributions` (and so by ``gpusched plugins``);
- :func:`load_search_plugin` / :func:`load_stopping_plugin` import one plugin, turn any failure
  into a :class:`~gpusched.errors.PluginError` naming the entry point, and check its type;
- :func:`make_search_plugin` / :func:`make_stopping_plugin` also construct it, so that bad
  options (and any other constructor failure) surface as a ``PluginError`` too.

Every function takes an optional ``entry_points`` source (``group -> entry points``) so tests can
install fake plugins without touching the environment.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import Distribution, EntryPoint
from typing import Any, Literal, TypeVar

from gpusched._spec_check import did_you_mean
from gpusched.errors import PluginError
from gpusched.plugin_api import (
    Goal,
    PluginOptionsError,
    SearchPlugin,
    SearchSpace,
    StoppingPlugin,
)

__all__ = [
    "PluginKind",
    "EntryPointSource",
    "GROUPS",
    "find_plugins",
    "load_search_plugin",
    "load_stopping_plugin",
    "make_search_plugin",
    "construct_plugin",
    "make_stopping_plugin",
    "describe_plugins",
    "UnreadableDistribution",
    "unreadable_distributions",
]

PluginKind = Literal["search", "stopping"]
"""The two kinds of plugin."""

EntryPointSource = Callable[[str], Iterable[EntryPoint]]
"""Where entry points come from: given a group name, its entry points."""

GROUPS: Mapping[PluginKind, str] = {"search": "gpusched.search", "stopping": "gpusched.stopping"}
"""The entry-point group of each kind of plugin."""

_BASES: Mapping[PluginKind, type[Any]] = {"search": SearchPlugin, "stopping": StoppingPlugin}

_P = TypeVar("_P", SearchPlugin, StoppingPlugin)


@dataclass(frozen=True)
class UnreadableDistribution:
    """An installed distribution whose entry points could not be read: left out of discovery."""

    #: its name (from its metadata, else from its folder's), None when not even that is known
    name: str | None
    version: str | None
    #: its metadata folder (``...dist-info``), None when not known
    path: str | None
    #: what went wrong, ``"TypeError: ..."``
    error: str


def _scan() -> tuple[dict[str, list[EntryPoint]], list[UnreadableDistribution]]:
    """Every installed entry point of our groups (by group, in ``sys.path`` order) and the
    distributions whose entry points could not be read.

    ``importlib.metadata.entry_points()`` parses every distribution's ``entry_points.txt`` in one
    go: a single malformed line anywhere (a ``[console_scripts]`` line without ``=``) raises a
    TypeError out of it, and every lookup of every plugin fails. Read per distribution instead,
    skipping one that cannot be read. As ``entry_points()`` does, only the first distribution of
    each name on ``sys.path`` counts (the one Python imports): a shadowed copy adds nothing,
    not even when the first cannot be read (its entry points could name another version's code).
    """
    found: dict[str, list[EntryPoint]] = {group: [] for group in GROUPS.values()}
    unreadable: list[UnreadableDistribution] = []
    seen: set[str] = set()
    dists = iter(importlib.metadata.distributions())
    while True:
        try:
            dist = next(dists)
        except StopIteration:
            break
        except Exception as exc:  # a broken finder on sys.meta_path: nothing more to list
            unreadable.append(UnreadableDistribution(
                None, None, None, f"listing the installed distributions failed: {_said(exc)}"))
            break
        try:
            key = _key(dist)
            if key in seen:
                continue
            seen.add(key)
            eps = dist.entry_points
            mine = {group: list(eps.select(group=group)) for group in found}
        except Exception as exc:  # foreign metadata: any failure to parse it is its failure
            unreadable.append(_unreadable(dist, exc))
            continue
        for group, listed in mine.items():
            found[group].extend(listed)
    return found, unreadable


def _key(dist: Distribution) -> str:
    """What ``importlib.metadata`` tells distributions apart by: the normalised name (from the
    folder's name where it can, without reading the metadata)."""
    key = getattr(dist, "_normalized_name", None)
    if isinstance(key, str) and key:
        return key
    name = dist.metadata["Name"]
    if not isinstance(name, str) or not name:
        raise ValueError("its metadata has no Name")
    return re.sub(r"[-_.]+", "_", name).lower()


def _said(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _unreadable(dist: Distribution, exc: Exception) -> UnreadableDistribution:
    path = getattr(dist, "_path", None)
    name: str | None
    version: str | None
    try:
        name, version = dist.metadata["Name"], dist.metadata["Version"]
    except Exception:  # the metadata may be as broken as the entry points
        name = version = None
    if not isinstance(name, str) or not name:
        name = _stem_name(path)
    return UnreadableDistribution(
        name=name,
        version=version if isinstance(version, str) and version else None,
        path=str(path) if path is not None else None,
        error=_said(exc),
    )


def _stem_name(path: object) -> str | None:
    """``foo`` for ``.../foo-1.0.dist-info``."""
    stem = str(getattr(path, "stem", "")) if path is not None else ""
    return stem.partition("-")[0] or None


def _installed(group: str) -> Iterable[EntryPoint]:
    return _scan()[0][group]


def unreadable_distributions() -> list[UnreadableDistribution]:
    """The installed distributions whose entry points cannot be read (a malformed
    ``entry_points.txt``), left out of :func:`find_plugins` and listed by
    :func:`describe_plugins`; empty in a sound environment."""
    return _scan()[1]


def _all_by_name(kind: PluginKind, source: EntryPointSource | None) -> dict[str, list[EntryPoint]]:
    found: dict[str, list[EntryPoint]] = {}
    for ep in (source or _installed)(GROUPS[kind]):
        same = found.setdefault(ep.name, [])
        # The same entry point seen twice (say a stale .egg-info next to a .dist-info of the
        # same package) is no conflict; two different targets for one name are.
        if all(other.value != ep.value for other in same):
            same.append(ep)
    return found


def find_plugins(
    kind: PluginKind, *, entry_points: EntryPointSource | None = None
) -> dict[str, EntryPoint]:
    """The installed plugins of ``kind`` by name, sorted by name; imports no plugin code.

    When two distributions register one name with different targets, the first found is kept
    here; loading that name refuses the ambiguity (see :func:`load_search_plugin`).
    """
    found = _all_by_name(kind, entry_points)
    return {name: found[name][0] for name in sorted(found)}


def _load(kind: PluginKind, name: str, source: EntryPointSource | None) -> type[Any]:
    # type[Any], not a TypeVar: mypy refuses an abstract class where type[T] is expected.
    base = _BASES[kind]
    found = _all_by_name(kind, source)
    if name not in found:
        installed = ", ".join(sorted(found)) or "none"
        raise PluginError(f"unknown {kind} plugin {name!r}{did_you_mean(name, sorted(found))}"
                          f" (installed: {installed})")
    if len(found[name]) > 1:
        # Picking one silently would make the experiment depend on sys.path order.
        targets = ", ".join(_origin(ep) for ep in found[name])
        raise PluginError(f"{kind} plugin {name!r} is registered more than once: {targets}")
    ep = found[name][0]
    try:
        obj = ep.load()
    except Exception as exc:  # plugin code is foreign: any failure on import is its failure
        raise PluginError(
            f"{kind} plugin {name!r} ({ep.value}) failed to load: {type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise PluginError(
            f"{kind} plugin {name!r} ({ep.value}) is not a subclass of "
            f"gpusched.plugin_api.{base.__name__} (got {obj!r})"
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise PluginError(f"{kind} plugin {name!r} ({ep.value}) does not implement {missing}")
    return obj


def load_search_plugin(
    name: str, *, entry_points: EntryPointSource | None = None
) -> type[SearchPlugin]:
    """Import the search plugin registered as ``name`` and return its class.

    Raises :class:`PluginError` when the name is unknown (listing the installed ones) or
    registered twice, when the import fails, or when the object is not a concrete
    :class:`SearchPlugin`.
    """
    return _load("search", name, entry_points)


def load_stopping_plugin(
    name: str, *, entry_points: EntryPointSource | None = None
) -> type[StoppingPlugin]:
    """Import the stopping plugin registered as ``name``; failures as :func:`load_search_plugin`."""
    return _load("stopping", name, entry_points)


def construct_plugin(kind: PluginKind, name: str, build: Callable[[], _P]) -> _P:
    """``build()``, a loaded plugin's construction; any failure (options it refuses, a bug in
    its constructor, which must not take the daemon down) is a :class:`PluginError`."""
    try:
        return build()
    except PluginOptionsError as exc:
        raise PluginError(f"{kind} plugin {name!r}: {exc}") from exc
    except Exception as exc:  # a constructor bug must not take the daemon down
        raise PluginError(f"{kind} plugin {name!r}: {type(exc).__name__}: {exc}") from exc


def make_search_plugin(
    name: str,
    space: SearchSpace,
    *,
    goal: Goal,
    seed: int,
    options: Mapping[str, Any],
    entry_points: EntryPointSource | None = None,
) -> SearchPlugin:
    """Load the search plugin ``name`` and construct it; every failure is a :class:`PluginError`."""
    cls = load_search_plugin(name, entry_points=entry_points)
    return construct_plugin("search", name,
                            lambda: cls(space, goal=goal, seed=seed, options=options))


def make_stopping_plugin(
    name: str,
    *,
    metric: str,
    goal: Goal,
    options: Mapping[str, Any],
    entry_points: EntryPointSource | None = None,
) -> StoppingPlugin:
    """Load the stopping plugin ``name`` and construct it; every failure is a PluginError."""
    cls = load_stopping_plugin(name, entry_points=entry_points)
    return construct_plugin("stopping", name,
                            lambda: cls(metric=metric, goal=goal, options=options))


def _origin(ep: EntryPoint) -> str:
    dist = ep.dist
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"{ep.value}{where}"


def describe_plugins(
    *, entry_points: EntryPointSource | None = None
) -> list[dict[str, str | None]]:
    """One row per installed plugin, for ``gpusched plugins``: search first, then stopping.

    Keys: ``kind``, ``name``, ``module`` (the entry point's value), ``distribution`` and
    ``version`` (None when unknown), ``summary`` and ``error``. Each plugin is loaded to read its
    summary; one that fails to load is listed with ``error`` set instead of raising. A
    distribution whose entry points cannot be read (:func:`unreadable_distributions`; only for
    the installed entry points, not a given ``entry_points`` source) comes last, as a row of kind
    and name ``?`` (whatever plugins it holds are unknown) with ``error`` set.
    """
    rows: list[dict[str, str | None]] = []
    for kind in GROUPS:
        for name, ep in find_plugins(kind, entry_points=entry_points).items():
            dist = ep.dist
            row: dict[str, str | None] = {
                "kind": kind,
                "name": name,
                "module": ep.value,
                "distribution": dist.name if dist is not None else None,
                "version": dist.version if dist is not None else None,
                "summary": None,
                "error": None,
            }
            try:
                cls = _load(kind, name, entry_points)
                row["summary"] = str(cls.summary)
            except PluginError as exc:
                row["error"] = str(exc)
            rows.append(row)
    if entry_points is None:
        for bad in unreadable_distributions():
            where = bad.path or bad.name or "an installed distribution"
            rows.append({
                "kind": "?",
                "name": "?",
                "module": None,
                "distribution": bad.name,
                "version": bad.version,
                "summary": None,
                "error": f"the entry points of {where} cannot be read ({bad.error}): its"
                         " plugins, if it has any, are left out; fix or remove it",
            })
    return rows
