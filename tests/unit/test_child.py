"""spawn_child: a child started with Popen and reaped through its pidfd (or, on kernels without
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

from gpusched._daemon.child import Child, PidfdChild, pidfds_work, spawn_child

PY = sys.executable
WAYS = [pytest.param(True, id="pidfd"), pytest.param(False, id="anyio")]


async def start(tmp_path: Path, code: str, pidfd: bool) -> tuple[Child, Path]:
    if pidfd and not pidfds_work():
        pytest.skip("this kernel has no pidfds")
    out_path = tmp_path / "out.log"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        child = await spawn_child([PY, "-c", code], env={"PATH": os.environ["PATH"]},
                                  cwd=tmp_path, stdout=fd, stderr=fd, pidfd=pidfd)
    finally:
        os.close(fd)
    return child, out_path


@pytest.mark.parametrize("pidfd", WAYS)
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


@pytest.mark.parametrize("pidfd", WAYS)
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


async def test_a_cancelled_wait_leaves_the_child_watched(tmp_path: Path) -> None:
    child, _ = await start(tmp_path, "import time; time.sleep(0.3)", True)
    with anyio.move_on_after(0.05) as scope:
        await child.wait()
    assert scope.cancelled_caught
    with anyio.fail_after(10):
        assert await child.wait() == 0


async def test_subprocess_never_reaps_a_pidfd_child_behind_its_back(tmp_path: Path) -> None:
    """subprocess reaps, at its next Popen, the exited children whose Popen was dropped
    unfinished; ours keeps its Popen, so the exit status still reaches the daemon."""
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


@pytest.mark.parametrize("pidfd", WAYS)
async def test_a_missing_program_or_workdir_raises(tmp_path: Path, pidfd: bool) -> None:
    if pidfd and not pidfds_work():
        pytest.skip("this kernel has no pidfds")
    with pytest.raises(FileNotFoundError):
        await spawn_child([str(tmp_path / "nope")], env={}, cwd=tmp_path, stdout=1, stderr=2,
                          pidfd=pidfd)
    with pytest.raises(OSError):
        await spawn_child([PY, "-c", "pass"], env={}, cwd=tmp_path / "missing", stdout=1,
                          stderr=2, pidfd=pidfd)
