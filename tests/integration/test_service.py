"""Running under systemd (issue 5): the notify protocol, as a service manager receives it."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpusched.client import Client
from gpusched.errors import NoDaemonError
from tests.integration.harness import fake_config, running_daemon, stop_daemon, wait_for
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
            # Written whole, then renamed: the file exists only once it is complete (the
            # SIGTERM below could otherwise cut the write short and leave it empty).
            script.write_text("import json, os, sys, time\n"
                              f"path = {str(out / 'env.json')!r}\n"
                              "with open(path + '.tmp', 'w') as fh:\n"
                              "    json.dump(dict(os.environ), fh)\n"
                              "os.replace(path + '.tmp', path)\n"
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


def test_socket_activation_serves_on_the_passed_socket_and_hides_it_from_trials(
    tmp_path: Path,
) -> None:
    sock_path = tmp_path / "activated.sock"
    out = tmp_path / "out"
    out.mkdir()
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(str(sock_path))
    listening.listen()
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps(fake_config(1)))
    daemon_args = ["-m", "gpusched", "daemon", "--socket", str(tmp_path / "unused.sock"),
                   "--state-dir", str(tmp_path / "state"), "--fake-gpus", str(fake)]
    # As systemd does: the socket becomes fd 3, LISTEN_PID is the daemon's own pid (exec keeps
    # the pid of this little launcher).
    launcher = (f"import os, sys; os.dup2({listening.fileno()}, 3);"
                " os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid()),"
                " LISTEN_FDNAMES='gpusched.socket');"
                f" os.execv(sys.executable, [sys.executable, *{daemon_args!r}])")
    log = open(tmp_path / "daemon.log", "wb")  # noqa: SIM115  # closed below
    proc = subprocess.Popen([sys.executable, "-c", launcher], pass_fds=(listening.fileno(),),
                            stdout=log, stderr=subprocess.STDOUT)
    listening.close()  # the daemon holds it now
    try:
        client = Client(sock_path, timeout_s=20)
        assert wait_for(lambda: _hello(client), 20, "the activated daemon")["pid"] == proc.pid
        script = tmp_path / "dump_env.py"
        script.write_text("import json, os\n"
                          f"json.dump(dict(os.environ), open({str(out / 'env.json')!r}, 'w'))\n"
                          "from gpusched import trial\ntrial.report(score=1.0)\n")
        exp = client.submit(probe_experiment(out, max_trials=1, command=[
            sys.executable, str(script)]), base_dir=str(tmp_path))
        assert client.wait(exp, 30)["state"] == "completed"
        assert not (tmp_path / "unused.sock").exists()
    finally:
        stop_daemon(proc)
        log.close()
    seen = json.loads((out / "env.json").read_text())
    assert not {"LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"} & set(seen)
    assert sock_path.exists()  # systemd's file: left in place


def _hello(client: Client) -> dict[str, object] | None:
    try:
        return client.hello()
    except NoDaemonError:
        return None


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    units = Path(__file__).resolve().parents[2] / "systemd"
    gpusched_bin = Path(sys.executable).parent / "gpusched"
    for name in ("gpusched.service", "gpusched.socket"):
        text = (units / name).read_text()
        # Installed, the command is /usr/local/bin/gpusched; here, this environment's.
        (tmp_path / name).write_text(text.replace("/usr/local/bin/gpusched", str(gpusched_bin)))
    out = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "gpusched.service"),
                          str(tmp_path / "gpusched.socket")],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr
