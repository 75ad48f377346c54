"""What `gpusched resume` says, through a real daemon: the trials that run again and the new
ones its max_trials leaves room for. It said "resuming e10: 0 trials to run again" alone, then
ran 4 new trials: it read as "nothing will happen"."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tests.integration.harness import running_daemon, trial_script, wait_for


def test_resume_says_how_many_trials_run_again_and_how_many_new_ones_may_run(
    tmp_path: Path,
) -> None:
    # Its first trial crashes: AI Platform's rule ends it `failed` with 2 of 3 trials left.
    experiment = {"command": [sys.executable, trial_script("outcome.py")], "metric": "score",
                  "max_trials": 3, "max_parallel_trials": 1,
                  "env": {"OUTCOMES": json.dumps({"0": "crash"})},
                  "points_to_evaluate": [{"x": 0.5}, {"x": 0.25}],
                  "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment, name="res")
        assert d.wait_experiment(exp)["state"] == "failed"
        resumed = d.cli("resume", exp)
        view = d.wait_experiment(exp)
        trials = d.client.trials(exp)
    assert (resumed.returncode, resumed.stdout) == (
        0, f"resuming {exp}: 0 trials to run again, up to 2 new ones (max_trials: 3)\n")
    assert view["state"] == "completed", view
    assert [t["state"] for t in trials] == ["failed", "completed", "completed"]


def test_resume_says_no_new_ones_when_the_search_has_nothing_more(tmp_path: Path) -> None:
    # A grid of 2 points under max_trials 5: the cancel cuts trial 1 short, and once it has run
    # again the grid has nothing left. "up to 3 new ones" would promise trials that never come.
    experiment = {"command": [sys.executable, trial_script("outcome.py")], "metric": "score",
                  "search": "grid", "max_trials": 5, "max_parallel_trials": 1,
                  "env": {"OUTCOMES": json.dumps({"1": "sleep"})},
                  "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]}
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment, name="grid")
        wait_for(lambda: any(t["number"] == 1 and t["state"] == "running"
                             for t in d.client.trials(exp)), 20, "trial 1 runs")
        assert d.cli("cancel", exp).returncode == 0
        assert d.wait_experiment(exp)["state"] == "cancelled"
        resumed = d.cli("resume", exp)
        d.client.cancel(exp)  # trial 1 sleeps again: the message is what this test is about
        d.wait_experiment(exp)
    assert (resumed.returncode, resumed.stdout) == (
        0, f"resuming {exp}: 1 trial to run again, no new ones (its search has nothing more"
           " to suggest) (max_trials: 5)\n")
