"""procfs: live members of a session, read from /proc (real child processes, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gpusched._daemon import procfs
from gpusched._daemon.procfs import _parse_stat

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")

SLEEPER = [sys.executable, "-c", "import time; time.sleep(30)"]


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@pytest.fixture
def spawned() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Children started by a test; killed and reaped whatever the test did."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_child_in_its_own_session_is_a_member(spawned: list[subprocess.Popen[bytes]]) -> None:
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(proc)
    members = procfs.session_members()
    # start_new_session makes the child a session leader: its session id is its pid
    assert members[proc.pid] == [proc.pid]
    assert procfs.session_of(proc.pid) == proc.pid
    assert procfs.pids_in_session(proc.pid) == [proc.pid]
    # and this test process is in another session, which the scan also sees
    assert os.getpid() in members[os.getsid(0)]


def test_grandchild_keeps_the_session_alive(spawned: list[subprocess.Popen[bytes]]) -> None:
    # the shell leaves a background sleep behind and exits: the session outlives its leader
    proc = subprocess.Popen(["sh", "-c", "sleep 30 & exit 0"], start_new_session=True)
    spawned.append(proc)
    proc.wait()
    members = procfs.pids_in_session(proc.pid)
    assert len(members) == 1
    assert members[0] != proc.pid
    # a young session's members are found among the pids handed out since its leader alone
    assert procfs.pids_in_session(proc.pid, young=True) == members
    os.kill(members[0], 9)
    _wait_for(lambda: procfs.pids_in_session(proc.pid) == [], "the orphan to die")


def test_a_zombie_counts_as_dead(spawned: list[subprocess.Popen[bytes]]) -> None:
    proc = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(proc)
    proc.kill()  # not reaped: it stays a zombie until wait()

    def is_zombie() -> bool:
        stat = Path(f"/proc/{proc.pid}/stat").read_text()
        return stat[stat.rindex(")") + 2] == "Z"

    _wait_for(is_zombie, "the child to become a zombie")
    assert Path(f"/proc/{proc.pid}").exists()  # still in /proc, yet dead
    assert proc.pid not in procfs.session_members()
    assert procfs.session_of(proc.pid) is None
    assert procfs.pids_in_session(proc.pid) == []


def test_a_command_name_with_spaces_and_parens_parses(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    # a process may rename itself to anything (15 bytes): the parser must split after the last ')'
    code = "import time; open('/proc/self/comm', 'w').write('a) S 1 (b c) '); time.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    spawned.append(proc)
    comm = Path(f"/proc/{proc.pid}/comm")
    _wait_for(lambda: comm.read_text().startswith("a) S 1"), "the child to rename itself")
    assert procfs.session_members()[proc.pid] == [proc.pid]
    assert procfs.session_of(proc.pid) == proc.pid


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("123 (python3) S 1 123 123 0 -1 4194560", ("S", 123)),
        ("77 (a) (b) R 5 70 71 0 -1 0", ("R", 71)),
        ("9 (x) Z 1 2 3 0) Z 1 9 42 0 -1 0", ("Z", 42)),
    ],
)
def test_parse_stat_uses_the_fields_after_the_last_paren(
    line: str, expected: tuple[str, int]
) -> None:
    assert _parse_stat(line) == expected


def test_a_pid_that_does_not_exist_has_no_session() -> None:
    with open("/proc/sys/kernel/pid_max") as f:
        beyond = int(f.read()) + 1  # no process can have this pid
    assert procfs.session_of(beyond) is None


def test_processes_are_found_by_a_variable_of_their_environment(
    spawned: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    mine, other = str(tmp_path / "a"), str(tmp_path / "b")
    env = {**os.environ, "GPUSCHED_TRIAL_DIR": mine}
    proc = subprocess.Popen(SLEEPER, env=env, start_new_session=True)
    spawned.append(proc)
    _wait_for(lambda: procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine]) != {},
              "the child's environment to be readable")
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine, other]) == {mine: [proc.pid]}
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [other]) == {}
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", []) == {}
    proc.kill()
    proc.wait()
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine]) == {}


def test_processes_of_skipped_sessions_are_not_looked_at(
    spawned: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    mine = str(tmp_path / "a")
    env = {**os.environ, "GPUSCHED_TRIAL_DIR": mine}
    proc = subprocess.Popen(SLEEPER, env=env, start_new_session=True)
    spawned.append(proc)
    _wait_for(lambda: procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine]) != {},
              "the child's environment to be readable")
    # Its session (its own pid) is skipped: not found, though its environment matches.
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine],
                                     skip_sessions={proc.pid}) == {}
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [mine], created_since=proc.pid,
                                     skip_sessions={os.getsid(0)}) == {mine: [proc.pid]}


def test_a_session_scan_since_a_pid_skips_older_sessions(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    older = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(older)
    newer = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(newer)
    both = {older.pid, newer.pid}
    assert set(procfs.session_members(both)) == both
    assert procfs.session_members(both, created_since=newer.pid) == {newer.pid: [newer.pid]}


def test_created_since_looks_only_at_processes_created_after_a_pid(
    spawned: list[subprocess.Popen[bytes]], tmp_path: Path,
) -> None:
    value = str(tmp_path / "t")
    env = {**os.environ, "GPUSCHED_TRIAL_DIR": value}
    older = subprocess.Popen(SLEEPER, env=env)
    spawned.append(older)
    newer = subprocess.Popen(SLEEPER, env=env)
    spawned.append(newer)
    _wait_for(lambda: len(procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [value])
                          .get(value, [])) == 2, "both environments to be readable")
    since_newer = procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [value],
                                            created_since=newer.pid)
    assert since_newer == {value: [newer.pid]}
    since_older = procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [value],
                                            created_since=older.pid)
    assert since_older == {value: sorted([older.pid, newer.pid])}


THREADED = [sys.executable, "-c", "import threading, time\n"
            "for _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True)"
            ".start()\nprint('ready', flush=True)\ntime.sleep(60)"]


@pytest.mark.parametrize("probe_span", [procfs.PROBE_SPAN, 0], ids=["probed", "listed"])
def test_threads_are_not_counted_as_processes(
    spawned: list[subprocess.Popen[bytes]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    probe_span: int,
) -> None:
    # Threads take pids from the same counter, and /proc/<tid> answers for them: a scan of
    # the pids handed out since a leader must still list only processes (signalling a
    # thread's id would signal its whole process a second time).
    monkeypatch.setattr(procfs, "PROBE_SPAN", probe_span)
    value = str(tmp_path / "t")
    proc = subprocess.Popen(THREADED, env={**os.environ, "GPUSCHED_TRIAL_DIR": value},
                            stdout=subprocess.PIPE, start_new_session=True)
    spawned.append(proc)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    tids = {int(t) for t in os.listdir(f"/proc/{proc.pid}/task")}
    assert len(tids) == 4  # the threads' ids follow the leader's
    assert procfs.session_members({proc.pid}, created_since=proc.pid) == {proc.pid: [proc.pid]}
    assert procfs.processes_with_env("GPUSCHED_TRIAL_DIR", [value], created_since=proc.pid) \
        == {value: [proc.pid]}


def test_a_probe_is_reused_until_a_pid_is_handed_out(
    spawned: list[subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # After a trial, its two checks and the release barrier look at the same pids: while the
    # kernel hands out no pid, the processes among them are the ones the last probe found.
    first = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(first)
    probed: list[int] = []
    real = procfs._is_process

    def counting(pid: int) -> bool:
        probed.append(pid)
        return real(pid)

    monkeypatch.setattr(procfs, "_is_process", counting)
    monkeypatch.setattr(procfs, "_pids_since", lambda pid: (0, 2**22))  # nothing new since
    monkeypatch.setattr(procfs, "_last_probe", None)
    assert procfs.pids_in_session(first.pid, young=True) == [first.pid]
    assert probed == [first.pid]
    assert procfs.pids_in_session(first.pid, young=True) == [first.pid]
    assert probed == [first.pid]  # not probed again
    first.kill()
    first.wait()
    assert procfs.pids_in_session(first.pid, young=True) == []  # gone: callers check


def test_a_new_process_is_seen_though_a_probe_was_kept(
    spawned: list[subprocess.Popen[bytes]],
) -> None:
    leader = subprocess.Popen(SLEEPER, start_new_session=True)
    spawned.append(leader)
    assert procfs.session_members(None, created_since=leader.pid)[leader.pid] == [leader.pid]
    child = subprocess.Popen(SLEEPER, start_new_session=True)  # a pid handed out since
    spawned.append(child)
    found = procfs.session_members(None, created_since=leader.pid)
    assert found[leader.pid] == [leader.pid] and found[child.pid] == [child.pid]
