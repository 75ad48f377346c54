"""A real ``gpusched daemon`` process in a temporary folder, on fake GPUs, for tests and benchmarks.

What gpusched's own integration tests and benchmarks use, and what a plugin author can use to run
a real search through a real daemon:

    with running_daemon(tmp_path) as daemon:
        exp = daemon.submit({"command": [...], "metric": "score", ...})
        view = daemon.wait_experiment(exp)

:func:`start_daemon` writes a ``[daemon]`` TOML config and a fake-GPU file (SPEC section 7) into
the folder, starts ``python -m gpusched daemon`` as a user would, and waits until its socket
answers ``hello``. :func:`stop_daemon` sends SIGTERM (SIGKILL if it hangs); :func:`kill_daemon`
SIGKILLs it, as a crash would, and :func:`start_daemon` on the same folder starts it again on
the same socket and state folder.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpusched.client import Client
from gpusched.errors import NoDaemonError

__all__ = [
    "DaemonProcess",
    "TERMINAL_STATES",
    "fake_gpu_config",
    "kill_daemon",
    "log_tail",
    "running_daemon",
    "start_daemon",
    "stop_daemon",
    "wait_warm",
]

TERMINAL_STATES = frozenset({"completed", "failed", "cancelled"})
_CLI_TIMEOUT_S = 120


@dataclass
class DaemonProcess:
    """A running daemon: its process, a client, and where its files are."""

    proc: subprocess.Popen[bytes]
    client: Client
    socket: Path
    state_dir: Path
    fake_file: Path
    log_path: Path
    tmp: Path

    @property
    def pid(self) -> int:
        """The daemon's pid, as the daemon itself reports it (``hello``)."""
        return int(self.client.hello()["pid"])

    @property
    def db_path(self) -> Path:
        """The SQLite trial log."""
        return self.state_dir / "trials.db"

    def set_fake(self, config: Mapping[str, Any]) -> None:
        """Rewrite the fake-GPU file (the daemon reads it at every poll), atomically."""
        tmp = self.fake_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(dict(config)))
        tmp.replace(self.fake_file)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``gpusched ARGS`` against this daemon's socket, as a user would."""
        # --socket right after the command: after `--` it would belong to the trainer.
        return subprocess.run(
            [sys.executable, "-m", "gpusched", args[0], "--socket", str(self.socket), *args[1:]],
            capture_output=True, text=True, timeout=_CLI_TIMEOUT_S, check=False,
        )

    def cli_json(self, *args: str) -> Any:
        """A read command's ``--json`` output, parsed."""
        out = self.cli(*args, "--json")
        if out.returncode != 0:
            raise RuntimeError(f"gpusched {' '.join(args)} failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def submit_file(self, path: Path) -> str:
        """``gpusched submit PATH`` through the real CLI; the new experiment's id."""
        out = self.cli("submit", str(path))
        if out.returncode != 0:
            raise RuntimeError(f"gpusched submit failed ({out.returncode}): {out.stderr.strip()}")
        return out.stdout.strip()

    def submit(self, experiment: Mapping[str, Any], name: str = "exp") -> str:
        """Write ``experiment`` (named ``name`` unless it has a name) to a YAML file in the
        folder and submit it through the CLI; the new experiment's id."""
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({"name": name, **experiment}, sort_keys=False))
        return self.submit_file(path)

    def wait_experiment(self, exp_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Block in the daemon's ``wait`` until the experiment has ended; its ``show`` view."""
        answer = self.client.wait(exp_id, timeout)
        if not answer["ended"]:
            raise RuntimeError(f"{exp_id} is still {answer['state']} after {timeout}s")
        view: dict[str, Any] = self.client.show(exp_id)
        return view

    def log_events(self) -> list[dict[str, Any]]:
        """The daemon's structured log so far (JSON lines; other lines skipped)."""
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out


def fake_gpu_config(count: int = 2, **overrides: Any) -> dict[str, Any]:
    """A fake-GPU file (SPEC section 7) with ``count`` idle devices; ``overrides`` replace keys."""
    config: dict[str, Any] = {
        "devices": [{"name": "Fake H100", "memory_total_mib": 81559, "foreign_used_mib": 0}
                    for _ in range(count)],
        "idle_used_mib": 300, "trial_used_mib": 2000, "release_delay_s": 0.0,
    }
    config.update(overrides)
    return config


def _write_config(path: Path, settings: Mapping[str, Any]) -> None:
    lines = ["[daemon]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")


def start_daemon(
    tmp: Path,
    *,
    settings: Mapping[str, Any] | None = None,
    fake: Mapping[str, Any] | None = None,
    state_dir: Path | None = None,
    nvml: bool = False,
    file_size_limit: int | None = None,
    env: Mapping[str, str] | None = None,
    start_timeout_s: float = 30.0,
) -> DaemonProcess:
    """Start ``gpusched daemon`` in ``tmp`` and wait until its socket answers ``hello``.

    ``settings``: the ``[daemon]`` table of its config file. ``fake``: the fake-GPU file's
    content (default: :func:`fake_gpu_config`); with ``nvml=True`` the daemon uses the real NVML
    backend instead. ``file_size_limit``: RLIMIT_FSIZE in bytes, so that its writes fail as on a
    full disk. ``env``: added to its environment (whose PATH starts with this Python's folder, so
    trials that run ``python`` get this one). Starting it again on the same ``tmp`` reuses the
    socket path and state folder, and appends to its log. The caller stops it; if it does not
    come up, it is stopped and ``RuntimeError`` says why.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    socket_path = tmp / "gpusched.sock"
    state = state_dir or tmp / "state"
    fake_file = tmp / "fake-gpus.json"
    if fake is not None or not fake_file.exists():
        fake_file.write_text(json.dumps(dict(fake or fake_gpu_config())))
    config = tmp / "config.toml"
    _write_config(config, settings or {})
    log_path = tmp / "daemon.log"
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{full_env.get('PATH', '')}"
    argv = [sys.executable, "-m", "gpusched", "daemon", "--socket", str(socket_path),
            "--state-dir", str(state), "--config", str(config)]
    if not nvml:
        argv += ["--fake-gpus", str(fake_file)]
    limit = None if file_size_limit is None else (
        lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit)))
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                                preexec_fn=limit)  # noqa: PLW1509  # setrlimit takes no lock
    daemon = DaemonProcess(proc, Client(socket_path, timeout_s=30), socket_path, state,
                           fake_file, log_path, tmp)
    try:
        _wait_answering(daemon, start_timeout_s)
    except BaseException:
        stop_daemon(proc)
        raise
    return daemon


def _wait_answering(daemon: DaemonProcess, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if daemon.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {daemon.proc.returncode}:\n"
                               f"{log_tail(daemon.log_path)}")
        try:
            daemon.client.hello()
            return
        except NoDaemonError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not answer in {timeout_s}s:\n"
                                   f"{log_tail(daemon.log_path)}") from None
            time.sleep(0.02)


@contextmanager
def running_daemon(
    tmp: Path, *, warm: bool = False, **options: Any
) -> Iterator[DaemonProcess]:
    """:func:`start_daemon` for the block (same options); stopped with SIGTERM at its end.

    ``warm``: also wait until the daemon has finished starting up (:func:`wait_warm`).
    """
    daemon = start_daemon(tmp, **options)
    try:
        if warm:
            wait_warm(daemon, timeout_s=options.get("start_timeout_s", 30.0))
        yield daemon
    finally:
        stop_daemon(daemon.proc)


def wait_warm(daemon: DaemonProcess, *, timeout_s: float) -> None:
    """Wait for the daemon's ``plugins_loaded`` event: it imports every installed plugin in a
    worker thread right after start-up, and a submit during that time waits for it."""
    deadline = time.monotonic() + timeout_s
    while b'"plugins_loaded"' not in daemon.log_path.read_bytes():
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not load its plugins:\n{log_tail(daemon.log_path)}")
        time.sleep(0.02)


def stop_daemon(proc: subprocess.Popen[bytes], timeout_s: float = 30.0) -> int:
    """SIGTERM the daemon and wait for it (SIGKILL if it hangs); its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill_daemon(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the daemon (a crash: no cleanup, its socket file stays) and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file ("" if it cannot be read)."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
