"""What the benchmarks share: a real ``gpusched daemon`` on fake GPUs in a temporary folder.

:func:`running_daemon` writes a ``[daemon]`` TOML config and a fake-GPU file, starts
``python -m gpusched daemon --fake-gpus FILE`` as a user would, waits until its socket answers,
and stops it with SIGTERM at the end. :func:`submit_cli` submits an experiment file through the
real CLI (``gpusched submit``), and :func:`wait_ended` blocks in
``Client.wait`` (the daemon answers when the experiment ends). For crash tests,
:func:`start_daemon` starts one without a ``with`` block, :func:`kill_daemon` SIGKILLs it, and
:func:`start_daemon` on the same folder starts it again on the same socket and state folder.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gpusched.client import Client
from gpusched.errors import NoDaemonError

__all__ = [
    "BenchDaemon",
    "TERMINAL",
    "cpu_seconds",
    "describe_settings",
    "fake_gpus",
    "kill_daemon",
    "log_tail",
    "machine",
    "median",
    "print_table",
    "running_daemon",
    "start_daemon",
    "stop_daemon",
    "submit_cli",
    "vm_hwm_kib",
    "wait_ended",
    "write_experiment",
]

TERMINAL = frozenset({"completed", "failed", "cancelled"})


@dataclass
class BenchDaemon:
    """A running daemon: its process, a client, and where its files are."""

    proc: subprocess.Popen[bytes]
    client: Client
    socket: Path
    state_dir: Path
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


def fake_gpus(count: int, *, release_delay_s: float = 0.0) -> dict[str, Any]:
    """A fake-GPU file (SPEC section 7) with ``count`` idle devices."""
    return {
        "devices": [{"name": "Fake H100", "memory_total_mib": 81559, "foreign_used_mib": 0}
                    for _ in range(count)],
        "idle_used_mib": 300, "trial_used_mib": 2000, "release_delay_s": release_delay_s,
    }


def describe_settings(settings: Mapping[str, object], fake: Mapping[str, Any]) -> str:
    """One line naming every daemon setting and the fake-GPU release delay used."""
    parts = [f"{k}={v}" for k, v in settings.items()]
    parts.append(f"fake release_delay_s={fake.get('release_delay_s', 0.0)}")
    return ", ".join(parts)


@contextmanager
def running_daemon(
    tmp: Path, *, settings: Mapping[str, object], fake: Mapping[str, Any],
    start_timeout_s: float = 30.0, warm: bool = False,
) -> Iterator[BenchDaemon]:
    """Start ``gpusched daemon`` in ``tmp``; stop it with SIGTERM when the block ends.

    ``warm``: also wait until the daemon has finished starting up (its ``plugins_loaded``
    event), as a long-running service has long before anyone submits.
    """
    daemon = start_daemon(tmp, settings=settings, fake=fake, start_timeout_s=start_timeout_s)
    if warm:
        try:
            wait_warm(daemon, timeout_s=start_timeout_s)
        except BaseException:
            stop_daemon(daemon.proc)
            raise
    try:
        yield daemon
    finally:
        stop_daemon(daemon.proc)


def start_daemon(
    tmp: Path, *, settings: Mapping[str, object], fake: Mapping[str, Any],
    start_timeout_s: float = 30.0,
) -> BenchDaemon:
    """Start ``gpusched daemon`` in ``tmp`` and wait until its socket answers ``hello``.

    Starting it again on the same ``tmp`` (after :func:`kill_daemon`) reuses the same socket
    path and ``--state-dir``; its log is appended to. The caller stops it (:func:`stop_daemon`).
    If it does not come up, it is stopped and ``RuntimeError`` says why.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    socket_path = tmp / "gpusched.sock"
    state_dir = tmp / "state"
    fake_file = tmp / "fake-gpus.json"
    fake_file.write_text(json.dumps(fake))
    config = tmp / "config.toml"
    config.write_text("[daemon]\n" + "".join(f"{k} = {json.dumps(v)}\n"
                                             for k, v in settings.items()))
    log_path = tmp / "daemon.log"
    argv = [sys.executable, "-m", "gpusched", "daemon", "--socket", str(socket_path),
            "--state-dir", str(state_dir), "--config", str(config), "--fake-gpus", str(fake_file)]
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    client = Client(socket_path, timeout_s=30)
    daemon = BenchDaemon(proc, client, socket_path, state_dir, log_path, tmp)
    try:
        deadline = time.monotonic() + start_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited {proc.returncode}: {log_path.read_text()}")
            try:
                client.hello()
                break
            except NoDaemonError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daemon did not answer in {start_timeout_s}s") from None
                time.sleep(0.02)
    except BaseException:
        stop_daemon(proc)
        raise
    return daemon


def wait_warm(daemon: BenchDaemon, *, timeout_s: float) -> None:
    """Wait for the daemon's ``plugins_loaded`` event: it imports every installed plugin in a
    worker thread right after start-up, and a submit during that time waits for it."""
    deadline = time.monotonic() + timeout_s
    while b'"plugins_loaded"' not in daemon.log_path.read_bytes():
        if daemon.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not load its plugins: {log_tail(daemon.log_path)}")
        time.sleep(0.02)


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


def write_experiment(path: Path, experiment: Mapping[str, Any]) -> Path:
    """Write an experiment file (YAML) and return its path."""
    path.write_text(yaml.safe_dump(dict(experiment), sort_keys=False))
    return path


def submit_cli(daemon: BenchDaemon, experiment_file: Path) -> str:
    """``gpusched submit FILE`` through the real CLI, as a user types it; the experiment id."""
    out = subprocess.run(
        [sys.executable, "-m", "gpusched", "submit", "--socket", str(daemon.socket),
         str(experiment_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"gpusched submit failed ({out.returncode}): {out.stderr.strip()}")
    return out.stdout.strip()


def wait_ended(client: Client, exp_id: str, *, timeout_s: float = 600.0) -> dict[str, Any]:
    """Block in ``Client.wait`` until the experiment has ended; its ``show`` view."""
    answer = client.wait(exp_id, timeout_s)
    if not answer["ended"]:
        raise RuntimeError(f"{exp_id} still {answer['state']} after {timeout_s}s")
    return client.show(exp_id)


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory (``VmHWM``) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of a live process and of its reaped children, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5); the name may hold ")"
    tick = float(os.sysconf("SC_CLK_TCK"))
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return own, children


def median(values: Sequence[float]) -> float:
    """The median (the middle run of 3)."""
    return float(statistics.median(values))


def machine() -> str:
    """A short description of the host the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()},"
            f" Python {platform.python_version()}")


def print_table(title: str, notes: Sequence[str], header: Sequence[str],
                rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table: a title, note lines, then aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for note in notes:
        print(f"  {note}")
    print()
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(flush=True)
