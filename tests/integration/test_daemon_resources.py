"""The daemon's own resource problems, on a real daemon: its state folder's disk full, its file
descriptors used up. Placement pauses and goes on by itself; no trial pays for it: no trainer
is started and killed at every retry, no attempt is counted that did not run, no trial fails.
(tests/unit/test_placement_pause.py checks each rule on the scheduler and the runner.)
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.integration.harness import Daemon, running_daemon, wait_for

EXPERIMENT_TIMEOUT_S = 120.0


@contextmanager
def small_tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only), unmounted at the end."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             check=False, capture_output=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, timeout=30)


def grow(path: Path, size: str) -> None:
    """Space comes back (``mount -o remount,size=...``), the daemon running."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True, timeout=30)


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs (needs root)")
def test_a_full_trial_log_does_not_start_and_kill_trainers_at_every_retry(
    tmp_path: Path,
) -> None:
    # Every retry of the paused placement started the trial to run again, failed to record
    # its start and SIGKILLed it: `attempts` (TRIES) and GPUSCHED_ATTEMPT grew by one per
    # retry (13 after 25 s, with 2 real runs).
    seen = tmp_path / "attempts.jsonl"
    script = tmp_path / "train.py"
    script.write_text(
        "import json, os\nfrom gpusched import trial\n"
        f"with open({str(seen)!r}, 'a') as f:\n"
        "    f.write(json.dumps([os.environ['GPUSCHED_TRIAL'],"
        " os.environ['GPUSCHED_ATTEMPT']]) + '\\n')\n"
        "for i in range(100):\n"
        "    trial.report(step=i, score=i / 99, **{f'm{k}': i * k for k in range(20)})\n")
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "max_trials": 12, "max_parallel_trials": 2, "max_failed_trials": 100,
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with small_tmpfs(tmp_path / "small", "1m") as small, \
            running_daemon(tmp_path / "d", state_dir=small / "state") as d:
        exp = d.submit(experiment)
        wait_for(lambda: sum(e["event"] == "placement_paused" for e in d.log_events()) >= 6,
                 60, "several paused placements")
        # Meanwhile a trial whose end the log refused is no running one: its row says so,
        # but the daemon holds it to run again (ls once said 2 running of 2 stopped ones).
        # (A trial reaped a moment ago and not yet requeued is shown running: asked again.)
        wait_for(lambda: _running_shown_are_running(d, exp), 15,
                 "the trials shown running to be the ones running")
        grow(small, "64m")
        view = d.wait_experiment(exp, timeout=EXPERIMENT_TIMEOUT_S)
        trials = d.client.trials(exp)
        events = d.log_events()
    assert view["state"] == "completed", view
    assert any(e["event"] == "placement_resumed" for e in events)  # by itself
    # Each attempt counted is one recorded run of the trainer.
    started = Counter(e["trial"] for e in events if e["event"] == "trial_started")
    wrong = {t["id"]: (t["attempts"], started[t["id"]]) for t in trials
             if t["attempts"] != started[t["id"]]}
    assert not wrong, f"(attempts, recorded starts) differ: {wrong}"
    # ... and the trainer was told 1, 2, 3... (not 1, then 13).
    runs: dict[str, list[int]] = {}
    for line in seen.read_text().splitlines():
        number, attempt = json.loads(line)
        runs.setdefault(number, []).append(int(attempt))
    jumps = {n: a for n, a in runs.items() if a != list(range(1, len(a) + 1))}
    assert not jumps, f"GPUSCHED_ATTEMPT seen by the trainer: {jumps}"


def test_the_daemon_out_of_file_descriptors_is_not_the_trials_fault(tmp_path: Path) -> None:
    # Its EMFILE as it opened a trial's logs or forked was the trial's failure ("cannot start
    # 'python' ...: Too many open files"), and three in a row failed the experiment through
    # max_consecutive_failed_trials, cancelling the trials that ran fine.
    script = tmp_path / "train.py"
    script.write_text("import time\nfrom gpusched import trial\n"
                      "for i in range(10):\n    trial.report(step=i, score=i / 9)\n"
                      "    time.sleep(0.2)\n")
    experiment = {"command": [sys.executable, str(script)], "metric": "score",
                  "max_trials": 80, "max_parallel_trials": 60, "gpus_per_trial": 0,
                  "max_failed_trials": 100,
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with running_daemon(tmp_path / "d") as d:
        # As a daemon started from a shell with `ulimit -n 40` (lowering needs no privilege).
        resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (40, 40))
        exp = d.submit(experiment)
        view = d.wait_experiment(exp, timeout=EXPERIMENT_TIMEOUT_S)
        trials = d.client.trials(exp)
        paused = [e for e in d.log_events() if e["event"] == "placement_paused"]
    assert view["state"] == "completed", (view["state"], view.get("reason"))
    assert [t for t in trials if t["state"] != "completed"] == []
    assert {t["attempts"] for t in trials} == {1}  # a start that did not happen is none
    # It did run out (else this test proves nothing), and said so, with what to do.
    assert any("the daemon is out of file descriptors (Too many open files)" in e["error"]
               and "LimitNOFILE=" in e["error"] for e in paused), paused


def _running_shown_are_running(d: Daemon, exp: str) -> bool:
    """Whether every trial ``exp``'s views show running has a process, and its count says as
    many."""
    listed = d.client.trials(exp)
    counted = d.client.show(exp)["trials"]["running"]
    running = [t for t in listed if t["state"] == "running"]
    return counted == len(running) and all(_alive(t["pid"]) for t in running)


def _alive(pid: int | None) -> bool:
    """Whether process ``pid`` exists (a zombie counts: its trial has not been reaped yet)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
