"""Users and groups, for who may act on whose experiments (names from the system's databases)."""

from __future__ import annotations

import grp
import pwd

__all__ = ["group_id", "in_group", "login_name", "user_name"]


def user_name(uid: int | None) -> str:
    """``alice (uid 1001)``, or ``uid 1001`` for a uid without a name; ``unknown`` for None."""
    if uid is None:
        return "unknown"
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def login_name(uid: int | None) -> str | None:
    """``alice``; ``1001`` for a uid without a name; None when not known."""
    if uid is None:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def in_group(uid: int, group: str) -> bool:
    """True when the user ``uid`` belongs to ``group``, as primary or supplementary group."""
    try:
        entry = grp.getgrnam(group)
        user = pwd.getpwuid(uid)
    except KeyError:
        return False
    return user.pw_gid == entry.gr_gid or user.pw_name in entry.gr_mem


def group_id(group: str) -> int | None:
    """The gid of ``group``, or None when there is no such group."""
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        return None
