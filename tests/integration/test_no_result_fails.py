"""An experiment that ends with no trial having a result ends `failed`, saying how its trials
ended, through a real daemon: `gpusched wait` exits 1, and `gpusched resume` treats it as any
failed experiment. It once ended `completed` ("no trial has a result: those that reported
'val_accuracy' ended without one"), `wait` exited 0, and `resume` refused it as completed."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.harness import running_daemon, wait_for

# Reports, then crashes: the reason is the last line of its stderr. With BLOCK set, trial 1's
# first attempt waits (to be cancelled), and its next one completes.
TRAINER = """\
import os, time
from gpusched import trial
trial.report(score=0.1)
if os.environ.get("BLOCK") and os.environ["GPUSCHED_TRIAL"] == "1":
    if trial.attempt() == 1:
        time.sleep(60)
    trial.report(score=1.0)
    raise SystemExit(0)
raise RuntimeError("boom")
"""


def _experiment(tmp_path: Path, values: list[int], **settings: object) -> dict[str, object]:
    script = tmp_path / "train.py"
    script.write_text(TRAINER)
    return {"command": [sys.executable, str(script)], "metric": "score", "search": "grid",
            "max_parallel_trials": 1, "max_failed_trials": 100,
            "max_consecutive_failed_trials": 100,
            "params": [{"name": "x", "type": "discrete", "values": values}], **settings}


def test_an_experiment_whose_every_trial_failed_ends_failed_and_wait_exits_1(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(_experiment(tmp_path, [1, 2, 3]), name="crash")
        waited = d.cli("wait", exp, "--timeout", "60")
        view = d.client.show(exp)
        resumed = d.cli("resume", exp)
        after = d.client.show(exp)
    reason = (f"none of its 3 trials has a result: 3 failed (the last, {exp}/2: exited with"
              " code 1: RuntimeError: boom)")
    assert (waited.returncode, waited.stdout) == (1, f"{exp} failed: {reason}\n"), waited.stderr
    assert (view["state"], view["reason"]) == ("failed", reason)
    # Refused as a failed experiment with nothing left to run, not as a completed one, and
    # told what to do: its trials have no result a resume_from could learn from.
    assert resumed.returncode == 1
    assert resumed.stderr == (
        f"gpusched: {exp} has nothing left to run: all of its max_trials (3) have run and no"
        " trial was cut short, so it stays failed. None of its trials has a result to learn"
        f" from (`gpusched show {exp}` says how they ended): fix the cause, then submit the"
        " file again\n")
    assert (after["state"], after["reason"]) == ("failed", reason)


def test_a_failed_experiment_without_a_result_resumes_its_cancelled_trial(
    tmp_path: Path,
) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(_experiment(tmp_path, [1, 2], env={"BLOCK": "1"}), name="cut")
        wait_for(lambda: [t["state"] for t in d.client.trials(exp)] == ["failed", "running"],
                 30, "trial 0 to fail and trial 1 to run")
        assert d.cli("cancel", f"{exp}/1").returncode == 0
        failed = d.cli("wait", exp, "--timeout", "60")
        resumed = d.cli("resume", exp)
        completed = d.cli("wait", exp, "--timeout", "60")
        trials = d.client.trials(exp)
    assert (failed.returncode, failed.stdout) == (
        1, f"{exp} failed: none of its 2 trials has a result: 1 failed (the last, {exp}/0:"
           " exited with code 1: RuntimeError: boom), 1 cancelled\n")
    # It goes on as any failed experiment: the trial cut short runs again, and completes.
    assert (resumed.returncode, resumed.stdout) == (
        0, f"resuming {exp}: 1 trial to run again, no new ones (max_trials: 2)\n")
    assert (completed.returncode, completed.stdout) == (
        0, f"{exp} completed: 2 trials run; best score = 1 (trial {exp}/1)\n")
    assert [(t["state"], t["attempts"]) for t in trials] == [("failed", 1), ("completed", 2)]


def test_a_search_with_nothing_left_to_suggest_completes(tmp_path: Path) -> None:
    # A grid whose every point its resume_from history used runs no trial: nothing failed and
    # nothing is left to search, so it completes and `wait` exits 0 (not "no result: failed").
    script = tmp_path / "ok.py"
    script.write_text("from gpusched import trial\ntrial.report(score=1.0)\n")
    experiment = {"command": [sys.executable, str(script)], "metric": "score", "search": "grid",
                  "max_parallel_trials": 1,
                  "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]}
    with running_daemon(tmp_path / "d") as d:
        first = d.submit(experiment, name="first")
        assert d.cli("wait", first, "--timeout", "60").returncode == 0
        second = d.submit({**experiment, "resume_from": first}, name="second")
        waited = d.cli("wait", second, "--timeout", "60")
        assert waited.returncode == 0, waited.stdout + waited.stderr
        assert "search space exhausted before any trial ran" in waited.stdout
