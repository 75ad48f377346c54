"""Where things live: the socket a client talks to, and the daemon's settings.

The client finds the socket from ``--socket``, else ``GPUSCHED_SOCKET``, else the system daemon's
(``/run/gpusched/gpusched.sock``) when it exists, else the per-user one under
``$XDG_RUNTIME_DIR``. Every delay and poll interval of the daemon is a setting, so that tests
set them near zero.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from gpusched.errors import ConfigError

__all__ = [
    "SYSTEM_SOCKET",
    "SYSTEM_STATE_DIR",
    "DaemonSettings",
    "user_socket_path",
    "client_socket_path",
    "daemon_socket_path",
    "default_state_dir",
    "load_settings",
]

SYSTEM_SOCKET = Path("/run/gpusched/gpusched.sock")
SYSTEM_STATE_DIR = Path("/var/lib/gpusched")


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


@dataclass(frozen=True)
class DaemonSettings:
    """Every tunable of the daemon. Durations in seconds, memory in MiB."""

    poll_interval_s: float = 0.5  # GPU readings while nothing is releasing
    release_poll_s: float = 0.05  # GPU readings while a device is releasing
    release_timeout_s: float = 60.0  # releasing longer than this -> quarantined
    release_threshold_mib: float = 512.0  # "back near idle": within this of the idle level
    report_poll_s: float = 0.1  # how often a running trial's report files are read
    grace_period_s: float = 10.0  # SIGTERM -> SIGKILL
    shutdown_grace_s: float = 10.0  # grace given to trials when the daemon stops
    allow_foreign_sharing: bool = False  # give out GPUs that foreign processes use
    # Members of this group may cancel and resume anyone's experiments ("": nobody but the
    # owner and root).
    admin_group: str = ""
    # A daemon running as root gives its socket to this group, mode 0660 (when it exists).
    socket_group: str = "gpusched"

    def with_overrides(self, values: dict[str, Any], source: str) -> DaemonSettings:
        """A copy with ``values`` applied; unknown keys or wrong types are a ConfigError."""
        known = {f.name: f for f in fields(self)}
        problems = []
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                problems.append(f"unknown setting '{key}'")
                continue
            want = {"bool": bool, "str": str}.get(str(known[key].type), float)
            if want is str:
                if isinstance(value, str):
                    clean[key] = value
                else:
                    problems.append(f"'{key}' must be a string (a group's name)")
            elif want is bool and not isinstance(value, bool):
                problems.append(f"'{key}' must be true or false")
            elif want is float and (isinstance(value, bool) or not isinstance(value, int | float)
                                    or value < 0):
                problems.append(f"'{key}' must be a number >= 0")
            else:
                clean[key] = want(value)
        if problems:
            raise ConfigError(f"{source}: " + "; ".join(problems))
        return replace(self, **clean)


def load_settings(path: str | None) -> DaemonSettings:
    """Settings from the ``[daemon]`` table of a TOML file (defaults when ``path`` is None)."""
    settings = DaemonSettings()
    if path is None:
        return settings
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"daemon"})
    if unknown:
        raise ConfigError(f"{path}: unknown table or key {', '.join(map(repr, unknown))}"
                          " (settings go in a [daemon] table)")
    table = data.get("daemon", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [daemon] must be a table")
    return settings.with_overrides(table, str(path))
