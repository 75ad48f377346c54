"""The daemon's socket path: what it makes, what it removes (only a stale socket) and what it
refuses, each in one line that says what to do; and the state folder it cannot create."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

import gpusched.paths
from gpusched._daemon.main import _make_state_dir
from gpusched._daemon.server import prepare_socket_path
from gpusched.errors import ConfigError


def refusal(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        prepare_socket_path(path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("kind", ["file", "folder", "link"])
def test_an_existing_path_that_is_not_a_socket_is_refused_and_kept(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "exp.yaml"  # `gpusched daemon --socket exp.yaml` by mistake
    if kind == "file":
        path.write_text("name: precious\n")
    elif kind == "folder":
        path.mkdir()
    else:
        (tmp_path / "target.sock").write_text("")
        path.symlink_to(tmp_path / "target.sock")
    message = refusal(path)
    assert f"{path} is a" in message and "not a socket" in message and "--socket" in message
    assert path.exists() or path.is_symlink()
    if kind == "file":
        assert path.read_text() == "name: precious\n"


def test_a_stale_socket_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "gpusched.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: what a crashed daemon leaves
    prepare_socket_path(path)
    assert not path.exists()


def test_the_first_check_leaves_a_stale_socket_for_clients_to_be_refused_by(
    tmp_path: Path,
) -> None:
    # The daemon's check before it recovers its trials: until it listens, a client is refused
    # by the stale socket ("a daemon may be starting"), not told that there is none.
    path = tmp_path / "gpusched.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    prepare_socket_path(path, remove_stale=False)
    assert stat.S_ISSOCK(path.lstat().st_mode)
    prepare_socket_path(path)
    assert not path.exists()


def test_a_live_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "gpusched.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        s.listen(1)
        assert "another daemon is listening" in refusal(path)
    assert stat.S_ISSOCK(path.lstat().st_mode)


def test_a_path_over_the_limit_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "gpusched.sock"
    message = refusal(path)
    assert "over the 107" in message and "shorter" in message
    assert not path.parent.exists()


def test_a_socket_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    message = refusal(tmp_path / "file" / "gpusched.sock")
    assert f"cannot create the socket's folder {tmp_path / 'file'}" in message
    assert "--socket" in message


@pytest.fixture
def user_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The per-user socket under $XDG_RUNTIME_DIR in tmp, not made yet."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    return gpusched.paths.user_socket_path()


def test_the_per_user_folders_are_made_private(user_socket: Path) -> None:
    prepare_socket_path(user_socket)
    for folder in (user_socket.parent.parent, user_socket.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700


def test_without_xdg_runtime_dir_the_tmp_folders_are_the_ones_checked(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    base = Path(f"/tmp/gpusched-{os.getuid()}")
    assert gpusched.paths.private_socket_folders(gpusched.paths.user_socket_path()) == [
        (base, False), (base / "gpusched", False)]
    assert gpusched.paths.private_socket_folders(Path("/elsewhere/gpusched.sock")) == []


def test_a_per_user_folder_others_may_write_is_refused(user_socket: Path) -> None:
    user_socket.parent.mkdir(parents=True)
    user_socket.parent.chmod(0o777)  # made first by someone else, or by a loose umask
    message = refusal(user_socket)
    assert message.startswith(f"refusing to listen at {user_socket}: ")
    assert "writable by group and others" in message and "chmod 700" in message


def test_a_per_user_folder_of_another_user_is_refused(
    user_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_socket.parent.mkdir(parents=True, mode=0o700)
    user_socket.parent.parent.chmod(0o700)
    owner = user_socket.parent.stat().st_uid
    monkeypatch.setattr(os, "geteuid", lambda: owner + 1)
    message = refusal(user_socket)
    assert f"belongs to uid {owner}, not to you (uid {owner + 1})" in message
    assert "XDG_RUNTIME_DIR" in message  # its base: the fix is in that variable


def test_a_state_folder_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    for state_dir, why in [(tmp_path / "file", "it exists and is not a folder"),
                           (tmp_path / "file" / "state", "Not a directory")]:
        with pytest.raises(ConfigError) as info:
            _make_state_dir(state_dir)
        message = str(info.value)
        assert message.startswith(f"cannot create the state folder {state_dir}: {why}")
        assert "--state-dir" in message and "\n" not in message


def test_the_peer_uid_is_read_unsigned() -> None:
    # uid_t is unsigned: a uid of 2**31 or more (AD/winbind id maps) once came out negative,
    # and its owner was refused as "not in the user database".
    import struct

    from gpusched._daemon.server import uid_from_ucred

    assert uid_from_ucred(struct.pack("=iII", 1234, 3_000_000_000, 5)) == 3_000_000_000
    assert uid_from_ucred(struct.pack("=iII", 1, 4_294_967_294, 5)) == 4_294_967_294
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        creds = a.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("=iII"))
        assert uid_from_ucred(creds) == os.geteuid()
