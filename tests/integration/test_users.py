"""Several users on one daemon (issue 5): owners from SO_PEERCRED, who may cancel what.

Needs root, to create a real second user and group and to run the CLI as that user; skipped
otherwise.
"""

from __future__ import annotations

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

from tests.integration.harness import Daemon, running_daemon
from tests.integration.test_gpus import probe_experiment

USER, GROUP, ADMINS = "gpusched-t1", "gpusched-tg", "gpusched-tadm"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("useradd") is None,
    reason="needs root and useradd to create a second user",
)


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
                          check=False, cwd="/", env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})


def submit_as(user: str, d: Daemon, experiment: dict[str, object]) -> str:
    code = ("import json, sys; from gpusched.client import Client;"
            " print(Client(sys.argv[1]).submit(json.loads(sys.argv[2]), base_dir='/'))")
    out = subprocess.run([interpreter_for(user), "-c", code, str(d.socket),
                          json.dumps(experiment)], **ids(user), capture_output=True, text=True,
                         timeout=60, check=False, cwd="/", env={"PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr
    return str(out.stdout).strip()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the other user can reach (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gpusched-users-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_owners_and_who_may_cancel(shared_tmp: Path, other_user: str) -> None:
    tmp_path = shared_tmp
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    slow = probe_experiment(out, max_trials=1, command=[
        sys.executable, str(Path(__file__).parent / "trials" / "probe.py"), "--out", str(out),
        "--sleep", "30"])
    settings = {"socket_group": GROUP}
    with running_daemon(tmp_path / "d", settings=settings) as d:
        # As root, the socket is the socket group's, 0660.
        assert stat.S_IMODE(os.stat(d.socket).st_mode) == 0o660
        assert os.stat(d.socket).st_gid == grp.getgrnam(GROUP).gr_gid
        (tmp_path / "d").chmod(0o755)
        mine = d.submit(slow, name="roots")
        theirs = submit_as(other_user, d, {**slow, "name": "theirs"})
        owners = {e["id"]: e["owner"] for e in d.client.experiments()}
        assert owners == {mine: "root", theirs: other_user}
        assert other_user in d.cli("ls").stdout
        refused = as_user(other_user, d, "cancel", mine)
        assert refused.returncode == 1
        assert f"{mine} belongs to root (uid 0): only its owner, root may cancel it" in \
            refused.stderr
        assert as_user(other_user, d, "cancel", theirs).returncode == 0  # their own
        assert d.cli("cancel", mine).returncode == 0  # root may
    # An admin group's members may cancel anyone's.
    _run("usermod", "-aG", ADMINS, other_user)
    with running_daemon(tmp_path / "d2", settings={**settings, "admin_group": ADMINS}) as d:
        (tmp_path / "d2").chmod(0o755)
        mine = d.submit(slow, name="roots")
        assert as_user(other_user, d, "cancel", mine).returncode == 0
