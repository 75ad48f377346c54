"""The client's errors when the socket's other end misbehaves (no daemon in these tests)."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from gpusched.client import Client
from gpusched.errors import NoDaemonError


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
