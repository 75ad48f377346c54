"""Two restarts in a row: a status line that an attempt wrote before a restart stopped it does
not say, at the next restart, how the trial ended (docs/failures.md, the restart's status-line
rule).

The attempt wrote ``{"status": "failed"}`` but was still tearing down when the daemon was
killed; restart 1 found its leader alive, stopped it and recorded the trial ``interrupted``, to
run again. Restart 2 comes before it ran again: the trial must still run again, not be taken
for failed by that old line.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import Store, open_store
from gpusched.models import ExperimentState, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import ExperimentSpec, parse_experiment

LEADER = 4_000_000  # the pid the log has for the attempt (no such process is ever signalled)


def _spec(tmp_path: Path) -> ExperimentSpec:
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "score",
                             "max_trials": 1, "max_failed_trials": 5,
                             "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]},
                            base_dir=tmp_path)


def _restarted(spec: ExperimentSpec) -> ExperimentRun:
    """The experiment as a restarted daemon makes it, before its trials are read back."""
    search = make_search_plugin(spec.search_algorithm, spec.space(), goal=spec.goal, seed=0,
                                options=spec.search_options)
    return ExperimentRun("e1", 1, spec, 0, search, [], state=ExperimentState.RUNNING)


async def _running_trial_that_said_it_failed(store: Store, spec: ExperimentSpec,
                                             trial_dir: Path) -> None:
    """The log of a daemon killed while trial 0 ran, its attempt having written a report
    and a status line since its start."""
    await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0, priority=0,
                                  owner_uid=os.getuid())
    await store.create_trial("e1", 0, {"x": 0.5}, str(trial_dir))
    await store.update_trial("e1", 0, state="running", pid=LEADER, attempts=1,
                             started_at=time.time() - 60)
    files = TrialFiles(trial_dir)
    files.create()
    files.reports.write_text(json.dumps({"score": 0.5}) + "\n"
                             + json.dumps({"status": "failed", "reason": "out of data"}) + "\n")


async def test_a_status_line_of_an_attempt_a_restart_stopped_does_not_end_the_trial_later(
    tmp_path: Path,
) -> None:
    spec, trial_dir = _spec(tmp_path), tmp_path / "trials" / "e1" / "0"
    async with open_store(tmp_path / "log.db") as store:
        await _running_trial_that_said_it_failed(store, spec, trial_dir)
        # Restart 1: its leader was still alive, and was stopped now (by this daemon's hand).
        first = _restarted(spec)
        await restore_trials(store, first, {str(trial_dir): [LEADER]})
        assert first.trials[0].state is TrialState.INTERRUPTED and first.requeued == [0]
        # Restart 2, before the trial ran again: nothing of it is left running.
        second = _restarted(spec)
        await restore_trials(store, second)
        row = await store.trial("e1", 0)
    assert second.trials[0].state is TrialState.INTERRUPTED and second.requeued == [0]
    assert row is not None
    assert (row["state"], row["attempts"]) == ("interrupted", 1)
    assert row["ended_at"] is not None and row["ended_at"] >= row["started_at"]
