"""wake_placement: the event loop's thread woken on the CPU a trial freed, and no child ever
started while that thread is held to one CPU."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from gpusched._daemon import child as child_module
from gpusched._daemon import wake_placement
from gpusched._daemon.child import spawn_child
from gpusched._daemon.wake_placement import last_cpu, wake_on_cpu

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


@needs_two_cpus
def test_the_thread_is_held_to_the_cpu_while_it_is_woken_then_given_its_cpus_back() -> None:
    me = threading.get_native_id()
    cpu = max(CPUS)
    seen: list[set[int]] = []
    wake_on_cpu(me, cpu, lambda: seen.append(os.sched_getaffinity(0)))
    assert seen == [{cpu}]
    assert os.sched_getaffinity(0) == CPUS


@needs_two_cpus
def test_the_cpus_come_back_when_waking_fails() -> None:
    def wake() -> None:
        raise RuntimeError("the loop is closed")

    with pytest.raises(RuntimeError):
        wake_on_cpu(threading.get_native_id(), max(CPUS), wake)
    assert os.sched_getaffinity(0) == CPUS
    assert not wake_placement.SPAWN_LOCK.locked()


@needs_two_cpus
def test_two_waiters_at_once_give_the_thread_its_own_cpus_back() -> None:
    # What a waiter gives back must be the thread's own CPUs, never the one CPU another
    # waiter holds it to at that moment (every trial started after would inherit that).
    me = threading.get_native_id()
    held, release = threading.Event(), threading.Event()

    def first_wake() -> None:
        held.set()
        release.wait(10)

    first = threading.Thread(target=wake_on_cpu, args=(me, min(CPUS), first_wake))
    second = threading.Thread(target=wake_on_cpu, args=(me, max(CPUS), lambda: None))
    first.start()
    try:
        assert held.wait(10)
        second.start()
        second.join(0.2)  # it waits for the first
    finally:
        release.set()
        first.join()
        second.join()
    assert os.sched_getaffinity(0) == CPUS


@pytest.mark.parametrize("cpu", [None, 4096], ids=["unknown", "not-the-threads"])
def test_no_cpu_to_wake_on_only_wakes(cpu: int | None) -> None:
    seen: list[set[int]] = []
    wake_on_cpu(threading.get_native_id(), cpu, lambda: seen.append(os.sched_getaffinity(0)))
    assert seen == [CPUS]


@needs_two_cpus
def test_a_thread_that_is_gone_is_only_woken() -> None:
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    assert done.native_id is not None
    woken: list[bool] = []
    wake_on_cpu(done.native_id, max(CPUS), lambda: woken.append(True))
    assert woken == [True]


@needs_two_cpus
async def test_no_trial_is_started_while_the_loop_thread_is_held_to_one_cpu(
        tmp_path: Path) -> None:
    # An exit-waiter holds the loop's thread to one CPU while it wakes it; a child started
    # then would inherit that one CPU for good. The spawn waits for the CPUs to come back.
    loop_thread = threading.get_native_id()
    held, release = threading.Event(), threading.Event()

    def wake() -> None:
        held.set()
        release.wait(10)

    waiter = threading.Thread(target=wake_on_cpu, args=(loop_thread, min(CPUS), wake))
    waiter.start()
    try:
        await anyio.to_thread.run_sync(held.wait)
        assert os.sched_getaffinity(loop_thread) == {min(CPUS)}
        threading.Timer(0.2, release.set).start()
        out = tmp_path / "cpus"
        with open(out, "wb") as fh:
            child = await spawn_child(
                [sys.executable, "-c", "import os; print(sorted(os.sched_getaffinity(0)))"],
                env=dict(os.environ), cwd=tmp_path, stdout=fh.fileno(), stderr=fh.fileno(),
                pidfd=True)
            assert await child.wait() == 0
        assert out.read_text().strip() == str(sorted(CPUS))
    finally:
        release.set()
        waiter.join()


async def test_the_exit_waiter_wakes_the_loop_thread_on_the_childs_last_cpu(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not child_module._WAITID_PIDFD:
        pytest.skip("this kernel's waitid takes no pidfd: the exit is seen in epoll")
    calls: list[tuple[int, int | None]] = []

    def recording(thread_id: int, cpu: int | None, wake: Callable[[], object]) -> None:
        calls.append((thread_id, cpu))
        wake_on_cpu(thread_id, cpu, wake)

    monkeypatch.setattr(child_module, "wake_on_cpu", recording)
    child = await spawn_child(["true"], env=dict(os.environ), cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, pidfd=True)
    assert await child.wait() == 0
    assert len(calls) == 1
    thread_id, cpu = calls[0]
    assert thread_id == threading.get_native_id()
    assert cpu in CPUS
