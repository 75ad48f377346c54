"""spawn_child: a child started with Popen and reaped through its pidfd (waited for by a thread
in waitid, or in the event loop's epoll where waitid cannot take a pidfd; on kernels without
pidfds, through anyio), seen from the outside: exit codes, signals, cancellation, errors."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from gpusched._daemon import child as child_module
from gpusched._daemon.child import EXIT_WAITERS, Child, PidfdChild, pidfds_work, spawn_child

PY = sys.executable
# (pidfd, how its exit is waited for)
WAYS = [pytest.param((True, "thread"), id="pidfd-waitid-thread"),
        pytest.param((True, "epoll"), id="pidfd-epoll"),
        pytest.param((False, ""), id="anyio")]


@pytest.fixture(params=WAYS)
def pidfd(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether the child is watched through a pidfd; with one, the waiter thread is used or
    not (as on a kernel whose waitid cannot take a pidfd)."""
    use_pidfd, wait = request.param
    if use_pidfd and not pidfds_work():
        pytest.skip("this kernel has no pidfds")
    if wait == "thread" and not child_module._WAITID_PIDFD:
        pytest.skip("this kernel's waitid takes no pidfd")
    monkeypatch.setattr(child_module, "_WAITID_PIDFD", wait == "thread")
    return bool(use_pidfd)


async def start(tmp_path: Path, code: str, pidfd: bool) -> tuple[Child, Path]:
    out_path = tmp_path / "out.log"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        child = await spawn_child([PY, "-c", code], env={"PATH": os.environ["PATH"]},
                                  cwd=tmp_path, stdout=fd, stderr=fd, pidfd=pidfd)
    finally:
        os.close(fd)
    return child, out_path


async def test_exit_code_cwd_and_output(tmp_path: Path, pidfd: bool) -> None:
    child, out = await start(tmp_path, "import os; print(os.getcwd()); raise SystemExit(3)",
                             pidfd)
    assert child.returncode is None or child.returncode == 3
    with anyio.fail_after(10):
        assert await child.wait() == 3
    assert child.returncode == 3
    assert await child.wait() == 3  # again: the same answer
    assert out.read_text() == f"{tmp_path}\n"
    assert isinstance(child, PidfdChild) == pidfd


async def test_killed_by_a_signal_is_a_negative_code_and_own_session(
    tmp_path: Path, pidfd: bool
) -> None:
    code = "import os, time; print(os.getsid(0) == os.getpid(), flush=True); time.sleep(30)"
    child, out = await start(tmp_path, code, pidfd)
    with anyio.fail_after(10):
        while not out.read_text():  # noqa: ASYNC110
            await anyio.sleep(0.01)
    assert out.read_text() == "True\n"  # a new session
    os.kill(child.pid, signal.SIGKILL)
    with anyio.fail_after(10):
        assert await child.wait() == -signal.SIGKILL


async def test_a_cancelled_wait_leaves_the_child_watched(tmp_path: Path, pidfd: bool) -> None:
    child, _ = await start(tmp_path, "import time; time.sleep(0.3)", pidfd)
    with anyio.move_on_after(0.05) as scope:
        await child.wait()
    assert scope.cancelled_caught
    with anyio.fail_after(10):
        assert await child.wait() == 0


async def test_subprocess_never_reaps_a_pidfd_child_behind_its_back(
    tmp_path: Path, pidfd: bool
) -> None:
    """subprocess reaps, at its next Popen, the exited children whose Popen was dropped
    unfinished; ours keeps its Popen, so the exit status still reaches the daemon."""
    if not pidfd:
        pytest.skip("a pidfd child's case")
    child, _ = await start(tmp_path, "pass", True)
    gc.collect()
    deadline = time.monotonic() + 10
    # Without yielding to the loop (whose pidfd reader would reap it first): wait until it is
    # a zombie, then start another Popen, which runs subprocess._cleanup.
    while _state(child.pid) != "Z" and time.monotonic() < deadline:
        time.sleep(0.005)  # noqa: ASYNC251
    subprocess.run([PY, "-c", "pass"], check=True)  # noqa: ASYNC221
    with anyio.fail_after(10):
        assert await child.wait() == 0


def _state(pid: int) -> str:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2]


async def test_a_missing_program_or_workdir_raises(tmp_path: Path, pidfd: bool) -> None:
    with pytest.raises(FileNotFoundError):
        await spawn_child([str(tmp_path / "nope")], env={}, cwd=tmp_path, stdout=1, stderr=2,
                          pidfd=pidfd)
    with pytest.raises(OSError):
        await spawn_child([PY, "-c", "pass"], env={}, cwd=tmp_path / "missing", stdout=1,
                          stderr=2, pidfd=pidfd)


async def test_exit_waiter_threads_are_reused(tmp_path: Path, pidfd: bool) -> None:
    """One waiter thread per child running at the same time, not one per child ever started."""
    if not pidfd or not child_module._WAITID_PIDFD:
        pytest.skip("the waiter threads' case")
    before = EXIT_WAITERS.threads
    for _ in range(4):  # one after the other: the first one's thread waits for the rest
        child, _ = await start(tmp_path, "pass", True)
        with anyio.fail_after(10):
            assert await child.wait() == 0
    assert EXIT_WAITERS.threads <= max(before, 1)
    children = [(await start(tmp_path, "import time; time.sleep(0.2)", True))[0]
                for _ in range(3)]
    with anyio.fail_after(10):
        assert [await c.wait() for c in children] == [0, 0, 0]
    assert EXIT_WAITERS.threads <= max(before, 3)


async def test_reserved_exit_waiter_threads_serve_the_first_children(
    tmp_path: Path, pidfd: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not pidfd or not child_module._WAITID_PIDFD:
        pytest.skip("the waiter threads' case")
    waiters = child_module._ExitWaiters()
    monkeypatch.setattr(child_module, "EXIT_WAITERS", waiters)
    waiters.reserve(2)
    assert (waiters.threads, waiters.idle) == (2, 2)
    waiters.reserve(2)  # enough wait already: none more
    assert waiters.threads == 2
    children = [(await start(tmp_path, "pass", True))[0] for _ in range(2)]
    with anyio.fail_after(10):
        assert [await c.wait() for c in children] == [0, 0]
    assert (waiters.threads, waiters.idle) == (2, 2)  # the reserved threads waited for them
