"""This process's umask, read without changing it (the client sends it at submit; the daemon
compares it with its own)."""

from __future__ import annotations

import os

__all__ = ["process_umask"]


def process_umask() -> int:
    """The umask of this process.

    Read from ``/proc/self/status`` (Linux 4.7 and later). Else it is set to read it back, as
    POSIX allows no other way: for that instant it is 0 for the process's other threads too,
    and a file one of them makes meanwhile would be open to everyone.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8) & 0o777
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # the strictest for the instant it lasts
    os.umask(mask)
    return mask
