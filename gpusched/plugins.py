"""Finding, loading and starting search and stopping plugins.

Plugins are registered under the entry-point groups ``gpusched.search`` and ``gpusched.stopping``
(gpusched's own built-ins included, see docs/plugins.md). Finding and loading are separate steps:

- :func:`find_plugins` reads installed metadata only and imports no plugin code, so listing the
  names in an error message or at submit can never fail because one plugin is broken;
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
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import EntryPoint
from typing import Any, Literal, TypeVar

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
    "make_stopping_plugin",
    "describe_plugins",
]

PluginKind = Literal["search", "stopping"]
"""The two kinds of plugin."""

EntryPointSource = Callable[[str], Iterable[EntryPoint]]
"""Where entry points come from: given a group name, its entry points."""

GROUPS: Mapping[PluginKind, str] = {"search": "gpusched.search", "stopping": "gpusched.stopping"}
"""The entry-point group of each kind of plugin."""

_BASES: Mapping[PluginKind, type[Any]] = {"search": SearchPlugin, "stopping": StoppingPlugin}

_P = TypeVar("_P", SearchPlugin, StoppingPlugin)


def _installed(group: str) -> Iterable[EntryPoint]:
    return importlib.metadata.entry_points(group=group)


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
        raise PluginError(f"unknown {kind} plugin {name!r} (installed: {installed})")
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


def _construct(kind: PluginKind, name: str, build: Callable[[], _P]) -> _P:
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
    return _construct("search", name, lambda: cls(space, goal=goal, seed=seed, options=options))


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
    return _construct("stopping", name, lambda: cls(metric=metric, goal=goal, options=options))


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
    summary; one that fails to load is listed with ``error`` set instead of raising.
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
    return rows
