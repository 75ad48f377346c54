"""A trainer that replaces its report file while it runs loses no report, and none is stored
twice: through a real daemon, which reads the file while the trial runs."""

from __future__ import annotations

import sys
from pathlib import Path

from tests.integration.harness import running_daemon, wait_for

# One report; once the daemon has stored it (the test says so with the file `go`), the report
# file is deleted and a new one written, longer than the first.
DELETES_AND_STARTS_AGAIN = """\
import json, os, sys, time
reports, go = os.environ["GPUSCHED_REPORT_FILE"], {go!r}
with open(reports, "a") as f:
    f.write(json.dumps({{"score": 0.0, "step": 0}}) + "\\n")
deadline = time.monotonic() + 60
while not os.path.exists(go):
    if time.monotonic() > deadline:
        sys.exit("the test never said that the first report was stored")
    time.sleep(0.01)
os.unlink(reports)
with open(reports, "a") as f:
    for step in range(1, 4):
        f.write(json.dumps({{"score": step / 10, "step": step}}) + "\\n")
"""

# All its lines so far, written to a new file renamed over the report file at every report.
RENAMES_OVER_AT_EVERY_REPORT = """\
import json, os, time
reports = os.environ["GPUSCHED_REPORT_FILE"]
lines = []
for step in range(300):
    lines.append(json.dumps({"score": step / 300, "step": step}) + "\\n")
    with open(reports + ".tmp", "w") as f:
        f.write("".join(lines))
    os.replace(reports + ".tmp", reports)
    if step % 30 == 0:
        time.sleep(0.05)  # polls come between some of the rewrites
"""

EXPERIMENT = {"metric": "score", "max_trials": 1, "gpus_per_trial": 0,
              "params": [{"name": "x", "type": "double", "min": 0, "max": 1}]}


def test_a_report_file_deleted_and_written_again_loses_no_report(tmp_path: Path) -> None:
    script, go = tmp_path / "train.py", tmp_path / "go"
    script.write_text(DELETES_AND_STARTS_AGAIN.format(go=str(go)))
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({**EXPERIMENT, "command": [sys.executable, str(script)]})
        wait_for(lambda: d.client.reports(f"{exp}/0")[0]["reports"], 60, "the first report")
        go.touch()
        d.wait_experiment(exp)
        steps = [r["step"] for r in d.client.reports(f"{exp}/0")[0]["reports"]]
        [trial] = d.client.trials(exp)
        problems = [e.get("problem", "") for e in d.log_events()
                    if e.get("event") == "report_skipped"]
    assert steps == [0, 1, 2, 3]
    assert (trial["state"], trial["reports"]) == ("completed", 4), trial
    # The daemon's log says why the file was read again from its start.
    assert any(p.startswith("file replaced or rewritten: ") for p in problems), problems


def test_a_report_file_renamed_over_at_every_report_stores_each_report_once(
    tmp_path: Path,
) -> None:
    script = tmp_path / "train.py"
    script.write_text(RENAMES_OVER_AT_EVERY_REPORT)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit({**EXPERIMENT, "command": [sys.executable, str(script)]})
        d.wait_experiment(exp)
        steps = [r["step"] for r in d.client.reports(f"{exp}/0")[0]["reports"]]
    assert steps == list(range(300))
