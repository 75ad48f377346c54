"""The client's errors when the socket's other end misbehaves or its path cannot be used, and
`wait` across a daemon that goes away (no daemon in these tests)."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest

import gpusched.paths
from gpusched.client import Client
from gpusched.errors import DaemonGoneError, NoDaemonError, UnusableSocketError
from gpusched.paths import MAX_SOCKET_PATH_BYTES
from gpusched.protocol import encode


def test_no_socket_file_is_no_daemon(tmp_path: Path) -> None:
    with pytest.raises(NoDaemonError, match="start one with `gpusched daemon`"):
        Client(tmp_path / "none.sock", timeout_s=2).hello()


def test_a_listener_that_goes_away_unanswered_is_no_daemon_with_a_hint(tmp_path: Path) -> None:
    # As when a daemon is killed while a trial it was starting still held its socket: the
    # connection is taken into the backlog, then reset when that socket is closed.
    path = tmp_path / "s.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    closer = threading.Timer(0.3, listener.close)
    closer.start()
    started = time.monotonic()
    try:
        with pytest.raises(NoDaemonError, match=r"connection was reset .* `gpusched ls`"):
            Client(path, timeout_s=10).hello()
    finally:
        closer.join()
    assert time.monotonic() - started < 5  # the reset, not the timeout, ended it


# --- every OSError on connect is one line that says what to do --------------------------------


def test_a_socket_path_over_the_limit_says_the_limit_and_to_shorten_it(tmp_path: Path) -> None:
    path = tmp_path / ("x" * 120) / "gpusched.sock"
    with pytest.raises(UnusableSocketError) as info:
        Client(path, timeout_s=2).hello()
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert f"over the {MAX_SOCKET_PATH_BYTES}" in message and "shorter" in message
    assert "start one" not in message  # a daemon could not listen there either


def test_a_socket_path_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UnusableSocketError, match=r"a part of it is not a folder: check --socket"):
        Client(tmp_path / "file" / "s.sock", timeout_s=2).hello()


def test_any_other_connect_error_is_one_line_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "dgram.sock"  # a datagram socket: connect() says EPROTOTYPE
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(str(path))
        with pytest.raises(UnusableSocketError, match=rf"cannot connect to {path}: .*--socket"):
            Client(path, timeout_s=2).hello()


# --- the per-user socket's folders must be the user's own --------------------------------------


@pytest.fixture
def user_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The per-user socket under a private $XDG_RUNTIME_DIR in tmp (pytest makes it 0700)."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("GPUSCHED_SOCKET", raising=False)
    monkeypatch.setattr(gpusched.paths, "SYSTEM_SOCKET", tmp_path / "no-system.sock")
    return runtime / "gpusched" / "gpusched.sock"


def test_the_client_talks_through_a_private_per_user_folder(user_socket: Path) -> None:
    user_socket.parent.mkdir(mode=0o700)
    with pytest.raises(NoDaemonError, match="start one with `gpusched daemon`") as info:
        Client(timeout_s=2).hello()
    assert not isinstance(info.value, UnusableSocketError)


@pytest.mark.parametrize("mode, who", [(0o777, "group and others"), (0o770, "its group"),
                                       (0o703, "others")])
def test_the_client_refuses_a_per_user_folder_others_may_write(
    user_socket: Path, mode: int, who: str
) -> None:
    user_socket.parent.mkdir()
    user_socket.parent.chmod(mode)
    with pytest.raises(UnusableSocketError) as info:
        Client(timeout_s=2).hello()
    message = str(info.value)
    assert message.startswith(f"refusing to connect to {user_socket}: ") and "\n" not in message
    assert f"writable by {who}" in message and f"chmod 700 {user_socket.parent}" in message


def test_the_client_refuses_a_per_user_folder_of_another_user(
    user_socket: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_socket.parent.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(user_socket.parent).st_uid + 1)
    with pytest.raises(UnusableSocketError, match=r"XDG_RUNTIME_DIR \(.*\) belongs to uid"):
        Client(timeout_s=2).hello()


def test_the_client_refuses_a_per_user_folder_that_is_a_link(user_socket: Path) -> None:
    elsewhere = user_socket.parent.with_name("elsewhere")
    elsewhere.mkdir(mode=0o700)
    user_socket.parent.symlink_to(elsewhere)
    with pytest.raises(UnusableSocketError, match="is a symbolic link"):
        Client(timeout_s=2).hello()


def test_a_path_named_with_socket_is_not_checked_as_a_per_user_folder(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # the user's own choice, e.g. a folder shared with a group
    with pytest.raises(NoDaemonError, match="No such file"):
        Client(shared / "s.sock", timeout_s=2).hello()


# --- a daemon that goes away, and `wait` across a restart --------------------------------------


def serve_once(path: Path, answer: dict[str, object] | None) -> threading.Thread:
    """Listen at ``path`` for one request: answer it (None: close unanswered), then go."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            request = json.loads(conn.makefile("rb").readline())
            if answer is not None:
                conn.sendall(encode({"v": 1, "id": request["id"], "ok": True, "result": answer}))
        listener.close()
        path.unlink()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_daemon_that_closes_unanswered_is_gone_not_a_protocol_error(tmp_path: Path) -> None:
    thread = serve_once(tmp_path / "s.sock", None)
    with pytest.raises(DaemonGoneError, match="closed the connection before answering"):
        Client(tmp_path / "s.sock", timeout_s=5).hello()
    thread.join(5)


def test_wait_knocks_again_until_the_daemon_is_back(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    first = serve_once(path, None)  # a daemon stopping: the held `wait` closes unanswered
    client = Client(path, timeout_s=5)
    ended = {"id": "e1", "state": "completed", "ended": True}
    result: dict[str, object] = {}
    waiter = threading.Thread(target=lambda: result.update(
        client.wait("e1", reconnect_s=30)), daemon=True)
    waiter.start()
    first.join(5)
    time.sleep(1.2)  # no daemon for a while: the socket file is gone
    assert waiter.is_alive()
    second = serve_once(path, ended)  # the restarted daemon, on the same path
    waiter.join(10)
    second.join(5)
    assert result == ended


def test_wait_gives_up_when_the_daemon_stays_away(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    thread = serve_once(path, None)
    started = time.monotonic()
    with pytest.raises(DaemonGoneError) as info:
        Client(path, timeout_s=5).wait("e1", reconnect_s=0.6)
    thread.join(5)
    assert 0.5 < time.monotonic() - started < 5
    assert "went away while waiting for e1" in str(info.value)
    assert "`gpusched wait e1` again" in str(info.value) and "\n" not in str(info.value)


def test_wait_with_no_daemon_from_the_start_fails_at_once(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(NoDaemonError) as info:
        Client(tmp_path / "none.sock", timeout_s=5).wait("e1", reconnect_s=60)
    assert not isinstance(info.value, DaemonGoneError)
    assert time.monotonic() - started < 2  # a mistyped --socket does not hang for a minute
