"""The CLI's failures are one line on stderr and a non-zero exit, whatever raised them."""

from __future__ import annotations

from pathlib import Path

import pytest

import gpusched.plugins
from gpusched import cli
from gpusched.errors import NotFoundError, ProtocolError, RequestError, UsageError


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gpusched: "), err
    return err


@pytest.mark.parametrize("error, said", [
    (PermissionError(13, "Permission denied", "/plots/e1-curves.png"),
     "gpusched: /plots/e1-curves.png: Permission denied: check its permissions, or choose"
     " another path\n"),
    (IsADirectoryError(21, "Is a directory", "/plots"),
     "gpusched: /plots: Is a directory: check that path\n"),
    (OSError(28, "No space left on device"),
     "gpusched: No space left on device: check where the output goes (a full disk, a closed"
     " terminal)\n"),
])
def test_an_os_error_no_command_foresaw_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], error: OSError,
    said: str,
) -> None:
    def fail() -> None:
        raise error

    monkeypatch.setattr(gpusched.plugins, "describe_plugins", fail)
    assert cli.main(["plugins"]) == 1
    assert one_line(capsys) == said


def test_logs_says_which_file_it_cannot_read(tmp_path: Path) -> None:
    folder = tmp_path / "stdout"
    folder.mkdir()  # what a trial's stdout should be, replaced by a folder
    with pytest.raises(UsageError) as info:
        cli._copy_new(folder, 0, "the stdout of e1/0")
    assert str(info.value).startswith(f"cannot read the stdout of e1/0 at {folder}: Is a dir")
    assert cli._copy_new(tmp_path / "not-yet", 0, "the stdout of e1/0") == 0  # not started


def test_logs_of_another_users_trial_says_whose_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A root daemon runs each trial as its submitter, in a folder of theirs (root reads any
    # file: the refusal is made up here).
    def refuse(path: Path, mode: str) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "open", refuse, raising=False)
    with pytest.raises(UsageError) as info:
        cli._copy_new(tmp_path / "stderr", 0, "the stderr of e1/0")
    assert str(info.value) == (f"cannot read the stderr of e1/0 at {tmp_path / 'stderr'}:"
                               " permission denied: run `gpusched logs` as the trial's user"
                               " (or as root)")


def test_wait_with_no_daemon_exits_69_not_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 1 says the experiment failed: a script must not read "no daemon" as that.
    assert cli.main(["wait", "e1", "--socket", str(tmp_path / "none.sock")]) == 69
    assert "no daemon at" in one_line(capsys)
    assert cli.main(["wait", "e1", "--socket", str(tmp_path / "f" / ("x" * 120))]) == 69
    assert "over the 107" in one_line(capsys)


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_wait_refuses_a_reconnect_that_is_not_a_duration(
    capsys: pytest.CaptureFixture[str], value: str
) -> None:
    assert cli.main(["wait", "e1", "--reconnect", value]) == cli.WAIT_ERROR  # not "it failed"
    assert "--reconnect" in one_line(capsys)
    assert cli.main(["wait", "e1", "--timeout", value]) == cli.WAIT_ERROR
    assert "--timeout" in one_line(capsys)


def test_wait_prints_a_trials_own_words_without_control_characters(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # An experiment's reason may be a trial's FatalError text: its escape sequences once
    # reached the terminal of whoever waited.
    from gpusched.client import Client

    def ended(self: Client, *args: object, **kwargs: object) -> dict[str, object]:
        return {"id": "e1", "state": "failed", "ended": True,
                "reason": "trial e1/0 raised a fatal error: \x1b[2Jgone\nfor good"}

    monkeypatch.setattr(Client, "wait", ended)
    assert cli.main(["wait", "e1"]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and out.count("\n") == 1
    assert out == "e1 failed: trial e1/0 raised a fatal error: \\x1b[2Jgone⏎for good\n"


@pytest.mark.parametrize(("error", "code"), [
    (NotFoundError("no experiment 'e9'"), 2),  # the wait is wrong
    (RequestError("forbidden", "not yours"), 2),
    (RequestError("internal", "internal error: KeyError()"), 69),  # the outcome is unknown
    (RequestError("shutting_down", "the daemon is shutting down"), 69),
    (RequestError("StoreError", "cannot read the trial log"), 69),
    (ProtocolError("answer too large"), 69),
])
def test_wait_exits_2_only_when_the_wait_itself_is_wrong(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    error: Exception, code: int,
) -> None:
    from gpusched.client import Client

    def refused(self: Client, *args: object, **kwargs: object) -> dict[str, object]:
        raise error

    monkeypatch.setattr(Client, "wait", refused)
    assert cli.main(["wait", "e1"]) == code
    assert str(error) in one_line(capsys)
