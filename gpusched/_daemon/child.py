"""Starting a child process and learning when it exits, with as little work on the event loop
as the kernel allows.

``subprocess.Popen`` starts it (``vfork`` + ``exec`` for the daemon's own user, as asyncio's
subprocess support would), and a pidfd registered with the event loop's selector says when it
has exited: one readable file descriptor and one ``waitpid`` per trial. asyncio's subprocess
machinery, which anyio's ``open_process`` uses, builds a transport, a protocol, pipe
connections, a child watcher entry and several futures around the same ``Popen`` call: about
half of the daemon's CPU time per spawned trial, measured with ``bench/dispatch.py``, and on a
host whose cores the trials keep busy that time comes out of the trials.

Where the kernel has no pidfds (before Linux 5.3) the child is started through anyio's
``open_process`` as before, so that asyncio's child watcher reaps it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio

__all__ = ["Child", "PidfdChild", "pidfds_work", "spawn_child"]


class Child(Protocol):
    """A started child process: its pid, its exit status once known, a way to wait for it."""

    @property
    def pid(self) -> int:
        """The process id."""

    @property
    def returncode(self) -> int | None:
        """None while it runs; then its exit code (negative: killed by that signal)."""

    async def wait(self) -> int:
        """Wait for it to exit; its return code."""


def _probe_pidfds() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # not Linux, or a kernel older than 5.3
        return False
    return True


_PIDFDS = _probe_pidfds()


def pidfds_work() -> bool:
    """True where children are watched through pidfds (Linux 5.3 and later)."""
    return _PIDFDS


class PidfdChild:
    """A child reaped when its pidfd becomes readable (the kernel's word that it exited).

    The ``Popen`` object is kept, and told the exit status, so that ``subprocess`` never reaps
    the pid behind our back (it reaps children whose ``Popen`` was dropped unfinished).
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        self._exited = anyio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd = os.pidfd_open(self.pid)
        self._loop.add_reader(self._fd, self._reap)

    def __repr__(self) -> str:
        return f"<PidfdChild pid={self.pid} returncode={self.returncode}>"

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (it cannot be: a daemon bug); say so
            pid, status = self.pid, 255 << 8
        if pid == 0:
            return  # readable without an exit (not expected; wait for the next readiness)
        self._loop.remove_reader(self._fd)
        os.close(self._fd)
        self.returncode = self._popen.returncode = os.waitstatus_to_exitcode(status)
        self._exited.set()

    async def wait(self) -> int:
        """Wait for the child to exit; its return code (negative: killed by that signal)."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode


async def spawn_child(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, stdout: int, stderr: int,
    new_session: bool = True, ids: Mapping[str, Any] | None = None, pidfd: bool | None = None,
) -> Child:
    """Start ``argv`` with stdin from /dev/null and the given stdout and stderr descriptors.

    ``ids``: ``user``, ``group`` and ``extra_groups`` for ``Popen`` (a root daemon's trial of
    another user). ``pidfd``: watch it through a pidfd (None: where the kernel has them;
    False: through anyio, as on older kernels). OSError (command not found, not executable,
    bad ``cwd``) propagates.
    """
    extra = dict(ids or {})
    if not (_PIDFDS if pidfd is None else pidfd):
        return await anyio.open_process(
            list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
            env=dict(env), start_new_session=new_session, **extra,
        )
    # Blocking only until the child has called exec (vfork), as in asyncio's own subprocess
    # start, which makes this same call on the event loop.
    popen = subprocess.Popen(  # noqa: ASYNC220
        list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
        env=dict(env), start_new_session=new_session, close_fds=True, **extra,
    )
    try:
        return PidfdChild(popen)
    except BaseException:
        # No pidfd for it (out of descriptors): do not leave it running unwatched.
        popen.kill()
        popen.wait()
        raise
