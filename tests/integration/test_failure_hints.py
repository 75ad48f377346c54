"""Through a real daemon, two failures whose reasons say what to do: a command not found on the
PATH that trials get (the daemon's, not the user's shell's), and a trainer that has no flag for
the budget hyperband passes it."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tests.integration.harness import running_daemon

# An argparse trainer that knows its params but not hyperband's --epochs.
NO_EPOCHS = """\
import argparse
parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float)
parser.parse_args()
"""


def _one_trial(command: list[str], workdir: Path, **over: Any) -> dict[str, Any]:
    return {"command": command, "metric": "score", "max_trials": 1, "workdir": str(workdir),
            "params": [{"name": "x", "type": "double", "min": 0.0, "max": 1.0}], **over}


def test_failures_to_start_and_a_refused_budget_flag_say_what_to_do(tmp_path: Path) -> None:
    trainer = tmp_path / "train.py"
    trainer.write_text(NO_EPOCHS)
    with running_daemon(tmp_path / "d") as d:
        missing = d.submit(_one_trial(["no-such-trainer-xyz"], tmp_path), name="missing")
        elsewhere = d.submit(_one_trial(["no-such-trainer-xyz"], tmp_path,
                                        env={"PATH": str(tmp_path / "bin")}), name="elsewhere")
        refused = d.submit(_one_trial(
            [sys.executable, str(trainer)], tmp_path,
            search={"algorithm": "hyperband", "seed": 0, "max_epochs": 9}), name="refused")
        reasons = {}
        for exp in (missing, elsewhere, refused):
            d.wait_experiment(exp)
            (trial,) = d.client.trials(exp)
            assert trial["state"] == "failed"
            reasons[exp] = trial["reason"]
    # The daemon's PATH, as the test harness starts it: the trial got that one.
    daemon_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    full_path = ("give its full path in command (`which no-such-trainer-xyz` in your shell"
                 " shows it)")
    assert reasons[missing] == (
        f"cannot start 'no-such-trainer-xyz' in {tmp_path}: not found on the daemon's PATH"
        f" ({daemon_path}): {full_path}, or set env: {{PATH: ...}} in the experiment file")
    assert reasons[elsewhere] == (
        f"cannot start 'no-such-trainer-xyz' in {tmp_path}: not found on the PATH that the"
        f" experiment's env sets ({tmp_path / 'bin'}): {full_path}, or add its folder to that"
        " PATH")
    assert reasons[refused] == (
        "exited with code 2: train.py: error: unrecognized arguments: --epochs=1 (hyperband"
        " passes the budget as --epochs=N: set search.budget_flag to your trainer's flag, or"
        " to null and read GPUSCHED_BUDGET)")
