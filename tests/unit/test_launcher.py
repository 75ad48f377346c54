"""The launcher (SPEC 4): trial command line, whole environment, and stopping real processes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from gpusched._daemon.launcher import (
    BASE_ENV_KEYS,
    TrialFiles,
    TrialProcess,
    _open_log,
    spawn_trial,
    trial_command,
    trial_environment,
)

PY = sys.executable
UUIDS = ["GPU-11111111-2222-3333-4444-555555555555", "MIG-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"]

# --- the command line -----------------------------------------------------------------------


def test_each_param_becomes_one_flag_in_order() -> None:
    argv = trial_command(["python", "train.py", "--epochs", "3"],
                         {"lr": 0.001, "layers": 2, "opt": "adam"})
    assert argv == ["python", "train.py", "--epochs", "3", "--lr=0.001", "--layers=2",
                    "--opt=adam"]


def test_floats_keep_their_full_precision() -> None:
    argv = trial_command(["t"], {"a": 0.1 + 0.2, "b": 1e-5, "c": 3.0, "d": 1 / 3})
    assert argv == ["t", "--a=0.30000000000000004", "--b=1e-05", "--c=3.0",
                    "--d=0.3333333333333333"]
    assert [float(x.split("=")[1]) for x in argv[1:]] == [0.1 + 0.2, 1e-5, 3.0, 1 / 3]


def test_no_params_leaves_the_command_alone() -> None:
    assert trial_command(("a", "b"), {}) == ["a", "b"]


# --- the environment ------------------------------------------------------------------------


def environment(tmp_path: Path, *, uuids: list[str] | None = None,
                daemon_env: dict[str, str] | None = None,
                experiment_env: dict[str, str] | None = None) -> tuple[dict[str, str],
                                                                       TrialFiles]:
    files = TrialFiles(tmp_path / "e3" / "7")
    env = trial_environment(
        daemon_env=daemon_env if daemon_env is not None else {
            "PATH": "/usr/bin:/bin", "HOME": "/home/u", "LANG": "C.UTF-8",
            "SECRET_TOKEN": "hunter2", "AWS_SECRET_ACCESS_KEY": "x",
            "CUDA_VISIBLE_DEVICES": "0,1,2,3", "GPUSCHED_SOCKET": "/run/x.sock",
        },
        experiment_env=experiment_env if experiment_env is not None else {
            "OMP_NUM_THREADS": "2"},
        experiment_id="e3", number=7, params={"lr": 0.01, "opt": "adam"}, files=files,
        uuids=UUIDS if uuids is None else uuids, metric="val_accuracy",
    )
    return env, files


def test_only_allow_listed_daemon_variables_pass(tmp_path: Path) -> None:
    env, _ = environment(tmp_path)
    assert env["PATH"] == "/usr/bin:/bin"
    assert env["HOME"] == "/home/u"
    assert env["LANG"] == "C.UTF-8"
    for secret in ("SECRET_TOKEN", "AWS_SECRET_ACCESS_KEY", "GPUSCHED_SOCKET"):
        assert secret not in env
    assert set(BASE_ENV_KEYS) >= {"PATH", "HOME"}
    assert not any("SECRET" in k for k in BASE_ENV_KEYS)


def test_cuda_visible_devices_is_the_comma_joined_uuids(tmp_path: Path) -> None:
    env, _ = environment(tmp_path)
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(UUIDS)  # not the daemon's "0,1,2,3"
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"


def test_a_cpu_trial_sees_no_gpu(tmp_path: Path) -> None:
    env, _ = environment(tmp_path, uuids=[])
    assert env["CUDA_VISIBLE_DEVICES"] == ""


def test_every_trial_variable_of_the_spec(tmp_path: Path) -> None:
    env, files = environment(tmp_path)
    trial_dir = tmp_path / "e3" / "7"
    assert env["GPUSCHED_EXPERIMENT"] == "e3"
    assert env["GPUSCHED_TRIAL"] == "7"
    assert env["GPUSCHED_ATTEMPT"] == "1"
    assert env["GPUSCHED_TRIAL_DIR"] == str(trial_dir)
    assert json.loads(env["GPUSCHED_PARAMS"]) == {"lr": 0.01, "opt": "adam"}
    assert Path(env["GPUSCHED_REPORT_FILE"]).parent == trial_dir
    assert env["GPUSCHED_REPORT_FILE"] == str(files.reports)
    assert Path(env["GPUSCHED_CHECKPOINT_DIR"]).is_relative_to(trial_dir)
    assert env["GPUSCHED_CHECKPOINT_DIR"] == str(files.checkpoints)
    assert Path(env["CLOUD_ML_HP_METRIC_FILE"]).is_relative_to(trial_dir)
    assert env["CLOUD_ML_HP_METRIC_FILE"] == str(files.hypertune)
    assert env["CLOUD_ML_HP_METRIC_TAG"] == "val_accuracy"
    assert env["CLOUD_ML_TRIAL_ID"] == "7"
    # AI Platform's trainers (Google's samples) write to job_dir/TF_CONFIG's task.trial: with
    # none, every trial wrote one folder. No cluster: TensorFlow's local single worker.
    assert json.loads(env["TF_CONFIG"]) == {"task": {"trial": "7"}}
    # Vertex AI's trainers save where AIP_* say: folders of the trial's that exist.
    assert env["AIP_MODEL_DIR"] == env["AIP_TENSORBOARD_LOG_DIR"] == str(trial_dir)
    assert env["AIP_CHECKPOINT_DIR"] == str(files.checkpoints)
    # The trial's files are distinct from each other.
    paths = [files.stdout, files.stderr, files.reports, files.hypertune, files.checkpoints]
    assert len(set(paths)) == len(paths)


def test_the_experiment_env_is_applied_but_cannot_override_trial_variables(
    tmp_path: Path
) -> None:
    env, _ = environment(tmp_path, experiment_env={
        "OMP_NUM_THREADS": "2", "PATH": "/opt/bin", "CUDA_VISIBLE_DEVICES": "0",
        "GPUSCHED_TRIAL": "99"})
    assert env["OMP_NUM_THREADS"] == "2"
    assert env["PATH"] == "/opt/bin"
    assert env["CUDA_VISIBLE_DEVICES"] == ",".join(UUIDS)
    assert env["GPUSCHED_TRIAL"] == "7"
    own = '{"cluster": {"worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}'
    assert environment(tmp_path, experiment_env={"TF_CONFIG": own})[0]["TF_CONFIG"] == own


def test_nothing_else_is_in_the_environment(tmp_path: Path) -> None:
    env, _ = environment(tmp_path, daemon_env={"PATH": "/bin", "FOO": "1"}, experiment_env={})
    extra = set(env) - {"PATH", "PYTHONUNBUFFERED", "TF_CONFIG", "AIP_MODEL_DIR",
                        "AIP_TENSORBOARD_LOG_DIR", "AIP_CHECKPOINT_DIR"}
    assert all(k.startswith(("GPUSCHED_", "CLOUD_ML_", "CUDA_")) for k in extra), extra


# --- real processes -------------------------------------------------------------------------


def live(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


async def wait_file(path: Path) -> str:
    """The text of ``path`` once a line has been written to it (give up after 5 s)."""
    with anyio.fail_after(5):
        while True:
            if path.exists() and path.read_text().endswith("\n"):
                return path.read_text()
            await anyio.sleep(0.005)


@contextlib.asynccontextmanager
async def trial_dir(tmp_path: Path) -> AsyncIterator[TrialFiles]:
    files = TrialFiles(tmp_path / "trial")
    files.create()
    yield files


@contextlib.asynccontextmanager
async def started(argv: list[str], files: TrialFiles, cwd: Path | None = None,
                  env: dict[str, str] | None = None) -> AsyncIterator[TrialProcess]:
    env = env if env is not None else {"PATH": os.environ["PATH"], "PYTHONUNBUFFERED": "1"}
    proc = await spawn_trial(argv, env=env, cwd=cwd or files.dir, files=files)
    try:
        yield proc
    finally:  # whatever happened in the test, leave nothing running
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with anyio.move_on_after(5):
            await proc.wait()


async def test_a_trial_gets_its_env_cwd_and_log_files(tmp_path: Path) -> None:
    async with trial_dir(tmp_path) as files:
        script = ("import os, sys; print(os.getcwd()); print(sorted(os.environ));"
                  " print('oops', file=sys.stderr); print(os.getsid(0) == os.getpid())")
        env = {"PATH": os.environ["PATH"], "ONLY_THIS": "1"}
        async with started([PY, "-c", script], files, cwd=tmp_path, env=env) as proc:
            assert await proc.wait() == 0
    out = files.stdout.read_text().splitlines()
    assert out[0] == str(tmp_path)
    assert "ONLY_THIS" in out[1]
    assert "HOME" not in out[1]  # the environment is the one given, whole
    assert out[2] == "True"  # its own session
    assert files.stderr.read_text() == "oops\n"
    assert "returncode=0" in repr(proc)


async def test_stop_sends_sigterm_first(tmp_path: Path) -> None:
    # The handler ignores a repeated SIGTERM (see test_found_bugs: the leader gets two).
    script = ("import signal, sys, time\n"
              "def on_term(*a):\n"
              "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "    print('term', flush=True)\n"
              "    time.sleep(0.1)\n"
              "    sys.exit(3)\n"
              "signal.signal(signal.SIGTERM, on_term)\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    async with trial_dir(tmp_path) as files, started([PY, "-c", script], files) as proc:
        await wait_file(files.stdout)
        await proc.stop(5.0)
        assert await proc.wait() == 3
    assert files.stdout.read_text() == "ready\nterm\n"


async def test_a_trial_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    script = ("import signal, time\n"
              "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              "print('ready', flush=True)\n"
              "time.sleep(30)\n")
    grace = 0.3
    async with trial_dir(tmp_path) as files, started([PY, "-c", script], files) as proc:
        await wait_file(files.stdout)
        t0 = time.monotonic()
        with anyio.fail_after(5):
            await proc.stop(grace)
        elapsed = time.monotonic() - t0
        assert await proc.wait() == -signal.SIGKILL
        assert elapsed >= grace
        assert not live(proc.pid)


GRANDCHILD = """
import signal, subprocess, sys, time
code = "import signal, time; {ignore} print('up', flush=True); time.sleep(30)"
child = subprocess.Popen([sys.executable, "-c", code], process_group=0,
                         stdout=subprocess.PIPE, text=True)
child.stdout.readline()
print(child.pid, flush=True)
time.sleep(30)
"""


@pytest.mark.parametrize("ignore_term", [False, True])
async def test_a_grandchild_in_its_own_process_group_is_stopped_too(
    tmp_path: Path, ignore_term: bool
) -> None:
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN);" if ignore_term else ""
    script = GRANDCHILD.format(ignore=ignore)
    async with trial_dir(tmp_path) as files, started([PY, "-c", script], files) as proc:
        grandchild = int(await wait_file(files.stdout))
        try:
            assert os.getpgid(grandchild) == grandchild  # it left the trial's process group
            assert os.getpgid(grandchild) != proc.pid
            assert os.getsid(grandchild) == proc.pid  # but not the session
            with anyio.fail_after(5):
                await proc.stop(0.3)
            assert not live(grandchild)
            assert not live(proc.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)


async def test_stopping_an_ended_trial_returns_at_once(tmp_path: Path) -> None:
    async with trial_dir(tmp_path) as files, started([PY, "-c", "pass"], files) as proc:
        assert await proc.wait() == 0
        with anyio.fail_after(1):
            await proc.stop(30.0)
        await proc.wait_session_gone()


async def test_the_leader_exiting_does_not_end_the_trial_while_a_child_lives(
    tmp_path: Path
) -> None:
    script = ("import subprocess, sys\n"
              "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
              "print(c.pid, flush=True)\n")
    async with trial_dir(tmp_path) as files, started([PY, "-c", script], files) as proc:
        child = int(await wait_file(files.stdout))
        try:
            assert await proc.wait() == 0
            with anyio.move_on_after(0.1) as scope:
                await proc.wait_session_gone()
            assert scope.cancelled_caught  # the orphan still lives in the session
            with anyio.fail_after(5):
                await proc.stop(0.5)
            assert not live(child)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)


async def test_a_missing_command_raises_file_not_found(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "trial")
    files.create()
    with pytest.raises(FileNotFoundError):
        await spawn_trial([str(tmp_path / "no-such-trainer")], env={"PATH": "/bin"},
                          cwd=tmp_path, files=files)


async def test_a_missing_workdir_raises_os_error(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "trial")
    files.create()
    with pytest.raises(OSError):
        await spawn_trial([PY, "-c", "pass"], env={"PATH": "/bin"},
                          cwd=tmp_path / "missing", files=files)


def test_trial_files_create_makes_the_checkpoint_folder(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "a" / "b")
    files.create()
    files.create()  # again on a retry: no error
    assert files.checkpoints.is_dir()
    assert files.checkpoints.parent == files.dir


# Regression: killpg and then os.kill of every session member sent the group's own
# members each signal twice.
COUNT_TERMS = """
import os, signal, time
# Python runs a handler once for signals that arrive before it gets to run; the wakeup fd gets
# one byte per delivery, so it counts every SIGTERM that reached the process.
r, w = os.pipe()
os.set_blocking(r, False)
os.set_blocking(w, False)
signal.set_wakeup_fd(w)
signal.signal(signal.SIGTERM, lambda *args: None)
print("ready", flush=True)
got = b""
while not got:
    time.sleep(0.005)
    try:
        got = os.read(r, 64)
    except BlockingIOError:
        pass
time.sleep(0.1)  # a checkpoint being saved
try:
    got += os.read(r, 64)
except BlockingIOError:
    pass
print("terms", got.count(signal.SIGTERM), flush=True)
"""


async def stop_and_count(trial_dir: Path) -> tuple[int, list[str]]:
    """Start COUNT_TERMS, stop it; its exit code and what it printed."""
    files = TrialFiles(trial_dir)
    files.create()
    proc = await spawn_trial([sys.executable, "-c", COUNT_TERMS],
                             env={"PATH": os.environ["PATH"]}, cwd=trial_dir, files=files)
    try:
        with anyio.fail_after(5):
            while "ready" not in files.stdout.read_text():  # noqa: ASYNC110
                await anyio.sleep(0.005)
            await proc.stop(5.0)
            return await proc.wait(), files.stdout.read_text().splitlines()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


async def test_stop_sends_sigterm_once_to_each_process(tmp_path: Path) -> None:
    """TrialProcess.signal_all signals the group (``killpg``), then every session member.

    Every process of the trial's process group is in its session too, so the leader (and each
    child that stayed in the group) gets SIGTERM twice. A trainer whose SIGTERM handler saves
    a checkpoint is interrupted by its own handler; one that exits from the handler is often
    killed by the second SIGTERM once Python's finalisation has restored the default action,
    so a clean exit is recorded as "killed by signal 15" (SPEC 4: SIGTERM, a grace, SIGKILL).
    Signal the group, then only the session members outside it.

    The kernel merges two SIGTERMs that both land before the process runs again, so one stop
    can show one signal by luck; four in a row make such a pass unlikely.
    """
    results = [await stop_and_count(tmp_path / str(i)) for i in range(4)]
    assert results == [(0, ["ready", "terms 1"])] * 4


def test_creating_the_folders_says_whether_the_trial_folder_is_new(tmp_path: Path) -> None:
    # New: no report file can be in it yet, and reading starts at its beginning without a look.
    first = TrialFiles(tmp_path / "trials" / "e1" / "0")  # the folders above it are made too
    assert first.create() is True
    assert first.dir.is_dir() and first.checkpoints.is_dir()
    assert TrialFiles(tmp_path / "trials" / "e1" / "1").create() is True
    first.reports.write_text('{"score": 1}\n')
    assert TrialFiles(first.dir).create() is False  # a retry: the earlier attempt's folder
    assert first.reports.read_text() == '{"score": 1}\n'


# --- a fresh trial's logs ----------------------------------------------------------------------


def _counting(monkeypatch: pytest.MonkeyPatch, *names: str) -> list[str]:
    """The names of ``os`` functions among ``names`` called from now on, in order."""
    called: list[str] = []
    for name in names:
        real = getattr(os, name)

        def counted(*args: object, _real: object = real, _name: str = name) -> object:
            called.append(_name)
            return _real(*args)  # type: ignore[operator]

        monkeypatch.setattr(os, name, counted)
    return called


def test_a_fresh_folders_log_is_opened_without_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The checks against a planted FIFO or link cost a fresh trial's log three more system
    # calls (fstat, two fcntl) on every short trial's path, in a folder the daemon made just
    # now, where nothing can be planted.
    files = TrialFiles(tmp_path / "e1" / "0", umask=0o077)
    assert files.create()
    called = _counting(monkeypatch, "fstat", "set_blocking")
    os.close(_open_log(files.stdout, None, files.log_mode, exact=True, fresh=True))
    assert called == []
    assert files.stdout.stat().st_mode & 0o777 == 0o600
    # Not fresh (a retry's folder): the checks, as before.
    os.close(_open_log(files.stdout, None, files.log_mode, exact=True))
    assert called == ["fstat", "set_blocking"]


def test_something_in_a_fresh_folder_after_all_takes_the_checks(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "e1" / "0")
    assert files.create()
    os.mkfifo(files.stderr)
    with pytest.raises(OSError, match="is a FIFO, not a regular file"):
        _open_log(files.stderr, None, fresh=True)
