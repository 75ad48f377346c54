"""A retry that rewrites its report file (opens it with "w") loses none of its reports.

The retry keeps the trial's folder, and reading goes on from where the first attempt's reading
stopped. Its trainer truncates the file and writes more than the first attempt did before the
daemon reads it (here: reports are read only once the trial exits), so the file never looks
shorter than what was read.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.harness import running_daemon

REWRITES_ON_RETRY = """\
import json, os, sys
attempt = int(os.environ["GPUSCHED_ATTEMPT"])
with open(os.environ["GPUSCHED_REPORT_FILE"], "w") as reports:  # rewritten, not appended
    for step in range(1, (3 if attempt == 1 else 6) + 1):
        reports.write(json.dumps({"step": step, "attempt": attempt, "score": step / 10}) + "\\n")
    if attempt == 2:
        reports.write(json.dumps({"status": "failed", "reason": "the retry's own end"}) + "\\n")
sys.exit(3)  # the first attempt crashes (retried); the second says how it failed
"""


def test_a_retry_that_rewrites_its_report_file_keeps_every_report(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(REWRITES_ON_RETRY)
    # Read only when each attempt has exited: the retry's rewrite is the first thing seen.
    with running_daemon(tmp_path / "d", settings={"report_poll_s": 30.0}) as d:
        exp = d.submit({"command": [sys.executable, str(script)], "metric": "score",
                        "max_trials": 1, "max_retries_per_trial": 1, "max_failed_trials": 5,
                        "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]})
        d.wait_experiment(exp)
        [trial] = d.client.trials(exp)
        [block] = d.client.reports(f"{exp}/0")
        reports = block["reports"]
        skipped = [e.get("problem", "") for e in d.log_events()
                   if e.get("event") == "report_skipped"]
    assert [(r["attempt"], r["step"]) for r in reports] == [
        *((1, s) for s in range(1, 4)), *((2, s) for s in range(1, 7))]
    assert [r["training_iteration"] for r in reports] == list(range(1, 10))
    # Its status line, in the rewritten file, is the retry's own: it failed, not retried again.
    assert (trial["state"], trial["attempts"]) == ("failed", 2), trial
    assert trial["reason"] == "the retry's own end (exited with code 3)"
    # The daemon's log says why the file was read again from its start.
    assert any(p.startswith("file rewritten: its first ") for p in skipped), skipped
