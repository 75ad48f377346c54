"""A trial's files follow its submitter's umask, not the daemon's: ``gpusched submit`` sends the
caller's umask, the experiment keeps it (in the trial log, across a restart and a resume), and
its trials' folders, logs and processes get it. And a root daemon checks another user's
``workdir`` at submit with that user's rights, not root's.

Some tests need root and a real second user (test_users.py's fixtures); the others run as any
user (the daemon's own user submitting, as to a per-user daemon).
"""

from __future__ import annotations

import os
import pwd
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpusched import _umask
from gpusched._daemon import launcher
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.store import MIGRATIONS, SCHEMA_VERSION, open_store
from gpusched._umask import process_umask
from gpusched.client import Client
from gpusched.errors import NotFoundError, RequestError
from tests.integration import test_users as users_tests
from tests.integration.harness import Daemon, running_daemon, wait_for
from tests.integration.test_gpus import probe_experiment
from tests.integration.test_users import (
    GROUP,
    as_user,
    needs_root,
    open_daemon_dir,
    shared_probe,
    submit_as,
)
from tests.integration.test_users_privacy import umask

# test_users' fixtures: a real second user in the socket's group, a folder it can reach.
other_user = users_tests.other_user
shared_tmp = users_tests.shared_tmp

# A trial's own files: its folder, its checkpoint folder, the logs the daemon makes, and the
# report file the trial itself makes (probe.py, hold.sh).
FOLDERS = (".", "checkpoint")
FILES = ("stdout.log", "stderr.log", "reports.jsonl")
# A trial that waits while the file given as its first argument is there, then reports.
HOLD = """#!/bin/sh
while [ -e "$1" ]; do sleep 0.05; done
echo '{"score": 1}' >> "$GPUSCHED_REPORT_FILE"
"""


def modes(trial_dir: Path) -> dict[str, int]:
    """The permission bits of a trial's folders and files."""
    return {name: stat.S_IMODE(os.stat(trial_dir / name).st_mode) for name in FOLDERS + FILES}


def expected(folder: int, file: int) -> dict[str, int]:
    return {**dict.fromkeys(FOLDERS, folder), **dict.fromkeys(FILES, file)}


def trial_dir(d: Daemon, exp: str, number: int = 0) -> Path:
    return Path(d.client.show(f"{exp}/{number}")["dir"])


def _state(client: Client, key: str) -> str | None:
    try:
        return str(client.show(key)["state"])
    except NotFoundError:  # not made yet
        return None


def held_experiment(tmp: Path, hold: Path, **overrides: Any) -> dict[str, Any]:
    """Two trials, one at a time, each waiting while ``hold`` is there."""
    script = tmp / "hold.sh"
    script.write_text(HOLD)
    script.chmod(0o755)
    return {"command": [str(script), str(hold)], "metric": "score", "max_trials": 2,
            "max_parallel_trials": 1, "params": [{"name": "x", "type": "double", "min": 0.0,
                                                  "max": 1.0}], **overrides}


# --- the daemon's own user (as with a per-user daemon) ----------------------------------------


@pytest.mark.parametrize("daemon_umask", [0o022, 0o027], ids=["daemon-022", "daemon-027"])
def test_trial_files_get_the_submitters_umask_whatever_the_daemons(
    tmp_path: Path, daemon_umask: int,
) -> None:
    """077 makes them private; 022 gives today's 0755/0644 (set again where the daemon's own
    umask, 027, took more away); a client that sends no umask gets the daemon's, as before."""
    out = tmp_path / "out"
    experiment = probe_experiment(out, max_trials=1)
    with umask(daemon_umask), running_daemon(tmp_path / "d") as d:
        with umask(0o077):
            private = d.submit(experiment, name="private")
        with umask(0o022):
            usual = d.submit(experiment, name="usual")
        # An older client: no umask in its request.
        older = d.client.request("submit", text=yaml.safe_dump(experiment), source="old.yaml",
                                 base_dir=str(tmp_path), set=[], name="older")["id"]
        for exp in (private, usual, older):
            assert d.wait_experiment(exp)["state"] == "completed"
        dirs = {exp: trial_dir(d, exp) for exp in (private, usual, older)}
    assert modes(dirs[private]) == expected(0o700, 0o600)
    assert modes(dirs[usual]) == expected(0o755, 0o644)
    assert modes(dirs[older]) == expected(0o777 & ~daemon_umask, 0o644 & ~daemon_umask)
    # What the trial itself made (probe.py's record): it ran with its submitter's umask.
    made = {exp: next(out.glob(f"{exp}-0-*.json")) for exp in (private, usual, older)}
    assert stat.S_IMODE(made[private].stat().st_mode) == 0o600
    assert stat.S_IMODE(made[usual].stat().st_mode) == 0o644
    assert stat.S_IMODE(made[older].stat().st_mode) == 0o666 & ~daemon_umask
    # The folders above the trial folders keep the daemon's modes.
    assert stat.S_IMODE(dirs[private].parent.stat().st_mode) == 0o777 & ~daemon_umask


def _submit_private_and_held(d: Daemon, experiment: dict[str, Any]) -> str:
    """Submit ``experiment`` with the umask 077, then wait until its first trial runs (held
    there by its hold file); the experiment's id."""
    with umask(0o077):
        exp = d.submit(experiment, name="held")
    wait_for(lambda: _state(d.client, f"{exp}/0") == "running", 30, "its first trial")
    return exp


def test_the_umask_survives_a_restart(tmp_path: Path) -> None:
    """The second trial's folder is made by the restarted daemon, from the trial log."""
    hold = tmp_path / "hold"
    hold.touch()
    experiment = held_experiment(tmp_path, hold)
    with umask(0o022), running_daemon(tmp_path / "d") as d:
        exp = _submit_private_and_held(d, experiment)
    # Stopped (SIGTERM) mid-trial: the first trial runs again after the restart.
    hold.unlink()
    with umask(0o022), running_daemon(tmp_path / "d") as d:
        assert d.wait_experiment(exp)["state"] == "completed"
        second = trial_dir(d, exp, 1)
    assert modes(second) == expected(0o700, 0o600)


def test_the_umask_survives_a_resume(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.touch()
    experiment = held_experiment(tmp_path, hold)
    with umask(0o022), running_daemon(tmp_path / "d") as d:
        exp = _submit_private_and_held(d, experiment)
        d.client.cancel(exp)
        assert d.wait_experiment(exp)["state"] == "cancelled"
        hold.unlink()
        d.client.resume(exp)
        assert d.wait_experiment(exp)["state"] == "completed"
        second = trial_dir(d, exp, 1)
    assert modes(second) == expected(0o700, 0o600)


@pytest.mark.parametrize("value", [-1, 0o1000, "077", True, 1.5, [0o22]], ids=repr)
def test_a_umask_that_is_not_one_is_a_bad_request(tmp_path: Path, value: Any) -> None:
    experiment = probe_experiment(tmp_path / "out", max_trials=1)
    with running_daemon(tmp_path / "d") as d:
        with pytest.raises(RequestError) as refused:
            d.client.request("submit", text=yaml.safe_dump(experiment), source="x.yaml",
                             base_dir=str(tmp_path), umask=value)
        assert d.client.experiments() == []
    assert refused.value.code == "bad_request"
    assert str(refused.value) == ("'umask' must be the submitter's umask, a whole number from 0"
                                  " to 511 (0o777; 18 is 022), or left out")


async def test_a_version_3_log_gets_the_submitters_umask(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:  # a log written before experiments kept a umask
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; {MIGRATIONS[1]}; {MIGRATIONS[2]};"
                         " PRAGMA user_version = 3; COMMIT;")
        db.execute("INSERT INTO experiments (id, seq, name, spec, seed, state, submitted_at)"
                   " VALUES ('e1', 1, 'exp', '{}', 7, 'running', 0)")
    async with open_store(path) as store:
        old = await store.experiment("e1")
        assert old is not None and old["umask"] is None  # the daemon's, as before
        new = await store.create_experiment(name="new", spec={}, seed=1, priority=0,
                                            owner_uid=1000, umask=0o077)
        row = await store.experiment(new)
        assert row is not None and row["umask"] == 0o077
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4


def test_a_submitter_with_the_daemons_umask_costs_no_chmod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The common case (both 022) makes a trial's folders and logs as before: mkdir() and
    open() give the modes, and nothing sets them again (the dispatch path counts syscalls)."""
    files = TrialFiles(tmp_path / "e1" / "0", umask=launcher.DAEMON_UMASK)
    set_again: list[Any] = []
    monkeypatch.setattr(os, "chmod", lambda *args: set_again.append(args))
    monkeypatch.setattr(os, "fchmod", lambda *args: set_again.append(args))
    assert files.create()
    os.close(launcher._open_log(files.stdout, None, files.log_mode, exact=True))
    assert set_again == []
    assert launcher._child_umask(files.umask) == -1  # Popen's default: no umask() in the child
    monkeypatch.undo()
    assert stat.S_IMODE(files.dir.stat().st_mode) == 0o777 & ~launcher.DAEMON_UMASK
    assert stat.S_IMODE(files.stdout.stat().st_mode) == 0o666 & ~launcher.DAEMON_UMASK


def test_the_process_umask_is_read_without_changing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    with umask(0o027):
        assert process_umask() == 0o027
        # Without /proc's Umask line: set and set back.
        monkeypatch.setattr(_umask, "open", _no_proc, raising=False)
        assert process_umask() == 0o027
        assert os.umask(0o027) == 0o027


def _no_proc(*args: Any, **kwargs: Any) -> Any:
    raise FileNotFoundError("/proc/self/status")


# --- a root daemon, another user ---------------------------------------------------------------


@needs_root
def test_another_users_trial_files_are_theirs_with_their_umask(
    shared_tmp: Path, other_user: str,
) -> None:
    experiment = shared_probe(shared_tmp, other_user, max_trials=1)
    with umask(0o022), running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        with umask(0o027):
            exp = submit_as(other_user, d, experiment)
        assert d.wait_experiment(exp)["state"] == "completed"
        folder = trial_dir(d, exp)
    assert modes(folder) == expected(0o750, 0o640)
    uid = pwd.getpwnam(other_user).pw_uid
    assert {os.stat(folder / name).st_uid for name in FOLDERS + FILES} == {uid}
    [made] = (shared_tmp / "out").glob(f"{exp}-0-*.json")
    assert (made.stat().st_uid, stat.S_IMODE(made.stat().st_mode)) == (uid, 0o640)
    # The experiment's folder stays root's and open, so that its user reaches the trial's.
    assert (folder.parent.stat().st_uid, stat.S_IMODE(folder.parent.stat().st_mode)) == (
        0, 0o755)


@pytest.fixture
def closed_dir() -> Iterator[Path]:
    """``/tmp/X`` (root's, 0700) / ``sub`` (0755): a folder no other user may enter."""
    top = Path(tempfile.mkdtemp(prefix="gs-closed-"))
    top.chmod(0o700)
    (top / "sub").mkdir()
    (top / "sub").chmod(0o755)
    yield top / "sub"
    shutil.rmtree(top, ignore_errors=True)


@needs_root
def test_a_workdir_is_checked_with_its_submitters_rights(
    shared_tmp: Path, other_user: str, closed_dir: Path,
) -> None:
    """A folder the user may not enter is refused at submit, in the words of a missing one:
    whether something is there, in a folder closed to them, is not theirs to learn."""
    def file_with(workdir: Path, name: str) -> Path:
        path = shared_tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(
            {**shared_probe(shared_tmp, other_user, max_trials=1), "workdir": str(workdir)}))
        path.chmod(0o644)
        return path

    closed, missing, open_ = (file_with(closed_dir, "closed"),
                              file_with(shared_tmp / "missing", "missing"),
                              file_with(shared_tmp, "open"))
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        refused = as_user(other_user, d, "submit", str(closed))
        gone = as_user(other_user, d, "submit", str(missing))
        taken = as_user(other_user, d, "submit", str(open_))
        roots = d.cli("submit", str(closed))  # root's own: root may enter it
    assert refused.returncode == gone.returncode == 2, (refused.stderr, gone.stderr)
    said = (f"workdir: no such directory for {other_user}: {closed_dir} (it is missing, or"
            f" {other_user} may not enter it: a trial runs with its submitter's rights only)")
    assert said in refused.stderr
    # The same words as for a folder that is not there, but for the path.
    assert said.replace(str(closed_dir), str(shared_tmp / "missing")) in gone.stderr
    assert refused.stderr.count("\n") == gone.stderr.count("\n")
    assert taken.returncode == 0, taken.stderr
    assert roots.returncode == 0, roots.stderr


@pytest.mark.parametrize(("umask", "folder", "log"), [
    (0o222, 0o755, 0o644), (0o100, 0o777 & ~0o100 | 0o700, 0o666), (0o077, 0o700, 0o600)])
def test_a_umask_never_takes_the_owners_own_bits(
        tmp_path: Path, umask: int, folder: int, log: int) -> None:
    # A submitter's umask 0222 made the trial folder r-x: a per-user daemon could not make
    # its checkpoint folder and logs in it, and every trial failed ("Permission denied").
    files = TrialFiles(tmp_path / "e1" / "0", umask=umask)
    assert (files.folder_mode, files.log_mode) == (folder, log)
    assert files.create()
    assert stat.S_IMODE(files.dir.stat().st_mode) & 0o700 == 0o700


def test_a_workdir_its_own_user_may_not_enter_is_a_problem_at_submit(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A per-user daemon accepted a workdir of mode 0600, and every trial then failed with
    # "cannot start 'python' ...: Permission denied", which blamed the program. (Root may
    # enter any folder: its refusal is simulated.)
    from gpusched._spec_fields import no_such_folder

    assert no_such_folder(str(tmp_path)) is None
    assert no_such_folder(str(tmp_path / "none")) == f"no such directory: {tmp_path / 'none'}"
    monkeypatch.setattr(os, "access", lambda path, mode: mode != os.X_OK)
    problem = no_such_folder(str(tmp_path))
    assert problem is not None and problem.startswith(f"{tmp_path}: a folder you may not enter")
