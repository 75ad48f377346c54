"""A trial that continues another (hyperband's promotion) goes on with that trial's curve,
through a real daemon: its ``training_iteration`` after the other's last, its ``time_total_s``
on from the other's, on a retry as well; its own ``reports`` count stays its own."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import running_daemon

# Trains from its checkpoint up to GPUSCHED_BUDGET epochs, one report per epoch it trains.
# A continuation's first attempt crashes after its first epoch (checkpoint saved): its retry
# goes on from there.
TRAINER = """\
import json, os, sys
from pathlib import Path
from gpusched import trial

state = Path(os.environ["GPUSCHED_CHECKPOINT_DIR"]) / "done"
done = int(state.read_text()) if state.exists() else 0
x = json.loads(os.environ["GPUSCHED_PARAMS"])["x"]
crash = os.environ.get("GPUSCHED_CONTINUES") and os.environ["GPUSCHED_ATTEMPT"] == "1"
for epoch in range(done + 1, int(os.environ["GPUSCHED_BUDGET"]) + 1):
    trial.report(epoch=epoch, score=x * epoch)
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(str(epoch))
    if crash:
        sys.exit(3)
"""


def test_a_continuation_counts_on_from_the_trial_it_continues(tmp_path: Path) -> None:
    trainer = tmp_path / "train.py"
    trainer.write_text(TRAINER)
    experiment: dict[str, Any] = {
        "command": [sys.executable, str(trainer)], "metric": "score", "goal": "maximize",
        # Bracket 2 of max_epochs 9 alone: 9 trials at 1 epoch, 3 at 3, 1 at 9 (a chain of
        # two promotions); one trial at a time, so that no other bracket opens meanwhile.
        "search": {"algorithm": "hyperband", "seed": 3, "max_epochs": 9, "factor": 3},
        "max_trials": 13, "max_parallel_trials": 1, "max_retries_per_trial": 1,
        "params": [{"name": "x", "type": "double", "min": 0.1, "max": 1.0}],
    }
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment)
        view = d.wait_experiment(exp, timeout=120)
        trials = {t["number"]: t for t in d.client.trials(exp)}
        reports = {t["number"]: t["reports"] for t in d.client.reports(exp)}
    assert view["state"] == "completed", view["reason"]
    continuations = [t for t in trials.values() if t["continues"]]
    assert len(continuations) == 4  # 3 at 3 epochs, then 1 at 9
    assert {t["attempts"] for t in continuations} == {2}  # each was retried
    for t in trials.values():
        mine = reports[t["number"]]
        # One report per epoch it trained itself, counted in the epochs of its whole chain.
        assert [r["training_iteration"] for r in mine] == [r["epoch"] for r in mine]
        assert t["reports"] == len(mine)
    for t in continuations:
        parent = int(t["continues"].split("/")[1])
        last, first = reports[parent][-1], reports[t["number"]][0]
        assert first["training_iteration"] == last["training_iteration"] + 1
        assert t["reports"] == t["budget"] - trials[parent]["budget"]
        # Its time adds to the time of the trial it continues.
        assert last["time_total_s"] > 0
        assert first["time_total_s"] == pytest.approx(
            last["time_total_s"] + first["time_this_iter_s"])
