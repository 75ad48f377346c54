"""One daemon per state folder: an exclusive lock on ``daemon.lock`` in it, held for the
daemon's life.

A second daemon on the same folder would take the first one's running trials for a crashed
daemon's leftovers and stop them (its recovery runs before it even looks at the socket), and
both would then write one trial log. So the lock is taken first, before the trial log is
opened, and a second daemon is refused in one line that names the first (its pid and socket,
written into the file). The kernel drops the lock when its holder exits, however it exits: a
killed daemon leaves no stale lock, and the file itself is never removed (removing it would
let two daemons each lock a file of their own). The descriptor is close-on-exec, so no trial
inherits it and keeps a dead daemon's folder locked. The file is the daemon user's alone
(0600): a lock needs no write access, and the state folder of a root daemon is open to every
user (their trials reach their folders through it), so any of them could otherwise hold the
lock and keep the system daemon from starting.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from gpusched.errors import ConfigError

__all__ = ["LOCK_NAME", "holding_state_dir"]

LOCK_NAME = "daemon.lock"


@contextlib.contextmanager
def holding_state_dir(state_dir: Path, socket_path: Path) -> Iterator[None]:
    """Hold the state folder's lock while the block runs; ConfigError if another daemon holds
    it (or the lock file cannot be used)."""
    path = state_dir / LOCK_NAME
    try:
        # O_NOFOLLOW: a link planted in a shared state folder must not make a root daemon
        # write through it.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError as exc:
        raise ConfigError(f"cannot open {path}: {exc.strerror or exc}: the state folder must"
                          " be writable by the daemon (--state-dir)") from None
    try:
        try:
            os.fchmod(fd, 0o600)  # one made 0644 before: no other user may open it to lock it
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(_taken_message(state_dir, fd)) from None
        except OSError as exc:  # not ours to chmod; a file system without flock (NFS, Lustre)
            raise ConfigError(f"cannot lock {path}: {exc.strerror or exc}: the state folder"
                              " must be the daemon's, on a file system that supports flock;"
                              " choose another with --state-dir") from None
        # Who holds it, for the next one's refusal; a full disk leaves the file empty, and
        # the lock held all the same.
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps({"pid": os.getpid(), "socket": str(socket_path)}).encode()
                      + b"\n", 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _taken_message(state_dir: Path, fd: int) -> str:
    """Who holds the lock, as the file says (the pid and socket its last holder wrote: the
    holder's own, unless it has not written them yet), and what to do."""
    holder = "another daemon"
    try:
        said = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(said, dict) and isinstance(said.get("pid"), int):
            holder += f" (pid {said['pid']}, socket {said.get('socket')}, as its lock file says)"
    except (OSError, ValueError):
        pass  # written just now, half: the folder is taken all the same
    return (f"{holder} uses the state folder {state_dir}: stop it first, or give this one a"
            " state folder of its own with --state-dir (a daemon that is starting answers on"
            " its socket once it has recovered its trials)")
