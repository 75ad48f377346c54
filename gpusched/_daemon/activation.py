"""systemd socket activation: take the listening socket that systemd passed us, if any.

systemd binds ``gpusched.socket`` itself (so clients can connect before the daemon runs, and
the socket's owner, group and mode are set by the unit), starts the daemon with the socket as
file descriptor 3, and says so in ``LISTEN_PID`` / ``LISTEN_FDS`` (sd_listen_fds(3)). Those
variables are removed from the environment here, before any trial could inherit them.
"""

from __future__ import annotations

import os
import socket
import stat

from gpusched.errors import ConfigError

__all__ = ["SD_LISTEN_FDS_START", "take_activated_socket"]

SD_LISTEN_FDS_START = 3


def take_activated_socket(env: dict[str, str] | None = None) -> socket.socket | None:
    """The socket systemd passed (None when not socket-activated); clears the variables.

    ``env`` defaults to ``os.environ`` (and is modified in place).
    """
    environ: dict[str, str] | os._Environ[str] = os.environ if env is None else env
    pid, count = environ.get("LISTEN_PID", ""), environ.get("LISTEN_FDS", "")
    for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        environ.pop(name, None)
    if not pid or pid != str(os.getpid()):
        return None  # meant for another process (or absent)
    if count != "1":
        raise ConfigError(f"socket activation passed LISTEN_FDS={count!r}; gpusched listens on"
                          " exactly one socket: give its .socket unit one ListenStream=")
    fd = SD_LISTEN_FDS_START
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        raise ConfigError(f"socket activation: file descriptor {fd} is not open: {exc}") from None
    if not stat.S_ISSOCK(mode):
        raise ConfigError(f"socket activation: file descriptor {fd} is not a socket")
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.detach()
        raise ConfigError("socket activation: the socket must be a Unix stream socket"
                          " (ListenStream=/run/gpusched/gpusched.sock)")
    sock.set_inheritable(False)  # never into a trial
    return sock
