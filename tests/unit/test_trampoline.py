"""launcher.TRAMPOLINE, the /bin/sh script that starts a root daemon's trial of another user:
it enters the workdir, finds the command as exec will, then execs it. Run here as this user:
what it decides does not depend on whose rights it has (test_trial_files_as_user.py, in
tests/integration, runs it as other users)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gpusched._daemon.launcher import TRAMPOLINE, TRAMPOLINE_SHELL

NOT_FOUND = '{"status": "failed", "reason": "not found"}'


def run(tmp_path: Path, argv: list[str], path: str) -> tuple[int, str, str]:
    """(exit status, stdout, what the report file got) of the trampoline starting ``argv``
    in ``tmp_path`` with ``PATH=path``."""
    report = tmp_path / "reports.jsonl"
    report.unlink(missing_ok=True)
    done = subprocess.run(
        [TRAMPOLINE_SHELL, "-c", TRAMPOLINE, "gpusched", str(tmp_path), "cannot enter",
         '{"status": "failed", "reason": "cannot enter"}', "not found", NOT_FOUND,
         str(report), *argv],
        env={"PATH": path}, capture_output=True, text=True, check=False, cwd="/")
    return done.returncode, done.stdout, report.read_text() if report.exists() else ""


def _program(folder: Path, name: str, text: str = "hello") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    program = folder / name
    program.write_text(f"#!/bin/sh\necho {text}\n")
    program.chmod(0o755)
    return program


@pytest.mark.parametrize("name", ["test", "echo", "true", "cd", "kill", "if"])
def test_a_command_named_as_a_shell_builtin_that_is_not_on_path_is_not_found(
        tmp_path: Path, name: str) -> None:
    # `command -v test` answers for the builtin; exec looks on PATH only, and failed with the
    # shell's own "exec: test: not found" instead of the reason the daemon gives.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run(tmp_path, [name, "x"], str(empty)) == (127, "", NOT_FOUND + "\n")


def test_a_program_named_as_a_builtin_that_is_on_path_is_the_one_run(tmp_path: Path) -> None:
    _program(tmp_path / "bin", "test", "the program, not the builtin")
    code, out, report = run(tmp_path, ["test"], str(tmp_path / "bin"))
    assert (code, out.strip(), report) == (0, "the program, not the builtin", "")


@pytest.mark.parametrize(("path", "where"), [
    ("/nowhere:{bin}", "bin"),  # the first folder that has it
    ("/nowhere::/also-nowhere", "."),  # an empty entry is the workdir, as for exec
    ("/nowhere:", "."),  # so is a trailing one
    (":/nowhere", "."),  # and a leading one
    ("/nowhere:rel", "rel"),  # a relative one is from the workdir
])
def test_a_bare_name_is_looked_for_on_path_as_exec_does(
        tmp_path: Path, path: str, where: str) -> None:
    _program(tmp_path / where, "train", where)
    code, out, report = run(tmp_path, ["train"], path.format(bin=tmp_path / "bin"))
    assert (code, out.strip(), report) == (0, where, "")


def test_a_file_that_is_not_executable_or_a_folder_is_not_found(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    (bin_dir / "train").mkdir(parents=True)  # a folder of that name
    plain = _program(tmp_path / "other", "train")
    plain.chmod(0o644)
    if os.geteuid() == 0 and os.access(plain, os.X_OK):
        pytest.skip("root may execute any file here")
    assert run(tmp_path, ["train"], f"{bin_dir}:{plain.parent}")[::2] == (127, NOT_FOUND + "\n")


def test_a_path_with_a_slash_is_taken_as_it_is(tmp_path: Path) -> None:
    _program(tmp_path / "sub", "train", "sub")
    assert run(tmp_path, ["sub/train"], "/nowhere")[:2] == (0, "sub\n")
    assert run(tmp_path, ["sub/missing"], "/nowhere")[::2] == (127, NOT_FOUND + "\n")


def test_the_command_gets_the_environment_it_was_given_and_no_more(tmp_path: Path) -> None:
    env = shutil.which("env")
    assert env is not None
    code, out, _ = run(tmp_path, [env], "/usr/bin:/bin")
    names = {line.split("=", 1)[0] for line in out.splitlines() if "=" in line}
    assert (code, names) == (0, {"PATH"})
