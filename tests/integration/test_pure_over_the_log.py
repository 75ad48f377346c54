"""Issue 4, point 4: a daemon SIGKILLed and restarted mid-search makes the same next
suggestions as one that was not, for every installed search plugin (found through the
``gpusched.search`` entry points, so a newly installed plugin is checked too); and (issue 3,
point 3) the interrupted trials run again, counted as neither failures nor retries.

Both daemons run the same seeded experiment side by side: trials one at a time (so each
suggestion sees every earlier result), scores that depend only on the params. One daemon is
killed twice while a trial runs; the trial it cut short runs again, and every trial must get
the params, and the result, that the undisturbed daemon gave it.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from gpusched.plugins import find_plugins
from tests.integration.harness import Daemon, running_daemon, trial_script, wait_for

TRIALS = 6
# Options that make a model-based search take over early, so that its later suggestions really
# depend on the history; other plugins (third-party ones, too) run with their defaults.
EARLY_MODEL = {"tpe": {"n_startup_trials": 2}, "gp": {"num_initial_points": 2}}


def experiment(plugin: str) -> dict[str, Any]:
    return {"command": [sys.executable, trial_script("quadratic.py")], "metric": "score",
            "goal": "maximize", "max_trials": TRIALS, "max_parallel_trials": 1,
            # max_failed_trials unset: were an interruption a failure, the first trial's would
            # end the experiment (AI Platform's rule), and max_retries_per_trial is 0.
            "env": {"SLEEP": "0.25"},
            "search": {"algorithm": plugin, "seed": 11, **EARLY_MODEL.get(plugin, {})},
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0},
                       {"name": "k", "type": "categorical", "values": ["a", "b"]}]}


def is_running(d: Daemon, exp: str, number: int) -> bool:
    """True while trial ``number`` of ``exp`` runs."""
    return any(t["number"] == number and t["state"] == "running" for t in d.client.trials(exp))


def outcome(d: Daemon, exp: str) -> list[tuple[dict[str, Any], float | None]]:
    return [(t["params"], t["objective"]) for t in d.client.trials(exp)]


@pytest.mark.parametrize("plugin", sorted(find_plugins("search")))
def test_a_restarted_daemon_suggests_what_an_undisturbed_one_does(
    tmp_path: Path, plugin: str
) -> None:
    state = tmp_path / "killed-state"
    with running_daemon(tmp_path / "calm") as calm:
        calm_exp = calm.submit(experiment(plugin))
        exp = ""
        # Mid-search: during the first trial, and once results are in and the model-based
        # searches have taken over, with trials still to suggest.
        for kill_during in (0, 3):
            with running_daemon(tmp_path / f"killed-{kill_during}", state_dir=state) as d:
                exp = exp or d.submit(experiment(plugin))
                wait_for(partial(is_running, d, exp, kill_during), 60,
                         f"trial {kill_during} to run")
                d.proc.kill()
                d.proc.wait()
        with running_daemon(tmp_path / "killed-last", state_dir=state) as d:
            assert d.wait_experiment(exp, timeout=120)["state"] == "completed"
            restarted = outcome(d, exp)
            attempts = [t["attempts"] for t in d.client.trials(exp)]
        assert calm.wait_experiment(calm_exp, timeout=120)["state"] == "completed"
        undisturbed = outcome(calm, calm_exp)
    assert len(undisturbed) == TRIALS
    assert restarted == undisturbed
    assert attempts[0] == 2 and attempts[3] == 2  # the kills did cut those two short
