"""A search that reads no outcomes (random, grid) has its next trial asked for and recorded while
one runs, so that a trial's exit starts it without the search or the log in between. Such a
trial is queued in the log like any other; it still waits for the ended trial's outcome; it
is forgotten if its experiment ends first, and runs after a crash."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gpusched.models import Goal
from gpusched.plugin_api import Param, ParamType, SearchSpace, TrialState, TrialView
from gpusched.plugins import load_search_plugin
from tests.integration.harness import Daemon, running_daemon, trial_script, wait_for

SEED = 7


def gated(gate: Path, trials: int, search: str = "random") -> dict[str, Any]:
    """Trials that run until the file ``gate`` exists, then report score = x; one at a time."""
    return {"command": [sys.executable, trial_script("gate.py"), "--gate", str(gate)],
            "metric": "score", "max_trials": trials, "max_parallel_trials": 1,
            "search": {"algorithm": search, "seed": SEED},
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}]}


def rows(d: Daemon, exp: str) -> list[tuple[str, int]]:
    return [(t["state"], t["attempts"]) for t in d.client.trials(exp)]


def prepared(d: Daemon, exp: str) -> dict[str, Any]:
    """Wait until trial 0 runs and trial 1 is recorded, not started; trial 1's row."""
    wait_for(lambda: rows(d, exp) == [("running", 1), ("queued", 0)], 20,
             "trial 0 running, trial 1 prepared")
    return d.client.trials(exp)[1]


def own_answers(search: str, count: int) -> list[dict[str, Any]]:
    """What the search plugin proposes for trials 0 .. count-1, asked one by one."""
    space = SearchSpace((Param("x", ParamType.DOUBLE, low=0.0, high=1.0),))
    plugin = load_search_plugin(search)(space, goal=Goal.MAXIMIZE, seed=SEED,
                                        options={"points_per_double": 3} if search == "grid"
                                        else {})
    answers: list[dict[str, Any]] = []
    for number in range(count):
        history = [TrialView(n, p, TrialState.COMPLETED, None) for n, p in enumerate(answers)]
        answers.append(dict(plugin.suggest(number, history)))  # type: ignore[arg-type]
    return answers


@pytest.mark.parametrize("search", ["random", "grid"])
def test_the_next_trial_is_recorded_while_one_runs_with_the_searchs_own_params(
    tmp_path: Path, search: str
) -> None:
    gate = tmp_path / "go"
    experiment = gated(gate, 3, search)
    if search == "grid":
        experiment["search"]["points_per_double"] = 3
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment)
        early = prepared(d, exp)
        assert early["waiting"]["code"] == "max_parallel_trials"
        gate.touch()
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 1)] * 3
    assert trials[1]["params"] == early["params"]  # recorded once, run as recorded
    assert [t["params"] for t in trials] == own_answers(search, 3)


def test_a_search_that_reads_outcomes_is_asked_only_when_a_trial_can_start(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(gated(gate, 3, "tpe"))
        wait_for(lambda: rows(d, exp) == [("running", 1)], 20, "trial 0 running")
        time.sleep(0.3)  # placement is event-driven: a prepared row would be there by now
        assert rows(d, exp) == [("running", 1)]
        gate.touch()
        assert d.wait_experiment(exp)["state"] == "completed"
        assert rows(d, exp) == [("completed", 1)] * 3


def test_an_ended_experiment_forgets_its_prepared_trial_and_resume_asks_again(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(gated(gate, 2))
        early = prepared(d, exp)
        assert d.cli("cancel", exp).returncode == 0
        assert d.wait_experiment(exp)["state"] == "cancelled"
        assert rows(d, exp) == [("cancelled", 1)]  # trial 1 never ran: no trial
        gate.touch()
        resumed = d.cli("resume", exp)
        assert resumed.returncode == 0 and "1 trials to run again" in resumed.stdout
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 2), ("completed", 1)]
    assert trials[1]["params"] == early["params"]


def test_a_prepared_trial_cancelled_by_the_user_is_recorded_and_the_search_goes_on(
    tmp_path: Path,
) -> None:
    gate = tmp_path / "go"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(gated(gate, 3))
        prepared(d, exp)
        out = d.cli("cancel", f"{exp}/1")
        assert out.returncode == 0 and out.stdout.strip() == f"cancelled {exp}/1"
        gate.touch()
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
    assert [(t["state"], t["attempts"]) for t in trials] == [
        ("completed", 1), ("cancelled", 0), ("completed", 1)]
    assert trials[1]["reason"] == "cancelled"


def test_a_prepared_trial_runs_after_the_daemon_is_killed(tmp_path: Path) -> None:
    gate = tmp_path / "go"
    state = tmp_path / "state"
    with running_daemon(tmp_path / "d1", state_dir=state) as d:
        exp = d.submit(gated(gate, 2))
        early = prepared(d, exp)
        d.proc.kill()
        d.proc.wait()
    gate.touch()
    with running_daemon(tmp_path / "d2", state_dir=state) as d:
        assert d.wait_experiment(exp)["state"] == "completed"
        trials = d.client.trials(exp)
    # Trial 0 was cut short and ran again; trial 1 ran once, with the params recorded.
    assert [(t["state"], t["attempts"]) for t in trials] == [("completed", 2), ("completed", 1)]
    assert trials[1]["params"] == early["params"]
