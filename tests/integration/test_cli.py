"""The gpusched command and the socket, as a user and a hostile client see them."""

from __future__ import annotations

import json
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gpusched.errors import RequestError
from tests.integration.harness import running_daemon, trial_script, wait_for
from tests.integration.test_gpus import probe_experiment

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT_KEYS = {"id", "name", "state", "reason", "metric", "goal", "priority", "owner_uid",
                   "owner", "seed", "max_trials", "trials", "best", "submitted_at", "started_at",
                   "ended_at", "waiting"}
TRIAL_KEYS = {"id", "experiment", "number", "state", "params", "objective", "reason", "devices",
              "pid", "attempts", "exit_code", "exit_signal", "reports", "created_at",
              "started_at", "ended_at", "duration_s", "dir", "budget", "continues",
              "waiting"}
DEVICE_KEYS = {"uuid", "index", "name", "fake", "mig_parent_uuid", "memory_total_mib",
               "memory_used_mib", "state", "reason", "trials", "releasing", "processes",
               "foreign_processes"}


def gpusched(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gpusched", *args], capture_output=True,
                          text=True, timeout=60, check=False)


def test_no_daemon_is_one_clear_line(tmp_path: Path) -> None:
    out = gpusched("ls", "--socket", str(tmp_path / "nothing.sock"))
    assert out.returncode == 1
    assert out.stderr.count("\n") == 1
    assert "no daemon at" in out.stderr and "gpusched daemon" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_experiment_file_lists_every_problem_with_its_place(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({
        "command": "python train.py", "metric": "acc", "max_trial": 3,
        "params": [{"name": "lr", "type": "double", "min": 3, "max": 1}],
    }))
    out = gpusched("submit", str(bad), "--socket", str(tmp_path / "no.sock"))
    assert out.returncode == 2
    assert "params[0].max: must be greater than min (got 1 <= 3)" in out.stderr
    assert "max_trial" in out.stderr and "max_trials" in out.stderr  # the suggestion
    assert "Traceback" not in out.stderr
    endless = gpusched("submit", "/dev/zero", "--socket", str(tmp_path / "no.sock"))
    assert endless.returncode == 2 and "is over 1024 KiB" in endless.stderr, endless.stderr


def test_the_daemon_refuses_a_bad_file_with_the_words_the_cli_uses_without_one(
    tmp_path: Path
) -> None:
    # `gpusched submit` sends the file's text; the daemon parses it. With no daemon the CLI
    # checks it itself: the user reads the same lines either way.
    bad = tmp_path / "bad.yaml"
    bad.write_text("command: python train.py\nmetric: acc\nmax_trial: 3\nparams:\n"
                   "  - {name: lr, type: double, min: 3, max: 1}\n  - {name: lr, type: x}\n")
    alone = gpusched("submit", str(bad), "--set", "goal=up", "--socket",
                     str(tmp_path / "no.sock"))
    with running_daemon(tmp_path / "d") as d:
        sent = d.cli("submit", str(bad), "--set", "goal=up")
        assert d.client.experiments() == []
    assert sent.returncode == alone.returncode == 2
    assert sent.stderr == alone.stderr, (sent.stderr, alone.stderr)
    assert sent.stderr.startswith(f"gpusched: {bad}: 4 problems in the experiment"), sent.stderr
    for words in ("params[0].max: must be greater than min", "max_trials", "goal"):
        assert words in sent.stderr


def test_submit_sends_the_file_without_importing_a_yaml_parser(tmp_path: Path) -> None:
    experiment = probe_experiment(tmp_path / "p", max_trials=1)
    file = tmp_path / "sub" / "exp.yaml"
    file.parent.mkdir()
    file.write_text(yaml.safe_dump({**experiment, "workdir": ".."}))
    with running_daemon(tmp_path / "d") as d:
        out = subprocess.run([sys.executable, "-X", "importtime", "-m", "gpusched", "submit",
                              str(file), "--json", "--name", "named", "--socket", str(d.socket)],
                             capture_output=True, text=True, timeout=60, check=False)
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["name"] == "named"
        view = d.wait_experiment(answer["id"])
        spec = d.client.show(answer["id"])["spec"]
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines()
                if line.startswith("import time:")}
    assert "gpusched.client" in imported  # the check below looks at the right thing
    assert not {"yaml", "gpusched.spec"} & imported
    assert view["state"] == "completed", view
    assert spec["workdir"] == str(tmp_path)  # relative to the file's folder, as before


def test_read_commands_json_shapes_and_tables(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=3), name="shapes")
        d.wait_experiment(exp)
        (listed,) = d.cli_json("ls")
        assert set(listed) == EXPERIMENT_KEYS and listed["id"] == exp
        assert listed["trials"]["total"] == 3 and listed["trials"]["completed"] == 3
        trials = d.cli_json("ls", exp, "--sort=-objective", "--limit", "2")
        assert len(trials) == 2 and all(set(t) == TRIAL_KEYS | {"last_report"} for t in trials)
        assert trials[0]["objective"] >= trials[1]["objective"]
        shown = d.cli_json("show", "shapes")  # by name, too
        assert set(shown) == EXPERIMENT_KEYS | {"spec", "events"}
        assert shown["spec"]["metric"] == "score"
        trial = d.cli_json("show", f"{exp}/1")
        assert set(trial) == TRIAL_KEYS | {"last_report", "events"}
        best = d.cli_json("best", exp, "-n", "3")
        objectives = [t["objective"] for t in best]
        assert objectives == sorted(objectives, reverse=True) and len(best) == 3
        assert best[0]["id"] == listed["best"]["trial"]
        assert all(set(t) == TRIAL_KEYS for t in best)
        gpus = d.cli_json("gpus")
        assert gpus["backend"] == "fake" and all(set(g) == DEVICE_KEYS for g in gpus["devices"])
        table = d.cli("ls", exp).stdout
        assert "SCORE" in table and f"{exp}/2" in table and "x" in table.splitlines()[0]
        assert "[fake]" in d.cli("gpus").stdout
        missing = d.cli("show", "e99")
        assert missing.returncode == 1 and "no experiment 'e99'" in missing.stderr


def test_submit_aip_config_with_the_command_after_dashes(tmp_path: Path) -> None:
    config = REPO / "examples" / "digits" / "hptuning_config.yaml"
    with running_daemon(tmp_path / "d") as d:
        out = d.cli("submit", "--aip", str(config), "--set", "maxTrials=2", "--",
                    sys.executable, str(REPO / "examples" / "digits" / "train.py"),
                    "--epochs", "2")
        assert out.returncode == 0, out.stderr
        exp = out.stdout.strip()
        view = d.wait_experiment(exp)
    assert view["state"] == "completed", view
    assert view["trials"]["completed"] == 2
    assert view["metric"] == "val_accuracy"


def test_logs_prints_trial_output(tmp_path: Path) -> None:
    script = tmp_path / "talk.py"
    script.write_text("import sys\nprint('hello from the trial')\n"
                      "print('to stderr', file=sys.stderr)\n"
                      "from gpusched import trial\ntrial.report(score=1.0)\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "max_trials": 1,
                        "params": [{"name": "x", "type": "categorical", "values": ["a"]}]})
        d.wait_experiment(exp)
        assert d.cli("logs", f"{exp}/0").stdout == "hello from the trial\n"
        assert d.cli("logs", f"{exp}/0", "--stderr").stdout == "to stderr\n"
        assert d.cli("logs", f"{exp}/0", "--follow").stdout == "hello from the trial\n"


def test_grid_search_runs_the_whole_grid_by_default(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=None, search={
            "algorithm": "grid"}, params=[
                {"name": "x", "type": "discrete", "values": [0.1, 0.2, 0.3]},
                {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]}]))
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert view["state"] == "completed"
    assert view["reason"].startswith("6 trials run")  # max_trials defaulted to the grid size
    seen = {(t["params"]["x"], t["params"]["opt"]) for t in trials}
    assert len(trials) == 6 and len(seen) == 6


def test_wait_returns_when_the_experiment_ends_with_its_outcome_as_exit_code(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path / "d") as d:
        slow = d.submit(probe_experiment(tmp_path / "slow", max_trials=1, command=[
            sys.executable, trial_script("probe.py"), "--sleep", "30"]), name="slow")
        timed_out = d.cli("wait", slow, "--timeout", "0.3")
        assert timed_out.returncode == 124, timed_out
        assert f"{slow} is still" in timed_out.stderr and "after 0.3s" in timed_out.stderr
        out = d.cli("wait", slow, "--timeout", "0", "--json")
        still = json.loads(out.stdout)
        assert out.returncode == 124 and still["ended"] is False
        assert still["state"] in ("queued", "running")
        d.cli("cancel", slow)
        cancelled = d.cli("wait", slow)
        assert cancelled.returncode == 1 and cancelled.stdout.startswith(f"{slow} cancelled")

        done = d.submit(probe_experiment(tmp_path / "done", max_trials=2), name="done")
        answer = d.cli_json("wait", done)  # no polling: the answer comes when it ends
        assert answer["ended"] is True and answer["state"] == "completed"
        assert set(answer) == EXPERIMENT_KEYS | {"ended"}
        assert answer["trials"]["completed"] == 2
        again = d.cli("wait", "done")  # by name; an ended experiment answers at once
        assert again.returncode == 0 and again.stdout.startswith(f"{done} completed: 2 trials")
        with pytest.raises(RequestError, match="timeout_s must be a number of seconds"):
            d.client.request("wait", experiment=done, timeout_s=-1)


def test_plugins_lists_the_builtins() -> None:
    out = gpusched("plugins", "--json")
    assert out.returncode == 0, out.stderr
    names = {(p["kind"], p["name"]) for p in json.loads(out.stdout)}
    assert {("search", "random"), ("search", "grid"), ("stopping", "bounds")} <= names


def test_the_daemon_loads_every_plugin_at_start_and_logs_them(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        loaded = wait_for(lambda: next((e for e in d.log_events()
                                        if e["event"] == "plugins_loaded"), None),
                          what="the plugins_loaded log line")
    assert {"random", "grid"} <= set(loaded["search"]) and "bounds" in loaded["stopping"]


def raw_exchange(path: Path, payload: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(path))
        s.sendall(payload)
        chunks: list[bytes] = []
        while b"\n" not in b"".join(chunks):
            chunk = s.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)


def test_garbage_on_the_socket_gets_an_error_and_the_daemon_goes_on(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        for payload, code in [
            (b"garbage\n", "ProtocolError"),
            (b'{"v": 1, "op": "nope"}\n', "ProtocolError"),
            (b'{"v": 9, "op": "hello"}\n', "ProtocolError"),
            (b'{"v": 1, "op": "show", "args": {"target": 5}}\n', "bad_request"),
            (b'{"v": 1, "op": "submit", "args": {"experiment": [], "base_dir": "/"}}\n',
             "invalid_experiment"),
        ]:
            answer = json.loads(raw_exchange(d.socket, payload).split(b"\n")[0])
            assert answer["ok"] is False and answer["error"]["code"] == code, answer
        try:  # too large: answered `too_large` and closed, possibly before we finish sending
            answer = json.loads(raw_exchange(d.socket, b"x" * (5 << 20) + b"\n").split(b"\n")[0])
            assert answer["error"]["code"] == "too_large"
        except (BrokenPipeError, ConnectionResetError):
            pass
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:  # vanishes mid-request
            s.connect(str(d.socket))
            s.sendall(b'{"v": 1, "op": "hel')
        assert d.client.hello()["protocol"] == 1
        assert d.proc.poll() is None


def test_a_second_daemon_on_the_same_socket_is_refused(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        out = subprocess.run(
            [sys.executable, "-m", "gpusched", "daemon", "--socket", str(d.socket),
             "--state-dir", str(tmp_path / "other"), "--fake-gpus", "1"],
            capture_output=True, text=True, timeout=30, check=False)
        assert out.returncode == 1
        assert "another daemon is listening" in out.stderr
        assert d.client.hello()["pid"] == d.proc.pid


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    stale = tmp_path / "d" / "gpusched.sock"
    stale.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(stale))  # bound, never listening: what a crashed daemon leaves behind
    with running_daemon(tmp_path / "d") as d:
        assert d.client.hello()["backend"] == "fake"
        assert stat.S_IMODE(d.socket.stat().st_mode) == 0o600  # a per-user daemon's socket
