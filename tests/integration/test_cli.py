"""The gpusched command and the socket, as a user and a hostile client see them."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from gpusched.client import Client
from gpusched.errors import NoDaemonError, RequestError
from tests.integration.harness import Daemon, running_daemon, stop_daemon, trial_script, wait_for
from tests.integration.test_gpus import probe_experiment

REPO = Path(__file__).resolve().parents[2]
EXPERIMENT_KEYS = {"id", "name", "state", "reason", "metric", "goal", "priority", "owner_uid",
                   "owner", "seed", "max_trials", "trials", "best", "submitted_at", "started_at",
                   "ended_at", "waiting", "warning_count"}
TRIAL_KEYS = {"id", "experiment", "number", "state", "params", "objective", "reason", "devices",
              "pid", "attempts", "exit_code", "exit_signal", "reports", "created_at",
              "started_at", "ended_at", "duration_s", "dir", "budget", "continues",
              "waiting", "objective_so_far", "point"}
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


def test_what_only_the_daemon_can_judge_in_a_file_is_refused_as_a_bad_file(
    tmp_path: Path
) -> None:
    # Its plugins, their options, resume_from and the per-user GPU limit: they were refused
    # with the first problem alone, without a place, and exit 1 (a refused file exits 2).
    example = REPO / "examples" / "digits" / "experiment.yaml"
    with running_daemon(tmp_path / "d", settings={"max_gpus_per_user": 1}) as d:
        out = d.cli("submit", str(example), "--set", "search=tpee", "--set",
                    "early_stopping=medain", "--set", "resume_from=e99", "--set",
                    "gpus_per_trial=2")
        options = d.cli("submit", str(example), "--set", "search.bogus=1")
        assert d.client.experiments() == []
    assert out.returncode == 2, out
    head, *lines = out.stderr.splitlines()
    assert head == f"gpusched: {example}: 4 problems in the experiment"
    assert [line.split(":")[0].strip() for line in lines] == [
        "gpus_per_trial", "search", "early_stopping", "resume_from"]
    assert "per-user limit of 1 GPUs (max_gpus_per_user)" in lines[0]
    assert "unknown search plugin 'tpee' (did you mean 'tpe'?)" in lines[1]
    assert "unknown stopping plugin 'medain' (did you mean 'median'?)" in lines[2]
    assert "no experiment 'e99'" in lines[3]
    assert options.returncode == 2, options
    assert "  search: search plugin 'random': " in options.stderr and "bogus" in options.stderr


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


def test_submit_warns_of_a_loss_maximized_by_default(tmp_path: Path) -> None:
    experiment = probe_experiment(tmp_path / "p", max_trials=1, metric="val_loss")
    del experiment["goal"]
    file = tmp_path / "exp.yaml"
    file.write_text(yaml.safe_dump(experiment))
    with running_daemon(tmp_path / "d") as d:
        out = d.cli("submit", str(file))
        quiet = d.cli("submit", str(file), "--set", "goal=minimize")
    assert out.returncode == 0 and out.stdout.strip() == "e1", out
    assert out.stderr.startswith("gpusched: warning: metric 'val_loss' looks like something to"
                                 " minimize, but goal is maximize"), out.stderr
    assert quiet.returncode == 0 and quiet.stderr == "", quiet


def test_read_commands_json_shapes_and_tables(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=3), name="shapes")
        d.wait_experiment(exp)
        (listed,) = d.cli_json("ls")
        assert set(listed) == EXPERIMENT_KEYS and listed["id"] == exp
        assert listed["trials"]["total"] == 3 and listed["trials"]["completed"] == 3
        # ls knows these objects' fields before any row has them (gpusched.views.query).
        from gpusched.views import query

        assert set(listed["trials"]) == set(query._NESTED["trials"])
        assert set(listed["best"]) == set(query._NESTED["best"])
        trials = d.cli_json("ls", exp, "--sort=-objective", "--limit", "2")
        assert len(trials) == 2 and all(set(t) == TRIAL_KEYS | {"last_report"} for t in trials)
        assert trials[0]["objective"] >= trials[1]["objective"]
        assert set(query._NESTED["last_report"]) <= set(trials[0]["last_report"])
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
        assert set(answer) == EXPERIMENT_KEYS | {"ended", "warnings"}
        assert answer["trials"]["completed"] == 2
        again = d.cli("wait", "done")  # by name; an ended experiment answers at once
        assert again.returncode == 0 and again.stdout.startswith(f"{done} completed: 2 trials")
        with pytest.raises(RequestError, match="timeout_s must be a number of seconds"):
            d.client.request("wait", experiment=done, timeout_s=-1)
        # A wait that cannot be (a typo) is 2, never 1: a script must not read it as a failure.
        unknown = d.cli("wait", "e99")
        assert unknown.returncode == 2 and "e99" in unknown.stderr, unknown


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


def holds_a_socket(pid: int) -> bool:
    """Whether process ``pid`` has a socket open (`gpusched wait`: its request is held)."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        return any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir())
    except OSError:  # a descriptor closed meanwhile
        return False


def start_wait(d: Daemon, *args: str) -> subprocess.Popen[str]:
    """`gpusched wait ARGS` in the background, once its request is held by the daemon."""
    proc = subprocess.Popen([sys.executable, "-m", "gpusched", "wait", "--socket", str(d.socket),
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: holds_a_socket(proc.pid) or proc.poll() is not None, 20,
             "`gpusched wait` to send its request")
    assert proc.poll() is None, proc.communicate()
    return proc


def test_wait_outlives_a_daemon_restart_and_gives_the_outcome(tmp_path: Path) -> None:
    # A restart (by hand, systemd's Restart=, an upgrade) closes the held `wait` unanswered;
    # it knocks again at the same socket and answers once the experiment really ends.
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=1, command=[
            sys.executable, trial_script("gate.py"), "--gate", str(gate)]))
        wait_for(lambda: d.client.show(exp)["trials"]["running"] == 1, 20, "its trial")
        waiting = start_wait(d, exp)
        stop_daemon(d.proc)  # SIGTERM: the trial is interrupted, to run again at the start
    try:
        time.sleep(1.0)  # no daemon for a while: the socket is gone
        assert waiting.poll() is None, waiting.communicate()
        with running_daemon(tmp_path / "d") as d:
            gate.touch()
            out, err = waiting.communicate(timeout=60)
            trial = d.client.trials(exp)[0]
    finally:
        waiting.kill()
    assert waiting.returncode == 0, err
    assert out.startswith(f"{exp} completed: ") and err == ""
    assert trial["state"] == "completed" and trial["attempts"] == 2


def test_wait_exits_69_in_one_line_when_the_daemon_does_not_come_back(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=1, command=[
            sys.executable, trial_script("gate.py"), "--gate", str(tmp_path / "never")]))
        waiting = start_wait(d, exp, "--reconnect", "1")
    try:
        _, err = waiting.communicate(timeout=60)
    finally:
        waiting.kill()
    assert waiting.returncode == 69  # not 1: that says the experiment failed
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"went away while waiting for {exp}" in err and f"`gpusched wait {exp}` again" in err


def test_daemon_start_up_failures_are_one_line_and_touch_no_file(tmp_path: Path) -> None:
    precious = tmp_path / "exp.yaml"
    precious.write_text("name: precious\n")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    cases = [
        (["--socket", str(precious)], f"{precious} is a file, not a socket"),
        (["--socket", str(tmp_path / ("x" * 120) / "s.sock")], "over the 107"),
        (["--socket", str(not_a_folder / "s.sock")], "cannot create the socket's folder"),
        (["--state-dir", str(not_a_folder / "state")], "cannot create the state folder"),
    ]
    for args, said in cases:
        out = gpusched("daemon", "--fake-gpus", "1", "--socket", str(tmp_path / "d.sock"),
                       "--state-dir", str(tmp_path / "state"), *args)
        lines = [line for line in out.stderr.splitlines() if line.startswith("gpusched: ")]
        assert out.returncode == 1 and len(lines) == 1 and said in lines[0], out.stderr
        assert "Traceback" not in out.stderr
    assert precious.read_text() == "name: precious\n"


def test_logs_of_an_unreadable_output_file_is_one_line(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(probe_experiment(tmp_path / "out", max_trials=1))
        d.wait_experiment(exp)
        stdout = Path(d.client.trial_files(f"{exp}/0")["stdout"])
        stdout.unlink()
        stdout.mkdir()  # anything that open() refuses
        out = d.cli("logs", f"{exp}/0")
    assert out.returncode == 1 and out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"gpusched: cannot read the stdout of {exp}/0 at {stdout}: ")


def test_a_relative_state_dir_gives_trials_absolute_paths(tmp_path: Path) -> None:
    # `gpusched daemon --state-dir state` once handed trials relative paths (their report
    # file, checkpoint folder), which they opened from their own workdir: no report ever
    # reached the daemon, and every trial failed.
    sock = tmp_path / "gpusched.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "gpusched", "daemon", "--socket", str(sock),
         "--state-dir", "state", "--fake-gpus", "1"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = Client(sock)

        def answers() -> bool:
            try:
                return bool(client.hello())
            except NoDaemonError:
                return False

        wait_for(answers, 30, "the daemon")
        workdir = tmp_path / "elsewhere"
        workdir.mkdir()
        exp = client.submit({"command": [sys.executable, "-c",
                                         "from gpusched import trial; trial.report(score=1.0)"],
                             "metric": "score", "max_trials": 1, "workdir": str(workdir),
                             "params": [{"name": "x", "type": "discrete", "values": [1]}]},
                            base_dir=str(tmp_path))
        assert client.wait(exp, 60)["state"] == "completed"
        (trial,) = client.trials(exp)
        assert trial["state"] == "completed", trial
        assert Path(client.trial_files(f"{exp}/0")["dir"]).is_absolute()
    finally:
        daemon.terminate()
        daemon.wait(30)


def test_ls_knows_the_keys_of_both_views() -> None:
    """`ls` names a column of the other view as such from its own copy of both views' keys
    (gpusched.views.query): it must be the keys the daemon gives, which the test above checks
    against a real daemon's answers."""
    from gpusched.views import query

    assert TRIAL_KEYS | {"last_report"} == query._TRIAL_KEYS
    assert EXPERIMENT_KEYS == query._EXPERIMENT_KEYS
