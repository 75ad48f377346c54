"""The CLI's parser: built for the one command that runs, the same as the whole one for it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from gpusched import cli


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise AssertionError("no subcommands")


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_a_command_built_alone_has_the_help_and_defaults_of_the_whole_parser(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    alone, whole = cli.build_parser(name), cli.build_parser()
    assert _subparser(alone, name).format_help() == _subparser(whole, name).format_help()
    # The same function runs (a view command's is made per build: the same module's).
    defaults = [_subparser(p, name)._defaults for p in (alone, whole)]
    assert [d.keys() for d in defaults] == [{"fn"}, {"fn"}]
    assert defaults[0]["fn"].__doc__ == defaults[1]["fn"].__doc__
    assert defaults[0]["fn"].__doc__ or defaults[0]["fn"] is defaults[1]["fn"]


def test_a_command_built_alone_is_the_only_one_built() -> None:
    parser = cli.build_parser("submit")
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert list(action.choices) == ["submit"]


@pytest.mark.parametrize("first", [None, "--help", "--version", "bogus", "-h"])
def test_anything_but_a_command_gets_every_command(first: str | None) -> None:
    parser = cli.build_parser(first)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            assert list(action.choices) == list(cli.COMMANDS)


def test_a_typo_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["subnit", "x.yaml"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'subnit'" in err and "'submit'" in err and "'plugins'" in err


def test_the_help_is_as_wide_as_columns_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    wide = _subparser(cli.build_parser("ls"), "ls").format_help()
    monkeypatch.setenv("COLUMNS", "60")
    narrow = _subparser(cli.build_parser("ls"), "ls").format_help()
    assert max(map(len, narrow.splitlines())) <= 58 < max(map(len, wide.splitlines()))


def test_without_columns_or_a_terminal_the_help_is_80_wide(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    # sys.__stdout__ is not a terminal under pytest's capture, nor in CI.
    monkeypatch.setattr(sys, "__stdout__", None)
    assert cli._terminal_columns() == 80


def test_building_the_parser_does_not_import_shutil() -> None:
    # argparse's own formatter imports shutil (and with it bz2, lzma, zlib) to size itself.
    code = ("import sys, gpusched.cli; gpusched.cli.build_parser();"
            " gpusched.cli.build_parser('submit').parse_args(['submit', 'x.yaml']);"
            " print('shutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_export_help_names_the_json_field_reports_go_in() -> None:
    # docs/json.md: with --reports each trial of the JSON has `history`; `reports` is a count.
    parser = _subparser(cli.build_parser("export"), "export")
    (action,) = [a for a in parser._actions if "--reports" in a.option_strings]
    assert action.help is not None
    assert "`history`" in action.help and "`reports` per trial" not in action.help



@pytest.mark.parametrize("where", ["before", "joined", "after"])
def test_socket_may_come_before_the_command(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    # `gpusched --socket X ls` was "invalid choice: 'X'" (a new user's walkthrough): the
    # docker/kubectl place of a global option now works too.
    path = tmp_path / "none.sock"
    argv = {"before": ["--socket", str(path), "ls", "--all"],
            "joined": [f"--socket={path}", "ls", "--all"],
            "after": ["ls", "--socket", str(path), "--all"]}[where]
    assert cli.main(argv) == 1
    assert capsys.readouterr().err.startswith(f"gpusched: no daemon at {path} ")
