"""After a crash: stop what the dead daemon's trials left running.

A daemon killed with SIGKILL leaves its trials running, in sessions of their own, parented to
init. The restarted daemon cannot wait for them (they are not its children) and so cannot learn
their exit status; it stops them (SIGTERM, the grace period, SIGKILL) before it places any
trial, so that no trial ever runs twice at once, and requeues them (see ``restore.py``: one
whose leader had exited, its report file ending with its status line, is recorded as that line
says; the pids found here tell whether it had exited).

They are found by ``GPUSCHED_TRIAL_DIR`` in their environment, which every process of a trial
inherits and which names one trial of one state folder, and then by session: a process that
cleared its environment but stayed in its trial's session is found too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Collection

import anyio

from gpusched._daemon import procfs
from gpusched.log import get_logger

__all__ = ["leftover_processes", "stop_leftovers"]

_POLL_S = 0.05
# How long SIGKILLed processes are waited for before they are taken for unkillable.
UNKILLABLE_AFTER_S = 30.0
log = get_logger("gpusched.recovery")


def leftover_processes(
    trial_dirs: Collection[str], *, created_since: int | None = None,
    skip_sessions: Collection[int] = (),
) -> dict[str, list[int]]:
    """Trial folder -> the live pids of that trial (by environment, then by session).
    ``created_since``, ``skip_sessions``: see :func:`procfs.processes_with_env`."""
    by_env = procfs.processes_with_env("GPUSCHED_TRIAL_DIR", trial_dirs,
                                       created_since=created_since,
                                       skip_sessions=skip_sessions)
    if not by_env:
        return {}
    session_dir: dict[int, str] = {}
    for trial_dir, pids in by_env.items():
        for pid in pids:
            with contextlib.suppress(OSError):
                session_dir.setdefault(os.getsid(pid), trial_dir)
    out = {d: set(pids) for d, pids in by_env.items()}
    me = os.getsid(0)
    for sid, pids in procfs.session_members(set(session_dir) - {me}).items():
        out[session_dir[sid]].update(pids)
    return {d: sorted(pids) for d, pids in out.items()}


def _signal(pids: Collection[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


async def stop_leftovers(trial_dirs: Collection[str], grace_s: float) -> dict[str, list[int]]:
    """SIGTERM every leftover process of these trials, wait up to ``grace_s`` for them to
    exit, SIGKILL what is left; return what was found (trial folder -> pids)."""
    found = leftover_processes(trial_dirs)
    if not found:
        return found
    _signal([p for pids in found.values() for p in pids], signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not leftover_processes(found):
            return found
        await anyio.sleep(_POLL_S)
    # SIGKILL cannot be ignored, but a process in uninterruptible sleep (one wedged in a driver
    # after a GPU fault) takes it only when it wakes, if ever: waiting for it without a bound
    # kept the restarted daemon from starting at all. Past the bound it is logged and left
    # (NVML still lists it: its GPU stays out of use).
    deadline = time.monotonic() + UNKILLABLE_AFTER_S
    while left := leftover_processes(found):
        if time.monotonic() >= deadline:
            log.error("leftover_processes_unkillable", trials=left,
                      after_s=UNKILLABLE_AFTER_S)
            break
        _signal([p for pids in left.values() for p in pids], signal.SIGKILL)
        await anyio.sleep(_POLL_S)
    return found
