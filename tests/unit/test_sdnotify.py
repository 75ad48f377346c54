"""The notify protocol's edge cases: no manager, abstract sockets, the watchdog's owner."""

from __future__ import annotations

import os
import socket

from gpusched._daemon.sdnotify import Notifier


def test_without_a_manager_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier({})
    assert not notifier.enabled and notifier.watchdog_s is None
    notifier.ready("x")
    notifier.stopping()


def test_an_abstract_socket_and_the_watchdog_of_this_process() -> None:
    name = f"gpusched-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind("\0" + name)
        manager.settimeout(5)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "3000000",
                             "WATCHDOG_PID": str(os.getpid())})
        assert notifier.watchdog_s == 3.0
        notifier.ready("1 GPUs")
        assert manager.recv(4096) == b"READY=1\nSTATUS=1 GPUs"
        notifier.watchdog()
        assert manager.recv(4096) == b"WATCHDOG=1"


def test_a_watchdog_meant_for_another_process_is_not_ours() -> None:
    notifier = Notifier({"NOTIFY_SOCKET": "/nonexistent/notify", "WATCHDOG_USEC": "1000000",
                         "WATCHDOG_PID": "1"})
    assert notifier.watchdog_s is None
    notifier.ready("gone")  # the manager went away: ignored
