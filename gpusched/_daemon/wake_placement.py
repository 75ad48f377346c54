"""Waking the event loop's thread on the CPU that a trial's exit has just freed.

When a trial exits, the daemon's event loop wakes up to record its end and to start the next
trial. The kernel puts a woken thread on a CPU when it wakes it, and for the event loop (woken
through its epoll by the exit-waiter thread's write) it picks the CPU the loop last ran on.
With every core kept busy by trials, that is often the core of the *other* trial still
running: the loop then takes that trial's core for the ~1.5 ms of its work while the core the
exited trial left stays idle, because the kernel will not move a task that ran a moment ago
(it is "cache hot") onto an idle core. `perf sched` traces of the dispatch benchmark (2 cores,
2 trials at a time) showed this after every other trial: about 0.6 ms of idle CPU per trial,
half of the host's idle time while trials ran.

So the exit-waiter thread, before it wakes the loop, restricts the loop's thread to the CPU
the exited trial last ran on (read from the zombie's ``/proc/PID/stat``, which stays readable
until the daemon reaps it), wakes it, and gives the thread its CPUs back at once. A thread's
CPU is chosen when it is woken, so the loop starts on the freed CPU; from there the kernel
may move it as usual. An A/B of the dispatch benchmark over 30 rounds: host idle 5.4% ->
3.0%, trials/s +3.8% (median of the rounds; bench/README.md).

The restriction lasts only for the wake-up (a few microseconds), and no trial can be started
meanwhile (``SPAWN_LOCK``): a child inherits its parent thread's CPUs, and a trial must never
be held to one core. Where the daemon may use a single CPU, or the CPU is not one of the loop
thread's own (a cpuset changed since), nothing is restricted. Errors (a kernel without
``sched_setaffinity``, a cgroup refusing the CPU) only skip the placement.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

__all__ = ["SPAWN_LOCK", "last_cpu", "wake_on_cpu"]

# Held while the loop's thread is restricted to one CPU, and while a child is started from it.
SPAWN_LOCK = threading.Lock()

_CAN_PLACE = hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


def last_cpu(pid: int) -> int | None:
    """The CPU process ``pid`` last ran on (``/proc/PID/stat``'s 39th field; a zombie's too);
    None when it cannot be read."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            data = stat.read()
        # The command name (field 2) may hold spaces and parentheses: count after its end.
        return int(data[data.rindex(b")") + 2:].split()[36])
    except (OSError, ValueError, IndexError):
        return None


def wake_on_cpu(thread_id: int, cpu: int | None, wake: Callable[[], object]) -> None:
    """Call ``wake`` (which wakes the thread ``thread_id``) so that the thread wakes on
    ``cpu``: restricted to it for the call, given back its own CPUs right after. Just ``wake``
    where that cannot be done or is pointless (no CPU, a single one, not one of the thread's).
    Exceptions from ``wake`` propagate, after the thread's CPUs are given back."""
    if cpu is None or not _CAN_PLACE:
        wake()
        return
    # The thread's CPUs are read under the lock: another waiter may be holding it to one CPU
    # right now, and those must not be what it is given back.
    with SPAWN_LOCK:
        try:
            allowed = os.sched_getaffinity(thread_id)
        except OSError:  # the thread is gone (a stopped loop)
            allowed = set()
        if len(allowed) < 2 or cpu not in allowed:
            wake()
            return
        try:
            os.sched_setaffinity(thread_id, {cpu})
        except OSError:
            wake()
            return
        try:
            wake()
        finally:
            _give_back(thread_id, allowed)


def _give_back(thread_id: int, allowed: set[int]) -> None:
    """Give the thread back its CPUs; should a cpuset have shrunk meanwhile, so that they are
    refused, the calling thread's own (the daemon's threads all have the same)."""
    for cpus in (allowed, os.sched_getaffinity(0)):
        try:
            os.sched_setaffinity(thread_id, cpus)
            return
        except OSError:
            continue
