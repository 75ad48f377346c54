"""The failure rules of SPEC section 5, each through a real daemon, and the reason of every
ending as `gpusched show` prints it (issue 3, point 1)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.integration.harness import (
    Daemon,
    fake_config,
    running_daemon,
    trial_script,
    wait_for,
)


def outcome_experiment(outcomes: dict[int, str], **overrides: Any) -> dict[str, Any]:
    """Trials of trials/outcome.py, one at a time; trial N ends as ``outcomes[N]`` says."""
    return {"command": [sys.executable, trial_script("outcome.py")], "metric": "score",
            "max_trials": 10, "max_parallel_trials": 1,
            "env": {"OUTCOMES": json.dumps({str(k): v for k, v in outcomes.items()})},
            "params": [{"name": "x", "type": "double", "min": 0, "max": 1}], **overrides}


def shown(d: Daemon, target: str) -> dict[str, str]:
    """`gpusched show TARGET` as a user reads it: its ``key  value`` lines, and its events."""
    out = d.cli("show", target)
    assert out.returncode == 0, out.stderr
    head, _, events = out.stdout.partition("\nevents:")
    pairs = dict(line.split(None, 1) for line in head.splitlines() if " " in line.strip())
    return {**pairs, "events": events}


def states(d: Daemon, exp: str) -> list[tuple[str, int]]:
    return [(t["state"], t["attempts"]) for t in d.client.trials(exp)]


def test_each_failure_rule_ends_the_experiment_and_show_says_why(tmp_path: Path) -> None:
    crash3 = {1: "crash", 2: "crash", 3: "crash"}
    with running_daemon(tmp_path / "d", fake=fake_config(6)) as d:
        # max_consecutive_failed_trials is not set: its default, 3.
        streak = d.submit(outcome_experiment(crash3, max_failed_trials=100), name="streak")
        total = d.submit(outcome_experiment({1: "crash", 3: "crash"}, max_failed_trials=2,
                                            max_consecutive_failed_trials=10), name="total")
        fast = d.submit(outcome_experiment({2: "crash"}, max_failed_trials=100, fail_fast=True),
                        name="fast")
        # max_failed_trials unset: only the first trial's failure ends it (AI Platform's rule).
        first = d.submit(outcome_experiment({0: "crash"}), name="first")
        later = d.submit(outcome_experiment({1: "crash"}, max_trials=3), name="later")
        ends = {exp: d.wait_experiment(exp) for exp in (streak, total, fast, first, later)}

        assert states(d, streak) == [("completed", 1)] + [("failed", 1)] * 3
        assert states(d, total) == [("completed", 1), ("failed", 1)] * 2
        assert states(d, fast) == [("completed", 1)] * 2 + [("failed", 1)]
        assert states(d, first) == [("failed", 1)]
        assert states(d, later) == [("completed", 1), ("failed", 1), ("completed", 1)]
        # Each names the trial that failed last, and how it failed (its own reason).
        crashed = "exited with code 3"
        expected = {
            streak: "3 trials failed in a row (max_consecutive_failed_trials: 3); the last,"
                    f" {streak}/3: {crashed}",
            total: f"2 trials failed (max_failed_trials: 2); the last, {total}/3: {crashed}",
            fast: f"trial {fast}/2 failed: {crashed}; fail_fast is set",
            first: f"the first trial, {first}/0, failed: {crashed}; set max_failed_trials to go"
                   " on after failures, as AI Platform does",
        }
        for exp, reason in expected.items():
            assert ends[exp]["state"] == "failed" and ends[exp]["reason"] == reason
            view = shown(d, exp)
            assert view["state"] == "failed" and view["reason"] == reason
            assert f"experiment_ended  {reason}" in view["events"]
        assert ends[later]["state"] == "completed"
        assert shown(d, later)["reason"] == f"3 trials run; best score = 2 (trial {later}/2)"
        assert shown(d, f"{streak}/1")["reason"] == "exited with code 3"


def test_python_errors_fail_a_trial_without_retry_or_end_the_experiment(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d", fake=fake_config(4)) as d:
        # Trial 1 raises FatalError while trial 0 still runs: the experiment fails at once,
        # trial 0 is stopped, and neither is retried although retries are allowed.
        fatal = d.submit(outcome_experiment({0: "sleep", 1: "fatal"}, max_parallel_trials=2,
                                            max_failed_trials=100, max_retries_per_trial=2),
                         name="fatal")
        failed = d.submit(outcome_experiment({0: "failed"}, max_trials=2, max_failed_trials=100,
                                             max_retries_per_trial=2), name="failed")
        fatal_end, failed_end = d.wait_experiment(fatal), d.wait_experiment(failed)
        fatal_trials, failed_trials = d.client.trials(fatal), d.client.trials(failed)
        fatal_shown = shown(d, fatal)

    reason = f"trial {fatal}/1 raised a fatal error: license expired"
    assert fatal_end["state"] == "failed" and fatal_end["reason"] == reason
    assert fatal_shown["reason"] == reason
    assert [(t["state"], t["attempts"]) for t in fatal_trials] == [
        ("cancelled", 1), ("failed", 1)]
    assert fatal_trials[0]["reason"] == f"experiment failed: {reason}"
    assert fatal_trials[1]["reason"] == "license expired (exited with code 1)"
    # FailedTrialError: that trial failed, not retried; the experiment goes on.
    assert failed_end["state"] == "completed"
    assert [(t["state"], t["attempts"]) for t in failed_trials] == [
        ("failed", 1), ("completed", 1)]
    assert failed_trials[0]["reason"] == "bad data in trial 0 (exited with code 1)"


def test_a_retry_waiting_for_a_gpu_does_not_keep_a_failed_experiment_open(
    tmp_path: Path,
) -> None:
    # Trial 0 crashes; its GPU is still releasing and trial 1 holds the other, so its retry
    # waits. Then trial 1 raises FatalError: the waiting retry must not hold the end forever.
    with running_daemon(tmp_path / "d", fake=fake_config(2, release_delay_s=3.0)) as d:
        exp = d.submit(outcome_experiment({0: "crash", 1: "slow-fatal"}, max_parallel_trials=2,
                                          max_failed_trials=100, max_retries_per_trial=1))
        view = d.wait_experiment(exp, timeout=20)
        trials = d.client.trials(exp)
    reason = f"trial {exp}/1 raised a fatal error: license expired"
    assert view["state"] == "failed" and view["reason"] == reason
    assert [(t["state"], t["attempts"], t["reason"]) for t in trials] == [
        ("cancelled", 1, f"experiment failed: {reason}"),
        ("failed", 1, "license expired (exited with code 1)")]


BASH_TRIAL = """\
#!/bin/bash
# Says how it ended in its report file, as a trainer in any language can.
case "$GPUSCHED_TRIAL" in
  0) echo '{"status": "failed", "reason": "no data in shard 0"}' >> "$GPUSCHED_REPORT_FILE"
     exit 1 ;;
  1) echo '{"score": 0.5}' >> "$GPUSCHED_REPORT_FILE" ;;
  2) echo '{"score": 0.1}' >> "$GPUSCHED_REPORT_FILE"
     echo '{"status": "fatal", "reason": "the dataset is gone"}' >> "$GPUSCHED_REPORT_FILE"
     exit 2 ;;
esac
"""


def test_status_lines_from_a_bash_trial(tmp_path: Path) -> None:
    script = tmp_path / "train.sh"
    script.write_text(BASH_TRIAL)
    script.chmod(0o755)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [str(script)], "metric": "score", "max_trials": 6,
                        "max_parallel_trials": 1, "max_failed_trials": 100,
                        "max_retries_per_trial": 3,
                        "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]})
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
        trial_shown = shown(d, f"{exp}/0")
    assert view["state"] == "failed"
    assert view["reason"] == f"trial {exp}/2 raised a fatal error: the dataset is gone"
    assert [(t["state"], t["attempts"], t["reason"]) for t in trials] == [
        ("failed", 1, "no data in shard 0 (exited with code 1)"),
        ("completed", 1, "exited 0; score = 0.5"),
        ("failed", 1, "the dataset is gone (exited with code 2)"),
    ]
    assert trial_shown["reason"] == "no data in shard 0 (exited with code 1)"
    assert trial_shown["attempts"] == "1"


STATUS_THEN_CUT_SHORT = """\
import os, sys, time
checkpoints = os.environ["GPUSCHED_CHECKPOINT_DIR"]
attempt = len(os.listdir(checkpoints))
open(os.path.join(checkpoints, f"attempt-{attempt}"), "w").close()
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as reports:
    if attempt == 0:  # says it failed fatally, but is cancelled before it exits
        reports.write('{"status": "fatal", "reason": "the first attempt gave up"}\\n')
        reports.flush()
        time.sleep(60)
    elif attempt == 2:
        reports.write('{"score": 1}\\n')
sys.exit(3 if attempt == 1 else 0)  # the second attempt crashes, without a status line
"""


def test_a_cut_short_attempts_status_line_does_not_decide_the_next_attempt(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(STATUS_THEN_CUT_SHORT)
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "max_trials": 1, "max_retries_per_trial": 2,
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment)
        trial_dir = Path(d.client.trials(exp)[0]["dir"])
        wait_for((trial_dir / "checkpoint" / "attempt-0").exists, 20,
                 "the first attempt to start")
        time.sleep(0.3)  # its status line is polled while it runs
        d.client.cancel(exp)
        assert d.wait_experiment(exp)["state"] == "cancelled"
        d.client.resume(exp)  # the cancelled trial runs again
        view = d.wait_experiment(exp)
        trial = d.client.trials(exp)[0]
    # The second attempt's crash is retried, not taken for the first attempt's fatal error.
    assert view["state"] == "completed", view
    assert (trial["state"], trial["attempts"], trial["objective"]) == ("completed", 3, 1)


def run_script(tmp_path: Path, source: str, **settings: Any
               ) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """Run an experiment of the trial script ``source`` to its end: its id, view and trials."""
    script = tmp_path / "train.py"
    script.write_text(source)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "params": [{"name": "x", "type": "double", "min": 0, "max": 1}],
                        **settings})
        return exp, d.wait_experiment(exp), d.client.trials(exp)


def test_a_reason_with_undecodable_bytes_still_ends_the_experiment(tmp_path: Path) -> None:
    # os.fsdecode of a non-UTF-8 file name holds a lone surrogate: the trial log could not
    # store such a reason, the trial's end was lost and its FatalError ignored.
    exp, view, trials = run_script(
        tmp_path, "import os\nfrom gpusched import FatalError\n"
                  "raise FatalError('cannot read ' + os.fsdecode(b'data-\\xff.csv'))\n",
        max_trials=3, max_failed_trials=10, max_parallel_trials=1)
    assert view["state"] == "failed", view
    assert view["reason"] == f"trial {exp}/0 raised a fatal error: cannot read data-\\udcff.csv"
    assert trials[0]["reason"] == "cannot read data-\\udcff.csv (exited with code 1)"


def test_an_experiment_whose_reporting_trials_all_failed_fails_saying_how(
    tmp_path: Path,
) -> None:
    # It read "1 trials run; no trial reported 'score'", though the trial had reported it;
    # then "no trial has a result: those that reported 'score' ended without one", a metric
    # problem where the trial had crashed, and it ended `completed`.
    exp, view, _ = run_script(
        tmp_path, "import json, os, sys\n"
                  "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as f:\n"
                  "    f.write(json.dumps({'score': 0.5}) + '\\n')\n"
                  "sys.exit(3)\n",
        max_trials=1, max_failed_trials=5, max_retries_per_trial=0)
    assert (view["state"], view["reason"]) == (
        "failed", f"its only trial has no result: it failed ({exp}/0: exited with code 3)")


def test_trials_that_never_reported_the_metric_fail_the_experiment_saying_so(
    tmp_path: Path,
) -> None:
    # The metric case: each trial's own reason (the last one's is shown) names the metric.
    exp, view, _ = run_script(
        tmp_path, "import json, os\n"
                  "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as f:\n"
                  "    f.write(json.dumps({'scor': 0.5}) + '\\n')\n",
        max_trials=2, max_parallel_trials=1, max_failed_trials=5)
    assert (view["state"], view["reason"]) == (
        "failed", f"none of its 2 trials has a result: 2 failed (the last, {exp}/1: exited 0"
                  " without reporting 'score' (it reported scor) (did you mean 'scor'?))")


def test_a_trial_stopped_early_without_a_result_failed(tmp_path: Path) -> None:
    # A misspelled metric: asha stops every trial at max_t. They ended `stopped` without a
    # result, no failure rule saw them, and the experiment ended `completed`.
    _, view, trials = run_script(
        tmp_path, "import json, os, time\n"
                  "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as f:\n"
                  "    for step in range(50):\n"
                  "        f.write(json.dumps({'accuracy': 0.5}) + '\\n'); f.flush()\n"
                  "        time.sleep(0.02)\n",
        max_trials=3, max_parallel_trials=1, early_stopping={"policy": "asha", "max_t": 3})
    assert view["state"] == "failed", view
    assert trials[0]["state"] == "failed"
    assert trials[0]["reason"] == ("asha: reached max_t 3; it reported no finite 'score', so it"
                                   " has no result")
    assert view["reason"] == (f"the first trial, {trials[0]['id']}, failed: {trials[0]['reason']};"
                              " set max_failed_trials to go on after failures, as AI Platform"
                              " does"), view


def test_a_misspelled_metric_is_plain_in_the_trials_reason(tmp_path: Path) -> None:
    _, _, trials = run_script(
        tmp_path, "import json, os\n"
                  "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as f:\n"
                  "    f.write(json.dumps({'scor': 0.5, 'step': 1}) + '\\n')\n",
        max_trials=1)
    assert trials[0]["reason"] == ("exited 0 without reporting 'score' (it reported scor, step)"
                                   " (did you mean 'scor'?)")


def test_a_trial_knows_which_attempt_it_is(tmp_path: Path) -> None:
    # A retry's training_iteration goes on from the earlier attempt's: a trainer without a
    # checkpoint could not tell it starts over.
    _, view, trials = run_script(
        tmp_path, "import json, os, sys\nfrom gpusched import trial\n"
                  "seen = os.path.join(trial.checkpoint_dir(), 'attempts')\n"
                  "with open(seen, 'a') as f:\n"
                  "    f.write(os.environ['GPUSCHED_ATTEMPT'] + str(trial.attempt()) + '\\n')\n"
                  "if trial.attempt() == 1:\n    sys.exit(3)\n"
                  "trial.report(score=1.0)\n",
        max_trials=1, max_retries_per_trial=1)
    assert view["state"] == "completed" and trials[0]["attempts"] == 2
    seen = Path(trials[0]["dir"]) / "checkpoint" / "attempts"
    assert seen.read_text() == "11\n22\n"
