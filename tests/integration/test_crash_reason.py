"""A crashed trial's reason ends with the last line of its stderr, through a real daemon: the
exception of a traceback, a signal's last words, an attempt's own line on a retry; and never
what a link or a FIFO planted in place of the log would give (root: another user's trial
linking a file only root may read)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.integration.harness import running_daemon
from tests.integration.test_failure_rules import shown
from tests.integration.test_users import (
    GROUP,
    interpreter_for,
    open_daemon_dir,
    other_user,
    shared_tmp,
    submit_as,
)

__all__ = ["other_user", "shared_tmp"]  # fixtures, used by name

# Attempt 1 raises RuntimeError("boom"); attempt 2 exits 3 with nothing on stderr.
BOOM_THEN_SILENT = """\
import os, sys
if os.environ["GPUSCHED_ATTEMPT"] == "1":
    print("loading data", file=sys.stderr)
    raise RuntimeError("boom")
sys.exit(3)
"""
LAST_WORDS_THEN_SIGKILL = """\
import os, signal, sys
sys.stderr.write("\\x1b[33mloading shard 7\\x1b[0m\\n")
sys.stderr.flush()
os.kill(os.getpid(), signal.SIGKILL)
"""
# Raises, then its exit handler prints last, as Weights & Biases' does.
RAISES_THEN_WANDB = """\
import atexit, sys
def finish():
    print("wandb: \U0001f680 View run dry-sun-3 at: https://wandb.ai/me/proj/runs/abc",
          file=sys.stderr)
    print("wandb: Find logs at: ./wandb/run-20240101_000000-abc/logs", file=sys.stderr)
atexit.register(finish)
raise RuntimeError("CUDA error: device-side assert triggered")
"""
# Replaces its stderr.log (by the daemon's O_APPEND fd, still its stderr) with what argv says.
PLANTS = """\
import os, sys
log = os.path.join(os.environ["GPUSCHED_TRIAL_DIR"], "stderr.log")
print("RuntimeError: in the real log", file=sys.stderr, flush=True)
os.unlink(log)
if sys.argv[1] == "fifo":
    os.mkfifo(log)
else:
    os.symlink(sys.argv[2], log)
sys.exit(1)
"""


def experiment(script: Path, *args: str, **overrides: Any) -> dict[str, Any]:
    return {"command": [sys.executable, str(script), *args], "metric": "score",
            "max_trials": 1, "params": [{"name": "x", "type": "integer", "min": 1, "max": 3}],
            **overrides}


def script(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    path.chmod(0o644)
    return path


def test_a_raised_error_is_in_the_reason_and_a_retry_shows_only_its_own(tmp_path: Path) -> None:
    boom = script(tmp_path, "boom.py", BOOM_THEN_SILENT)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment(boom, max_retries_per_trial=1))
        d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        events = d.client.show(f"{exp}/0")["events"]
        text = shown(d, f"{exp}/0")
    retries = [e["data"]["reason"] for e in events if e["kind"] == "trial_retrying"]
    assert retries == ["exited with code 1: RuntimeError: boom; retry 1 of 1"]
    assert "trial_retrying  exited with code 1: RuntimeError: boom; retry 1 of 1" in \
        text["events"]
    # The second attempt wrote nothing to stderr: the first one's line is not its reason.
    assert (trial["state"], trial["attempts"], trial["exit_code"]) == ("failed", 2, 3)
    assert trial["reason"] == text["reason"] == "exited with code 3"


def test_a_crash_shows_its_exception_and_a_kill_its_last_words(tmp_path: Path) -> None:
    boom = script(tmp_path, "boom.py", BOOM_THEN_SILENT)
    killed = script(tmp_path, "killed.py", LAST_WORDS_THEN_SIGKILL)
    with running_daemon(tmp_path / "d") as d:
        crashed = d.submit(experiment(boom), name="crashed")
        kill = d.submit(experiment(killed), name="killed")
        for exp in (crashed, kill):
            assert d.wait_experiment(exp)["state"] == "failed"
        assert shown(d, f"{crashed}/0")["reason"] == "exited with code 1: RuntimeError: boom"
        (trial,) = d.client.trials(kill)
        ls = d.cli("ls", kill, "--columns", "why").stdout
    assert (trial["reason"], trial["exit_signal"]) == (
        "killed by signal SIGKILL: loading shard 7", 9)
    assert "killed by signal SIGKILL: loading shard 7" in ls


def test_the_exception_shows_though_an_exit_handler_printed_after_it(tmp_path: Path) -> None:
    wandb = script(tmp_path, "wandb.py", RAISES_THEN_WANDB)
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment(wandb))
        assert d.wait_experiment(exp)["state"] == "failed"
        (trial,) = d.client.trials(exp)
        stderr = d.cli("logs", f"{exp}/0", "--stderr").stdout
    assert stderr.rstrip().endswith("wandb: Find logs at: ./wandb/run-20240101_000000-abc/logs")
    assert trial["reason"] == (
        "exited with code 1: RuntimeError: CUDA error: device-side assert triggered")


def test_a_status_line_keeps_its_reason_without_stderr(tmp_path: Path) -> None:
    said = script(tmp_path, "said.py",
                  "import gpusched\nraise gpusched.FailedTrialError('no data in shard 0')\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment(said))
        d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
    # Python printed the traceback (FailedTrialError: ...) on stderr: the status line wins.
    assert trial["reason"] == "no data in shard 0 (exited with code 1)"


@pytest.mark.parametrize("plant", ["fifo", "symlink"])
def test_a_fifo_or_a_link_in_place_of_the_log_is_not_read(tmp_path: Path, plant: str) -> None:
    planter = script(tmp_path, "plants.py", PLANTS)
    target = script(tmp_path, "target", "SecretError: what the link points to\n")
    with running_daemon(tmp_path / "d") as d:
        exp = d.submit(experiment(planter, plant, str(target)))
        d.wait_experiment(exp, timeout=30)  # a FIFO opened for reading would block the daemon
        (trial,) = d.client.trials(exp)
        assert d.client.show(exp)["state"] == "failed"  # still answering
    assert trial["reason"] == "exited with code 1"


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="needs root and useradd to create a second user")
def test_another_users_trial_cannot_leak_a_root_file_through_its_log(
    shared_tmp: Path, other_user: str,
) -> None:
    secret = shared_tmp / "secret"
    secret.write_text("root:SECRET-HASH:19000:0:99999:7:::\n")
    secret.chmod(0o600)  # root's alone: the trial's user may not read it
    planter = script(shared_tmp, "plants.py", PLANTS)
    linked = {**experiment(planter, "symlink", str(secret)), "workdir": str(shared_tmp),
              "command": [interpreter_for(other_user), str(planter), "symlink", str(secret)]}
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        exp = submit_as(other_user, d, {**linked, "name": "theirs"})
        d.wait_experiment(exp)
        (trial,) = d.client.trials(exp)
        trial_dir = Path(trial["dir"])
    assert (trial_dir / "stderr.log").is_symlink()  # it did plant the link
    assert trial["reason"] == "exited with code 1"
