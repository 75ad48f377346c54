"""wake_placement: the event loop's thread woken on the CPU a trial freed, and none of its code
run (no trial, no thread started) while it is held to that one CPU."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest

from gpusched._daemon import child as child_module
from gpusched._daemon import wake_placement
from gpusched._daemon.child import spawn_child
from gpusched._daemon.wake_placement import _Gate, install, last_cpu, uninstall, wake_on_cpu

CPUS = os.sched_getaffinity(0)
needs_two_cpus = pytest.mark.skipif(len(CPUS) < 2, reason="needs at least two CPUs")


def _zombie(argv: list[str]) -> subprocess.Popen[bytes]:
    """A child that has exited and is not reaped yet (as the exit-waiter finds it)."""
    child = subprocess.Popen(argv)
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    return child


def test_last_cpu_of_an_exited_child_not_reaped_yet() -> None:
    child = _zombie(["true"])
    try:
        assert last_cpu(child.pid) in CPUS
    finally:
        child.wait()


def test_last_cpu_reads_past_a_command_name_with_spaces_and_parentheses(tmp_path: Path) -> None:
    # /proc/PID/stat's second field is the command name in parentheses, as it is: "(a) 1 2)".
    true = shutil.which("true")
    assert true is not None
    odd = tmp_path / "a) 1 2"
    odd.symlink_to(true)
    child = _zombie([str(odd)])
    try:
        assert last_cpu(child.pid) in CPUS
    finally:
        child.wait()


def test_last_cpu_of_no_process_is_none() -> None:
    assert last_cpu(2**22 + 1) is None  # above any pid_max


def _cpus_of_a_new_thread() -> set[int]:
    """The CPUs a thread started now gets (its starter's, inherited)."""
    seen: list[set[int]] = []
    thread = threading.Thread(target=lambda: seen.append(os.sched_getaffinity(0)))
    thread.start()
    thread.join()
    return seen[0]


def _waiting_gate() -> _Gate:
    """A gate as an event loop's is while the loop waits in its selector."""
    gate = _Gate()
    gate.waiting = True
    return gate


def _back_from_the_wait(gate: _Gate) -> None:
    """What the woken loop does before anything else (_GatedSelector.select)."""
    gate.waiting = False
    gate.leave()


@pytest.fixture
def own_cpus() -> Iterator[None]:
    """This thread's CPUs given back whatever a test does to them (a failed one included)."""
    try:
        yield
    finally:
        os.sched_setaffinity(0, CPUS)


@needs_two_cpus
@pytest.mark.usefixtures("own_cpus")
def test_a_waiting_loop_is_woken_held_to_the_cpu_until_it_leaves_its_wait() -> None:
    me = threading.get_native_id()
    gate = _waiting_gate()
    seen: list[set[int]] = []
    wake_on_cpu(me, lambda: max(CPUS), lambda: seen.append(os.sched_getaffinity(0)),
                gates={me: gate})
    assert seen == [{max(CPUS)}]
    assert (gate.give_back, gate.lock.locked()) == (CPUS, False)
    _back_from_the_wait(gate)
    assert (os.sched_getaffinity(0), gate.give_back) == (CPUS, None)


@pytest.mark.parametrize("case", ["unknown cpu", "not the thread's", "no gate", "loop running"])
def test_where_the_loop_cannot_be_placed_it_is_only_woken(case: str) -> None:
    me = threading.get_native_id()
    gate = _waiting_gate()
    gate.waiting = case != "loop running"  # running, or in a poll (select(0))
    cpu = {"unknown cpu": None, "not the thread's": 4096}.get(case, max(CPUS))
    gates = {} if case == "no gate" else {me: gate}
    seen: list[set[int]] = []
    wake_on_cpu(me, lambda: cpu, lambda: seen.append(os.sched_getaffinity(0)), gates=gates)
    assert (seen, gate.give_back, gate.lock.locked()) == ([CPUS], None, False)


@needs_two_cpus
@pytest.mark.usefixtures("own_cpus")
def test_two_waiters_before_the_loop_runs_leave_it_its_own_cpus_to_take_back() -> None:
    # The second waiter finds the thread held to the first one's CPU: what the loop takes
    # back must still be its own CPUs, not that one (every trial it started would inherit it).
    me = threading.get_native_id()
    gate = _waiting_gate()
    wake_on_cpu(me, lambda: min(CPUS), lambda: None, gates={me: gate})
    wake_on_cpu(me, lambda: max(CPUS), lambda: None, gates={me: gate})
    assert (os.sched_getaffinity(0), gate.give_back) == ({max(CPUS)}, CPUS)
    _back_from_the_wait(gate)
    assert os.sched_getaffinity(0) == CPUS


@needs_two_cpus
@pytest.mark.usefixtures("own_cpus")
def test_a_ctrl_c_in_the_give_back_still_gives_the_cpus_back(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A signal handler's KeyboardInterrupt raised inside the give-back, before its system
    # call: the CPUs to give back were dropped first, and the loop stayed on one CPU for good
    # (later waiters read that one CPU and leave it so).
    me = threading.get_native_id()
    gate = _waiting_gate()
    wake_on_cpu(me, lambda: max(CPUS), lambda: None, gates={me: gate})
    setaffinity = os.sched_setaffinity
    interrupts = [1]

    def interrupted(pid: int, cpus: Iterable[int]) -> None:
        if interrupts:
            interrupts.pop()
            raise KeyboardInterrupt
        setaffinity(pid, cpus)

    monkeypatch.setattr(os, "sched_setaffinity", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _back_from_the_wait(gate)
    assert (os.sched_getaffinity(0), gate.give_back) == (CPUS, None)


@needs_two_cpus
@pytest.mark.usefixtures("own_cpus")
def test_the_exit_is_delivered_whatever_the_restriction_does(
        monkeypatch: pytest.MonkeyPatch) -> None:
    me = threading.get_native_id()

    def broken(pid: int, cpus: Iterable[int]) -> None:
        raise RuntimeError("not expected")

    monkeypatch.setattr(os, "sched_setaffinity", broken)
    woken: list[bool] = []
    with pytest.raises(RuntimeError):
        wake_on_cpu(me, lambda: max(CPUS), lambda: woken.append(True),
                    gates={me: _waiting_gate()})
    assert woken == [True]


@needs_two_cpus
async def test_a_loop_back_from_its_wait_waits_for_a_waiter_restricting_it() -> None:
    # The loop returns from its wait (a timer, another event) while a waiter is in the middle
    # of restricting it: it must not run on until the waiter is done and it has its CPUs.
    loop = asyncio.get_running_loop()
    assert install(loop)
    me = threading.get_native_id()
    gate = wake_placement._GATES[me]
    setaffinity = os.sched_setaffinity
    restricting = threading.Event()

    def slow(pid: int, cpus: Iterable[int]) -> None:
        setaffinity(pid, cpus)
        if threading.get_native_id() != me:
            restricting.set()
            time.sleep(0.2)  # a waiter preempted while it holds the gate

    seen: list[set[int]] = []
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "sched_setaffinity", slow)
            waiter = threading.Timer(0.05, wake_on_cpu,
                                     args=(me, lambda: max(CPUS), lambda: None))
            waiter.start()
            await asyncio.sleep(0.1)  # back from the wait while the waiter holds the gate
            seen.append(os.sched_getaffinity(0))
            waiter.join()
    finally:
        uninstall(loop)
        os.sched_setaffinity(0, CPUS)
    assert restricting.is_set()
    assert seen == [CPUS]
    assert gate.give_back is None


@needs_two_cpus
async def test_the_loop_runs_nothing_while_held_to_one_cpu(tmp_path: Path) -> None:
    # With another process keeping a core busy (the other trial), the woken loop often got
    # the GIL before the exit-waiter gave its CPUs back: it ran the exit's callback, and what
    # follows an `await child.wait()`, on one CPU, and a thread it started then (an anyio
    # worker) kept that one CPU for good. The loop now takes its CPUs back itself, at its gate,
    # before it runs anything.
    if not child_module._WAITID_PIDFD:
        pytest.skip("this kernel's waitid takes no pidfd: the exit is seen in epoll")
    loop = asyncio.get_running_loop()
    assert install(loop)
    placed = [0]
    setaffinity = os.sched_setaffinity

    def counting(pid: int, cpus: Iterable[int]) -> None:
        placed[0] += len(set(cpus)) == 1
        setaffinity(pid, cpus)

    hog = subprocess.Popen(["sh", "-c", "while :; do :; done"])  # noqa: ASYNC220
    loop_held = threads_held = 0
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(os, "sched_setaffinity", counting)
            for _ in range(100):
                child = await spawn_child(["true"], env=dict(os.environ), cwd=tmp_path,
                                          stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL, pidfd=True)
                await child.wait()
                loop_held += os.sched_getaffinity(0) != CPUS
                threads_held += _cpus_of_a_new_thread() != CPUS
    finally:
        hog.kill()
        hog.wait()
        uninstall(loop)
    assert (loop_held, threads_held) == (0, 0)
    assert placed[0] > 0  # the loop was placed, while it waited


async def test_uninstall_gives_the_loop_its_own_selector_back() -> None:
    loop = asyncio.get_running_loop()
    inner = loop._selector  # type: ignore[attr-defined]
    if not install(loop):
        pytest.skip("not a selector event loop")
    assert loop._selector is not inner  # type: ignore[attr-defined]
    await asyncio.sleep(0.01)  # a wait through the gated selector
    uninstall(loop)
    assert loop._selector is inner  # type: ignore[attr-defined]
    assert threading.get_native_id() not in wake_placement._GATES


async def test_the_exit_waiter_wakes_the_loop_thread_on_the_childs_last_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not child_module._WAITID_PIDFD:
        pytest.skip("this kernel's waitid takes no pidfd: the exit is seen in epoll")
    calls: list[tuple[int, int | None]] = []

    def recording(thread_id: int, cpu: Callable[[], int | None],
                  wake: Callable[[], object]) -> None:
        calls.append((thread_id, cpu()))  # the child is not reaped yet: its CPU is there
        wake_on_cpu(thread_id, cpu, wake)

    monkeypatch.setattr(child_module, "wake_on_cpu", recording)
    child = await spawn_child(["true"], env=dict(os.environ), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pidfd=True)
    assert await child.wait() == 0
    assert len(calls) == 1
    thread_id, cpu = calls[0]
    assert thread_id == threading.get_native_id()
    assert cpu in CPUS
