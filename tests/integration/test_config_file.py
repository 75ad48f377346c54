"""The daemon's settings file (issue 5): refused at start with every problem, GPUs chosen,
the state folder and log file, per-user limits and the wait reason they give."""

from __future__ import annotations

import getpass
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gpusched.client import Client
from gpusched.errors import NoDaemonError, SpecError
from tests.integration.harness import fake_config, running_daemon, stop_daemon, wait_for
from tests.integration.test_gpus import overlaps, probe_experiment, records


def daemon(tmp_path: Path, config: str, *args: str) -> subprocess.Popen[bytes]:
    """``gpusched daemon --config`` with ``config``; its output goes to tmp_path/output."""
    (tmp_path / "config.toml").write_text(config)
    fake = tmp_path / "fake.json"
    fake.write_text(json.dumps(fake_config(2)))
    with open(tmp_path / "output", "wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "gpusched", "daemon", "--config", str(tmp_path / "config.toml"),
             "--socket", str(tmp_path / "d.sock"), "--fake-gpus", str(fake), *args],
            stdout=output, stderr=subprocess.STDOUT)


def test_a_bad_config_stops_the_daemon_at_start_with_every_problem(tmp_path: Path) -> None:
    proc = daemon(tmp_path, "[daemon]\npoll_interval = 1\ngrace_period_s = -3\n"
                            "exclude_gpus = ['0']\n[limits]\n", "--state-dir", str(tmp_path))
    assert proc.wait(30) == 1
    path = tmp_path / "config.toml"
    assert (tmp_path / "output").read_text().splitlines() == [
        f"gpusched: {path}: 4 problems in the daemon config",
        "  limits: unknown table or key 'limits' (settings go in a [daemon] table)",
        "  daemon.poll_interval: unknown key 'poll_interval' (did you mean 'poll_interval_s'?)",
        "  daemon.grace_period_s: must be a number >= 0 (got -3)",
        "  daemon.exclude_gpus: each entry must be a GPU UUID ('GPU-…' or 'MIG-…') or an NVML"
        " index (0, 1, ...) (got '0')",
    ]
    assert not (tmp_path / "trials.db").exists()


def test_the_state_folder_and_log_file_come_from_the_config(tmp_path: Path) -> None:
    state, log_file = tmp_path / "state-from-config", tmp_path / "daemon.jsonl"
    proc = daemon(tmp_path, f"[daemon]\nstate_dir = {json.dumps(str(state))}\n"
                            f"log_file = {json.dumps(str(log_file))}\n")
    try:
        client = Client(tmp_path / "d.sock", timeout_s=10)
        wait_for(lambda: _answers(client), 20, "the daemon")
        assert (state / "trials.db").exists()
        events = [json.loads(line)["event"] for line in log_file.read_text().splitlines()]
        assert "daemon_ready" in events
    finally:
        stop_daemon(proc)
    assert "daemon_stopped" in log_file.read_text()


def _answers(client: Client) -> bool:
    try:
        client.hello()
        return True
    except NoDaemonError:
        return False


def test_only_the_chosen_gpus_are_scheduled(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "a", settings={"gpus": [1]}) as d:
        devices = d.client.gpus()["devices"]
        assert [g["index"] for g in devices] == [1]
        left_out = next(e for e in d.log_events() if e["event"] == "gpus_left_out")
    with running_daemon(tmp_path / "b", settings={"exclude_gpus": [left_out["uuids"][0], 7]}) \
            as d:
        assert [g["index"] for g in d.client.gpus()["devices"]] == [1]
        missing = next(e for e in d.log_events() if e["event"] == "configured_gpus_not_found")
        assert missing["names"] == [7]


def test_a_per_user_trial_limit_runs_one_trial_at_a_time_and_says_why(tmp_path: Path) -> None:
    out = tmp_path / "out"
    experiment = probe_experiment(out, max_trials=2, max_parallel_trials=2, command=[
        *probe_experiment(out)["command"], "--sleep", "1"])
    with running_daemon(tmp_path / "d", settings={"max_trials_per_user": 1}) as d:
        exp = d.submit(experiment)
        waiting = wait_for(lambda: d.client.show(exp)["waiting"], 10, "the wait reason")
        assert (waiting["code"], waiting["message"]) == ("user_limit", (
            f"per-user limit: {getpass.getuser()} runs 1 trials (max_trials_per_user = 1)"))
        assert d.wait_experiment(exp)["state"] == "completed"
        assert d.client.show(exp)["waiting"] is None
    first, second = records(out)
    assert not overlaps(first, second)


def test_other_wait_reasons_and_a_trial_over_the_gpu_limit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow = probe_experiment(out, max_trials=3, command=[*probe_experiment(out)["command"],
                                                        "--sleep", "30"])
    with running_daemon(tmp_path / "d", settings={"max_gpus_per_user": 1.5}) as d:
        # A problem of the file, at its place (the CLI exits 2 for it).
        with pytest.raises(SpecError) as refused:
            d.client.submit({**slow, "gpus_per_trial": 2}, base_dir=str(tmp_path))
        assert [str(p) for p in refused.value.problems] == [
            "gpus_per_trial: 2 is over this daemon's per-user limit of 1.5 GPUs"
            " (max_gpus_per_user): ask for fewer"]
        one = d.submit({**slow, "max_parallel_trials": 1}, name="one")
        wait_for(lambda: d.client.show(one)["trials"]["running"], 10, "its trial")
        assert d.client.show(one)["waiting"]["message"] == (
            "max_parallel_trials reached (1 of 1 running)")
        half = d.submit({**slow, "gpus_per_trial": 0.5, "max_parallel_trials": 1}, name="half")
        wait_for(lambda: d.client.show(half)["trials"]["running"], 10, "the half-GPU trial")
        # 1.5 of 1.5 GPUs held: a third experiment's trial waits for the user's limit.
        third = d.submit({**slow, "gpus_per_trial": 0.5}, name="third")
        limited = wait_for(lambda: d.client.show(third)["waiting"], 10, "the limit")
        assert limited["code"] == "user_limit"
        assert limited["message"].startswith("per-user limit: ")
        for exp in (one, half, third):
            d.client.cancel(exp)
