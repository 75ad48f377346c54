"""A trial that said how it failed and exited while the daemon was down is not run again.

The daemon is killed (SIGKILL) while the trial runs; the trial then writes its last report and
a status line, and exits 1 on its own. The restarted daemon cannot know the exit code (the
trial was not its child), but the status line says the attempt's outcome: it records that
outcome (failed, not retried; fatal fails the experiment) instead of running the trial again.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.procfs import processes_with_env
from tests.integration.harness import running_daemon, wait_for

# Reports, waits for GATE, then writes its last report and its status line (in one write: a
# poll that reads the report reads the line too), waits for EXIT_GATE and exits 1.
SAYS_HOW_IT_ENDED = """\
import json, os, sys, time
def wait_for(gate):
    while not os.path.exists(os.environ[gate]):
        time.sleep(0.02)
with open(os.path.join(os.environ["GPUSCHED_CHECKPOINT_DIR"], "runs"), "a") as runs:
    runs.write("run\\n")
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as reports:
    reports.write(json.dumps({"score": 0.5}) + "\\n")
    reports.flush()
    wait_for("GATE")
    reports.write(json.dumps({"score": 0.6}) + "\\n"
                  + json.dumps({"status": os.environ["STATUS"], "reason": "out of data"}) + "\\n")
wait_for("EXIT_GATE")  # its teardown, which outlasts the daemon
sys.exit(1)
"""
UNKNOWN_EXIT = "exit code not known: it ended while the daemon was down"


def _cut_off_then_restart(tmp_path: Path, status: str, *, read_before_the_kill: bool,
                          backdated: bool = False,
                          ) -> tuple[str, dict[str, Any], dict[str, Any], Path]:
    """Run the trial, kill the daemon while it runs (after it has read the trial's status
    line, or before the trial wrote it), let the trial end, restart: the experiment's id, its
    view, the trial and the trial's folder. ``backdated``: the report file's time is set
    before the attempt's logged start, as for a line written in the clock tick of its spawn."""
    script, state = tmp_path / "train.py", tmp_path / "state"
    gate, exit_gate = tmp_path / "gate", tmp_path / "exit-gate"
    script.write_text(SAYS_HOW_IT_ENDED)
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "max_trials": 1, "max_retries_per_trial": 2, "max_failed_trials": 5,
                  "env": {"GATE": str(gate), "EXIT_GATE": str(exit_gate), "STATUS": status},
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(experiment)
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 1, 30, "the first report")
        trial_dir = d.client.trials(exp)[0]["dir"]
        started_at = d.client.trials(exp)[0]["started_at"]
        if read_before_the_kill:
            # The daemon reads the last report and the status line, and is killed as the
            # trial tears down: the log's read position is past the line.
            gate.touch()
            wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "the last report")
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    exit_gate.touch()
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", [trial_dir]), 30,
             "the trial to exit while no daemon runs")
    if backdated:
        earlier = started_at - 0.004  # the kernel's file times lag by up to a tick
        os.utime(TrialFiles(Path(trial_dir)).reports, (earlier, earlier))
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
        events = [e["kind"] for e in d.client.show(f"{exp}/0")["events"]]
    assert "trial_interrupted" not in events, events
    return exp, view, trial, Path(trial_dir)


@pytest.mark.parametrize(("read_before_the_kill", "backdated"),
                         [(False, False), (True, False), (False, True)])
def test_a_failed_status_line_written_while_the_daemon_was_down_fails_the_trial(
    tmp_path: Path, read_before_the_kill: bool, backdated: bool,
) -> None:
    # Backdated: where the line begins in the file, past where the attempt's lines began (as
    # its start was logged), says it is the attempt's, whatever the file's time.
    _, _, trial, trial_dir = _cut_off_then_restart(tmp_path, "failed", backdated=backdated,
                                                   read_before_the_kill=read_before_the_kill)
    assert (trial["state"], trial["reason"]) == ("failed", f"out of data ({UNKNOWN_EXIT})")
    assert (trial["attempts"], trial["reports"], trial["exit_code"]) == (1, 2, None)
    # Not run again, although retries were allowed: the trial said it failed.
    assert (trial_dir / "checkpoint" / "runs").read_text() == "run\n"


def test_a_fatal_status_line_written_while_the_daemon_was_down_fails_the_experiment(
    tmp_path: Path,
) -> None:
    exp, view, trial, trial_dir = _cut_off_then_restart(tmp_path, "fatal",
                                                        read_before_the_kill=False)
    assert (view["state"], view["reason"]) == (
        "failed", f"trial {exp}/0 raised a fatal error: out of data")
    assert trial["state"] == "failed" and trial["attempts"] == 1
    assert (trial_dir / "checkpoint" / "runs").read_text() == "run\n"


# The first attempt says it failed and stays in its teardown (stopped by a restart: it runs
# again); the second reports nothing, waits for GATE and exits 1; the third completes.
RUNS_AGAIN = """\
import json, os, sys, time
with open(os.path.join(os.environ["GPUSCHED_CHECKPOINT_DIR"], "runs"), "a") as runs:
    runs.write("run\\n")
attempt = os.environ["GPUSCHED_ATTEMPT"]
if attempt == "2":
    while not os.path.exists(os.environ["GATE"]):
        time.sleep(0.02)
    sys.exit(1)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as reports:
    if attempt == "1":
        reports.write(json.dumps({"score": 0.5}) + "\\n"
                      + json.dumps({"status": "failed", "reason": "out of data"}) + "\\n")
        reports.flush()
        while True:
            time.sleep(0.02)
    reports.write(json.dumps({"score": 0.7}) + "\\n")
"""


def test_an_earlier_attempts_status_line_does_not_end_the_cut_off_one(tmp_path: Path) -> None:
    # The report file ends with the first attempt's line, and its time is after the second's
    # start (touched while the daemon was down): the line begins before where the second
    # attempt's lines began, as its start was logged. That attempt was cut off: it runs again.
    script, state, gate = tmp_path / "train.py", tmp_path / "state", tmp_path / "gate"
    script.write_text(RUNS_AGAIN)
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "max_trials": 1, "max_retries_per_trial": 2, "max_failed_trials": 5,
                  "env": {"GATE": str(gate)},
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(experiment)
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 1, 30, "the first report")
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        d.proc.kill()  # the first attempt is in its teardown: the restart stops it
        d.proc.wait()
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        wait_for(lambda: d.client.trials(exp)[0]["attempts"] == 2
                 and d.client.trials(exp)[0]["state"] == "running", 30, "the second attempt")
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", [str(trial_dir)]), 30,
             "the second attempt to exit while no daemon runs")
    os.utime(TrialFiles(trial_dir).reports)  # now: after the second attempt's start
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
        events = [e["kind"] for e in d.client.show(f"{exp}/0")["events"]]
    assert events.count("trial_interrupted") == 2, events
    assert (trial["state"], trial["attempts"], trial["objective"]) == ("completed", 3, 0.7)
    assert (trial_dir / "checkpoint" / "runs").read_text() == "run\n" * 3
