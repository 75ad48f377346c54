"""An experiment that a failure rule ends names the trial that failed and how (a walkthrough:
`gpusched wait` said only `the first trial failed`, and the user needed `ls` to learn why)."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_experiment import C, F, add, run

MISSPELLED = ("exited 0 without reporting 'val_acc' (it reported step, train_loss, val_accuracy,"
              " val_loss) (did you mean 'val_accuracy'?)")
AI_PLATFORM = "set max_failed_trials to go on after failures, as AI Platform does"


def test_the_first_trial_rule_names_the_trial_and_its_reason(tmp_path: Path) -> None:
    exp = run(tmp_path)
    (first,) = add(exp, F)
    assert exp.failure_rule(first, None, MISSPELLED) == (
        f"the first trial, e1/0, failed: {MISSPELLED}; {AI_PLATFORM}")
    assert exp.failing_after(first, None, MISSPELLED) == (
        f"the first trial, e1/0, failed: {MISSPELLED}; {AI_PLATFORM}")


def test_without_its_reason_the_first_trial_rule_names_the_trial(tmp_path: Path) -> None:
    exp = run(tmp_path)
    (first,) = add(exp, F)
    assert exp.failure_rule(first, None) == f"the first trial, e1/0, failed; {AI_PLATFORM}"


def test_the_counting_rules_name_the_last_failed_trial_and_its_reason(tmp_path: Path) -> None:
    streak = run(tmp_path, max_failed_trials=100)
    trials = add(streak, C, F, F, F)
    assert streak.failure_rule(trials[3], None, "exited with code 3") == (
        "3 trials failed in a row (max_consecutive_failed_trials: 3); the last, e1/3: exited"
        " with code 3")
    total = run(tmp_path, max_failed_trials=2, max_consecutive_failed_trials=10)
    trials = add(total, F, C, F)
    assert total.failure_rule(trials[2], None, "killed by signal SIGKILL") == (
        "2 trials failed (max_failed_trials: 2); the last, e1/2: killed by signal SIGKILL")


def test_fail_fast_names_the_trial_s_reason(tmp_path: Path) -> None:
    exp = run(tmp_path, max_failed_trials=100, fail_fast=True)
    trials = add(exp, C, F)
    assert exp.failure_rule(trials[1], None, "exited with code 3") == (
        "trial e1/1 failed: exited with code 3; fail_fast is set")


def test_a_fatal_error_is_named_once(tmp_path: Path) -> None:
    # Its reason is the error again, with the exit: the rule's text stays as it was.
    exp = run(tmp_path, max_failed_trials=100)
    trials = add(exp, C, F)
    assert exp.failure_rule(trials[1], "license expired",
                            "license expired (exited with code 1)") == (
        "trial e1/1 raised a fatal error: license expired")


def test_a_long_reason_keeps_its_beginning_and_its_end(tmp_path: Path) -> None:
    exp = run(tmp_path)
    (first,) = add(exp, F)
    said = "CUDA error: " + "x" * 2000 + " (exited with code 1)"
    why = exp.failure_rule(first, None, said)
    assert why is not None
    reason = why.removeprefix("the first trial, e1/0, failed: ").removesuffix(
        f"; {AI_PLATFORM}")
    assert len(reason) == 240 and " ... " in reason
    assert reason.startswith("CUDA error: xxx") and reason.endswith("x (exited with code 1)")
