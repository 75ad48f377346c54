"""Who a trial runs as. A daemon running as root runs each trial as the user who submitted it
(uid, primary group and supplementary groups, from the user database); a per-user daemon, and
root's own experiments, run trials as the daemon's user.

The submitter's uid is the kernel's word (``SO_PEERCRED``). ``nobody`` and the kernel's
overflow uid are refused: they stand for "an unmapped user" (NFS, user namespaces), shared by
unrelated programs, and a trial running as them could touch another such program's files.
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass

from gpusched.errors import RequestError

__all__ = ["RunAs", "trial_identity", "unusable_uid"]

NOBODY_NAMES = frozenset({"nobody", "nfsnobody"})
NOBODY_UIDS = frozenset({65534, 65535, 4294967294, 4294967295})  # nobody, -2 and -1 as u32


@dataclass(frozen=True)
class RunAs:
    """A user that trials run as, read from the user database at submit (or restart)."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str
    shell: str

    def login_env(self) -> dict[str, str]:
        """What login(1) sets from the passwd entry."""
        return {"HOME": self.home, "USER": self.name, "LOGNAME": self.name,
                "SHELL": self.shell or "/bin/sh"}


def _overflow_uid() -> int:
    try:
        with open("/proc/sys/kernel/overflowuid") as fh:
            return int(fh.read())
    except (OSError, ValueError):
        return 65534


def unusable_uid(uid: int, name: str | None) -> bool:
    """True for ``nobody`` (by name or uid) and the kernel's overflow uid."""
    return uid in NOBODY_UIDS or uid == _overflow_uid() or (name or "") in NOBODY_NAMES


def trial_identity(uid: int | None) -> RunAs | None:
    """Who trials submitted by ``uid`` run as: None for the daemon's own user (a per-user
    daemon, or root submitting to a root daemon). RequestError for a user that trials may not
    run as."""
    if os.geteuid() != 0 or uid == 0:
        return None
    if uid is None:
        raise RequestError("forbidden", "the daemon cannot tell which user sent this (no peer"
                                        " credentials on the socket); submit over its Unix socket")
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        raise RequestError("forbidden", f"uid {uid} is not in the user database, so its trials"
                           " cannot run as it; submit as a user with a passwd entry") from None
    if unusable_uid(uid, entry.pw_name):
        raise RequestError("forbidden", f"trials do not run as {entry.pw_name} (uid {uid}): it"
                           " stands for unmapped users and is shared by unrelated programs;"
                           " submit as your own user")
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return RunAs(uid=uid, gid=entry.pw_gid, groups=groups, name=entry.pw_name,
                 home=entry.pw_dir, shell=entry.pw_shell)
