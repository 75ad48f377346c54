"""Small readers of Linux ``/proc``: which live processes belong to which session.

The daemon starts every trial in a session of its own, so "is any process of this trial still
alive?" is "does session ``sid`` have a live member?". ``getsid(2)`` answers that for any pid
without being its parent (a trial's children are not the daemon's children), one system call
per process; only the few processes found in a session of interest have ``/proc/<pid>/stat``
read as well, to tell a zombie from a live process. A scan that read every ``stat`` file took
about 3 ms on a quiet host with ~120 processes; this one takes about 0.1 ms.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

__all__ = [
    "YOUNG_S", "PROBE_SPAN", "session_members", "session_of", "pids_in_session",
    "processes_with_env",
]

_PROC = Path("/proc")
# A session younger than this cannot have seen pid_max processes created since its leader
# (even at 10,000 forks a second, the smallest pid_max of 32,768 takes longer): until then,
# finding its processes needs to look only at pids handed out after the leader's.
YOUNG_S = 60.0
# Up to this many pids handed out since a trial's leader, they are probed one by one rather
# than /proc listed (~10 us per pid against ~1 us per process on the host, listing included).
PROBE_SPAN = 256


def _parse_stat(line: str) -> tuple[str, int]:
    """``(state, session id)`` from the text of ``/proc/<pid>/stat``.

    The second field is the command name in parentheses, and that name may itself contain
    spaces and parentheses (a process can rename itself to ``a) (b``), so the fixed fields are
    the ones after the *last* ``)``: state, ppid, pgrp, session, …
    """
    close = line.rindex(")")
    fields = line[close + 1 :].split()
    return fields[0], int(fields[3])


def _read_live_session(pid: int | str) -> int | None:
    """The session id of ``pid``, or None when it is gone or a zombie (exited, not reaped)."""
    try:
        # Plain strings, not pathlib: this runs for every process of every trial's check.
        text = _read(f"/proc/{pid}/stat", 4096).decode("utf-8", errors="replace")
    except OSError:  # vanished between the listing and the read, or hidden (hidepid)
        return None
    try:
        state, sid = _parse_stat(text)
    except (ValueError, IndexError):  # never seen on Linux; a truncated read is the only way
        return None
    # A zombie has exited: it holds no memory and runs no code; only its exit status remains.
    if state in ("Z", "X"):
        return None
    return sid


def session_members(
    sids: Collection[int] | None = None, *, created_since: int | None = None
) -> dict[int, list[int]]:
    """Session id -> the pids of its live members, sorted (one pass over ``/proc``).

    ``sids`` limits the answer to those sessions (the cheap case: only their members have
    their ``stat`` read); None means every session on the host. Processes that exit during the
    pass are skipped silently; zombies count as dead.

    ``created_since``: only processes created at or after the one with this pid are looked at
    (as in :func:`processes_with_env`). Every member of a session was created after its
    leader, so a session's own leader pid makes the pass a listing and a few system calls.
    """
    members: dict[int, list[int]] = {}
    for pid in _candidates(created_since):
        try:
            sid = os.getsid(pid)
        except OSError:  # exited since the listing
            continue
        if sids is not None and sid not in sids:
            continue
        # getsid answers for zombies too: the stat read tells them apart (and re-checks the
        # session, in case the pid was reused in between).
        live_sid = _read_live_session(pid)
        if live_sid is not None and (sids is None or live_sid in sids):
            members.setdefault(live_sid, []).append(pid)
    for pids in members.values():
        pids.sort()
    return members


def session_of(pid: int) -> int | None:
    """The session id of a live process, or None when it does not exist or is a zombie."""
    return _read_live_session(pid)


def pids_in_session(sid: int, *, young: bool = False) -> list[int]:
    """The live pids of session ``sid``, sorted; empty when the whole session has exited.

    ``young``: the session's leader was created recently enough that fewer than ``pid_max``
    processes can have been created since; then only pids handed out after it are looked at.
    """
    return session_members((sid,), created_since=sid if young else None).get(sid, [])


def processes_with_env(
    name: str, values: Collection[str], *, created_since: int | None = None,
    skip_sessions: Collection[int] = (),
) -> dict[str, list[int]]:
    """Live processes whose environment sets ``name`` to one of ``values``: value -> pids.

    How a restarted daemon finds the processes of trials that a crashed one started: every
    trial process inherits ``GPUSCHED_TRIAL_DIR``, unique to its trial, even one that left the
    trial's session or whose start was never recorded. Processes whose environment cannot be
    read (another user's, when not root) are skipped; zombies count as dead.

    ``created_since``: only processes created after the one with this pid (in pid order:
    Linux hands out pids in increasing order, wrapping at ``pid_max``) are looked at, which
    is what makes the check after each trial cheap. Valid while fewer than ``pid_max``
    processes were created since; a caller that cannot rule that out scans everything.

    ``skip_sessions``: processes of these sessions are not looked at (one ``getsid`` instead
    of reading their environment, which means reaching into their memory): after a trial,
    the other trials' sessions, which cannot hold a process that left this trial's.
    """
    wanted = {f"{name}={v}".encode(): v for v in values}
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    me = os.getpid()
    for pid in _candidates(created_since):
        if pid == me:
            continue
        if skip_sessions:
            try:
                if os.getsid(pid) in skip_sessions:
                    continue
            except OSError:  # gone
                continue
        try:
            environ = _read(f"/proc/{pid}/environ")
        except OSError:  # gone, or not ours to read
            continue
        for var in environ.split(b"\0"):
            value = wanted.get(var)
            if value is not None:
                if _read_live_session(pid) is not None:
                    found.setdefault(value, []).append(pid)
                break
    for pids in found.values():
        pids.sort()
    return found


_pid_max: int | None = None


def _read(path: str, limit: int | None = None) -> bytes:
    """A /proc file's content (its first ``limit`` bytes): three system calls, where a
    Python file object makes seven (fstat, an isatty ioctl, seeks); the checks after every
    trial read several such files."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if limit is not None:
            return os.read(fd, limit)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _read_int(path: str) -> int:
    return int(_read(path, 64))


def _pids_since(first: int) -> tuple[int, int] | None:
    """``(span, pid_max)``: ``span`` pids were handed out after ``first``, by the last pid the
    kernel handed out; None when the kernel does not say (then every pid must be looked at)."""
    global _pid_max
    try:
        last = _read_int("/proc/sys/kernel/ns_last_pid")
        # pid_max is read once: an administrator rarely changes it, and a raised one shows
        # as a pid beyond the one we know, which makes us read it again.
        if _pid_max is None or last >= _pid_max or first >= _pid_max:
            _pid_max = _read_int("/proc/sys/kernel/pid_max")
    except (OSError, ValueError):
        return None
    return (last - first) % _pid_max, _pid_max


# The last probe of the pids handed out since one: (that pid, the last pid handed out then,
# the processes among them). Replaced whole, so that a worker thread sees one or the other.
_last_probe: tuple[int, int, list[int]] | None = None


def _candidates(created_since: int | None) -> list[int]:
    """The pids to look at: every process in /proc, or only those created at or after the
    one with pid ``created_since`` (see :func:`processes_with_env`).

    When few pids were handed out since (``PROBE_SPAN``; threads take pids too), they are
    probed one by one, which costs the same on a host with 2,000 processes as on one with
    50; otherwise /proc is listed and filtered.
    """
    global _last_probe
    first = created_since
    since = None if first is None else _pids_since(first)
    if first is not None and since is not None and since[0] <= PROBE_SPAN:
        span, pid_max = since
        last = (first + span) % pid_max
        probe = _last_probe
        if probe is not None and probe[1] == last and (
                (first - probe[0]) % pid_max <= (last - probe[0]) % pid_max):
            # No pid was handed out since a probe that covered these: the same processes
            # (those that exited since are the callers' business, as for a fresh probe). After
            # a trial, its own two checks and the release barrier's look at the same pids.
            return [pid for pid in probe[2] if (pid - first) % pid_max <= span]
        numbers = ((first + i) % pid_max for i in range(span + 1))
        found = [pid for pid in numbers if _is_process(pid)]
        _last_probe = (first, last, found)
        return found
    try:
        names = os.listdir(_PROC)
    except OSError:  # no procfs: nothing can be known alive
        return []
    pids = [int(name) for name in names if name.isdigit()]
    if first is None or since is None:
        return pids
    span, pid_max = since
    return [pid for pid in pids if (pid - first) % pid_max <= span]


def _is_process(pid: int) -> bool:
    """Whether ``pid`` is a live process's id, not one of its threads' (/proc/<tid> answers
    for a thread too, though the listing of /proc leaves threads out)."""
    try:
        head = _read(f"/proc/{pid}/status", 1024)
    except OSError:
        return False
    at = head.find(b"\nTgid:")
    if at < 0:
        return False
    return int(head[at + 6:head.index(b"\n", at + 1)]) == pid
