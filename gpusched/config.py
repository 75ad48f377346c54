"""Where things live: the socket a client talks to, and the daemon's settings.

The client finds the socket from ``--socket``, else ``GPUSCHED_SOCKET``, else the system daemon's
(``/run/gpusched/gpusched.sock``) when it exists, else the per-user one under
``$XDG_RUNTIME_DIR``. Every delay and poll interval of the daemon is a setting, so that tests
set them near zero.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from gpusched import _config_check as _check
from gpusched.errors import ConfigError, Problem

__all__ = [
    "SYSTEM_SOCKET",
    "SYSTEM_STATE_DIR",
    "SYSTEM_CONFIG",
    "DaemonSettings",
    "user_socket_path",
    "client_socket_path",
    "daemon_socket_path",
    "default_state_dir",
    "default_config_path",
    "load_settings",
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


def _setting(default: Any, check: _check.Check) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class DaemonSettings:
    """Every tunable of the daemon (the ``[daemon]`` table). Seconds, MiB; docs/config.md."""

    poll_interval_s: float = _setting(0.5, _check.positive)  # GPU readings, nothing releasing
    release_poll_s: float = _setting(0.05, _check.positive)  # ... while a device is releasing
    release_timeout_s: float = _setting(60.0, _check.positive)  # releasing longer: quarantined
    # "back near idle": within this of the idle level
    release_threshold_mib: float = _setting(512.0, _check.non_negative)
    report_poll_s: float = _setting(0.1, _check.positive)  # reading running trials' reports
    grace_period_s: float = _setting(10.0, _check.non_negative)  # SIGTERM -> SIGKILL
    shutdown_grace_s: float = _setting(10.0, _check.non_negative)  # ... when the daemon stops
    # Give out GPUs that foreign processes use (false: such a GPU is `foreign`, not given out).
    allow_foreign_sharing: bool = _setting(False, _check.boolean)
    # Use only these GPUs (UUIDs or NVML indices; empty: all), and never these.
    gpus: tuple[str | int, ...] = _setting((), _check.device_list)
    exclude_gpus: tuple[str | int, ...] = _setting((), _check.device_list)
    # Members of this group may cancel and resume anyone's experiments ("": only the owner and
    # root).
    admin_group: str = _setting("", _check.existing_group)
    # A daemon running as root gives its socket to this group, mode 0660 (when it exists).
    socket_group: str = _setting("gpusched", _check.text)
    # Per user, at once: GPUs held by running trials (0.5 counts half) and running trials.
    # 0: no limit.
    max_gpus_per_user: float = _setting(0.0, _check.non_negative)
    max_trials_per_user: int = _setting(0, _check.non_negative_int)
    state_dir: str = _setting("", _check.path_text)  # "": the default; --state-dir wins
    log_file: str = _setting("", _check.path_text)  # also append the JSON log here ("": no)

    def with_overrides(self, values: dict[str, Any], source: str) -> DaemonSettings:
        """A copy with ``values`` applied; every unknown key or bad value, at once, is one
        ConfigError."""
        clean, problems = _checked(values, "daemon")
        if problems:
            raise ConfigError(_report(source, problems))
        return replace(self, **clean)


def _checked(values: dict[str, Any], table: str) -> tuple[dict[str, Any], list[Problem]]:
    from gpusched._spec_check import unknown_key  # here: a client need not import it to start

    checks = {f.name: f.metadata["check"] for f in fields(DaemonSettings)}
    clean: dict[str, Any] = {}
    problems = []
    for key, value in values.items():
        place = f"{table}.{key}"
        if key not in checks:
            problems.append(Problem(place, unknown_key(key, checks)))
            continue
        try:
            clean[key] = checks[key](value)
        except _check.BadValue as exc:
            problems.append(Problem(place, str(exc)))
    return clean, problems


def _report(source: str, problems: list[Problem]) -> str:
    plural = "s" if len(problems) != 1 else ""
    lines = "\n".join(f"  {p}" for p in problems)
    return f"{source}: {len(problems)} problem{plural} in the daemon config\n{lines}"


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
    problems = [Problem(str(key), f"unknown table or key {key!r} (settings go in a [daemon]"
                        " table)") for key in data if key != "daemon"]
    table = data.get("daemon", {})
    if not isinstance(table, dict):
        problems.append(Problem("daemon", "must be a table ([daemon])"))
        table = {}
    problems += _checked(table, "daemon")[1]
    if problems:
        raise ConfigError(_report(path, problems))
    return settings.with_overrides(table, str(path))
