"""A stop decided before a daemon crash is kept after the restart, not run again.

The daemon sends a trial its stop (the ``stop:`` bound, its trial_timeout, a cancel of it); the
trial traps SIGTERM and takes its time to save (it waits for GATE), so the daemon is in the
stop's grace period when it is killed (SIGKILL). The log has the stop (event
``trial_stop_sent``) but still says the trial runs: the restarted daemon records the outcome
that the dead one would have (``stopped`` with its objective, the timeout's ``failed``,
``cancelled``), not ``interrupted``, and does not run the trial again. A trial cut off with no
stop sent (a crash, or the daemon's own graceful shutdown) still runs again. The restart
takes only what the trial reported by the end of the stop's grace period, and ends its
experiment as the live daemon would have.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.procfs import processes_with_env
from tests.integration.harness import Daemon, running_daemon, wait_for

# Reports STEPS scores (0.1, 0.2, ...), then waits for GATE and exits 0. On SIGTERM it notes
# it in its checkpoint folder and saves until GATE is there (longer than any test waits), then
# exits 0. Each run is noted in its checkpoint folder's "runs".
STOPPABLE = """\
import json, os, signal, sys, time
checkpoints, gate = os.environ["GPUSCHED_CHECKPOINT_DIR"], os.environ["GATE"]
def wait_for_the_gate():
    while not os.path.exists(gate):
        time.sleep(0.02)
def on_term(signum, frame):
    with open(os.path.join(checkpoints, "terminated"), "a") as out:
        out.write("term\\n")
    wait_for_the_gate()  # saving its checkpoint
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(os.path.join(checkpoints, "runs"), "a") as runs:
    runs.write("run\\n")
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as reports:
    for step in range(1, int(os.environ["STEPS"]) + 1):
        reports.write(json.dumps({"score": step / 10}) + "\\n")
        reports.flush()
        time.sleep(0.05)
wait_for_the_gate()
"""
# Reports two lines without the metric, then waits. On SIGTERM it notes it, waits for GATE
# (opened only once the stop's grace period is over), reports its first finite score, and
# exits 0.
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
# The first daemon never reaches the end of a stop's grace period in a test (but for
# LATE_REPORTER's, which waits it out); the restarted one stops the leftovers (which wait for
# GATE) quickly.
LONG_GRACE = {"grace_period_s": 600.0, "shutdown_grace_s": 600.0}
SHORT_GRACE = {"grace_period_s": 0.5, "shutdown_grace_s": 0.5}


@pytest.fixture
def gate(tmp_path: Path) -> Iterator[Path]:
    """The trials' GATE; opened at the end whatever happened, so that no trial of a failed
    test waits for it for ever."""
    yield tmp_path / "gate"
    (tmp_path / "gate").touch()


def _experiment(tmp_path: Path, steps: int, trainer: str = STOPPABLE,
                **more: Any) -> dict[str, Any]:
    script = tmp_path / "train.py"
    script.write_text(trainer)
    return {"command": [sys.executable, str(script)], "metric": "score", "goal": "maximize",
            "max_parallel_trials": 1, "max_retries_per_trial": 2,
            "env": {"GATE": str(tmp_path / "gate"), "STEPS": str(steps)},
            "params": [{"name": "x", "type": "double", "min": 0, "max": 1}], **more}


def _events(d: Daemon, target: str) -> list[dict[str, Any]]:
    return list(d.client.show(target)["events"])


def _kinds(d: Daemon, target: str) -> list[str]:
    return [e["kind"] for e in _events(d, target)]


def _kill_once_the_stop_is_sent(d: Daemon, exp: str) -> Path:
    """Wait until the log has trial 0's stop and the trial got its SIGTERM (it is saving),
    then SIGKILL the daemon; the trial's folder."""
    wait_for(lambda: "trial_stop_sent" in _kinds(d, f"{exp}/0"), 30, "the stop to be sent")
    trial_dir = Path(d.client.trials(exp)[0]["dir"])
    wait_for((TrialFiles(trial_dir).checkpoints / "terminated").exists, 30,
             "the trial to get its SIGTERM")
    assert d.client.trials(exp)[0]["state"] == "running"  # in its grace period
    d.proc.kill()
    d.proc.wait()
    return trial_dir


def _runs(trial_dir: Path) -> int:
    return (TrialFiles(trial_dir).checkpoints / "runs").read_text().count("run")


def _ran_again_after_the_restart(tmp_path: Path, exp: str, trial_dir: Path) -> None:
    """Restart the daemon on the killed one's state folder: trial 0 of ``exp``, cut off with
    no stop kept, was interrupted and ran again to its end, and the experiment completed."""
    with running_daemon(tmp_path / "d", state_dir=tmp_path / "state",
                        settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
        kinds = _kinds(d, f"{exp}/0")
    assert (trial["state"], trial["attempts"]) == ("completed", 2), trial
    assert _runs(trial_dir) == 2
    assert "trial_stop_sent" not in kinds and "trial_interrupted" in kinds, kinds
    assert view["state"] == "completed", view


def test_a_stop_bound_s_stop_sent_before_a_crash_ends_the_trial_stopped(
    tmp_path: Path, gate: Path,
) -> None:
    state = tmp_path / "state"
    experiment = _experiment(tmp_path, 3, max_trials=2, stop={"training_iteration": 3})
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(experiment)
        trial_dir = _kill_once_the_stop_is_sent(d, exp)
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        # Concluded at the restart, its leftover (still saving) stopped first: then the
        # experiment goes on to its next trial.
        wait_for(lambda: d.client.trials(exp)[0]["state"] != "running", 30, "trial 0's end")
        gate.touch()
        view = d.wait_experiment(exp, timeout=60)
        trial, other = d.client.trials(exp)
        events = _events(d, f"{exp}/0")
    assert (trial["state"], trial["objective"]) == ("stopped", 0.3), trial
    assert trial["reason"].startswith("stop bound reached: training_iteration=3"), trial
    # Not run again: one attempt, one start, no interruption.
    assert trial["attempts"] == 1 and _runs(trial_dir) == 1, trial
    kinds = [e["kind"] for e in events]
    assert kinds.count("trial_started") == 1 and "trial_interrupted" not in kinds, kinds
    [ended] = [e for e in events if e["kind"] == "trial_ended"]
    assert ended["data"]["stopped_pids"], ended  # its leftover was stopped, as before
    assert other["state"] in ("stopped", "completed"), other
    assert view["state"] == "completed", view


def test_a_trial_timeout_sent_before_a_crash_fails_the_trial_and_the_rules_judge_it(
    tmp_path: Path, gate: Path,
) -> None:
    # max_failed_trials unset: the first trial's failure fails the experiment, at the restart
    # as it would have without the crash.
    state = tmp_path / "state"
    experiment = _experiment(tmp_path, 2, max_trials=2, trial_timeout=1)
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(experiment)
        trial_dir = _kill_once_the_stop_is_sent(d, exp)
    gate.touch()  # it saves, and exits while no daemon runs
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", [str(trial_dir)]), 30,
             "the trial to exit while no daemon runs")
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        trials = d.client.trials(exp)
        kinds = _kinds(d, f"{exp}/0")
    [trial] = trials  # trial 1 never started
    assert (trial["state"], trial["reason"], trial["objective"]) == (
        "failed", "trial_timeout of 1s exceeded", None), trial
    assert trial["attempts"] == 1 and _runs(trial_dir) == 1, trial  # not retried either
    assert kinds.count("trial_started") == 1 and "trial_interrupted" not in kinds, kinds
    assert (view["state"], view["reason"]) == ("failed", (
        f"the first trial, {exp}/0, failed: trial_timeout of 1s exceeded; set max_failed_trials"
        " to go on after failures, as AI Platform does")), view


def test_a_cancel_of_one_trial_sent_before_a_crash_is_kept(tmp_path: Path, gate: Path) -> None:
    state = tmp_path / "state"
    experiment = _experiment(tmp_path, 2, max_trials=2)
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(experiment)
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        assert d.client.cancel(f"{exp}/0") == f"cancelling {exp}/0"
        trial_dir = _kill_once_the_stop_is_sent(d, exp)
    gate.touch()
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        trial, other = d.client.trials(exp)
    assert (trial["state"], trial["reason"], trial["attempts"]) == ("cancelled", "cancelled", 1)
    assert _runs(trial_dir) == 1
    # The experiment goes on: its other trial runs, and it completes.
    assert (other["state"], other["objective"]) == ("completed", 0.2), other
    assert view["state"] == "completed", view


def test_a_trial_cut_off_with_no_stop_sent_runs_again(tmp_path: Path, gate: Path) -> None:
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(_experiment(tmp_path, 2, max_trials=1))
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    _ran_again_after_the_restart(tmp_path, exp, trial_dir)


def test_a_daemon_killed_in_its_own_shutdown_s_grace_period_runs_its_trials_again(
    tmp_path: Path, gate: Path,
) -> None:
    # The shutdown's stop interrupts the trial, to run again by design: the log keeps no stop
    # for it, and the restart runs it again, as after a crash.
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(_experiment(tmp_path, 2, max_trials=1))
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        d.proc.send_signal(signal.SIGTERM)
        wait_for((TrialFiles(trial_dir).checkpoints / "terminated").exists, 30,
                 "the trial to get the shutdown's SIGTERM")
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    _ran_again_after_the_restart(tmp_path, exp, trial_dir)


def test_a_time_budget_s_stop_sent_before_a_crash_keeps_the_trial_s_result(
    tmp_path: Path, gate: Path,
) -> None:
    # Without the stop kept, the restart would cancel the trial (its experiment's budget is
    # used up: nothing runs again) and lose the result it had.
    state = tmp_path / "state"
    experiment = _experiment(tmp_path, 2, max_trials=2, time_budget=2)
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(experiment)
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        trial_dir = _kill_once_the_stop_is_sent(d, exp)
    gate.touch()
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
    assert (trial["state"], trial["objective"], trial["attempts"]) == ("stopped", 0.2, 1), trial
    assert trial["reason"] == "time_budget of 2s used up", trial
    assert _runs(trial_dir) == 1
    assert (view["state"], view["reason"]) == (
        "completed", f"time_budget of 2s used up; 1 trial run; best score = 0.2 (trial {exp}/0)")


def test_a_cancel_of_the_whole_experiment_is_kept_by_its_own_event(
    tmp_path: Path, gate: Path,
) -> None:
    # `cancel EXP` is in the log already (experiment_cancel_requested): no stop is written
    # for each of its trials, and the restart cancels the trial all the same.
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(_experiment(tmp_path, 2, max_trials=2))
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        assert d.client.cancel(exp) == f"cancelling {exp}"
        wait_for((TrialFiles(trial_dir).checkpoints / "terminated").exists, 30,
                 "the trial to get the cancel's SIGTERM")
        wait_for(lambda: "experiment_cancel_requested" in _kinds(d, exp), 30, "the cancel")
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
        kinds = _kinds(d, f"{exp}/0")
    assert (trial["state"], trial["reason"], trial["attempts"]) == ("cancelled", "cancelled", 1)
    assert _runs(trial_dir) == 1 and "trial_stop_sent" not in kinds, kinds
    assert view["state"] == "cancelled", view


def test_an_experiment_whose_last_trial_the_time_budget_stopped_ends_saying_so_after_a_crash(
    tmp_path: Path, gate: Path,
) -> None:
    # Its only trial is stopped by the time_budget, and the restart ends the experiment: as
    # live, its reason says the budget was used up (restored from the log's event).
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state, settings=LONG_GRACE) as d:
        exp = d.submit(_experiment(tmp_path, 2, max_trials=1, time_budget=2))
        wait_for(lambda: d.client.trials(exp)[0]["reports"] == 2, 30, "its reports")
        _kill_once_the_stop_is_sent(d, exp)
    gate.touch()
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        [trial] = d.client.trials(exp)
    assert (trial["state"], trial["objective"]) == ("stopped", 0.2), trial
    assert (view["state"], view["reason"]) == (
        "completed", f"time_budget of 2s used up; 1 trial run; best score = 0.2 (trial {exp}/0)")


GRACE_S = 5.0  # the late reporter's first daemon: it is killed well within it
NO_RESULT = ("stop bound reached: training_iteration=2 >= 2; it reported no finite 'score',"
             " so it has no result")


def test_a_report_written_after_the_stop_s_grace_period_does_not_change_the_outcome(
    tmp_path: Path, gate: Path,
) -> None:
    # The live daemon never takes in what a trial reports after its stop's grace period (it
    # SIGKILLs the trial then). This one has no result when the stop: bound stops it, and on
    # SIGTERM reports its first finite score only once the grace period is over, while no
    # daemon runs: the restart records what the live daemon would have, `failed`, and the
    # first trial's failure fails the experiment.
    state = tmp_path / "state"
    grace = {"grace_period_s": GRACE_S, "shutdown_grace_s": GRACE_S}
    with running_daemon(tmp_path / "d", state_dir=state, settings=grace) as d:
        exp = d.submit(_experiment(tmp_path, 0, LATE_REPORTER, max_trials=2,
                                   stop={"training_iteration": 2}))
        trial_dir = _kill_once_the_stop_is_sent(d, exp)
        sent = time.time()  # the stop went out before this
    wait_for(lambda: time.time() > sent + GRACE_S + 0.5, 30, "the grace period to pass")
    gate.touch()
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", [str(trial_dir)]), 30,
             "the trial to report late and exit while no daemon runs")
    with running_daemon(tmp_path / "d", state_dir=state, settings=SHORT_GRACE) as d:
        view = d.wait_experiment(exp, timeout=60)
        trial = d.client.trials(exp)[0]
    assert trial["exit_signal"] is None, trial  # concluded by the restart, not SIGKILLed live
    # As the live daemon records it (tests/integration/test_no_result_fails.py's rule).
    assert (trial["state"], trial["objective"], trial["reason"]) == ("failed", None, NO_RESULT), (
        trial)
    assert view["state"] == "failed", view
