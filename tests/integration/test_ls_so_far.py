"""`gpusched ls EXP` through a real daemon: a running trial's objective so far, by the
experiment's rule, marked until the trial ends; an experiment without `max_trials`; and a
mistyped `--columns` name answered with the closest one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import running_daemon, wait_for
from tests.unit.test_views import cells

# Reports score 0.3, 0.9, 0.5 (its best is not its last), then runs until the gate file exists.
TRIAL = (
    "import json, os, sys, time\n"
    "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as fh:\n"
    "    for v in (0.3, 0.9, 0.5):\n"
    "        fh.write(json.dumps({'score': v}) + '\\n')\n"
    "while not os.path.exists(sys.argv[1]):\n"
    "    time.sleep(0.02)\n"
)
NOTE = "* not final: the trial's highest score so far (objective: best); its result when it ends"


def gated(gate: Path) -> dict[str, Any]:
    """One trial (a grid of one point, and no max_trials) that waits at ``gate``."""
    return {"command": [sys.executable, "-c", TRIAL, str(gate)], "metric": "score",
            "goal": "maximize", "objective": "best", "search": {"algorithm": "grid"},
            "params": [{"name": "x", "type": "discrete", "values": [1]}]}


def test_a_running_trial_shows_its_objective_so_far_until_its_result(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(gated(gate), name="sofar")
        wait_for(lambda: [t["reports"] for t in d.client.trials(exp)] == [3],
                 what="its three reports")

        (view,) = d.cli_json("ls", exp)
        assert view["state"] == "running" and view["objective"] is None
        assert view["objective_so_far"] == 0.9  # the best so far, not the last (0.5)
        assert view["last_report"]["score"] == 0.5
        shown = d.cli("ls", exp).stdout.splitlines()
        (row,) = cells("\n".join(shown[: shown.index("")]))
        assert row["STATE"] == "running" and row["SCORE"] == "0.9*"
        assert NOTE in shown
        listed = {r["ID"]: r for r in cells(d.cli("ls").stdout)}
        assert listed[exp]["TRIALS"] == "1 running, 0 done, 0 failed"  # no "/ ?"

        gate.touch()
        d.wait_experiment(exp)
        (view,) = d.cli_json("ls", exp)
        assert (view["objective"], view["objective_so_far"]) == (0.9, None)
        shown = d.cli("ls", exp).stdout.splitlines()
        (row,) = cells("\n".join(shown))
        assert row["STATE"] == "completed" and row["SCORE"] == "0.9"
        assert NOTE not in shown


def test_a_mistyped_column_is_answered_with_the_closest_name(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(gated(gate), name="typo")
        d.wait_experiment(exp)
        refused = d.cli("ls", exp, "--columns", "id,stat,x")
        assert refused.returncode == 1
        assert refused.stderr.startswith(
            "gpusched: ls --columns: no column 'stat' (did you mean 'state'?); there are: ")
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
