"""Where the socket is (SPEC 2) and the daemon's settings file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import gpusched.config
import gpusched.paths
from gpusched.config import (
    DaemonSettings,
    client_socket_path,
    daemon_socket_path,
    default_config_path,
    default_state_dir,
    load_settings,
    user_socket_path,
)
from gpusched.errors import ConfigError


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """A clean slate: no GPUSCHED_SOCKET, XDG_RUNTIME_DIR in tmp, no system socket."""
    monkeypatch.delenv("GPUSCHED_SOCKET", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run-user"))
    monkeypatch.setattr(gpusched.paths, "SYSTEM_SOCKET", tmp_path / "system" / "gpusched.sock")
    return monkeypatch


def make_system_socket(tmp_path: Path) -> Path:
    path = tmp_path / "system" / "gpusched.sock"
    path.parent.mkdir()
    path.touch()
    return path


# --- the client's socket --------------------------------------------------------------------


def test_socket_flag_wins_over_everything(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_system_socket(tmp_path)
    env.setenv("GPUSCHED_SOCKET", "/from/env.sock")
    assert client_socket_path("/from/flag.sock") == Path("/from/flag.sock")


def test_env_wins_over_the_system_socket(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_system_socket(tmp_path)
    env.setenv("GPUSCHED_SOCKET", "/from/env.sock")
    assert client_socket_path() == Path("/from/env.sock")
    assert client_socket_path(None) == Path("/from/env.sock")


def test_the_system_socket_is_used_when_it_exists(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    system = make_system_socket(tmp_path)
    assert client_socket_path() == system


def test_the_per_user_socket_when_there_is_no_system_daemon(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    expected = tmp_path / "run-user" / "gpusched" / "gpusched.sock"
    assert client_socket_path() == expected
    assert user_socket_path() == expected


def test_empty_values_are_skipped(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env.setenv("GPUSCHED_SOCKET", "")
    assert client_socket_path("") == tmp_path / "run-user" / "gpusched" / "gpusched.sock"


def test_without_xdg_runtime_dir_the_user_socket_is_under_tmp(env: pytest.MonkeyPatch) -> None:
    env.delenv("XDG_RUNTIME_DIR")
    path = client_socket_path()
    assert path == Path(f"/tmp/gpusched-{os.getuid()}/gpusched/gpusched.sock")


# --- the daemon's socket and state ----------------------------------------------------------


def test_a_daemon_listens_on_flag_then_env(env: pytest.MonkeyPatch) -> None:
    env.setenv("GPUSCHED_SOCKET", "/from/env.sock")
    assert daemon_socket_path("/from/flag.sock") == Path("/from/flag.sock")
    assert daemon_socket_path() == Path("/from/env.sock")


def test_a_root_daemon_uses_the_system_socket(env: pytest.MonkeyPatch) -> None:
    env.setattr(os, "getuid", lambda: 0)
    assert daemon_socket_path() == gpusched.paths.SYSTEM_SOCKET
    assert default_state_dir() == Path("/var/lib/gpusched")


def test_a_user_daemon_uses_the_user_socket_even_when_a_system_one_exists(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    make_system_socket(tmp_path)
    env.setattr(os, "getuid", lambda: 1000)
    assert daemon_socket_path() == tmp_path / "run-user" / "gpusched" / "gpusched.sock"
    env.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_state_dir() == tmp_path / "state" / "gpusched"


# --- settings -------------------------------------------------------------------------------


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "gpusched.toml"
    path.write_text(text)
    return str(path)


def test_no_file_means_the_defaults() -> None:
    assert load_settings(None) == DaemonSettings()
    assert DaemonSettings().allow_foreign_sharing is False


def test_settings_from_the_daemon_table(tmp_path: Path) -> None:
    path = write(tmp_path, """
[daemon]
poll_interval_s = 0.01
grace_period_s = 3
allow_foreign_sharing = true
""")
    s = load_settings(path)
    assert s.poll_interval_s == 0.01
    assert s.grace_period_s == 3.0
    assert isinstance(s.grace_period_s, float)
    assert s.allow_foreign_sharing is True
    assert s.release_timeout_s == DaemonSettings().release_timeout_s


def test_a_file_without_a_daemon_table_gives_the_defaults(tmp_path: Path) -> None:
    assert load_settings(write(tmp_path, "")) == DaemonSettings()


def test_an_unknown_setting_is_an_error_naming_it_its_place_and_the_file(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "[daemon]\npoll_intervall_s = 1\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == (
        f"{path}: 1 problem in the daemon config\n"
        "  daemon.poll_intervall_s: unknown key 'poll_intervall_s'"
        " (did you mean 'poll_interval_s'?)")


@pytest.mark.parametrize(("line", "message"), [
    ("grace_period_s = 'ten'", "daemon.grace_period_s: must be a number (got 'ten')"),
    ("grace_period_s = true", "daemon.grace_period_s: must be a number (got true)"),
    ("grace_period_s = -1", "daemon.grace_period_s: must be a number >= 0 (got -1)"),
    ("grace_period_s = nan", "daemon.grace_period_s: must be a number (got nan)"),
    ("poll_interval_s = 0", "daemon.poll_interval_s: must be a number > 0 (got 0)"),
    ("allow_foreign_sharing = 1", "daemon.allow_foreign_sharing: must be true or false (got 1)"),
    ("allow_foreign_sharing = 'yes'",
     "daemon.allow_foreign_sharing: must be true or false (got 'yes')"),
    ("max_trials_per_user = 1.5",
     "daemon.max_trials_per_user: must be a whole number >= 0 (got 1.5)"),
    ("socket_group = 3", "daemon.socket_group: must be a string (got 3)"),
    ("admin_group = 'no-such-group-x'", "daemon.admin_group: no group 'no-such-group-x' on this"
     " host (create it with `groupadd --system no-such-group-x`, or leave the key out)"),
    ("state_dir = 'relative/dir'", "daemon.state_dir: must be an absolute path"
     " (got 'relative/dir')"),
    ("gpus = 'GPU-1'", "daemon.gpus: must be a list of GPU UUIDs or NVML indices (got 'GPU-1')"),
    ("exclude_gpus = [0, 'gpu0']", "daemon.exclude_gpus: each entry must be a GPU UUID ('GPU-…'"
     " or 'MIG-…') or an NVML index (0, 1, ...) (got 'gpu0')"),
    ("exclude_gpus = [-1]", "daemon.exclude_gpus: each entry must be a GPU UUID ('GPU-…'"
     " or 'MIG-…') or an NVML index (0, 1, ...) (got -1)"),
])
def test_a_wrong_value_is_an_error_saying_what_is_wanted(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, f"[daemon]\n{line}\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value) == f"{path}: 1 problem in the daemon config\n  {message}"


def test_every_problem_is_listed_at_once_each_on_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[daemon]\nnope = 1\nrelease_timeout_s = 'x'\n[gpu]\nuse = [0]\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    assert str(info.value).splitlines() == [
        f"{path}: 3 problems in the daemon config",
        "  gpu: unknown table or key 'gpu' (settings go in a [daemon] table)",
        "  daemon.nope: unknown key 'nope'",
        "  daemon.release_timeout_s: must be a number (got 'x')",
    ]


def test_every_setting_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, """
[daemon]
gpus = ["GPU-5f3c", 1]
exclude_gpus = [0]
max_gpus_per_user = 2.5
max_trials_per_user = 3
admin_group = "root"
socket_group = ""
state_dir = "/srv/gpusched"
log_file = "/var/log/gpusched/daemon.log"
release_threshold_mib = 0
""")
    s = load_settings(path)
    assert s.gpus == ("GPU-5f3c", 1)
    assert s.exclude_gpus == (0,)
    assert (s.max_gpus_per_user, s.max_trials_per_user) == (2.5, 3)
    assert (s.admin_group, s.socket_group) == ("root", "")
    assert (s.state_dir, s.log_file) == ("/srv/gpusched", "/var/log/gpusched/daemon.log")
    assert s.release_threshold_mib == 0.0


def test_bad_toml_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[daemon\npoll_interval_s = \n")
    with pytest.raises(ConfigError, match="is not valid TOML") as info:
        load_settings(path)
    assert path in str(info.value)


def test_a_daemon_key_that_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"daemon: must be a table \(\[daemon\]\)"):
        load_settings(write(tmp_path, "daemon = 3\n"))


def test_a_misspelt_daemon_table_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, "[deamon]\nallow_foreign_sharing = true\n")
    with pytest.raises(ConfigError, match="deamon") as info:
        load_settings(path)
    assert path in str(info.value)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    path = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="cannot read config") as info:
        load_settings(path)
    assert path in str(info.value)
    assert "No such file" in str(info.value)


def test_with_overrides_returns_a_copy() -> None:
    base = DaemonSettings()
    changed = base.with_overrides({"release_threshold_mib": 100}, "--set")
    assert changed.release_threshold_mib == 100.0
    assert base.release_threshold_mib == 512.0
    with pytest.raises(ConfigError, match=r"^--set: 1 problem in the daemon config\n"
                       r"  daemon.x: unknown key 'x'$"):
        base.with_overrides({"x": 1}, "--set")


def test_the_default_config_file_is_read_only_when_it_exists(
    env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env.setattr(os, "getuid", lambda: 1000)
    env.setenv("XDG_CONFIG_HOME", str(tmp_path / "conf"))
    assert default_config_path() is None
    mine = tmp_path / "conf" / "gpusched" / "config.toml"
    mine.parent.mkdir(parents=True)
    mine.write_text("[daemon]\n")
    assert default_config_path() == mine
    env.setattr(os, "getuid", lambda: 0)
    system = tmp_path / "etc-config.toml"
    env.setattr(gpusched.paths, "SYSTEM_CONFIG", system)
    assert default_config_path() is None
    system.write_text("")
    assert default_config_path() == system
