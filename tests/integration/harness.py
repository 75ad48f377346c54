"""A real daemon process on a real socket, with fake GPUs, for integration tests."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gpusched.client import Client
from gpusched.errors import NoDaemonError

T = TypeVar("T")
TRIALS = Path(__file__).parent / "trials"
FAST_SETTINGS = {
    "poll_interval_s": 0.05,
    "release_poll_s": 0.02,
    "report_poll_s": 0.02,
    "grace_period_s": 3.0,
    "shutdown_grace_s": 3.0,
    "release_timeout_s": 10.0,
}
TERMINAL = {"completed", "failed", "cancelled"}


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.02)


@dataclass
class Daemon:
    """A running daemon: its process, a client, and where its files are."""

    proc: subprocess.Popen[bytes]
    client: Client
    socket: Path
    state_dir: Path
    fake_file: Path
    log_path: Path
    tmp: Path

    def set_fake(self, config: dict[str, Any]) -> None:
        """Rewrite the fake-GPU file (the daemon reads it at every poll)."""
        tmp = self.fake_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        tmp.replace(self.fake_file)

    def submit(self, experiment: dict[str, Any], name: str = "exp") -> str:
        """Write ``experiment`` to a file and submit it through the CLI; return its id."""
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **experiment}))
        out = self.cli("submit", str(path))
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``gpusched ARGS --socket ...`` as a user would."""
        # --socket right after the command: after `--` it would belong to the trainer.
        return subprocess.run(
            [sys.executable, "-m", "gpusched", args[0], "--socket", str(self.socket), *args[1:]],
            capture_output=True, text=True, timeout=60, check=False,
        )

    def cli_json(self, *args: str) -> Any:
        """A read command's ``--json`` output, parsed."""
        out = self.cli(*args, "--json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def wait_experiment(self, exp_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Wait until the experiment has ended (the daemon's ``wait``); return its `show` view."""
        answer = self.client.wait(exp_id, timeout)
        assert answer["ended"], f"{exp_id} is still {answer['state']} after {timeout}s"
        view = self.client.show(exp_id)
        assert view["state"] in TERMINAL, view
        return view

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's structured log so far (JSON lines on stdout)."""
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out


def fake_config(count: int = 2, **overrides: Any) -> dict[str, Any]:
    """A fake-GPU file with ``count`` devices."""
    config: dict[str, Any] = {
        "devices": [{"name": "Fake H100", "memory_total_mib": 81559, "foreign_used_mib": 0}
                    for _ in range(count)],
        "idle_used_mib": 300, "trial_used_mib": 2000, "release_delay_s": 0.0,
    }
    config.update(overrides)
    return config


@contextmanager
def running_daemon(
    tmp: Path, *, fake: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
    state_dir: Path | None = None, nvml: bool = False, file_size_limit: int | None = None,
    env: dict[str, str] | None = None,
) -> Iterator[Daemon]:
    """Start ``gpusched daemon`` with fast settings; stop it (SIGTERM) at the end.

    With ``nvml=True`` the daemon uses the real NVML backend instead of fake GPUs.
    ``file_size_limit``: RLIMIT_FSIZE in bytes, so that its writes fail as on a full disk.
    ``env``: added to the daemon's environment.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    socket_path = tmp / "gpusched.sock"
    state = state_dir or tmp / "state"
    fake_file = tmp / "fake-gpus.json"
    fake_file.write_text(json.dumps(fake or fake_config()))
    config = tmp / "config.toml"
    lines = ["[daemon]"] + [f"{k} = {json.dumps(v)}"
                            for k, v in {**FAST_SETTINGS, **(settings or {})}.items()]
    config.write_text("\n".join(lines) + "\n")
    log_path = tmp / "daemon.log"
    env = {**os.environ, **(env or {})}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    argv = [sys.executable, "-m", "gpusched", "daemon", "--socket", str(socket_path),
            "--state-dir", str(state), "--config", str(config)]
    if not nvml:
        argv += ["--fake-gpus", str(fake_file)]
    with open(log_path, "ab") as log:
        limit = None if file_size_limit is None else (
            lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)))
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                preexec_fn=limit)  # noqa: PLW1509  # setrlimit takes no lock
    client = Client(socket_path, timeout_s=30)
    daemon = Daemon(proc, client, socket_path, state, fake_file, log_path, tmp)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"daemon exited {proc.returncode}: {log_path.read_text()}")
        try:
            client.hello()
            return True
        except NoDaemonError:
            return False

    try:
        wait_for(up, 20, "the daemon to answer")
        yield daemon
    finally:
        stop_daemon(proc)


def stop_daemon(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> int:
    """SIGTERM the daemon and wait for it (SIGKILL if it hangs); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def trial_script(name: str) -> str:
    """The path of a test trial script."""
    return str(TRIALS / name)
