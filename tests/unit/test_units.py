"""What systemd/ must hold (issue 5): the choices the README explains, kept by a test, and the
shipped config.toml in step with the settings' defaults. `systemd-analyze verify` runs in
tests/integration/test_service.py."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

from gpusched.config import DaemonSettings, load_settings

UNITS = Path(__file__).resolve().parents[2] / "systemd"


def unit(name: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> values (a key may repeat, as DeviceAllow does)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for raw in (UNITS / name).read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key, []).append(value)
    return sections


def test_the_service_is_a_notify_service_with_its_three_folders() -> None:
    service = unit("gpusched.service")["Service"]
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]
    assert int(service["WatchdogSec"][0]) > 0
    for key in ("RuntimeDirectory", "StateDirectory", "LogsDirectory"):
        assert service[key] == ["gpusched"], key
    assert service["RuntimeDirectoryPreserve"] == ["yes"]  # the socket outlives a restart


def test_the_service_stops_trials_itself_and_survives_a_trials_oom_kill() -> None:
    service = unit("gpusched.service")["Service"]
    assert service["KillMode"] == ["mixed"]
    # systemd must wait longer than the daemon's own grace before it SIGKILLs everything.
    assert float(service["TimeoutStopSec"][0]) > DaemonSettings().shutdown_grace_s + 10
    assert service["OOMPolicy"] == ["continue"]


def test_the_hardening_still_reaches_the_nvidia_devices_and_home_folders() -> None:
    service = unit("gpusched.service")["Service"]
    assert service.get("PrivateDevices", ["no"]) == ["no"]
    assert service["DevicePolicy"] == ["closed"]
    allowed = {value.split()[0]: value.split()[1] for value in service["DeviceAllow"]}
    assert allowed["char-nvidia*"] == "rw"
    for node in ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                 "/dev/nvidia-modeset"):
        assert allowed[node] == "rw", node
    assert service["ProtectHome"] == ["no"]  # trainers run from, and write to, home folders
    assert service["ProtectSystem"] == ["full"]  # not strict: outputs go anywhere users may
    assert service["NoNewPrivileges"] == ["yes"]
    assert "MemoryDenyWriteExecute" not in service  # JIT compilers need W+X memory


def test_the_socket_is_the_gpusched_groups() -> None:
    socket = unit("gpusched.socket")["Socket"]
    assert socket["ListenStream"] == ["/run/gpusched/gpusched.sock"]
    assert (socket["SocketGroup"], socket["SocketMode"]) == (["gpusched"], ["0660"])
    exec_start = unit("gpusched.service")["Service"]["ExecStart"][0]
    assert "--socket /run/gpusched/gpusched.sock" in exec_start


def test_the_shipped_config_loads_and_shows_every_setting_at_its_default() -> None:
    path = UNITS / "config.toml"
    shipped = tomllib.loads(path.read_text())["daemon"]
    defaults = DaemonSettings()
    assert set(shipped) == {f.name for f in dataclasses.fields(DaemonSettings)}
    for key, value in shipped.items():
        if key in ("state_dir", "log_file"):
            continue  # the service's folders, where the per-user daemon has none
        default = getattr(defaults, key)
        assert (tuple(value) if isinstance(value, list) else value) == default, key
    settings = load_settings(str(path))
    assert (settings.state_dir, settings.log_file) == ("/var/lib/gpusched",
                                                       "/var/log/gpusched/daemon.log")
