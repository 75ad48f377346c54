"""Several users on one daemon: the trial log is the daemon user's alone (it holds every
experiment's ``env`` values), and an experiment's name means the caller's own experiment
before a colleague's.

The trial log's modes are checked on :func:`open_store` itself (any user); the rest needs
root and a real second user (test_users.py's fixtures), and is skipped otherwise.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gpusched._daemon.store import Store, open_store
from gpusched.client import Client
from gpusched.views.watch import watch
from tests.integration import test_users as users_tests
from tests.integration.harness import Daemon, running_daemon, wait_for
from tests.integration.test_users import (
    GROUP,
    as_user,
    ids,
    interpreter_for,
    needs_root,
    open_daemon_dir,
    shared_probe,
    submit_as,
    submit_command,
)

# test_users' fixtures: a real second user in the socket's group, a folder it can reach.
other_user = users_tests.other_user
shared_tmp = users_tests.shared_tmp

LOG_FILES = ("trials.db", "trials.db-wal", "trials.db-shm")
TOKEN = "root-token-0123456789"


def modes(folder: Path) -> dict[str, int]:
    """The permission bits of the trial log's files in ``folder`` (those that are there)."""
    return {name: stat.S_IMODE((folder / name).stat().st_mode)
            for name in LOG_FILES if (folder / name).exists()}


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The process's umask set to ``mask`` meanwhile (a root service's is 0022)."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def new_experiment(store: Store, name: str, owner_uid: int | None) -> str:
    return await store.create_experiment(
        name=name, spec={"name": name, "env": {"WANDB_API_KEY": TOKEN}}, seed=1, priority=0,
        owner_uid=owner_uid)


# --- the trial log is the daemon user's alone ------------------------------------------------


async def test_a_new_trial_log_and_its_wal_are_readable_by_the_daemons_user_alone(
    tmp_path: Path,
) -> None:
    with umask(0o022):
        async with open_store(tmp_path / "trials.db") as store:
            await new_experiment(store, "sweep", 0)
            found = modes(tmp_path)  # while open: the -wal and -shm are there
    assert set(found) == set(LOG_FILES)
    assert found == dict.fromkeys(LOG_FILES, 0o600)


async def test_an_older_state_folders_readable_log_files_are_tightened_at_open(
    tmp_path: Path,
) -> None:
    """A folder left by a gpusched that made the log with its umask, after a crash: the
    -wal (holding the last writes) and -shm are still there, 0644 like the log."""
    live, old = tmp_path / "live", tmp_path / "old"
    live.mkdir()
    old.mkdir()
    async with open_store(live / "trials.db") as store:
        exp = await new_experiment(store, "sweep", 0)
        for name in LOG_FILES:  # a crash's leftovers: the log, its -wal and -shm
            shutil.copyfile(live / name, old / name)
    for name in LOG_FILES:
        (old / name).chmod(0o644)
    async with open_store(old / "trials.db") as store:
        tightened = modes(old)
        row = await store.experiment(exp)
    assert tightened == dict.fromkeys(LOG_FILES, 0o600)
    assert row is not None and row["spec"]["env"] == {"WANDB_API_KEY": TOKEN}  # nothing lost


async def test_only_group_and_others_lose_access_to_an_older_log(tmp_path: Path) -> None:
    path = tmp_path / "trials.db"
    async with open_store(path):
        pass
    path.chmod(0o640)
    async with open_store(path):
        assert modes(tmp_path)["trials.db"] == 0o600


@needs_root
def test_another_local_user_cannot_read_env_values_from_the_trial_log(
    shared_tmp: Path, other_user: str,
) -> None:
    experiment = shared_probe(shared_tmp, other_user, max_trials=1,
                              env={"WANDB_API_KEY": TOKEN})
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        d.state_dir.chmod(0o755)  # as StateDirectoryMode=0755 makes /var/lib/gpusched
        d.wait_experiment(d.submit(experiment, name="roots"))
        files = [p for p in d.state_dir.iterdir() if p.name.startswith("trials.db")]
        found = modes(d.state_dir)
        # What the other user gets of each file: its bytes, or the reason it has none.
        code = ("import sys\nfor p in sys.argv[1:]:\n"
                "    try: print(p, b'" + TOKEN + "' in open(p, 'rb').read())\n"
                "    except OSError as exc: print(p, type(exc).__name__)\n")
        out = subprocess.run([interpreter_for(other_user), "-c", code, *map(str, files)],
                             **ids(other_user), capture_output=True, text=True, timeout=60,
                             check=False, cwd="/").stdout
    assert set(found) >= {"trials.db", "trials.db-wal"}
    assert set(found.values()) == {0o600}, found
    assert out.count("PermissionError") == len(files), out  # none of them could be opened


# --- a name means the caller's own experiment first ------------------------------------------


async def test_a_name_resolves_among_the_callers_own_experiments_first(tmp_path: Path) -> None:
    async with open_store(tmp_path / "trials.db") as store:
        alices = await new_experiment(store, "sweep", 1001)
        bobs = await new_experiment(store, "sweep", 1002)
        only_bobs = await new_experiment(store, "lonely", 1002)
        unowned = await new_experiment(store, "e1", None)  # a name that looks like an id

        async def named(name: str, uid: int | None) -> str | None:
            row = await store.experiment(name, caller_uid=uid)
            return None if row is None else str(row["id"])

        assert await named("sweep", 1001) == alices
        assert await named("sweep", 1002) == bobs
        assert await named("sweep", 1003) == bobs  # none of theirs: the newest of anyone's
        assert await named("sweep", None) == bobs  # no caller known: as before
        assert await named("lonely", 1001) == only_bobs
        assert await named(bobs, 1001) == bobs  # an id is that experiment, whoever asks
        assert await named("e1", 1001) == alices  # an id before a name
        assert await named(unowned, 1001) == unowned
        assert await named("missing", 1001) is None


def _slow(tmp: Path, user: str, **overrides: Any) -> dict[str, Any]:
    """One trial that runs until it is cancelled (or 30 s)."""
    return shared_probe(tmp, user, max_trials=1, command=[
        interpreter_for(user), str(tmp / "probe.py"), "--sleep", "30"], **overrides)


def _shown(user: str, d: Daemon, *args: str) -> Any:
    """``gpusched ARGS --json`` run by ``user``: its answer."""
    out = as_user(user, d, *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


@needs_root
def test_each_users_name_means_their_own_experiment_not_a_colleagues_newer_one(
    shared_tmp: Path, other_user: str,
) -> None:
    quick = shared_probe(shared_tmp, other_user, max_trials=1)
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        theirs = submit_as(other_user, d, {**quick, "name": "sweep"})
        d.wait_experiment(theirs)
        mine = d.submit(quick, name="sweep")  # root's, newer
        d.wait_experiment(mine)
        roots_only = d.submit(quick, name="roots")
        d.wait_experiment(roots_only)
        # Each one's `sweep` is their own: show, ls EXP, best.
        assert _shown(other_user, d, "show", "sweep")["id"] == theirs
        assert {t["experiment"] for t in _shown(other_user, d, "ls", "sweep")} == {theirs}
        assert [t["id"] for t in _shown(other_user, d, "best", "sweep")] == [f"{theirs}/0"]
        assert d.client.show("sweep")["id"] == mine
        assert [t["id"] for t in d.client.best("sweep")] == [f"{mine}/0"]
        # A name that only a colleague uses still names theirs.
        assert _shown(other_user, d, "show", "roots")["id"] == roots_only
        # resume_from: a name is resolved for the submitter, and pinned to its id.
        again = submit_as(other_user, d, {**quick, "name": "again", "resume_from": "sweep"})
        assert d.client.show(again)["spec"]["resume_from"] == theirs
        d.wait_experiment(again)


@needs_root
def test_a_refused_files_resume_from_names_the_submitters_own_experiment(
    shared_tmp: Path, other_user: str,
) -> None:
    # A file the parser refused had its resume_from judged as anyone's newest: root's running
    # `sweep` made the other user's file say "still running" of an experiment not theirs.
    quick = shared_probe(shared_tmp, other_user, max_trials=1)
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        theirs = submit_as(other_user, d, {**quick, "name": "sweep"})
        d.wait_experiment(theirs)
        mine = d.submit(_slow(shared_tmp, other_user), name="sweep")  # root's, newer, running
        out = submit_command(other_user, d, {**quick, "max_trials": 0, "resume_from": "sweep"})
        d.cli("cancel", mine)
    assert out.returncode == 1
    assert "max_trials: must be at least 1" in out.stderr, out.stderr
    assert "resume_from" not in out.stderr, out.stderr


def _cancel_requested(d: Daemon, exp: str) -> bool:
    """Whether ``exp`` was asked to cancel (its event is in the log when `cancel` answers;
    its state says cancelled only once its running trial has stopped)."""
    return any(e["kind"] == "experiment_cancel_requested" for e in d.client.show(exp)["events"])


@needs_root
def test_cancel_by_name_cancels_the_callers_own_experiment(
    shared_tmp: Path, other_user: str,
) -> None:
    slow = _slow(shared_tmp, other_user)
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        theirs = submit_as(other_user, d, {**slow, "name": "sweep"})
        mine = d.submit(slow, name="sweep")  # root's, newer
        out = as_user(other_user, d, "cancel", "sweep")
        asked = {e: _cancel_requested(d, e) for e in (theirs, mine)}
        ended = d.wait_experiment(theirs)["state"] if asked[theirs] else None
        d.cli("cancel", mine)
    assert out.returncode == 0, out.stderr  # not "e2 belongs to root (uid 0): only ..."
    assert asked == {theirs: True, mine: False}
    assert ended == "cancelled"


@needs_root
def test_roots_cancel_by_name_leaves_a_colleagues_newer_experiment_alone(
    shared_tmp: Path, other_user: str,
) -> None:
    slow = _slow(shared_tmp, other_user)
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        mine = d.submit(slow, name="sweep")
        theirs = submit_as(other_user, d, {**slow, "name": "sweep"})  # newer
        out = d.cli("cancel", "sweep")
        asked = {e: _cancel_requested(d, e) for e in (mine, theirs)}
        ended = d.wait_experiment(mine)["state"] if asked[mine] else None
        d.cli("cancel", theirs)
    assert out.returncode == 0, out.stderr
    assert asked == {mine: True, theirs: False}
    assert ended == "cancelled"


@needs_root
def test_watch_alone_follows_the_callers_own_newest_experiment_in_progress(
    shared_tmp: Path, other_user: str,
) -> None:
    slow = _slow(shared_tmp, other_user)
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        mine = d.submit(slow, name="mine")  # root's: this test's process is root
        theirs = submit_as(other_user, d, {**slow, "name": "theirs"})  # newer
        out = io.StringIO()
        watching = threading.Thread(
            target=watch, args=(Client(d.socket), None, 0.1), kwargs={"out": out, "tty": False},
            daemon=True)
        watching.start()
        try:
            wait_for(lambda: "==" in out.getvalue(), 20, "watch's first picture")
            first = out.getvalue()
        finally:
            for exp in (mine, theirs):  # both end: watch returns, whichever it watched
                d.cli("cancel", exp)
            watching.join(timeout=30)
    assert not watching.is_alive()
    assert f"== {mine} mine (root):" in first, first
