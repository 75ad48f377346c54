"""Several users on one daemon (issue 5): owners from SO_PEERCRED, who may cancel what, trials
run as their submitters (ids, folders, environment), ``nobody`` refused, per-user limits.

Needs root, to create a real second user and group and to run the CLI as that user; skipped
otherwise. What that user runs (the interpreter, the trial script, its workdir, the client
package) lives in world-readable places: pytest's own folders are root's, and so may be this
checkout (a clone in a ``mktemp -d`` folder is 0700).
"""

from __future__ import annotations

import atexit
import functools
import grp
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.launcher import DEFAULT_PATH
from gpusched._daemon.server import HIDDEN_ENV_VALUE
from tests.integration.harness import TRIALS, Daemon, running_daemon, wait_for
from tests.integration.test_gpus import probe_experiment, records

# Names of this test run's own (several runs on one host must not remove each other's users).
_RUN = os.getpid() % 100000
USER, GROUP, ADMINS = f"gst1-{_RUN}", f"gstg-{_RUN}", f"gsta-{_RUN}"

# Each test here makes a real second user: root and useradd are needed (the other files
# that use this module's fixtures take this mark too).
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd to create a second user",
)
pytestmark = needs_root


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def other_user() -> Iterator[str]:
    """A real second user, in GROUP (the socket's) and, later, ADMINS."""
    for group in (GROUP, ADMINS):
        subprocess.run(["groupadd", "--system", group], capture_output=True, check=False)
    subprocess.run(["useradd", "--system", "--no-create-home", "-G", GROUP, USER],
                   capture_output=True, check=False)
    pwd.getpwnam(USER)  # created, or there already
    yield USER
    subprocess.run(["userdel", USER], capture_output=True, check=False)
    for group in (GROUP, ADMINS):
        subprocess.run(["groupdel", group], capture_output=True, check=False)


REPO = Path(__file__).resolve().parents[2]


@functools.cache
def client_path() -> str:
    """A world-readable copy of this checkout's ``gpusched`` package, for the other user's
    client (standard library only), whatever the checkout's own mode."""
    root = Path(tempfile.mkdtemp(prefix="gpusched-client-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    shutil.copytree(REPO / "gpusched", root / "gpusched",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for path in (root, *root.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return str(root)


def interpreter_for(user: str) -> str:
    """A Python >= 3.11 that ``user`` may run: this one, or the system's (this one may live
    under /root). The client side needs nothing beyond the standard library."""
    for candidate in (sys.executable, "/usr/bin/python3"):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import sys; assert sys.version_info >= (3, 11)"],
                **ids(user), capture_output=True, check=False, cwd="/")
        except OSError:  # not there, or not for this user to run
            continue
        if probe.returncode == 0:
            return candidate
    pytest.skip(f"no Python >= 3.11 that {user} may run")


def ids(user: str) -> dict[str, Any]:
    """Popen's arguments to run as ``user`` with its own groups (as a login would)."""
    entry = pwd.getpwnam(user)
    return {"user": entry.pw_uid, "group": entry.pw_gid,
            "extra_groups": os.getgrouplist(user, entry.pw_gid)}


def as_user(user: str, d: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    """``gpusched ARGS`` run by ``user`` (this checkout's client, not the installed one)."""
    code = "import sys; from gpusched.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([interpreter_for(user), "-c", code, args[0], "--socket", str(d.socket),
                           *args[1:]], **ids(user), capture_output=True, text=True, timeout=60,
                          check=False, cwd="/",
                          env={"PYTHONPATH": client_path(), "PATH": "/usr/bin"})


def submit_command(user: str, d: Daemon,
                   experiment: dict[str, object]) -> subprocess.CompletedProcess[str]:
    """Submit ``experiment`` as ``user`` through the client (exit 1 and the error on stderr
    when refused)."""
    code = ("import json, sys; from gpusched.client import Client\n"
            "try: print(Client(sys.argv[1]).submit(json.loads(sys.argv[2]), base_dir='/'))\n"
            "except Exception as exc: sys.exit(f'gpusched: {exc}')")
    return subprocess.run([interpreter_for(user), "-c", code, str(d.socket),
                           json.dumps(experiment)], **ids(user), capture_output=True, text=True,
                          timeout=60, check=False, cwd="/", env={"PYTHONPATH": client_path()})


def submit_as(user: str, d: Daemon, experiment: dict[str, object]) -> str:
    out = submit_command(user, d, experiment)
    assert out.returncode == 0, out.stderr
    return str(out.stdout).strip()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the other user can reach (pytest's own are root's alone), holding a copy of
    the probe trial."""
    path = Path(tempfile.mkdtemp(prefix="gpusched-users-"))
    path.chmod(0o755)
    for name in ("probe.py", "trial_flags.py"):
        shutil.copy(TRIALS / name, path / name)
        (path / name).chmod(0o644)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def shared_probe(tmp: Path, user: str, **overrides: Any) -> dict[str, Any]:
    """A probe experiment that ``user`` can run: recording into ``tmp/out`` (open to all)."""
    out = tmp / "out"
    out.mkdir(exist_ok=True)
    out.chmod(0o777)
    return probe_experiment(out, **{
        "command": [interpreter_for(user), str(tmp / "probe.py"), "--out", str(out)],
        "workdir": str(tmp), **overrides})


def open_daemon_dir(d: Daemon) -> None:
    """Let other users reach the test daemon's socket in its folder, whatever the umask."""
    d.tmp.chmod(0o755)


def test_owners_and_who_may_cancel(shared_tmp: Path, other_user: str) -> None:
    tmp_path = shared_tmp
    slow = shared_probe(tmp_path, other_user, max_trials=1, command=[
        interpreter_for(other_user), str(tmp_path / "probe.py"), "--sleep", "30"])
    settings = {"socket_group": GROUP}
    with running_daemon(tmp_path / "d", settings=settings) as d:
        # As root, the socket is the socket group's, 0660.
        assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
        assert os.stat(d.socket).st_gid == grp.getgrnam(GROUP).gr_gid
        open_daemon_dir(d)
        mine = d.submit({**slow, "env": {"WANDB_API_KEY": "root-secret"}}, name="roots")
        theirs = submit_as(other_user, d, {**slow, "name": "theirs"})
        wait_for(lambda: d.client.show(theirs)["trials"]["running"], 20, "their trial to run")
        owners = {e["id"]: e["owner"] for e in d.client.experiments()}
        assert owners == {mine: "root", theirs: other_user}
        assert other_user in d.cli("ls").stdout
        refused = as_user(other_user, d, "cancel", mine)
        assert refused.returncode == 1
        assert f"{mine} belongs to root (uid 0): only its owner, root may cancel it" in \
            refused.stderr
        assert as_user(other_user, d, "cancel", theirs).returncode == 0  # their own
        # Another user's env values (tokens) are not shown to them; the names are.
        shown = as_user(other_user, d, "show", mine, "--json")
        assert shown.returncode == 0, shown.stderr
        assert "root-secret" not in shown.stdout
        assert json.loads(shown.stdout)["spec"]["env"] == {"WANDB_API_KEY": HIDDEN_ENV_VALUE}
        assert d.client.show(mine)["spec"]["env"] == {"WANDB_API_KEY": "root-secret"}
        assert d.cli("cancel", mine).returncode == 0  # root may
    # An admin group's members may cancel anyone's.
    _run("usermod", "-aG", ADMINS, other_user)
    with running_daemon(tmp_path / "d2", settings={**settings, "admin_group": ADMINS}) as d:
        open_daemon_dir(d)
        mine = d.submit(slow, name="roots")
        assert as_user(other_user, d, "cancel", mine).returncode == 0


def test_a_trial_runs_as_its_submitter_with_its_groups_folders_and_a_clean_environment(
    shared_tmp: Path, other_user: str,
) -> None:
    entry = pwd.getpwnam(other_user)
    experiment = shared_probe(shared_tmp, other_user, max_trials=1, env={"FROM_FILE": "yes"})
    secrets = {"GPUSCHED_TEST_LEAK": "daemon-secret", "AWS_SECRET_ACCESS_KEY": "hunter2",
               "LANG": "C.UTF-8", "TZ": "Europe/Paris"}
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}, env=secrets) as d:
        open_daemon_dir(d)
        theirs = submit_as(other_user, d, {**experiment, "name": "theirs"})
        assert d.wait_experiment(theirs)["state"] == "completed"
        mine = d.submit({**experiment, "name": "roots"}, name="roots")
        assert d.wait_experiment(mine)["state"] == "completed"
        trial_dir = Path(d.client.show(f"{theirs}/0")["dir"])
    by_exp = {r["env"]["GPUSCHED_EXPERIMENT"]: r for r in records(shared_tmp / "out")}
    seen = by_exp[theirs]
    # The submitter's ids: its uid, primary group and supplementary groups, never root's.
    assert (seen["uid"], seen["gid"]) == (entry.pw_uid, entry.pw_gid)
    assert set(seen["groups"]) == set(os.getgrouplist(other_user, entry.pw_gid))
    assert grp.getgrnam(GROUP).gr_gid in seen["groups"]
    assert 0 not in seen["groups"]
    # Its environment: the login variables from the user database, a default PATH, the host's
    # locale and time zone, the experiment's env; nothing else of the daemon's.
    env = seen["environ"]
    assert (env["HOME"], env["USER"], env["LOGNAME"], env["SHELL"]) == (
        entry.pw_dir, other_user, other_user, entry.pw_shell or "/bin/sh")
    assert env["PATH"] == DEFAULT_PATH
    assert (env["LANG"], env["TZ"], env["FROM_FILE"]) == ("C.UTF-8", "Europe/Paris", "yes")
    assert not {"GPUSCHED_TEST_LEAK", "AWS_SECRET_ACCESS_KEY", "VIRTUAL_ENV", "PYTHONPATH",
                "NOTIFY_SOCKET", "LISTEN_FDS"} & set(env)
    assert seen["cwd"] == str(shared_tmp)
    # Its folder, checkpoint folder, logs and reports are the submitter's.
    for path in (trial_dir, trial_dir / "checkpoint", trial_dir / "stdout.log",
                 trial_dir / "stderr.log", trial_dir / "reports.jsonl"):
        assert os.stat(path).st_uid == entry.pw_uid, path
    # Root's own experiment still runs as root, with the daemon's allow-listed variables.
    assert by_exp[mine]["uid"] == 0
    assert by_exp[mine]["leaked"] is None
    assert os.stat(trial_dir.parent.parent / mine / "0").st_uid == 0


def test_nobody_is_refused_at_submit(shared_tmp: Path, other_user: str) -> None:
    if "nobody" not in {p.pw_name for p in pwd.getpwall()}:
        pytest.skip("this host has no user 'nobody'")
    with running_daemon(shared_tmp / "d") as d:
        open_daemon_dir(d)
        d.socket.chmod(0o666)  # nobody is in no group: open the test daemon's socket to it
        out = submit_command("nobody", d, shared_probe(shared_tmp, "nobody", max_trials=1))
        assert out.returncode == 1, out.stdout
        uid = pwd.getpwnam("nobody").pw_uid
        assert (f"trials do not run as nobody (uid {uid}): it stands for unmapped users and is"
                " shared by unrelated programs; submit as your own user") in out.stderr
        assert d.client.experiments() == []


def test_a_per_user_gpu_limit_leaves_the_free_gpu_to_another_user(
    shared_tmp: Path, other_user: str,
) -> None:
    slow = shared_probe(shared_tmp, other_user, max_trials=2, max_parallel_trials=2, command=[
        interpreter_for(other_user), str(shared_tmp / "probe.py"), "--sleep", "30"])
    settings = {"socket_group": GROUP, "max_gpus_per_user": 1}
    with running_daemon(shared_tmp / "d", settings=settings) as d:
        open_daemon_dir(d)
        mine = d.submit(slow, name="roots")
        wait_for(lambda: d.client.show(mine)["trials"]["running"], 20, "root's first trial")
        waiting = wait_for(lambda: d.client.show(mine)["waiting"], 10, "the wait reason")
        assert waiting["code"] == "user_limit"
        assert waiting["message"] == ("per-user limit: root holds 1 of 1 GPUs"
                                      " (max_gpus_per_user), a trial needs 1")
        assert [g["state"] for g in d.client.gpus()["devices"]].count("free") == 1
        theirs = submit_as(other_user, d, {**slow, "name": "theirs"})
        wait_for(lambda: d.client.show(theirs)["trials"]["running"], 20, "their trial")
        assert d.client.show(mine)["trials"]["running"] == 1
        assert d.client.show(theirs)["waiting"]["message"].startswith(
            f"per-user limit: {other_user} holds 1")
        for exp in (mine, theirs):
            d.client.cancel(exp)


def test_an_experiment_whose_owner_was_removed_fails_at_restart(
    shared_tmp: Path, other_user: str,
) -> None:
    gone = f"gst2-{_RUN}"  # another user again (other_user's fixture made the group)
    _run("useradd", "--system", "--no-create-home", "-G", GROUP, gone)
    try:
        slow = shared_probe(shared_tmp, gone, max_trials=1, command=[
            interpreter_for(gone), str(shared_tmp / "probe.py"), "--sleep", "60"])
        state = shared_tmp / "state"
        with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP},
                            state_dir=state) as d:
            open_daemon_dir(d)
            exp = submit_as(gone, d, slow)
            wait_for(lambda: d.client.show(exp)["trials"]["running"], 20, "its trial")
            uid = pwd.getpwnam(gone).pw_uid
            d.proc.kill()  # a crash: its trial is left running
            d.proc.wait()
        _run("userdel", "-f", gone)
        with running_daemon(shared_tmp / "d", state_dir=state) as d:
            view = d.client.show(exp)
            assert view["state"] == "failed"
            assert view["reason"] == (f"uid {uid} is not in the user database, so its trials"
                                      " cannot run as it; submit as a user with a passwd entry")
            # The leftover was stopped before anything else, as after any crash.
            assert any(e["event"] == "leftover_trial_processes_stopped" for e in d.log_events())
    finally:
        subprocess.run(["userdel", "-f", gone], capture_output=True, check=False)
