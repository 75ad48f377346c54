"""Where things live: the socket a client talks to, the daemon's socket, state and config.

The client finds the socket from ``--socket``, else ``GPUSCHED_SOCKET``, else the system daemon's
(``/run/gpusched/gpusched.sock``) when it exists, else the per-user one under
``$XDG_RUNTIME_DIR``. Standard library only, and kept apart from the settings (config.py): every
client command imports it, and it should start fast.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "SYSTEM_SOCKET",
    "SYSTEM_STATE_DIR",
    "SYSTEM_CONFIG",
    "user_socket_path",
    "client_socket_path",
    "daemon_socket_path",
    "default_state_dir",
    "default_config_path",
]

SYSTEM_SOCKET = Path("/run/gpusched/gpusched.sock")
SYSTEM_STATE_DIR = Path("/var/lib/gpusched")
SYSTEM_CONFIG = Path("/etc/gpusched/config.toml")


def user_socket_path() -> Path:
    """The per-user daemon's socket: under ``$XDG_RUNTIME_DIR``, else under /tmp."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path(f"/tmp/gpusched-{os.getuid()}")
    return base / "gpusched" / "gpusched.sock"


def _named_socket(explicit: str | None) -> Path | None:
    """``--socket``, else ``$GPUSCHED_SOCKET``: a path the user named, for client and daemon."""
    chosen = explicit or os.environ.get("GPUSCHED_SOCKET")
    return Path(chosen) if chosen else None


def client_socket_path(explicit: str | None = None) -> Path:
    """The socket a client should talk to (see the module docstring for the order)."""
    named = _named_socket(explicit)
    if named is not None:
        return named
    return SYSTEM_SOCKET if SYSTEM_SOCKET.exists() else user_socket_path()


def daemon_socket_path(explicit: str | None = None) -> Path:
    """The socket a daemon listens on: the system path as root, the per-user one otherwise."""
    named = _named_socket(explicit)
    if named is not None:
        return named
    return SYSTEM_SOCKET if os.getuid() == 0 else user_socket_path()


def default_state_dir() -> Path:
    """The trial log and trial folders: /var/lib/gpusched as root, else $XDG_STATE_HOME."""
    if os.getuid() == 0:
        return SYSTEM_STATE_DIR
    state_home = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state_home) / "gpusched"


def default_config_path() -> Path | None:
    """The settings file read without ``--config``: /etc/gpusched/config.toml as root, else
    ``$XDG_CONFIG_HOME/gpusched/config.toml``; None when that file does not exist."""
    if os.getuid() == 0:
        path = SYSTEM_CONFIG
    else:
        config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
        path = Path(config_home) / "gpusched" / "config.toml"
    return path if path.exists() else None
