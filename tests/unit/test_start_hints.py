"""Two failures whose reasons say what to do: a program not found on the trial's PATH (which
PATH that was), and a trainer that refuses the budget flag its search gave it (which option
changes that)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from gpusched._daemon.trial_runner import budget_flag_hint, cannot_start_reason

DAEMON_PATH = "/usr/local/bin:/usr/bin:/bin"
FIX = ("give its full path in command (`which python` in your shell shows it), or set env:"
       " {PATH: ...} in the experiment file")


def _error(argv: list[str], *, path: str, cwd: Path) -> OSError:
    """The error the trial's start raises: Popen's own, with ``path`` as the PATH."""
    with pytest.raises(OSError) as raised:
        subprocess.Popen(argv, env={"PATH": path}, cwd=cwd)
    return raised.value


def test_a_program_not_on_the_daemons_path_says_where_it_looked(tmp_path: Path) -> None:
    path = f"{tmp_path / 'bin'}:{tmp_path / 'other'}"
    error = _error(["python"], path=path, cwd=tmp_path)
    assert cannot_start_reason("python", "/tmp/p", error, env={"PATH": path}) == (
        f"cannot start 'python' in /tmp/p: not found on the daemon's PATH ({path}): {FIX}")


def test_the_path_set_by_the_experiment_or_for_another_user_is_named_so(tmp_path: Path) -> None:
    error = _error(["python"], path=str(tmp_path), cwd=tmp_path)
    env = {"PATH": str(tmp_path)}
    assert cannot_start_reason("python", "/tmp/p", error, env=env, path_in_env=True) == (
        f"cannot start 'python' in /tmp/p: not found on the PATH that the experiment's env sets"
        f" ({tmp_path}): give its full path in command (`which python` in your shell shows"
        " it), or add its folder to that PATH")
    assert cannot_start_reason("python", "/tmp/p", error, env=env, other_user=True) == (
        f"cannot start 'python' in /tmp/p: not found on the PATH of a trial run as another user"
        f" ({tmp_path}): {FIX}")


def test_a_trial_without_a_path_was_looked_for_on_the_default_one() -> None:
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", "no-such-trainer-xyz")
    reason = cannot_start_reason("no-such-trainer-xyz", "/tmp/p", error, env={})
    assert (f": not found on the default PATH (the daemon has none) ({os.defpath}): give its"
            " full path in command (`which no-such-trainer-xyz`") in reason


def test_other_failures_to_start_keep_the_systems_word(tmp_path: Path) -> None:
    env = {"PATH": str(tmp_path)}
    # A path that is not there: nothing was looked for on PATH.
    missing = _error(["./train.sh"], path=str(tmp_path), cwd=tmp_path)
    assert cannot_start_reason("./train.sh", "/tmp/p", missing, env=env) == (
        "cannot start './train.sh' in /tmp/p: No such file or directory")
    # Found on PATH, but not executable.
    (tmp_path / "train.sh").write_text("#!/bin/sh\n")
    denied = PermissionError(errno.EACCES, "Permission denied", "train.sh")
    assert cannot_start_reason("train.sh", "/tmp/p", denied, env=env) == (
        "cannot start 'train.sh' in /tmp/p: Permission denied")
    # Not found, but of something else: the workdir, a file of the trial's folder.
    gone = FileNotFoundError(errno.ENOENT, "No such file or directory", "/tmp/p")
    assert cannot_start_reason("python", "/tmp/p", gone, env=env).endswith(
        ": No such file or directory")


def test_a_program_found_whose_interpreter_is_missing_is_not_said_to_be_off_path(
    tmp_path: Path,
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "train.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    error = _error(["train.sh"], path=str(bin_dir), cwd=tmp_path)
    assert error.errno == errno.ENOENT and error.filename == "train.sh"
    assert cannot_start_reason("train.sh", str(tmp_path), error, env={"PATH": str(bin_dir)}) == (
        f"cannot start 'train.sh' in {tmp_path}: No such file or directory")


def test_a_relative_folder_of_path_is_looked_in_from_the_workdir(tmp_path: Path) -> None:
    # exec looks in "bin" from the trial's workdir, where it starts, not the daemon's.
    (tmp_path / "bin").mkdir()
    script = tmp_path / "bin" / "train.sh"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    error = FileNotFoundError(errno.ENOENT, "No such file or directory", "train.sh")
    assert cannot_start_reason("train.sh", str(tmp_path), error, env={"PATH": "bin"}) == (
        f"cannot start 'train.sh' in {tmp_path}: No such file or directory")


# -- the budget flag -----------------------------------------------------------------------------

ARGPARSE = "train.py: error: unrecognized arguments: --epochs=1"
HINT = (" (hyperband passes the budget as --epochs=N: set search.budget_flag to your trainer's"
        " flag, or to null and read GPUSCHED_BUDGET)")


@pytest.mark.parametrize("line", [
    ARGPARSE,
    "train.py: error: argument --epochs: invalid int value: '1.5'",
    "Error: No such option: --epochs",  # click's
])
def test_a_usage_error_naming_the_budget_flag_says_how_to_change_it(line: str) -> None:
    assert budget_flag_hint(2, line, "--epochs", 1, "hyperband") == HINT


def test_another_search_plugins_flag_is_named_without_hyperbands_option() -> None:
    assert budget_flag_hint(2, "error: unrecognized arguments: --steps=100", "--steps", 100,
                            "pbt") == (
        " (pbt passes the budget as --steps=N: have your trainer take --steps, or see the"
        " options of pbt)")


@pytest.mark.parametrize(("code", "line", "flag", "budget"), [
    (1, ARGPARSE, "--epochs", 1),  # not a usage error
    (2, "train.py: error: unrecognized arguments: --lr=0.1", "--epochs", 1),  # another flag
    (2, "error: unrecognized arguments: --epochs-max=3", "--epochs", 1),  # only its prefix
    (2, ARGPARSE, None, 1),  # no flag given (budget_flag: null)
    (2, ARGPARSE, "--epochs", None),  # no budget, so no flag given
    (2, None, "--epochs", 1),  # nothing on stderr
])
def test_no_hint_unless_the_flag_given_is_what_the_usage_error_names(
    code: int, line: str | None, flag: str | None, budget: int | None,
) -> None:
    assert budget_flag_hint(code, line, flag, budget, "hyperband") == ""
