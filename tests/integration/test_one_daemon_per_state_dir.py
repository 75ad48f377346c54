"""A second daemon on a state folder that a daemon uses is refused before it touches anything.

Found by a new user: after a daemon crash, while the restarted daemon recovered its trials
(its socket not answering yet), `gpusched ls` said "no daemon ...: start one with `gpusched
daemon`"; doing so on the same state folder ran a second recovery, which took the live
daemon's running trials for a crashed one's leftovers and stopped them: the example trainer
then exited 0 and its cut-short runs were recorded `completed`.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from gpusched.client import Client
from gpusched.errors import NoDaemonError
from tests.integration.harness import running_daemon, wait_for

# Reports once, then runs until its gate opens; a SIGTERM (no handler) kills it.
GATED = """\
import json, os, sys, time
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as f:
    f.write(json.dumps({"score": 0.5}) + "\\n")
while not os.path.exists(os.environ["GATE"]):
    time.sleep(0.02)
"""


@pytest.mark.parametrize("same_socket", [False, True])
def test_a_second_daemon_on_the_same_state_folder_leaves_the_first_ones_trials_alone(
    tmp_path: Path, same_socket: bool,
) -> None:
    script = tmp_path / "gated.py"
    script.write_text(GATED)
    gate = tmp_path / "gate"
    state = tmp_path / "state"
    try:
        with running_daemon(tmp_path / "d", state_dir=state) as d:
            exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                            "max_trials": 1, "env": {"GATE": str(gate)},
                            "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]})
            pid = wait_for(lambda: d.client.trials(exp)[0]["pid"], 30, "the trial to start")
            other_socket = d.socket if same_socket else tmp_path / "other.sock"
            out = subprocess.run(
                [sys.executable, "-m", "gpusched", "daemon", "--socket", str(other_socket),
                 "--state-dir", str(state), "--fake-gpus", "1"],
                capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 1, out
            assert out.stderr.startswith(
                f"gpusched: another daemon (pid {d.proc.pid}, socket {d.socket}, as its lock"
                f" file says) uses the state folder {state}: stop it first, or give this one a"
                " state folder of its own with --state-dir"), out.stderr
            assert "Traceback" not in out.stderr
            os.kill(pid, 0)  # its trial still runs
            assert d.client.hello()["pid"] == d.proc.pid
            gate.touch()
            view = d.wait_experiment(exp)
            assert view["state"] == "completed", view
            assert d.client.trials(exp)[0]["exit_code"] == 0
    finally:
        gate.touch()


def test_a_daemon_starts_on_a_state_folder_whose_daemon_was_killed(tmp_path: Path) -> None:
    # The kernel drops a killed daemon's lock: nothing stale is left to refuse the next one.
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        d.proc.kill()
        d.proc.wait()
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        assert d.client.hello()["pid"] == d.proc.pid


def test_a_socket_nobody_listens_on_says_a_daemon_may_be_starting(tmp_path: Path) -> None:
    path = tmp_path / "gpusched.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))  # bound, never listening: a dead daemon's, or a restarting one's
    with pytest.raises(NoDaemonError) as caught:
        Client(path).hello()
    assert str(caught.value) == (
        f"no daemon at {path} (nothing listens on it: a daemon that died left it, or one is"
        " starting and answers once it has recovered its trials): start one with `gpusched"
        " daemon`")
