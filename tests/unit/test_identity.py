"""Who a trial runs as (a root daemon runs each as its submitter), and what that changes in
its environment and its folder. Spawning as another user needs root: tests/integration/
test_users.py does that with a real second user."""

from __future__ import annotations

import os
import pwd
import stat
from pathlib import Path

import anyio
import pytest

from gpusched._daemon import identity
from gpusched._daemon.identity import RunAs, trial_identity, unusable_uid
from gpusched._daemon.launcher import DEFAULT_PATH, TrialFiles, spawn_trial, trial_environment
from gpusched.errors import RequestError

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="a root daemon's rules")
DAEMON_ENV = {"PATH": "/opt/daemon/venv/bin:/usr/bin", "HOME": "/root", "USER": "root",
              "LANG": "de_DE.UTF-8", "LC_TIME": "C", "TZ": "UTC", "CUDA_HOME": "/usr/local/cuda",
              "VIRTUAL_ENV": "/opt/daemon/venv", "TMPDIR": "/root/tmp",
              "DATABASE_PASSWORD": "hunter2", "NOTIFY_SOCKET": "/run/systemd/notify"}


def alice(uid: int = 1234) -> RunAs:
    return RunAs(uid=uid, gid=uid, groups=(uid, 27), name="alice", home="/home/alice",
                 shell="/bin/zsh")


def env_for(tmp_path: Path, run_as: RunAs | None) -> dict[str, str]:
    return trial_environment(
        daemon_env=DAEMON_ENV, experiment_env={"PATH": "/home/alice/venv/bin:/usr/bin"}
        if run_as is None else {"WANDB_MODE": "offline"}, experiment_id="e1", number=0,
        params={}, files=TrialFiles(tmp_path / "e1" / "0"), uuids=[], metric="m",
        run_as=run_as)


def test_another_users_trial_gets_its_login_variables_and_the_hosts_locale(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path, alice())
    assert {k: env[k] for k in ("HOME", "USER", "LOGNAME", "SHELL")} == {
        "HOME": "/home/alice", "USER": "alice", "LOGNAME": "alice", "SHELL": "/bin/zsh"}
    assert env["PATH"] == DEFAULT_PATH  # not the daemon's venv
    assert (env["LANG"], env["LC_TIME"], env["TZ"], env["CUDA_HOME"]) == (
        "de_DE.UTF-8", "C", "UTC", "/usr/local/cuda")
    assert env["WANDB_MODE"] == "offline"
    for daemons_own in ("VIRTUAL_ENV", "TMPDIR", "DATABASE_PASSWORD", "NOTIFY_SOCKET"):
        assert daemons_own not in env


def test_the_daemons_own_users_trial_keeps_the_allow_listed_daemon_variables(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path, None)
    assert (env["HOME"], env["VIRTUAL_ENV"]) == ("/root", "/opt/daemon/venv")
    assert env["PATH"] == "/home/alice/venv/bin:/usr/bin"  # the experiment's env wins
    assert "DATABASE_PASSWORD" not in env


def test_an_empty_shell_in_the_passwd_entry_means_bin_sh() -> None:
    assert RunAs(5, 5, (5,), "bob", "/home/bob", "").login_env()["SHELL"] == "/bin/sh"


@pytest.mark.parametrize(("uid", "name"), [(65534, "nobody"), (70000, "nobody"),
                                           (65534, None), (4294967295, None),
                                           (1500, "nfsnobody")])
def test_nobody_and_the_overflow_uid_are_unusable(uid: int, name: str | None) -> None:
    assert unusable_uid(uid, name)


def test_an_ordinary_user_is_usable() -> None:
    assert not unusable_uid(1000, "alice")


def test_a_per_user_daemon_runs_trials_as_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert trial_identity(1000) is None
    assert trial_identity(None) is None


@ROOT_ONLY
def test_root_submitting_to_a_root_daemon_runs_as_root() -> None:
    assert trial_identity(0) is None


@ROOT_ONLY
def test_a_root_daemon_runs_a_users_trials_with_its_ids_from_the_user_database() -> None:
    entry = next((p for p in pwd.getpwall() if 0 < p.pw_uid < 65534), None)
    if entry is None:
        pytest.skip("no ordinary user on this host")
    got = trial_identity(entry.pw_uid)
    assert got is not None
    assert (got.uid, got.gid, got.name, got.home) == (entry.pw_uid, entry.pw_gid, entry.pw_name,
                                                      entry.pw_dir)
    assert set(got.groups) == set(os.getgrouplist(entry.pw_name, entry.pw_gid))


@ROOT_ONLY
@pytest.mark.parametrize(("uid", "message"), [
    (None, "the daemon cannot tell which user sent this"),
    (987654, "uid 987654 is not in the user database, so its trials cannot run as it"),
])
def test_a_root_daemon_refuses_users_it_cannot_run_as(uid: int | None, message: str) -> None:
    with pytest.raises(RequestError, match=message) as info:
        trial_identity(uid)
    assert info.value.code == "forbidden"


@ROOT_ONLY
def test_a_root_daemon_refuses_nobody() -> None:
    try:
        uid = pwd.getpwnam("nobody").pw_uid
    except KeyError:
        pytest.skip("no user nobody")
    with pytest.raises(RequestError, match=r"trials do not run as nobody \(uid \d+\)"):
        trial_identity(uid)


def test_the_overflow_uid_comes_from_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(identity, "_overflow_uid", lambda: 4242)
    assert unusable_uid(4242, "mapped-away")


# --- the trial's folder ----------------------------------------------------------------------


def test_another_users_trial_folder_is_its_own_and_reachable(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "trials" / "e1" / "0")
    (tmp_path / "trials").mkdir(mode=0o700)
    me = os.getuid(), os.getgid()  # chown to oneself works without root
    files.create(RunAs(uid=me[0], gid=me[1], groups=(), name="me", home="/", shell=""))
    for folder in (tmp_path / "trials", tmp_path / "trials" / "e1"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    for folder in (files.dir, files.checkpoints):
        assert (folder.stat().st_uid, folder.stat().st_gid) == me


def test_a_link_planted_in_place_of_a_log_is_not_written_through(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path / "e1" / "0")
    files.create()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    files.stdout.symlink_to(victim)

    async def spawn() -> None:
        await spawn_trial(["true"], env={"PATH": "/usr/bin:/bin"}, cwd=tmp_path, files=files)

    with pytest.raises(OSError, match=r"stdout\.log is a symbolic link, not a regular file"):
        anyio.run(spawn)
    assert victim.read_text() == "precious\n"
