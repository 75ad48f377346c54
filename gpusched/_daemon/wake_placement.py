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
until the daemon reaps it), then wakes it: a thread's CPU is chosen when it is woken, so the
loop starts on the freed CPU, and, its CPUs given back at once, the kernel may move it from
there as usual. An A/B of the dispatch benchmark over 30 rounds: host idle 5.9% -> 2.6%,
trials/s +3.3% (median of the rounds; bench/README.md).

The loop's thread must run none of the daemon's code while it is restricted: a trial or a
thread it started then (an anyio worker, say) would inherit the one CPU for good. That is what
the loop's *gate* is for (:func:`install`, on its selector): a flag the loop's thread sets only
for the time it waits in its selector (not for a poll), and a lock. An exit-waiter restricts
the loop only while the flag is set, holding the lock, and leaves the CPUs to give back in the
gate; the loop, back from its wait, clears the flag (a plain store: no signal handler can come
between it and the wait), waits for a waiter that may be restricting it, and gives itself its
CPUs back before it returns to asyncio. Should an exception from a signal handler (a Ctrl-C)
get out between the two, its next wait, or :func:`uninstall`, gives them back. The exit is
always delivered. Only what Python itself may run in that short stretch runs restricted: a
signal handler (asyncio's and anyio's only note the signal) or an object's finalizer (none of
the daemon's or its libraries' starts a thread or a process). Where the loop has no gate (not
the daemon's), the CPU is not one of the loop's, or the daemon may use a single CPU, nothing is
restricted. Errors (a kernel without ``sched_setaffinity``, a cgroup refusing the CPU) only
skip the placement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import selectors
import threading
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["install", "uninstall", "last_cpu", "wake_on_cpu"]

_CAN_PLACE = hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity")


class _Gate:
    """An event loop's gate. ``waiting``: True only while its thread is inside its selector's
    wait (set and cleared by that thread alone, by plain stores, which no signal handler can
    come between); ``lock``: held by an exit-waiter while it looks at ``waiting`` and restricts
    the thread; ``give_back``, when set, the CPUs a waiter took from the thread (written with
    ``lock`` held, cleared only once they are given back)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.waiting = False
        self.give_back: set[int] | None = None

    def leave(self) -> None:
        """The loop's thread, ``waiting`` just cleared: let any waiter that saw it set finish,
        then take back its CPUs. A wait for the lock interrupted by a signal handler's
        exception is waited out and the exception raised after (``with``: its lock is either
        taken or not, never taken with the exception pending); should one still get out, the
        next select() or uninstall() gives the CPUs back."""
        if not (self.lock.locked() or self.give_back is not None):
            return
        interrupted: BaseException | None = None
        while True:
            try:
                with self.lock:
                    cpus = self.give_back
                    if cpus is not None:
                        _give_back(0, cpus)
                        self.give_back = None
                break
            except BaseException as exc:  # from a signal handler: raised once done
                interrupted = exc
        if interrupted is not None:
            raise interrupted


_GATES: dict[int, _Gate] = {}  # the loop thread's native id -> its gate


class _GatedSelector:
    """The loop's selector, open to exit-waiters for its (blocking) waits only."""

    def __init__(self, inner: selectors.BaseSelector, gate: _Gate) -> None:
        self.inner = inner
        self._gate = gate
        # Bound once: asyncio's add_reader/remove_reader call these (anyio: per receive).
        self.register, self.unregister, self.modify = inner.register, inner.unregister, inner.modify
        self.get_key, self.get_map, self.close = inner.get_key, inner.get_map, inner.close

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        gate = self._gate
        try:
            gate.waiting = timeout is None or timeout > 0  # a poll (0) runs on: nothing to place
            return self.inner.select(timeout)
        finally:
            gate.waiting = False  # first, before any call (where a signal handler may run)
            gate.leave()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def install(loop: asyncio.AbstractEventLoop) -> bool:
    """Give the running ``loop`` (call from its thread) a gate, so that exit-waiters may wake
    it on the CPU a trial freed; False where it cannot have one (not a selector loop)."""
    inner = getattr(loop, "_selector", None)
    if not _CAN_PLACE or not isinstance(inner, selectors.BaseSelector):
        return False
    gate = _Gate()
    loop._selector = _GatedSelector(inner, gate)  # type: ignore[attr-defined]
    _GATES[threading.get_native_id()] = gate
    return True


def uninstall(loop: asyncio.AbstractEventLoop) -> None:
    """Undo :func:`install` (from the loop's thread, while it runs), giving the thread back
    any CPUs an interrupted wait left out."""
    gated = getattr(loop, "_selector", None)
    if isinstance(gated, _GatedSelector):
        loop._selector = gated.inner  # type: ignore[attr-defined]
        _GATES.pop(threading.get_native_id(), None)
        gated._gate.leave()  # CPUs an interrupted wait left out


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


def wake_on_cpu(thread_id: int, cpu: Callable[[], int | None], wake: Callable[[], object],
                gates: Mapping[int, _Gate] = _GATES) -> None:
    """Call ``wake`` (which wakes the event loop whose thread is ``thread_id``) so that the
    thread wakes on the CPU ``cpu()`` names: restricted to it while it waits, holding its gate
    for that; the woken loop gives itself its CPUs back before it runs anything. ``cpu`` is
    asked only where the loop has a gate and waits (a ``/proc`` read saved otherwise). Just
    ``wake`` where the placement cannot be done or is pointless (no CPU, no gate, the loop
    running, a single CPU, not one of the thread's)."""
    gate = gates.get(thread_id)
    try:
        if gate is not None and gate.waiting:
            where = cpu()
            if where is not None and gate.lock.acquire(blocking=False):  # not: in leave()
                try:
                    if gate.waiting:  # still: the loop clears it before it looks at the lock
                        _restrict(thread_id, where, gate)
                finally:
                    gate.lock.release()
    finally:
        wake()


def _restrict(thread_id: int, cpu: int, gate: _Gate) -> None:
    """Hold the waiting loop's thread to ``cpu``, its CPUs kept in the gate (another waiter
    may have restricted it already: those are still the ones to give back)."""
    allowed = gate.give_back
    if allowed is None:
        try:
            allowed = os.sched_getaffinity(thread_id)
        except OSError:  # the thread is gone
            return
    if len(allowed) < 2 or cpu not in allowed:
        return
    try:
        os.sched_setaffinity(thread_id, {cpu})
    except OSError:
        return
    gate.give_back = allowed


def _give_back(thread_id: int, allowed: set[int]) -> None:
    """Give the thread (0: this one) back its CPUs; should a cpuset have shrunk meanwhile, so
    that they are refused, every CPU the cpuset has (the kernel keeps the intersection)."""
    try:
        os.sched_setaffinity(thread_id, allowed)
    except OSError:
        # every CPU there may be (the kernel keeps those the cpuset has; ids may be sparse)
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread_id, range(max(1024, os.cpu_count() or 1, max(allowed) + 1)))
