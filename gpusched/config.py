"""The daemon's settings (the ``[daemon]`` table of its TOML file), and where things live.

Every delay and poll interval of the daemon is a setting, so that tests set them near zero.
The paths (socket, state folder, config file) are in :mod:`gpusched.paths`, re-exported here.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any

from gpusched import _config_check as _check
from gpusched.errors import ConfigError, Problem
from gpusched.paths import (
    SYSTEM_CONFIG,
    SYSTEM_SOCKET,
    SYSTEM_STATE_DIR,
    client_socket_path,
    daemon_socket_path,
    default_config_path,
    default_state_dir,
    user_socket_path,
)

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

def _setting(default: Any, check: _check.Check) -> Any:
    return field(default=default, metadata={"check": check})


@dataclass(frozen=True)
class DaemonSettings:
    """Every tunable of the daemon (the ``[daemon]`` table). Seconds, MiB; docs/config.md."""

    poll_interval_s: float = _setting(0.5, _check.positive)  # GPU readings, nothing releasing
    release_poll_s: float = _setting(0.05, _check.positive)  # ... while a device is releasing
    release_timeout_s: float = _setting(60.0, _check.positive)  # releasing longer: quarantined
    # A device read (NVML) unanswered this long: every device quarantined until one answers.
    device_read_timeout_s: float = _setting(20.0, _check.positive)
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
