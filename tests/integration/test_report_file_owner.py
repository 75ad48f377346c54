"""A root daemon does not read the report files of another user's trial through a hard link to
a file that user may not read (where ``fs.protected_hardlinks`` is off, the user can make one;
here root plants it in the trial's folder, as the user could): its text reaches neither the
trial's reports nor its reason nor the daemon's log, which the user may see. Needs root and a
second user (as tests/integration/test_users.py); skipped otherwise."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.integration.harness import running_daemon, wait_for
from tests.integration.test_crash_reason import script
from tests.integration.test_users import (
    GROUP,
    interpreter_for,
    open_daemon_dir,
    other_user,
    shared_tmp,
    submit_as,
)

__all__ = ["other_user", "shared_tmp"]  # fixtures, used by name

SECRET = "SECRET-HASH-19000"
# Waits for the gate (argv[1]), then exits 0 having reported nothing itself.
WAITS = """\
import os, sys, time
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
"""


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="needs root and useradd to create a second user")
def test_a_hard_link_in_another_users_trial_folder_is_not_read(
    shared_tmp: Path, other_user: str,
) -> None:
    secret = shared_tmp / "secret"
    # A report to each reader (hypertune's too), and a line each would quote in a problem.
    secret.write_text(json.dumps({"score": 0.5, "leak": SECRET}) + f"\nroot:{SECRET}:0:7:::\n")
    secret.chmod(0o600)  # root's alone: the trial's user may not read it
    waits = script(shared_tmp, "waits.py", WAITS)
    gate = shared_tmp / "gate"
    experiment = {"name": "theirs", "command": [interpreter_for(other_user), str(waits),
                                                 str(gate)],
                  "workdir": str(shared_tmp), "metric": "score", "max_trials": 1,
                  "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}]}
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        exp = submit_as(other_user, d, experiment)
        trial_dir = Path(wait_for(
            lambda: next((t["dir"] for t in d.client.trials(exp) if t["state"] == "running"),
                         None), 30, "the trial to run"))
        for name in ("reports.jsonl", "hypertune_metrics.json"):
            os.link(secret, trial_dir / name)
        gate.touch()
        d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        reports = d.client.reports(f"{exp}/0")
        shown = d.cli("show", f"{exp}/0").stdout
        log = d.log_path.read_text(errors="replace")
    assert os.stat(secret).st_nlink == 3  # the links were there
    assert (trial["state"], trial["reason"]) == ("failed", "exited 0 without reporting 'score'")
    assert reports == [{"trial": f"{exp}/0", "number": 0, "reports": []}]
    assert SECRET not in shown and SECRET not in log
    skipped = [e["problem"] for e in d.log_events() if e.get("event") == "report_skipped"]
    assert sorted(skipped) == [
        f"{name}: not read: it has 3 names (a hard link), and the trial runs as another user"
        for name in ("hypertune_metrics.json", "reports.jsonl")], skipped
