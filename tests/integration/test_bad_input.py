"""Bad input that is not a request (issue 3): trainers that cannot start, garbage in report
files, a locked trial log. Each gets a clear reason and the daemon goes on."""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

from tests.integration.harness import running_daemon, wait_for


def one_trial(command: list[str], **overrides: object) -> dict[str, object]:
    return {"command": command, "metric": "score", "max_trials": 1,
            "params": [{"name": "x", "type": "categorical", "values": ["a"]}], **overrides}


def test_trainers_that_cannot_start_fail_with_the_reason(tmp_path: Path) -> None:
    not_exec = tmp_path / "train.sh"
    not_exec.write_text("#!/bin/sh\nexit 0\n")  # mode 0644: not executable
    with running_daemon(tmp_path / "d") as d:
        cases = {
            d.submit(one_trial([str(not_exec)]), name="noexec"): "Permission denied",
            d.submit(one_trial(["no-such-trainer-xyz"]), name="nocmd"): (
                "not found on the daemon's PATH"),
        }
        # A workdir that does not exist is refused at submit, with its place in the file.
        nodir = tmp_path / "nodir.yaml"
        nodir.write_text(f"command: python x.py\nmetric: score\nworkdir: {tmp_path / 'gone'}\n"
                         "params: [{name: x, type: categorical, values: [a]}]\n")
        refused = d.cli("submit", str(nodir))
        assert refused.returncode == 2 and "workdir: no such directory" in refused.stderr
        for exp, said in cases.items():
            assert d.wait_experiment(exp)["state"] == "failed"
            (trial,) = d.client.trials(exp)
            assert trial["state"] == "failed" and "cannot start" in trial["reason"]
            assert said in trial["reason"], trial["reason"]
        assert d.client.hello()["pid"] == d.proc.pid  # and it goes on


def test_a_workdir_removed_after_submit_fails_the_next_trial_with_what_to_do(
    tmp_path: Path,
) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    script = tmp_path / "train.py"  # removes its own workdir, as a careless clean-up might
    script.write_text("import os, shutil\nfrom gpusched import trial\n"
                      "shutil.rmtree(os.getcwd())\ntrial.report(score=1.0)\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(one_trial([sys.executable, str(script)], workdir=str(workdir),
                                 max_trials=2, max_parallel_trials=1,
                                 params=[{"name": "x", "type": "double", "min": 0, "max": 1}]))
        view = d.wait_experiment(exp)
        first, second = d.client.trials(exp)
        assert d.client.hello()["pid"] == d.proc.pid
    assert first["state"] == "completed" and view["state"] == "completed"
    assert second["state"] == "failed"
    assert second["reason"] == (f"cannot start: the workdir {workdir} no longer exists (it did"
                                " at submit): restore it, or submit again with another workdir")


def test_garbage_and_non_numbers_in_a_report_file_are_skipped_not_fatal(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import os\n"
        "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as f:\n"
        "    f.write('not json\\n[1, 2]\\n{\"score\": \"high\"}\\n{\"score\": NaN}\\n')\n"
        "    f.write('\\xff\\xfe garbage\\n{\"score\": 0.75}\\n{\"score\": Infinity}\\n')\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(one_trial([sys.executable, str(script)], objective="best"))
        view = d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        skipped = [e for e in d.log_events() if e["event"] == "report_skipped"]
    assert view["state"] == "completed"
    assert trial["objective"] == 0.75  # NaN, Infinity and "high" are not the metric's values
    assert len(skipped) >= 3  # not JSON, not an object, not UTF-8...: each logged


def test_a_trial_log_locked_by_another_process_only_delays_writes(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = tmp_path / "train.py"
    script.write_text("from gpusched import trial\nfor i in range(5):\n"
                      "    trial.report(step=i, score=i / 4)\n")
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        locked = threading.Event()

        def hold_the_write_lock() -> None:
            with sqlite3.connect(state / "trials.db", isolation_level=None) as db:
                db.execute("BEGIN IMMEDIATE")  # as a careless script or a backup tool might
                locked.set()
                time.sleep(2.0)
                db.execute("COMMIT")

        holder = threading.Thread(target=hold_the_write_lock)
        holder.start()
        locked.wait(5)
        exp = d.submit({**one_trial([sys.executable, str(script)]), "max_trials": 3,
                        "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]})
        assert d.cli("ls").returncode == 0  # readers are not blocked (WAL)
        holder.join()
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert view["state"] == "completed"
    assert [(t["state"], t["reports"]) for t in trials] == [("completed", 5)] * 3


def test_a_full_disk_pauses_the_daemon_and_loses_nothing_recorded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = tmp_path / "train.py"
    script.write_text("from gpusched import trial\nfor i in range(100):\n"
                      "    trial.report(step=i, score=i / 99,"
                      " **{f'm{k}': i * k for k in range(20)})\n")
    experiment = {**one_trial([sys.executable, str(script)]), "max_trials": 12,
                  "max_parallel_trials": 2, "max_failed_trials": 100,
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    # Files the daemon writes may not grow past 256 KiB: the log's WAL fills up mid-search,
    # as on a full disk (the log itself keeps what it committed).
    with running_daemon(tmp_path / "d", state_dir=state, file_size_limit=256 * 1024) as d:
        exp = d.submit(experiment)
        wait_for(lambda: any(e["event"] in ("placement_paused", "trial_runner_failed")
                             for e in d.log_events()), 60, "the log to refuse a write")
        assert d.client.hello()["pid"] == d.proc.pid  # it keeps serving
        assert d.cli("ls").returncode == 0
        d.proc.kill()
        d.proc.wait()
    with running_daemon(tmp_path / "d", state_dir=state) as d:  # space again
        view = d.wait_experiment(exp, timeout=120)
        trials = d.client.trials(exp)
    assert view["state"] == "completed", view
    assert [(t["state"], t["objective"]) for t in trials] == [("completed", 1.0)] * 12
    # A trial whose reports the log refused ran again; the reports of every attempt are kept:
    # per trial, the stored steps are runs 0, 1, 2, ... one per attempt (an attempt the SIGKILL
    # cut short, on a loaded machine, has a shorter run), the last one whole.
    with sqlite3.connect(state / "trials.db") as db:
        rows = db.execute("SELECT trial, data FROM reports WHERE experiment_id = ?"
                          " ORDER BY trial, seq", (exp,)).fetchall()
    steps: dict[int, list[int]] = {}
    for number, data in rows:
        steps.setdefault(number, []).append(json.loads(data)["step"])
    for t in trials:
        runs: list[list[int]] = []
        for step in steps[t["number"]]:
            if step == 0:
                runs.append([])
            runs[-1].append(step)
        assert all(run == list(range(len(run))) for run in runs), (t["id"], runs)
        assert len(runs[-1]) == 100 and sum(map(len, runs)) == t["reports"], t["id"]
    assert any(t["attempts"] > 1 for t in trials)
