"""Starting a child process and learning when it exits, with as little work on the event loop
as the kernel allows.

``subprocess.Popen`` starts it (``vfork`` + ``exec`` for the daemon's own user, as asyncio's
subprocess support would), and its pidfd says when it has exited: one ``waitpid`` per trial.
asyncio's subprocess machinery, which anyio's ``open_process`` uses, builds a transport, a
protocol, pipe connections, a child watcher entry and several futures around the same ``Popen``
call: about half of the daemon's CPU time per spawned trial, measured with
``bench/dispatch.py``, and on a host whose cores the trials keep busy that time comes out of
the trials.

The exit is waited for by a thread blocked in ``waitid`` on the pidfd (one per running child,
reused; ``_ExitWaiters``), not by the pidfd in the event loop's epoll set. The kernel wakes a
process waiting in ``waitid`` with a *synchronous* wake-up from the exiting child, which often
puts it on the child's CPU, about to be free; a wake-up through epoll lands wherever the event
loop last ran, often behind another trial that keeps that core busy, while the exiting child's
core goes idle. On the dispatch benchmark (2 cores, 2 trials at a time) the host's idle time
while trials ran went from about 8% to 4.5-6%, for ~0.2-0.5 ms more daemon CPU per trial (the
thread's wake-ups and GIL hand-overs), and the time from a trial's exit to the next one's exec
from 5.1-6.0 to 3.3-4.1 ms (median) together with the fake GPUs' reads moved onto the event
loop: +4% trials/s in an A/B of 30 rounds (bench/README.md). The thread then hands the exit to
the loop with ``call_soon_threadsafe``, waking the loop's thread on the CPU the child last ran
on where the loop has its gate (wake_placement.py: the kernel alone put it back on its own last
CPU, the other trial's, after every other trial; another +3%). Where ``waitid`` has no
``P_PIDFD`` (Linux 5.3), the pidfd goes into the event loop's epoll set instead.

Where the kernel has no pidfds (before Linux 5.3) the child is started through anyio's
``open_process`` as before, so that asyncio's child watcher reaps it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import anyio

from gpusched._daemon.wake_placement import last_cpu, wake_on_cpu

__all__ = ["Child", "PidfdChild", "pidfds_work", "spawn_child", "EXIT_WAITERS"]


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


def _probe_waitid_pidfd() -> bool:
    """Whether ``waitid`` takes a pidfd (``P_PIDFD``, Linux 5.4)."""
    if not _PIDFDS or not hasattr(os, "P_PIDFD"):
        return False
    fd = os.pidfd_open(os.getpid())
    try:
        os.waitid(os.P_PIDFD, fd, os.WEXITED | os.WNOHANG)
    except ChildProcessError:  # understood, and we are not our own child
        return True
    except OSError:  # EINVAL: a kernel that does not know P_PIDFD
        return False
    finally:
        os.close(fd)
    return True


_WAITID_PIDFD = _probe_waitid_pidfd()
# (pidfd, pid, the loop, its thread's native id, the callback)
_Watch = tuple[int, int, asyncio.AbstractEventLoop, int, Callable[[], None]]


class _ExitWaiters:
    """Threads that each wait in ``waitid`` for one child to exit, then call its callback on
    its event loop. A thread whose child has exited waits for the next one: there are as many
    threads as children have ever run at the same time (see the module docstring for why)."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[_Watch] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0
        self.threads = 0

    def __repr__(self) -> str:
        return f"<_ExitWaiters threads={self.threads} idle={self._idle}>"

    @property
    def idle(self) -> int:
        """Threads waiting for a child to wait for."""
        return self._idle

    def reserve(self, count: int) -> None:
        """Start threads until ``count`` wait for children (the daemon does it at start: the
        first trials then do not pay for a thread's start)."""
        if not _WAITID_PIDFD:
            return
        with self._lock:
            while self._idle < count:
                self._idle += 1
                self._start_thread()

    def _start_thread(self) -> None:
        self.threads += 1
        threading.Thread(target=self._serve, daemon=True,
                         name=f"gpusched-exit-waiter-{self.threads}").start()

    def watch(self, pidfd: int, pid: int, loop: asyncio.AbstractEventLoop,
              callback: Callable[[], None]) -> None:
        """Call ``callback`` on ``loop`` once the child behind ``pidfd`` (process ``pid``) has
        exited (it is not reaped: the callback does that). Call it from the loop's thread,
        which is then woken on the CPU the child last ran on (wake_placement.py)."""
        with self._lock:
            if self._idle:
                self._idle -= 1
            else:
                self._start_thread()
        self._queue.put((pidfd, pid, loop, threading.get_native_id(), callback))

    def _serve(self) -> None:
        while True:
            pidfd, pid, loop, loop_thread, callback = self._queue.get()
            # WNOWAIT: the child stays a zombie for the callback's waitpid. An error (it
            # cannot be one: the pidfd is open, the child ours) also ends the wait, and the
            # callback finds out.
            with contextlib.suppress(OSError):
                os.waitid(os.P_PIDFD, pidfd, os.WEXITED | os.WNOWAIT)
            with self._lock:
                self._idle += 1
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                wake_on_cpu(loop_thread, functools.partial(last_cpu, pid),
                            functools.partial(loop.call_soon_threadsafe, callback))


EXIT_WAITERS = _ExitWaiters()


def pidfds_work() -> bool:
    """True where children are watched through pidfds (Linux 5.3 and later)."""
    return _PIDFDS


class PidfdChild:
    """A child reaped once its pidfd says it exited: through a thread waiting in ``waitid``
    where the kernel can, else through the event loop's epoll.

    The ``Popen`` object is kept, and told the exit status, so that ``subprocess`` never reaps
    the pid behind our back (it reaps children whose ``Popen`` was dropped unfinished).
    """

    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self.pid = popen.pid
        self.returncode: int | None = None
        # asyncio's own event, not anyio's (which looks up the running library each time it is
        # made): this class is asyncio's already, and it is made for every trial.
        self._exited = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._fd = os.pidfd_open(self.pid)
        self._in_epoll = False
        if _WAITID_PIDFD:
            EXIT_WAITERS.watch(self._fd, self.pid, self._loop, self._reap)
        else:
            self._watch_in_epoll()

    def _watch_in_epoll(self) -> None:
        self._loop.add_reader(self._fd, self._reap)
        self._in_epoll = True

    def __repr__(self) -> str:
        return f"<PidfdChild pid={self.pid} returncode={self.returncode}>"

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (it cannot be: a daemon bug); say so
            pid, status = self.pid, 255 << 8
        if pid == 0:
            # Woken without an exit (not expected): wait for the next readiness, in epoll.
            if not self._in_epoll:
                self._watch_in_epoll()
            return
        if self._in_epoll:
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
    umask: int = -1,
) -> Child:
    """Start ``argv`` with stdin from /dev/null and the given stdout and stderr descriptors.

    ``ids``: ``user``, ``group`` and ``extra_groups`` for ``Popen`` (a root daemon's trial of
    another user). ``umask``: the child's (-1: this process's). ``pidfd``: watch it through a
    pidfd (None: where the kernel has them; False: through anyio, as on older kernels).
    OSError (command not found, not executable, bad ``cwd``) propagates.
    """
    extra = dict(ids or {})
    if not (_PIDFDS if pidfd is None else pidfd):
        return await anyio.open_process(
            list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
            env=dict(env), start_new_session=new_session, umask=umask, **extra,
        )
    # Blocking only until the child has called exec (vfork), as in asyncio's own subprocess
    # start, which makes this same call on the event loop.
    popen = subprocess.Popen(  # noqa: ASYNC220
        list(argv), stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=cwd,
        env=dict(env), start_new_session=new_session, close_fds=True, umask=umask, **extra,
    )
    try:
        return PidfdChild(popen)
    except BaseException:
        # No pidfd for it (out of descriptors): do not leave it running unwatched.
        popen.kill()
        popen.wait()
        raise
