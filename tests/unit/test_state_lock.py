"""The state folder's lock (gpusched/_daemon/state_lock.py): no other user can hold it, and a
file system that cannot lock says so in one line naming the file."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpusched._daemon.state_lock import LOCK_NAME, holding_state_dir
from gpusched.errors import ConfigError

NOBODY = 65534
SYSTEM_PYTHON = shutil.which("python3", path="/usr/bin:/bin")

# Run as another user: lock the file named in argv[1] (as a trial of a root daemon could),
# say whether it could, and hold it until stdin closes.
LOCKER = """\
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1], os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
except OSError as exc:
    print("refused", exc.strerror, flush=True)
    sys.exit(0)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def shared_state_dir() -> Iterator[Path]:
    """A state folder as a root daemon's is: 0755, reachable by every user (pytest's own
    temporary folders are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="gpusched-review-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or SYSTEM_PYTHON is None,
                    reason="needs root, to run a process as another user")
def test_another_user_cannot_keep_a_root_daemon_from_starting(shared_state_dir: Path) -> None:
    # daemon.lock is created 0644 in a 0755 folder, and flock needs no write access: any
    # local user (or any trial of a root daemon, which runs as its user) can open it
    # read-only and hold a lock on it, and every later start of the system daemon is refused
    # ("another daemon uses the state folder"), with nothing in the message to say who.
    sock = shared_state_dir / "gpusched.sock"
    with holding_state_dir(shared_state_dir, sock):
        pass  # the daemon's first start made the file; it then stopped
    assert SYSTEM_PYTHON is not None
    locker = subprocess.Popen(
        [SYSTEM_PYTHON, "-c", LOCKER, str(shared_state_dir / LOCK_NAME)],
        user=NOBODY, group=NOBODY, extra_groups=[], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, cwd="/")
    try:
        assert locker.stdout is not None
        said = locker.stdout.readline()  # the locker never blocks: LOCK_NB
        assert said, "the locker said nothing"
        with holding_state_dir(shared_state_dir, sock):  # the daemon starts again
            pass
    finally:
        locker.kill()
        locker.communicate(timeout=30)


def test_a_lock_the_file_system_cannot_take_is_one_line_naming_the_lock_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A state folder on a file system without flock (Lustre mounted without -o flock, an NFS
    # mount whose lock manager does not answer) fails flock with ENOSYS / ENOLCK, not
    # EWOULDBLOCK. Only BlockingIOError is turned into a ConfigError: this one escapes as a
    # bare OSError, which the CLI's last net prints as "gpusched: Function not implemented:
    # check where the output goes (a full disk, a closed terminal)", naming no file.
    def no_flock(fd: int, operation: int) -> None:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(fcntl, "flock", no_flock)  # the module state_lock calls it in
    with pytest.raises(ConfigError) as caught, holding_state_dir(tmp_path,
                                                                 tmp_path / "gpusched.sock"):
        pass
    assert str(tmp_path / LOCK_NAME) in str(caught.value)
