"""Crash safety (issue 3): kill the daemon with SIGKILL mid-search, start it again.

Each test trial (trials/steady.py) keeps its own ground truth outside gpusched: every start,
every report it wrote, and its end. The trial log is compared with it.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from gpusched._daemon.procfs import processes_with_env
from tests.integration.harness import running_daemon, trial_script, wait_for


def steady_experiment(truth: Path, **overrides: Any) -> dict[str, Any]:
    truth.mkdir(exist_ok=True)
    experiment: dict[str, Any] = {
        "command": [sys.executable, trial_script("steady.py"), "--truth", str(truth),
                    "--steps", "10", "--interval", "0.08"],
        "metric": "score", "goal": "maximize", "max_trials": 6, "max_parallel_trials": 2,
        "max_failed_trials": 100,
        "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}],
    }
    experiment.update(overrides)
    return experiment


def truth_lines(truth: Path) -> dict[str, list[dict[str, Any]]]:
    """Trial (``e1-3``) -> its ground-truth lines, in order."""
    return {p.stem: [json.loads(line) for line in p.read_text().splitlines()]
            for p in sorted(truth.glob("*.jsonl"))}


def attempts(lines: list[dict[str, Any]]) -> list[tuple[float, float | None]]:
    """(start, end) of each attempt; end None when it was killed without a word (SIGKILL)."""
    spans: dict[int, list[float | None]] = {}
    for line in lines:
        span = spans.setdefault(line["pid"], [line["t"], None])
        if line["event"] in ("end", "terminated"):
            span[1] = line["t"]
    return [(float(s), e) for s, e in spans.values()]  # type: ignore[arg-type]


def logged_steps(db: Path, exp: str) -> dict[int, Counter[int]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT trial, data FROM reports WHERE experiment_id = ?", (exp,))
        out: dict[int, Counter[int]] = {}
        for trial, data in rows:
            out.setdefault(trial, Counter())[json.loads(data)["step"]] += 1
    return out


def kill_at(d: Any, check: Any, what: str) -> None:
    wait_for(check, 30, what)
    d.proc.kill()
    d.proc.wait()


def test_sigkilled_daemon_loses_no_report_and_runs_no_trial_twice(tmp_path: Path) -> None:
    truth, state = tmp_path / "truth", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(steady_experiment(truth, command=[
            *steady_experiment(truth)["command"], "--child"]))
        # Mid-trial: the first trials have started and reported a little.
        kill_at(d, lambda: sum(len(v) for v in truth_lines(truth).values()) >= 6,
                "the first reports")
    time.sleep(0.4)  # the orphaned trials go on reporting while no daemon runs
    for round_ in range(3):
        with running_daemon(tmp_path / "d", state_dir=state) as d:
            if round_ < 2:
                started = sum(1 for v in truth_lines(truth).values() for line in v
                              if line["event"] == "start")
                kill_at(d, lambda s=started: sum(
                    1 for v in truth_lines(truth).values() for line in v
                    if line["event"] == "start") >= s + 2, "two more attempts to start")
                time.sleep(0.2 * round_)
                continue
            view = d.wait_experiment(exp, timeout=90)
            trials = d.client.trials(exp)
    assert view["state"] == "completed", view
    assert [t["state"] for t in trials] == ["completed"] * 6

    # No report lost, none stored twice: per trial, the steps in the log are exactly the
    # steps every attempt of it wrote (interrupted attempts' reports are kept, too).
    truth_by_trial = truth_lines(truth)
    logged = logged_steps(state / "trials.db", exp)
    for number in range(6):
        written = Counter(line["step"] for line in truth_by_trial[f"{exp}-{number}"]
                          if line["event"] == "report")
        assert logged.get(number, Counter()) == written, (number, logged.get(number), written)
        assert trials[number]["reports"] == sum(written.values())

    # No trial ran twice at once: each attempt ended before the next one started.
    for name, lines in truth_by_trial.items():
        spans = sorted(attempts(lines))
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert end is not None and end <= next_start, (name, spans)
    interrupted = [t for t in trials if t["attempts"] > 1]
    assert interrupted, "the kills should have interrupted some trial"
    events = d.log_events()
    assert any(e["event"] == "trial_interrupted" for e in events)

    # Nothing of any trial outlives the test.
    dirs = [t["dir"] for t in trials]
    wait_for(lambda: not processes_with_env("GPUSCHED_TRIAL_DIR", dirs), 10,
             "every trial process to be gone")


def test_an_experiment_whose_end_was_not_recorded_ends_at_restart(tmp_path: Path) -> None:
    truth, state = tmp_path / "truth", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(steady_experiment(truth, max_trials=1, command=[
            sys.executable, trial_script("steady.py"), "--truth", str(truth), "--steps", "1",
            "--interval", "0"]))
        d.wait_experiment(exp)
        d.proc.kill()
        d.proc.wait()
    with sqlite3.connect(state / "trials.db") as conn:  # as if killed before it was recorded
        conn.execute("UPDATE experiments SET state = 'running', ended_at = NULL")
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        view = d.wait_experiment(exp, timeout=10)
    assert view["state"] == "completed" and view["trials"]["completed"] == 1


def test_a_rerun_whose_start_was_not_recorded_is_stopped_before_the_next_attempt(
    tmp_path: Path,
) -> None:
    """A daemon killed between spawning a requeued trial and recording its start leaves the
    log saying ``interrupted`` while that attempt runs: the next daemon still finds it, stops
    it before it starts the trial again, keeps what it reported and counts the attempt."""
    truth, state = tmp_path / "truth", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(steady_experiment(truth, max_trials=1, command=[
            *steady_experiment(truth)["command"], "--child", "--steps", "30"]))
        kill_at(d, lambda: any(line["event"] == "report"
                               for v in truth_lines(truth).values() for line in v),
                "a first report")
    with sqlite3.connect(state / "trials.db") as conn:  # as if the start was never recorded
        conn.execute("UPDATE trials SET state = 'interrupted', attempts = 0")
    time.sleep(0.3)  # it reports on while no daemon runs
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        view = d.wait_experiment(exp, timeout=60)
        trials = d.client.trials(exp)
    assert view["state"] == "completed", view
    lines = truth_lines(truth)[f"{exp}-0"]
    spans = sorted(attempts(lines))
    assert len(spans) == 2, spans
    (_, first_end), (second_start, _) = spans
    assert first_end is not None and first_end <= second_start, spans
    written = Counter(line["step"] for line in lines if line["event"] == "report")
    assert logged_steps(state / "trials.db", exp)[0] == written
    assert trials[0]["attempts"] == 2, trials[0]


def test_trials_queued_again_by_resume_run_again_after_a_crash(tmp_path: Path) -> None:
    """`resume` writes the cancelled trials it runs again as queued: a daemon killed right
    after it still runs them, once at a time, at the next start."""
    truth, state = tmp_path / "truth", tmp_path / "state"
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        exp = d.submit(steady_experiment(truth, max_trials=2))
        wait_for(lambda: d.client.show(exp)["trials"]["running"] == 2, what="both running")
        d.cli("cancel", exp)
        assert d.wait_experiment(exp)["state"] == "cancelled"
        assert d.cli("resume", exp).returncode == 0
        d.proc.kill()
        d.proc.wait()
    with sqlite3.connect(state / "trials.db") as conn:
        states = [s for (s,) in conn.execute("SELECT state FROM trials ORDER BY number")]
    assert set(states) <= {"queued", "running"}, states
    with running_daemon(tmp_path / "d", state_dir=state) as d:
        assert d.wait_experiment(exp, timeout=60)["state"] == "completed"
        assert [t["state"] for t in d.client.trials(exp)] == ["completed"] * 2
    for name, lines in truth_lines(truth).items():
        spans = sorted(attempts(lines))
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert end is not None and end <= next_start, (name, spans)
