"""Plain-text tables of the read commands: aligned columns, '-' for nothing, short durations."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from gpusched.render import (
    best_table,
    cut_to_width,
    events_lines,
    finite_number,
    fmt_age,
    fmt_duration,
    fmt_value,
    key_values,
    printable,
    spec_lines,
    table,
    text_width,
)


def column_starts(line: str, headers: list[str]) -> list[int]:
    return [line.index(h) for h in headers]


# --- cells ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "text"), [
    (None, "-"),
    (0.123456789, "0.1235"),
    (12345.678, "1.235e+04"),
    (3.0, "3"),
    (math.nan, "nan"),
    (math.inf, "inf"),
    (7, "7"),
    ("adam", "adam"),
    (True, "True"),
])
def test_fmt_value(value: Any, text: str) -> None:
    assert fmt_value(value) == text


@pytest.mark.parametrize(("seconds", "text"), [
    (None, "-"),
    (0.0, "0.0s"),
    (5.5, "5.5s"),
    (42.9, "42s"),
    (59.99, "59s"),
    (60, "1m00s"),
    (185, "3m05s"),
    (3599, "59m59s"),
    (3600, "1h00m"),
    (7800, "2h10m"),
    (90000, "25h00m"),
])
def test_fmt_duration(seconds: float | None, text: str) -> None:
    assert fmt_duration(seconds) == text


def test_fmt_age() -> None:
    assert fmt_age(None) == "-"
    assert fmt_age(time.time() - 185.5) in ("3m05s ago", "3m06s ago")


# --- the table ------------------------------------------------------------------------------


def test_columns_are_aligned_and_lines_not_padded_at_the_end() -> None:
    text = table(["ID", "NAME", "SCORE"], [["e1", "a-long-name", 0.5], ["e10", "b", None]])
    lines = text.splitlines()
    assert lines == [
        "ID   NAME         SCORE",
        "e1   a-long-name  0.5",
        "e10  b            -",
    ]
    starts = column_starts(lines[0], ["ID", "NAME", "SCORE"])
    assert lines[1][starts[2]:] == "0.5"
    assert lines[2][starts[1]:].startswith("b ")


def test_a_table_with_no_rows_is_its_header() -> None:
    assert table(["A", "B"], []) == "A  B"


def test_key_values_align_the_values() -> None:
    assert key_values([("id", "e1"), ("objective", None), ("best", 0.98765)]) == (
        "id         e1\nobjective  -\nbest       0.9877"
    )
    assert key_values([]) == ""


# --- the commands' tables -------------------------------------------------------------------


def trial(number: int, **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"id": f"e1/{number}", "objective": 0.5, "params": {"lr": 0.01}}
    t.update(overrides)
    return t


def test_best_table_ranks_from_one() -> None:
    text = best_table([trial(4, objective=0.9), trial(2, objective=0.8)], metric="acc")
    lines = text.splitlines()
    assert lines[0].split() == ["RANK", "TRIAL", "ACC", "lr"]
    assert lines[1].split() == ["1", "e1/4", "0.9", "0.01"]
    assert lines[2].split() == ["2", "e1/2", "0.8", "0.01"]


# --- what a trial wrote, made printable -----------------------------------------------------


@pytest.mark.parametrize(("text", "shown"), [
    ("plain text, 学习率", "plain text, 学习率"),
    ("two\nlines", "two⏎lines"),
    ("crlf\r\nend", "crlf⏎end"),
    ("a\tb\rc", "a\\tb\\rc"),
    ("\x1b[2J\x1b]0;title\x07", "\\x1b[2J\\x1b]0;title\\x07"),
    ("nul\x00 del\x7f c1\x9b\x85", "nul\\x00 del\\x7f c1\\x9b\\x85"),
    ("lone \ud800 surrogate", "lone \\ud800 surrogate"),
])
def test_printable(text: str, shown: str) -> None:
    assert printable(text) == shown


def test_no_control_character_reaches_the_terminal_from_any_table() -> None:
    evil = "x\n\x1b[31mred\x9b2J\r"
    outputs = [
        table(["A", evil], [[evil, 1], ["ok", evil]]),
        key_values([("reason", evil), (evil, 2)]),
        events_lines([{"t": 0.0, "trial": 1, "experiment_id": "e1", "kind": "failed",
                       "data": {"reason": evil}}]),
        best_table([trial(0, params={"opt": evil})]),
        spec_lines({"name": evil, "command": ["python", evil], "env": {evil: evil},
                    "params": [{"name": evil, "type": "categorical", "values": [evil]}]}),
    ]
    for text in outputs:
        assert not [c for c in text if c != "\n" and (ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0)]
    assert len(outputs[0].splitlines()) == 3 and len(outputs[1].splitlines()) == 2
    assert len(outputs[2].splitlines()) == 2  # "events:" and the one event
    assert len(outputs[4].splitlines()) == 6  # spec, name, command, env, params, one param


def test_text_width_counts_wide_characters_twice_and_combining_marks_not_at_all() -> None:
    assert text_width("abc") == 3
    assert text_width("学习率") == 6
    assert text_width("e\u0301") == 1  # e + combining acute
    assert cut_to_width("学习率abc", 5) == "学习"
    assert cut_to_width("abcdef", 4) == "abcd"
    assert cut_to_width("学习", 10) == "学习"


def test_a_table_aligns_wide_characters_by_the_columns_they_take() -> None:
    assert table(["NAME", "X"], [["学习率", 1], ["ab", 2]]).splitlines() == [
        "NAME    X", "学习率  1", "ab      2"]


def test_finite_number_takes_an_int_beyond_a_floats_range_as_none() -> None:
    assert finite_number(10**400) is None and finite_number(-(10**400)) is None
    assert finite_number(3) == 3.0 and finite_number(math.inf) is None
    assert finite_number(True) is None


# --- `gpusched show EXP`: the spec ----------------------------------------------------------


SPEC: dict[str, Any] = {
    "name": "digits", "command": ["python", "train.py", "--note", "two words"],
    "workdir": "/home/alice/digits", "env": {"TOKEN": "s3cr\x1bt", "Q": 'say "hi"\\'},
    "metric": "acc", "goal": "maximize", "max_trials": 20, "max_parallel_trials": None,
    "fail_fast": False, "search": {"algorithm": "random", "seed": 0}, "resume_from": "e3",
    "params": [{"name": "lr", "type": "double", "min": 0.001, "max": 0.1, "scale": "log"},
               {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]}],
}


def test_key_values_show_mappings_and_lists_as_json_does_not_as_python_reprs() -> None:
    # `gpusched show EXP/N`: its params, devices and last report (a new user read
    # "{'learning_rate': 0.01}" and "['GPU-...']" as Python's insides).
    assert key_values([("params", {"lr": 0.01, "opt": "adam"}), ("devices", ["GPU-a"]),
                       ("last_report", {"acc": 0.9, "done": True, "note": None})]) == (
        'params       {"lr": 0.01, "opt": "adam"}\n'
        'devices      ["GPU-a"]\n'
        'last_report  {"acc": 0.9, "done": true, "note": null}')


def test_spec_lines_leave_out_an_empty_mapping_or_list_as_unset() -> None:
    assert spec_lines({"name": "x", "stop": {}, "env": {}, "points_to_evaluate": [],
                       "metric": "acc"}).splitlines() == ["spec:", "  name    x", "  metric  acc"]


def test_spec_lines_show_every_setting_set_one_line_each() -> None:
    assert spec_lines(SPEC).splitlines() == [
        "spec:",
        "  name         digits",
        "  command      python train.py --note 'two words'",
        "  workdir      /home/alice/digits",
        '  env          {"TOKEN": "s3cr\\x1bt", "Q": "say \\"hi\\"\\\\"}',
        "  metric       acc",
        "  goal         maximize",
        "  max_trials   20",
        "  fail_fast    false",
        '  search       {"algorithm": "random", "seed": 0}',
        "  resume_from  e3",  # unset settings (null) are left out
        "  params:",
        '    - {"name": "lr", "type": "double", "min": 0.001, "max": 0.1, "scale": "log"}',
        '    - {"name": "opt", "type": "categorical", "values": ["sgd", "adam"]}',
    ]


def test_show_of_an_experiment_prints_its_spec(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gpusched import cli
    from gpusched.client import Client

    view: dict[str, Any] = {
        "id": "e1", "name": "digits", "state": "running", "reason": None,
        "trials": {"total": 1, "running": 1}, "best": None,
        "spec": {**SPEC, "env": {"TOKEN": "(hidden: only its owner ...)"}}, "events": []}
    monkeypatch.setattr(Client, "show", lambda self, target: view)
    assert cli.main(["show", "e1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    spec = lines.index("spec:")
    assert lines[:spec][-1].split() == ["best", "-"]  # after the experiment's own fields
    assert lines[spec:spec + 3] == ["spec:", "  name         digits",
                                    "  command      python train.py --note 'two words'"]
    assert '  env          {"TOKEN": "(hidden: only its owner ...)"}' in lines  # as --json
    assert lines[-1] == "events: -"
