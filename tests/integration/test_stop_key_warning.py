"""A ``stop:`` key that the trials never report (``val_acc`` for the ``val_accuracy`` they
report) is warned about once per experiment, in ``gpusched show EXP`` and the daemon's log; the
trials themselves complete as usual. A restarted daemon does not warn again."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import Daemon, running_daemon, wait_for

KIND = "stop_key_never_reported"
# Reports val_accuracy = x and loss = 1 - x. With --gate=PATH, every trial but the first waits
# for that file first (it holds a trial running while the test restarts the daemon).
TRAINER = """
import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
if "gate" in args and os.environ["GPUSCHED_TRIAL"] != "0":
    while not os.path.exists(args["gate"]):
        time.sleep(0.02)
x = float(args["x"])
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    fh.write(json.dumps({"val_accuracy": x, "loss": 1 - x}) + "\\n")
"""


# Reports val_accuracy = x at every iteration until it is stopped (at most 60 s): a trial that
# only a stop: bound ends.
UNTIL_STOPPED = """
import json, os, sys, time
x = float(dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--"))["x"])
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    for _ in range(3000):
        fh.write(json.dumps({"val_accuracy": x, "loss": 1 - x}) + "\\n")
        fh.flush()
        time.sleep(0.02)
"""


def experiment(stop: dict[str, float], *extra: str, **settings: Any) -> dict[str, Any]:
    """Three trials of TRAINER, one at a time (trial 0 ends first), stopped by ``stop``."""
    return {"command": [sys.executable, "-c", TRAINER, *extra], "metric": "val_accuracy",
            "max_trials": 3, "max_parallel_trials": 1, "stop": stop,
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 0.5}], **settings}


def warnings_in(d: Daemon, exp: str) -> tuple[list[str], list[dict[str, Any]]]:
    """The warning's lines in ``gpusched show EXP``, and its events in the daemon's log."""
    shown = d.cli("show", exp)
    assert shown.returncode == 0, shown.stderr
    events = shown.stdout.split("\nevents:", 1)[1]  # after the spec (its workdir may hold KIND)
    lines = [line for line in events.splitlines() if f" {KIND} " in line]
    logged = [e for e in d.log_events() if e.get("event") == KIND and
              str(e.get("trial", "")).startswith(f"{exp}/")]
    return lines, logged


def test_a_stop_key_never_reported_is_warned_about_once(tmp_path: Path) -> None:
    with running_daemon(tmp_path / "d") as d:
        typo = d.submit(experiment({"val_acc": 0.9, "training_iteration": 50}), name="typo")
        right = d.submit(experiment({"loss": 99.0}), name="right")
        for exp in (typo, right):
            assert d.wait_experiment(exp)["state"] == "completed"
        trials = {exp: d.client.trials(exp) for exp in (typo, right)}
        typo_lines, typo_logged = warnings_in(d, typo)
        right_lines, right_logged = warnings_in(d, right)
    # The bound is optional: the trials are not failed for it.
    assert [t["state"] for t in trials[typo]] == ["completed"] * 3
    warning = (f"stop: 'val_acc' was never reported by trial {typo}/0 (it reported loss,"
               " val_accuracy) (did you mean 'val_accuracy'?): that bound cannot stop a"
               " trial; name a key the trainer reports")
    assert len(typo_lines) == 1, typo_lines  # one warning across the 3 trials
    assert typo_lines[0].endswith(f"{KIND}  {warning}"), typo_lines
    assert [e["warning"] for e in typo_logged] == [warning]
    # Its trials report `loss`: nothing to warn about.
    assert [t["state"] for t in trials[right]] == ["completed"] * 3
    assert (right_lines, right_logged) == ([], [])


def test_a_restarted_daemon_does_not_warn_again(tmp_path: Path) -> None:
    gate, state = tmp_path / "gate", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(experiment({"val_acc": 0.9}, f"--gate={gate}"))
        # Trial 0 has ended and warned; trial 1 waits at its gate, then the daemon is killed.
        wait_for(lambda: warnings_in(d, exp)[0], 30, "the warning")
        wait_for(lambda: [t for t in d.client.trials(exp)
                          if t["number"] == 1 and t["state"] == "running"], 30, "trial 1")
        d.proc.kill()
        d.proc.wait()
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        gate.touch()  # trial 1 runs again, then trial 2: both end without val_acc
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
        lines, logged = warnings_in(d, exp)
    assert [t["state"] for t in trials] == ["completed"] * 3
    assert len(lines) == 1, lines
    assert f"by trial {exp}/0 " in lines[0]
    assert len(logged) == 1, logged  # the log holds both daemons' lines


def test_trials_stopped_by_another_bound_warn_of_the_key_never_reported(tmp_path: Path) -> None:
    # Ray Tune's usual stop: every trial is stopped at iteration 3 by the other bound. It ran
    # as far as it was asked to, without val_acc: that is warned about, once.
    stop = {"val_acc": 0.5, "training_iteration": 3}
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({**experiment(stop), "command": [sys.executable, "-c", UNTIL_STOPPED]})
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
        lines, logged = warnings_in(d, exp)
    assert [t["state"] for t in trials] == ["stopped"] * 3
    assert all(t["reason"].startswith("stop bound reached: ") for t in trials), trials
    warning = (f"stop: 'val_acc' was never reported by trial {exp}/0 (it reported loss,"
               " val_accuracy) (did you mean 'val_accuracy'?): that bound cannot stop a"
               " trial; name a key the trainer reports")
    assert len(lines) == 1 and lines[0].endswith(f"{KIND}  {warning}"), lines
    assert [e["warning"] for e in logged] == [warning]


def test_the_warning_stays_in_show_after_many_more_events(tmp_path: Path) -> None:
    # `show EXP` lists the last 50 events: 30 trials make over 60, and the warning of trial
    # 0's end is among the oldest. It is shown all the same, and once.
    many = {**experiment({"val_acc": 0.9}), "max_trials": 30, "max_parallel_trials": 2}
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(many)
        assert d.wait_experiment(exp, timeout=120)["state"] == "completed"
        events = d.client.show(exp)["events"]
        lines, _ = warnings_in(d, exp)
    kinds = [e["kind"] for e in events]
    assert len(kinds) > 50 and kinds.count(KIND) == 1, kinds
    assert kinds.index(KIND) < len(kinds) - 50  # older than the last 50
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)  # oldest first
    assert len(lines) == 1, lines


def test_wait_says_the_warnings_after_the_experiments_end(tmp_path: Path) -> None:
    # Given once, in `show`'s events only, the warning went unseen by whoever waited for the
    # end: `wait` now says it on stderr (and --json carries it).
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment({"val_acc": 0.9}))
        waited = d.cli("wait", exp)
        assert waited.returncode == 0, waited.stderr
        assert waited.stdout.startswith(f"{exp} completed: ")
        [line] = waited.stderr.splitlines()
        assert line.startswith(f"gpusched: warning: stop: 'val_acc' was never reported by trial"
                               f" {exp}/0"), line
        [said] = d.cli_json("wait", exp)["warnings"]
        assert line == f"gpusched: warning: {said}"
        clean = d.submit(experiment({"val_accuracy": 0.9}), name="clean")
        assert d.cli("wait", clean).stderr == ""
        assert d.cli_json("wait", clean)["warnings"] == []
