"""A root daemon's trial of another user cannot turn the daemon's rights against it: a FIFO or
a hard link planted in place of its log neither hangs the daemon nor gets written and handed
over (launcher._open_log), and its workdir is entered with that user's rights, not root's
(launcher.TRAMPOLINE).

Needs root and a real second user (test_users.py's fixtures); skipped otherwise.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from gpusched._daemon import launcher
from gpusched._daemon.identity import trial_identity
from gpusched._daemon.launcher import DEFAULT_PATH, TrialFiles, _open_log, spawn_trial
from gpusched._daemon.trial_runner import cannot_start_reason
from gpusched.client import Client
from gpusched.errors import NotFoundError
from tests.integration.harness import TERMINAL, Daemon, running_daemon, stop_daemon, wait_for
from tests.integration.test_gpus import records
from tests.integration.test_users import (  # fixtures: a real second user, a folder it reaches
    GROUP,
    as_user,
    interpreter_for,
    needs_root,
    open_daemon_dir,
    other_user,
    shared_probe,
    shared_tmp,
    submit_as,
)

__all__ = ["other_user", "shared_tmp"]  # pytest finds the fixtures through these names

pytestmark = needs_root

# Attempt 1 says it runs, waits (60 s at most) for the test to plant something in its folder,
# then fails: the daemon opens its logs again for attempt 2 (max_retries_per_trial: 1).
_WAIT_FOR_PLANT = """#!/bin/sh
if [ "$GPUSCHED_ATTEMPT" = 1 ]; then
  : > "$GPUSCHED_TRIAL_DIR/waiting"
  i=0
  while [ ! -e "$GPUSCHED_TRIAL_DIR/go" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
  exit 1
fi
echo '{"score": 1}' >> "$GPUSCHED_REPORT_FILE"
"""
SECRET = "root-only-secret-4242"


def _trial_view(client: Client, key: str) -> dict[str, Any] | None:
    try:
        return client.show(key)
    except NotFoundError:  # not made yet
        return None


def _ended(client: Client, key: str) -> dict[str, Any] | None:
    view = _trial_view(client, key)
    return view if view is not None and view["state"] in TERMINAL else None


def _quick_client(d: Daemon) -> Client:
    """A client that gives up after 10 s: a daemon that stopped answering fails the test."""
    return Client(d.socket, timeout_s=10)


def _second_attempt_after(plant: Callable[[Path], None], tmp: Path, user: str,
                          ) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Run a trial of ``user`` whose first attempt fails once ``plant`` (given its folder) has
    put something in its folder; the trial's and the experiment's views once it ended, and its
    folder. The daemon must answer ``ls`` after it, and stop on SIGTERM."""
    script = tmp / "plant.sh"
    script.write_text(_WAIT_FOR_PLANT)
    script.chmod(0o755)
    experiment = shared_probe(tmp, user, max_trials=1, max_retries_per_trial=1,
                              command=[str(script)], name="planted")
    with running_daemon(tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        client = _quick_client(d)
        exp = submit_as(user, d, experiment)
        view = wait_for(lambda: _trial_view(client, f"{exp}/0"), 30, "its trial")
        trial_dir = Path(view["dir"])
        wait_for((trial_dir / "waiting").exists, 30, "its first attempt")
        plant(trial_dir)
        (trial_dir / "go").touch()
        trial = wait_for(lambda: _ended(client, f"{exp}/0"), 30, "the trial to end")
        listing = as_user(user, d, "ls")
        assert listing.returncode == 0, listing.stderr
        assert exp in listing.stdout
        experiment_view = client.show(exp)
        assert stop_daemon(d.proc, timeout_s=20) == 0  # not killed: it stopped on SIGTERM
    return trial, experiment_view, trial_dir


def _plant_fifo(name: str, owner: str) -> Callable[[Path], None]:
    def plant(trial_dir: Path) -> None:
        entry = pwd.getpwnam(owner)
        (trial_dir / name).unlink()
        os.mkfifo(trial_dir / name)
        os.chown(trial_dir / name, entry.pw_uid, entry.pw_gid)  # the user's, as theirs would be
    return plant


@pytest.mark.parametrize("name", ["stdout.log", "stderr.log"])
def test_a_fifo_in_place_of_a_log_fails_the_trial_and_leaves_the_daemon_answering(
    shared_tmp: Path, other_user: str, name: str,
) -> None:
    trial, experiment, trial_dir = _second_attempt_after(
        _plant_fifo(name, other_user), shared_tmp, other_user)
    assert trial["state"] == "failed"
    assert f"{trial_dir / name} is a FIFO, not a regular file: remove it" in trial["reason"]
    assert experiment["state"] == "failed"


def test_a_fifo_with_a_reader_is_refused_too(shared_tmp: Path, other_user: str) -> None:
    """With a reader, opening it does not wait: what is there is looked at once open."""
    readers: list[int] = []

    def plant(trial_dir: Path) -> None:
        _plant_fifo("stderr.log", other_user)(trial_dir)
        readers.append(os.open(trial_dir / "stderr.log", os.O_RDONLY | os.O_NONBLOCK))

    try:
        trial, _, trial_dir = _second_attempt_after(plant, shared_tmp, other_user)
    finally:
        for fd in readers:
            os.close(fd)
    assert trial["state"] == "failed"
    assert f"{trial_dir / 'stderr.log'} is a FIFO, not a regular file: remove it" in \
        trial["reason"]


def test_a_hard_link_in_place_of_a_log_is_neither_written_nor_given_away(
    shared_tmp: Path, other_user: str,
) -> None:
    """A second name of a root-owned file (where fs.protected_hardlinks is off a user can make
    one; here root plants it) is refused before the daemon hands the log to the user."""
    precious = shared_tmp / "root-owned.txt"
    precious.write_text("root's own\n")
    precious.chmod(0o644)

    def plant(trial_dir: Path) -> None:
        (trial_dir / "stderr.log").unlink()
        os.link(precious, trial_dir / "stderr.log")

    trial, _, trial_dir = _second_attempt_after(plant, shared_tmp, other_user)
    assert trial["state"] == "failed"
    assert (f"{trial_dir / 'stderr.log'}: it has 2 names (a hard link), and the trial runs as"
            " another user: remove it") in trial["reason"]
    assert os.stat(precious).st_uid == 0
    assert precious.read_text() == "root's own\n"


def test_the_daemons_own_trial_log_being_a_fifo_is_refused_without_waiting(
    tmp_path: Path,
) -> None:
    """A per-user daemon (no owner) does not wait on a FIFO either: it is its own event loop."""
    fifo = tmp_path / "stdout.log"
    os.mkfifo(fifo)
    outcome: list[BaseException | int] = []

    def open_it() -> None:
        try:
            outcome.append(_open_log(fifo, None))
        except OSError as exc:
            outcome.append(exc)

    opener = threading.Thread(target=open_it, daemon=True)
    opener.start()
    opener.join(10)
    if opener.is_alive():  # blocked in open(): a reader lets it go, then fail
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
        opener.join(10)
        pytest.fail("opening a FIFO log blocked")
    [result] = outcome
    assert isinstance(result, OSError), result
    assert result.strerror == f"{fifo} is a FIFO, not a regular file: remove it"


# The workdir ------------------------------------------------------------------------------------

@pytest.fixture
def hidden_dir() -> Iterator[Path]:
    """``/tmp/X`` (root's, 0700) / ``a "b" \\ c`` (0755) / ``secret.txt`` (0644): a file no
    other user can reach, as in another user's 0700 home folder (the odd name: the reason,
    written by a shell, is JSON all the same)."""
    top = Path(tempfile.mkdtemp(prefix="gs-hidden-"))
    top.chmod(0o700)
    sub = top / 'a "b" \\ c'
    sub.mkdir()
    sub.chmod(0o755)
    (sub / "secret.txt").write_text(SECRET + "\n")
    (sub / "secret.txt").chmod(0o644)
    yield sub
    shutil.rmtree(top, ignore_errors=True)


def _run_one(tmp: Path, user: str, experiment: dict[str, Any]
             ) -> tuple[dict[str, Any], dict[str, Any], Path]:
    """Submit ``experiment`` as ``user``; its first trial's view once ended, the experiment's
    view, the trial's folder."""
    with running_daemon(tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        client = _quick_client(d)
        exp = submit_as(user, d, experiment)
        trial = wait_for(lambda: _ended(client, f"{exp}/0"), 30, "the trial to end")
        return trial, client.show(exp), Path(trial["dir"])


def test_a_workdir_its_user_cannot_reach_is_not_entered(
    shared_tmp: Path, other_user: str, hidden_dir: Path,
) -> None:
    """Entered as root, then dropped to the user, the trial read secret.txt by a relative path
    (the reviewer's finding); now it does not start, and says why, without a retry."""
    denied = subprocess.run(["cat", str(hidden_dir / "secret.txt")], user=other_user,
                            capture_output=True, timeout=30, check=False)
    assert denied.returncode != 0  # the user really cannot read it by its path
    peek = shared_tmp / "peek.py"
    peek.write_text("print(open('secret.txt').read(), flush=True)\n")
    peek.chmod(0o644)
    experiment = shared_probe(shared_tmp, other_user, max_trials=1, max_retries_per_trial=2,
                              command=[interpreter_for(other_user), str(peek)],
                              workdir=str(hidden_dir))
    trial, exp, trial_dir = _run_one(shared_tmp, other_user, experiment)
    said = (f"cannot enter the workdir {hidden_dir} as {other_user}: it does not exist, or"
            f" {other_user} may not reach it (a trial runs with its submitter's rights only):"
            f" open it to {other_user}, or submit again with another workdir")
    assert trial["state"] == "failed"
    assert trial["reason"] == f"{said} (exited with code 125)"
    assert exp["state"] == "failed"
    assert SECRET not in (trial_dir / "stdout.log").read_text()
    assert (trial_dir / "stderr.log").read_text() == f"gpusched: {said}\n"
    assert trial["attempts"] == 1  # a status line: not retried, as a command that cannot start


def test_a_command_its_user_cannot_find_says_so_and_is_not_retried(
    shared_tmp: Path, other_user: str,
) -> None:
    experiment = shared_probe(shared_tmp, other_user, max_trials=1, max_retries_per_trial=2,
                              command=["gpusched-no-such-program"])
    trial, _, _ = _run_one(shared_tmp, other_user, experiment)
    assert trial["state"] == "failed"
    assert trial["reason"].startswith(
        f"cannot start 'gpusched-no-such-program' in {shared_tmp}: not found on the PATH of a"
        f" trial run as another user ({DEFAULT_PATH})")
    assert "give its full path in command" in trial["reason"]
    assert trial["attempts"] == 1


def test_another_users_trial_in_a_reachable_workdir_runs_there_with_its_own_environment(
    shared_tmp: Path, other_user: str,
) -> None:
    """Through a link to the workdir, with its command a bare name on its experiment's PATH:
    it runs as the trial's own process, in the physical folder, with exactly the environment
    the daemon built (nothing of the shell that entered the folder)."""
    work = shared_tmp / "work"
    work.mkdir(mode=0o755)
    (shared_tmp / "via-link").symlink_to(work)
    interpreter = Path(interpreter_for(other_user))
    experiment = shared_probe(
        shared_tmp, other_user, max_trials=1, workdir=str(shared_tmp / "via-link"),
        env={"PATH": f"{interpreter.parent}:{DEFAULT_PATH}"},
        command=[interpreter.name, str(shared_tmp / "probe.py"), "--out",
                 str(shared_tmp / "out")])
    trial, _, _ = _run_one(shared_tmp, other_user, experiment)
    assert trial["state"] == "completed", trial["reason"]
    [seen] = records(shared_tmp / "out")
    assert seen["cwd"] == str(work.resolve())
    assert seen["uid"] == pwd.getpwnam(other_user).pw_uid
    assert seen["pid"] == trial["pid"]  # the trampoline exec'd the command: one process
    assert seen["argv"][:2] == ["--out", str(shared_tmp / "out")]
    assert not {"PWD", "OLDPWD", "SHLVL"} & set(seen["environ"])
    assert seen["environ"]["PATH"] == f"{interpreter.parent}:{DEFAULT_PATH}"


def test_without_the_trampoline_shell_another_users_trial_does_not_start(
    shared_tmp: Path, other_user: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No falling back to entering the workdir as root: the trial cannot start, and says
    why."""
    monkeypatch.setattr(launcher, "TRAMPOLINE_SHELL", str(shared_tmp / "no-sh"))
    run_as = trial_identity(pwd.getpwnam(other_user).pw_uid)
    assert run_as is not None
    files = TrialFiles(shared_tmp / "e1" / "0")
    files.create(run_as)

    async def start() -> None:
        with anyio.fail_after(20):
            await spawn_trial(["train.py"], env={"PATH": DEFAULT_PATH}, cwd=shared_tmp,
                              files=files, run_as=run_as)

    with pytest.raises(OSError) as raised:
        anyio.run(start)
    reason = cannot_start_reason("train.py", str(shared_tmp), raised.value,
                                 env={"PATH": DEFAULT_PATH}, other_user=True)
    assert reason == (
        f"cannot start 'train.py' in {shared_tmp}: {shared_tmp / 'no-sh'}: No such file or"
        " directory: a root daemon starts another user's trial through it (to enter workdir"
        f" with that user's rights): restore {shared_tmp / 'no-sh'}")

