"""systemd's notify protocol, in a few lines of our own (no dependency): ``READY=1``,
``STATUS=...``, ``STOPPING=1`` and watchdog pings, as datagrams to ``$NOTIFY_SOCKET``.

Outside systemd (no ``NOTIFY_SOCKET``) every call does nothing. The socket may be a path or an
abstract name (``@name``). Send errors are ignored: the daemon must not fail because its
supervisor went away. See sd_notify(3).
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to the service manager, when there is one."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]  # an abstract socket
        elif address.startswith("/"):
            self.address = address
        self.watchdog_s: float | None = None
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    def __repr__(self) -> str:
        return f"<Notifier to={self.address!r} watchdog_s={self.watchdog_s}>"

    @property
    def enabled(self) -> bool:
        """True under a service manager that asked for notifications."""
        return self.address is not None

    def notify(self, *assignments: str) -> None:
        """Send ``KEY=VALUE`` lines in one datagram (nothing without a manager)."""
        if self.address is None or not assignments:
            return
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto("\n".join(assignments).encode(), self.address)

    def ready(self, status: str) -> None:
        """Start-up is complete: the socket answers."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """A one-line status for ``systemctl status``."""
        self.notify(f"STATUS={status}")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self.notify("STOPPING=1", "STATUS=stopping: trials get SIGTERM and the grace period")

    def watchdog(self) -> None:
        """Still alive (the event loop runs)."""
        self.notify("WATCHDOG=1")
