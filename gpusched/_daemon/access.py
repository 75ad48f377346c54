"""Users and groups, for who may act on whose experiments (names from the system's databases).

These are asked on the daemon's event loop (a request's authorization, a per-user limit's
message, the owner column of views). Behind NSS the databases may be a directory service (LDAP
through sssd or nslcd), where one lookup can block for seconds and stall every request and the
systemd watchdog. So each answer, a miss included, is kept for ``CACHE_TTL_S`` seconds: a slow
directory is asked about a given uid or group about once a minute, however busy the daemon.
The price: a change to the user or group database (a user added to ``admin_group``, removed
from it, renamed) is seen within that time rather than at once.
"""

from __future__ import annotations

import grp
import pwd
import time
from collections.abc import Callable, Hashable
from typing import Generic, NamedTuple, TypeVar

__all__ = ["CACHE_TTL_S", "clear_cache", "group_id", "in_group", "login_name", "user_name"]

#: How long an answer of the user or group database is kept, in seconds.
CACHE_TTL_S = 60.0
# More keys than a shared GPU server has users and groups: only a bound against misuse.
_MAX_ENTRIES = 4096

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


def _clock() -> float:
    """Monotonic seconds; a module function so that tests can move time."""
    return time.monotonic()


class _User(NamedTuple):
    """What gpusched reads of a passwd entry."""

    name: str
    gid: int


class _Group(NamedTuple):
    """What gpusched reads of a group entry."""

    gid: int
    members: frozenset[str]


class _TtlCache(Generic[_K, _V]):
    """``lookup(key)`` answers (None for "no such entry") kept for ``CACHE_TTL_S`` seconds.

    Errors other than a miss are not kept: the next call asks again. Used from the event loop
    and, at most, a worker thread; a race costs one extra lookup, never a wrong answer.
    """

    def __init__(self, lookup: Callable[[_K], _V | None]) -> None:
        self._lookup = lookup
        self._entries: dict[_K, tuple[_V | None, float]] = {}

    def get(self, key: _K) -> _V | None:
        now = _clock()
        hit = self._entries.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        value = self._lookup(key)
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries = {k: e for k, e in self._entries.items() if now < e[1]}
            if len(self._entries) >= _MAX_ENTRIES:
                self._entries.clear()
        self._entries[key] = (value, now + CACHE_TTL_S)
        return value

    def clear(self) -> None:
        self._entries.clear()


def _lookup_user(uid: int) -> _User | None:
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return _User(entry.pw_name, entry.pw_gid)


def _lookup_group(name: str) -> _Group | None:
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return None
    return _Group(entry.gr_gid, frozenset(entry.gr_mem))


_users: _TtlCache[int, _User] = _TtlCache(_lookup_user)
_groups: _TtlCache[str, _Group] = _TtlCache(_lookup_group)


def clear_cache() -> None:
    """Forget every kept answer, so that the next call asks the databases again."""
    _users.clear()
    _groups.clear()


def user_name(uid: int | None) -> str:
    """``alice (uid 1001)``, or ``uid 1001`` for a uid without a name; ``unknown`` for None."""
    if uid is None:
        return "unknown"
    user = _users.get(uid)
    return f"uid {uid}" if user is None else f"{user.name} (uid {uid})"


def login_name(uid: int | None) -> str | None:
    """``alice``; ``1001`` for a uid without a name; None when not known."""
    if uid is None:
        return None
    user = _users.get(uid)
    return str(uid) if user is None else user.name


def in_group(uid: int, group: str) -> bool:
    """True when the user ``uid`` belongs to ``group``, as primary or supplementary group."""
    entry = _groups.get(group)
    if entry is None:
        return False
    user = _users.get(uid)
    if user is None:
        return False
    return user.gid == entry.gid or user.name in entry.members


def group_id(group: str) -> int | None:
    """The gid of ``group``, or None when there is no such group."""
    entry = _groups.get(group)
    return None if entry is None else entry.gid
