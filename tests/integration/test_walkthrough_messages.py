"""What a new user met in a walkthrough, through a real daemon: `gpusched logs` of a trial that
wrote only to stderr printed nothing at all, and `gpusched wait` of an experiment that its
first trial failed did not say how that trial failed."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.harness import Daemon, running_daemon

AI_PLATFORM = "set max_failed_trials to go on after failures, as AI Platform does"


def one_trial(d: Daemon, script: Path, source: str, **settings: object) -> str:
    """Submit one trial of ``source`` and wait for its end; the experiment's id."""
    script.write_text(source)
    exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                    "max_trials": 1, "gpus_per_trial": 0,
                    "params": [{"name": "x", "type": "double", "min": 0, "max": 1}],
                    **settings})
    d.wait_experiment(exp)
    return exp


REPORTS = ("from gpusched import trial\n"
           "trial.report(score=1.0)\n")


def test_logs_of_an_empty_stdout_point_to_the_stderr(tmp_path: Path) -> None:
    # As the PyTorch example: everything goes to stderr, the reports to the report file.
    with running_daemon(tmp_path / "d") as d:
        exp = one_trial(d, tmp_path / "quiet.py",
                        "import sys\nprint('epoch 1', file=sys.stderr)\n"
                        "print('epoch 2', file=sys.stderr)\n" + REPORTS)
        plain, followed = d.cli("logs", f"{exp}/0"), d.cli("logs", f"{exp}/0", "--follow")
        stderr = d.cli("logs", f"{exp}/0", "--stderr")
    hint = (f"(stdout of {exp}/0 is empty; its stderr has 2 lines:"
            f" gpusched logs {exp}/0 --stderr)\n")
    for out in (plain, followed):
        assert (out.returncode, out.stdout, out.stderr) == (0, "", hint), out
    assert (stderr.returncode, stderr.stdout, stderr.stderr) == (0, "epoch 1\nepoch 2\n", "")


def test_logs_of_an_empty_stderr_point_to_the_stdout(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = one_trial(d, tmp_path / "talk.py", "print('one line', end='')\n" + REPORTS)
        out = d.cli("logs", f"{exp}/0", "--stderr")
        stdout = d.cli("logs", f"{exp}/0")
    assert (out.returncode, out.stdout) == (0, "")
    assert out.stderr == (f"(stderr of {exp}/0 is empty; its stdout has 1 line:"
                          f" gpusched logs {exp}/0)\n")
    assert (stdout.stdout, stdout.stderr) == ("one line", "")


def test_logs_of_a_trial_that_wrote_nothing_say_nothing(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        exp = one_trial(d, tmp_path / "mute.py", REPORTS)
        outs = [d.cli("logs", f"{exp}/0"), d.cli("logs", f"{exp}/0", "--stderr")]
    assert [(o.returncode, o.stdout, o.stderr) for o in outs] == [(0, "", "")] * 2


def test_wait_says_how_the_first_trial_failed(tmp_path: Path) -> None:
    # The trainer reports val_accuracy; the file's metric is val_acc.
    source = ("from gpusched import trial\n"
              "trial.report(step=1, train_loss=0.5, val_accuracy=0.9, val_loss=0.4)\n")
    with running_daemon(tmp_path / "d") as d:
        exp = one_trial(d, tmp_path / "train.py", source, metric="val_acc", max_trials=2,
                        max_parallel_trials=1)
        out = d.cli("wait", exp)
    said = ("exited 0 without reporting 'val_acc' (it reported step, train_loss, val_accuracy,"
            " val_loss) (did you mean 'val_accuracy'?)")
    assert out.returncode == 1, out
    assert out.stdout == f"{exp} failed: the first trial, {exp}/0, failed: {said}; {AI_PLATFORM}\n"
