"""A restart must conclude a trial whose stop was sent as the live daemon
would have, and end its experiment as the live daemon would have.

1. The live daemon never takes in what a trial reports after its stop's grace period (it
   SIGKILLs the trial then). The trial below has no result when the ``stop:`` bound stops it;
   on SIGTERM it keeps working past the grace period and only then reports its first finite
   value. A live daemon records it ``failed`` (stopped by the bound before any finite value),
   and the first trial's failure fails the experiment; a daemon killed during the grace
   period, restarted once the trial has reported, must record the same.
2. An experiment whose only trial the time_budget stopped ends ``completed`` saying that its
   time_budget was used up, live and after a crash in the stop's grace period alike.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.procfs import processes_with_env
from tests.integration.harness import Daemon, running_daemon, wait_for

# Reports two lines without the metric, then waits. On SIGTERM it notes it, waits for GATE
# (the test opens it only once the stop's grace period is over), reports its first finite
# score, and exits 0.
LATE_REPORTER = """\
import json, os, signal, sys, time
checkpoints, gate = os.environ["GPUSCHED_CHECKPOINT_DIR"], os.environ["GATE"]
report_file = os.environ["GPUSCHED_REPORT_FILE"]
def on_term(signum, frame):
    with open(os.path.join(checkpoints, "terminated"), "a") as out:
        out.write("term\\n")
    while not os.path.exists(gate):
        time.sleep(0.02)
    with open(report_file, "a") as reports:
        reports.write(json.dumps({"score": 0.9}) + "\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(report_file, "a") as reports:
    for step in range(2):
        reports.write(json.dumps({"loss": 1.0}) + "\\n")
        reports.flush()
while True:
    time.sleep(0.05)
"""
GRACE_S = 5.0  # the first daemon's: it is killed well within it
FIRST = {"grace_period_s": GRACE_S, "shutdown_grace_s": GRACE_S}
SHORT_GRACE = {"grace_period_s": 0.5, "shutdown_grace_s": 0.5}
NO_RESULT = ("stop bound reached: training_iteration=2 >= 2; it reported no finite 'score',"
             " so it has no result")


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The trial's GATE; opened at the end whatever happened, so that no trial waits for ever."""
    yield tmp_path / "gate"
    (tmp_path / "gate").touch()


def _experiment(tmp_path: Path) -> dict[str, Any]:
    script = tmp_path / "train.py"
    script.write_text(LATE_REPORTER)
    return {"command": [sys.executable, str(script)], "metric": "score", "goal": "maximize",
            "max_trials": 2, "max_parallel_trials": 1, "stop": {"training_iteration": 2},
            "env": {"GATE": str(tmp_path / "gate")},
            "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}


def _kinds(d: Daemon, target: str) -> list[str]:
    return [e["kind"] for e in d.client.show(target)["events"]]


def test_a_report_written_after_the_stop_s_grace_period_does_not_change_the_outcome(
    tmp_path: Path, gate: Path,
) -> None:
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=FIRST) as d:
        exp = d.submit(_experiment(tmp_path))
        wait_for(lambda: "trial_stop_sent" in _kinds(d, f"{exp}/0"), 30, "the bound's stop")
        sent = time.time()  # the stop went out before this
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        wait_for((TrialFiles(trial_dir).checkpoints / "terminated").exists, 30,
                 "the trial to get its SIGTERM")
        assert d.client.trials(exp)[0]["state"] == "running"  # in its grace period
        d.proc.kill()
        d.proc.wait()
    # The live daemon would have SIGKILLed the trial by now: what it reports next, it could
    # not have reported under that daemon.
    wait_for(lambda: time.time() > sent + GRACE_S + 0.5, 30, "the grace period to pass")
    gate.touch()
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", [str(trial_dir)]), 30,
             "the trial to report late and exit while no daemon runs")
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        trials = d.client.trials(exp)
    trial = trials[0]
    assert trial["exit_signal"] is None, trial  # concluded by the restart, not SIGKILLed live
    # As the live daemon records it (tests/integration/test_no_result_fails.py's rule).
    assert (trial["state"], trial["objective"], trial["reason"]) == ("failed", None, NO_RESULT), (
        trial)
    assert view["state"] == "failed", view


# Reports STEPS scores (0.1, 0.2, ...), then waits for GATE and exits 0; on SIGTERM it notes it
# and saves until GATE is there, then exits 0 (test_restart_after_stop_sent.py's trainer).
STOPPABLE = """\
import json, os, signal, sys, time
checkpoints, gate = os.environ["GPUSCHED_CHECKPOINT_DIR"], os.environ["GATE"]
def wait_for_the_gate():
    while not os.path.exists(gate):
        time.sleep(0.02)
def on_term(signum, frame):
    with open(os.path.join(checkpoints, "terminated"), "a") as out:
        out.write("term\\n")
    wait_for_the_gate()
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as reports:
    for step in range(1, int(os.environ["STEPS"]) + 1):
        reports.write(json.dumps({"score": step / 10}) + "\\n")
        reports.flush()
        time.sleep(0.05)
wait_for_the_gate()
"""
LONG_GRACE = {"grace_period_s": 600.0, "shutdown_grace_s": 600.0}


def test_an_experiment_whose_last_trial_the_time_budget_stopped_ends_saying_so_after_a_crash(
    tmp_path: Path, gate: Path,
) -> None:
    # Its only trial (max_trials: 1) is stopped by the time_budget; the daemon is killed in the
    # stop's grace period. The live daemon ends the experiment `completed` with "time_budget of
    # 2s used up; 1 trial run; ..." (its budget is spent when the trial ends); so must the
    # restart, which concludes the trial by its stop.
    script = tmp_path / "train.py"
    script.write_text(STOPPABLE)
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "goal": "maximize", "max_trials": 1, "time_budget": 2,
                  "env": {"GATE": str(gate), "STEPS": "2"},
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(experiment)
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        wait_for(lambda: "trial_stop_sent" in _kinds(d, f"{exp}/0"), 30, "the budget's stop")
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        wait_for((TrialFiles(trial_dir).checkpoints / "terminated").exists, 30,
                 "the trial to get its SIGTERM")
        assert d.client.trials(exp)[0]["state"] == "running"  # in its grace period
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
    assert (trial["state"], trial["objective"]) == ("stopped", 0.2), trial
    assert (view["state"], view["reason"]) == (
        "completed", f"time_budget of 2s used up; 1 trial run; best score = 0.2 (trial {exp}/0)")
