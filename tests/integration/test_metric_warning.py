"""A metric the trials do not report while they report a close key (``metric: val_acc``, a
trainer that reports ``val_accuracy``) is warned about while the first trial still runs, not
only by its failure at its end: in ``gpusched show``, ``ls``, ``wait`` and the daemon's log,
once per experiment, across a restart too."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from gpusched._daemon.experiment import METRIC_REPORTS, metric_warning_text
from tests.integration.harness import Daemon, fake_config, running_daemon, wait_for

KIND = "metric_never_reported"
# Reports --first (a JSON object) every 50 ms until the --gate file is there (at most ~100 s),
# then --then (when given) once, and exits 0.
TRAINER = """
import json, os, sys, time
args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
with open(os.environ["GPUSCHED_REPORT_FILE"], "a") as fh:
    for _ in range(2000):
        if os.path.exists(args["gate"]):
            break
        fh.write(args["first"] + "\\n")
        fh.flush()
        time.sleep(0.05)
    if "then" in args:
        fh.write(args["then"] + "\\n")
"""
EPOCH = {"step": 1, "train_loss": 0.5, "val_accuracy": 0.8, "val_loss": 0.4}


def experiment(metric: str, gate: Path, first: dict[str, Any],
               then: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    """One trial of TRAINER, which reports ``first`` until ``gate`` is there, then ``then``."""
    command = [sys.executable, "-c", TRAINER, f"--gate={gate}", f"--first={json.dumps(first)}"]
    if then is not None:
        command.append(f"--then={json.dumps(then)}")
    return {"command": command, "metric": metric, "max_trials": 1,
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 0.5}], **settings}


def warnings_of(d: Daemon, exp: str) -> list[dict[str, Any]]:
    """The experiment's warning events of this kind (`gpusched show EXP --json`)."""
    return [e for e in d.client.show(exp)["events"] if e["kind"] == KIND]


def logged(d: Daemon, exp: str) -> list[dict[str, Any]]:
    """The daemon's log lines of the warning, for ``exp``'s trials."""
    return [e for e in d.log_events() if e.get("event") == KIND
            and str(e.get("trial", "")).startswith(f"{exp}/")]


def reports_of(d: Daemon, exp: str) -> int:
    """How many reports the experiment's one trial has stored."""
    return int(d.client.trials(exp)[0]["reports"])


def test_a_misspelled_metric_is_warned_about_while_the_first_trial_runs(
        tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment("val_acc", gate, EPOCH))
        [event] = wait_for(lambda: warnings_of(d, exp), 60, "the warning")
        # The trial still runs (it waits for its gate): no epoch had to end first.
        [trial] = d.client.trials(exp)
        listed = d.cli("ls")
        [row] = d.cli_json("ls")
        [line] = wait_for(lambda: logged(d, exp), 30, "the daemon's log line")
        gate.touch()
        waited = d.cli("wait", exp)
        after = warnings_of(d, exp)
    assert trial["state"] == "running", trial
    reason = event["data"]["reason"]
    count = re.match(r"metric 'val_acc' was not in the first (\d+) reports ", reason)
    assert count is not None and int(count[1]) >= METRIC_REPORTS, reason
    assert reason == metric_warning_text(
        "val_acc", f"{exp}/0", int(count[1]), ["step", "train_loss", "val_accuracy", "val_loss"],
        "val_accuracy")
    assert reason.endswith(f": if that is the metric, cancel (gpusched cancel {exp}) and submit"
                           " again with metric: val_accuracy (or --set metric=val_accuracy)")
    assert event["trial"] is None and event["data"]["metric"] == "val_acc"
    assert line["warning"] == reason and line["trial"] == f"{exp}/0"
    # `gpusched ls` marks it under the table, and counts it in --json.
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.endswith(f"\n\n{exp} has 1 warning: `gpusched show {exp}` shows it\n")
    assert row["warning_count"] == 1
    # Its end fails it as before (the first trial: the experiment fails); `wait` says the
    # warning on stderr, given once.
    assert waited.returncode == 1
    assert "exited 0 without reporting 'val_acc'" in waited.stdout
    assert waited.stderr.splitlines() == [f"gpusched: warning: {reason}"]
    assert [e["id"] for e in after] == [event["id"]]


def test_no_warning_when_a_trial_reports_the_metric(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running_daemon(tmp_path / "d") as d:
        right = d.submit(experiment("val_accuracy", gate, EPOCH), name="right")
        typo = d.submit(experiment("val_acc", gate, EPOCH), name="typo")  # the control
        wait_for(lambda: warnings_of(d, typo), 60, "the typo's warning")
        wait_for(lambda: reports_of(d, right) > METRIC_REPORTS, 60, "reports")
        gate.touch()
        waited = d.cli("wait", right)
        listed = d.cli("ls")
        rows = {r["id"]: r for r in d.cli_json("ls")}
        assert d.wait_experiment(typo)["state"] == "failed"
        right_events, right_lines = warnings_of(d, right), logged(d, right)
    assert waited.returncode == 0 and waited.stderr == "", waited
    assert right_events == [] and right_lines == []
    assert rows[right]["warning_count"] == 0 and rows[typo]["warning_count"] == 1
    notes = listed.stdout.split("\n\n", 1)[1]
    assert notes == f"{typo} has 1 warning: `gpusched show {typo}` shows it\n"


def test_no_warning_for_keys_that_are_not_the_metric_misspelled(tmp_path: Path) -> None:
    # A loss every step, the metric later; a training loss every step while the metric is the
    # validation loss (close by did you mean's measure, but another measure).
    gate = tmp_path / "gate"
    with running_daemon(tmp_path / "d", fake=fake_config(3)) as d:
        loss = d.submit(experiment("val_accuracy", gate, {"loss": 1.0},
                                   {"loss": 0.5, "val_accuracy": 0.9}), name="loss")
        train = d.submit(experiment("val_loss", gate, {"train_loss": 1.0},
                                    {"train_loss": 0.5, "val_loss": 0.4}, goal="minimize"),
                         name="train")
        # The control: beside train_loss, a misspelling of the metric is taken for one.
        typo = d.submit(experiment("val_loss", gate, {"train_loss": 1.0, "val_los": 0.9},
                                   goal="minimize"), name="typo")
        [warned] = wait_for(lambda: warnings_of(d, typo), 60, "the typo's warning")
        for exp in (loss, train):
            wait_for(lambda: reports_of(d, exp) > METRIC_REPORTS, 60, "reports")  # noqa: B023
        gate.touch()
        ended = {exp: d.wait_experiment(exp)["state"] for exp in (loss, train)}
        quiet = {exp: warnings_of(d, exp) for exp in (loss, train)}
    assert "(did you mean 'val_los'?)" in warned["data"]["reason"]
    assert ended == {loss: "completed", train: "completed"}
    assert quiet == {loss: [], train: []}


def test_a_restarted_daemon_does_not_warn_again(tmp_path: Path) -> None:
    gate, state = tmp_path / "gate", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(experiment("val_acc", gate, EPOCH))
        wait_for(lambda: warnings_of(d, exp), 60, "the warning")
        stored = reports_of(d, exp)
        d.proc.kill()
        d.proc.wait()
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        # The trial runs again from the start: more reports without the metric, the close key
        # among them (the restart stored those written while no daemon ran first). The log
        # has the warning: it is not given again.
        rerun = wait_for(lambda: [t for t in d.client.trials(exp)
                                  if t["attempts"] >= 2 and t["state"] == "running"],
                         60, "the rerun")
        stored = max(stored, rerun[0]["reports"])
        wait_for(lambda: reports_of(d, exp) > stored + METRIC_REPORTS, 60, "the rerun's reports")
        gate.touch()
        assert d.wait_experiment(exp)["state"] == "failed"
        events = warnings_of(d, exp)
        lines = logged(d, exp)
    assert len(events) == 1, events
    assert len(lines) == 1, lines  # the log holds both daemons' lines
