"""Running under systemd (issue 5): the notify protocol, as a service manager receives it."""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from pathlib import Path

from tests.integration.harness import running_daemon, wait_for
from tests.integration.test_gpus import probe_experiment


def receive_until(sock: socket.socket, wanted: str, timeout: float = 20.0) -> list[str]:
    """Datagrams received until one holds the line ``wanted``; all of them."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if wanted in got[-1].split("\n"):
            return got
    raise AssertionError(f"no {wanted!r} in {got}")


def test_ready_status_watchdog_and_stopping_reach_the_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    out = tmp_path / "out"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        with running_daemon(tmp_path / "d", env=env) as d:
            first = receive_until(manager, "READY=1")
            ready = next(m for m in first if "READY=1" in m.split("\n"))
            assert "STATUS=2 GPUs, 0 busy, 0 trials running, 0 queued" in ready.split("\n")
            receive_until(manager, "WATCHDOG=1", timeout=2)  # pinged every 0.1 s
            script = tmp_path / "dump_env.py"
            script.write_text("import json, os, sys, time\n"
                              f"json.dump(dict(os.environ), open({str(out / 'env.json')!r}, 'w'))\n"
                              "time.sleep(3)\n")
            out.mkdir()
            exp = d.submit(probe_experiment(out, max_trials=1, command=[sys.executable,
                                                                        str(script)]))
            busy = receive_until(manager, "STATUS=2 GPUs, 1 busy, 1 trials running, 0 queued",
                                 timeout=10)
            assert busy
            wait_for((out / "env.json").exists, what="the trial's environment")
            d.proc.send_signal(signal.SIGTERM)
            receive_until(manager, "STOPPING=1")
            d.proc.wait(20)
    # The trial does not see the daemon's notify socket (nothing outside the allow-list).
    seen = json.loads((out / "env.json").read_text())
    assert seen["GPUSCHED_EXPERIMENT"] == exp
    assert not {"NOTIFY_SOCKET", "WATCHDOG_USEC"} & set(seen)
