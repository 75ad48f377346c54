"""Plain-text tables of the read commands: aligned columns, '-' for nothing, short durations."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from gpusched.render import (
    best_table,
    experiments_table,
    fmt_age,
    fmt_duration,
    fmt_value,
    gpus_table,
    key_values,
    table,
    trials_table,
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


def device(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "uuid": "GPU-11111111-2222-3333-4444-555555555555", "index": 0, "name": "Fake H100",
        "fake": True, "mig_parent_uuid": None, "memory_total_mib": 81559.0,
        "memory_used_mib": 300.0, "state": "free", "reason": None, "trials": [],
        "releasing": [], "processes": [],
    }
    d.update(overrides)
    return d


def test_gpus_table_marks_fake_devices_and_says_who_holds_what() -> None:
    text = gpus_table({"backend": "fake", "devices": [
        device(state="busy", trials=["e1/0"], releasing=["e1/1"]),
        device(index=1, uuid="GPU-2", name="Real GPU", fake=False, memory_used_mib=None,
               state="foreign", reason="process 555 was not started by gpusched"),
    ]})
    lines = text.splitlines()
    assert lines[0] == "backend: fake"
    assert lines[1].split() == ["IDX", "NAME", "UUID", "MEMORY", "STATE", "TRIALS", "WHY"]
    assert "Fake H100 [fake]" in lines[2]
    assert "300 / 81559 MiB" in lines[2]
    assert "e1/0, e1/1 (releasing)" in lines[2]
    assert "[fake]" not in lines[3]
    assert "81559 MiB" in lines[3]
    assert lines[3].endswith("process 555 was not started by gpusched")
    state_col = lines[1].index("STATE")
    assert lines[2][state_col:].startswith("busy")
    assert lines[3][state_col:].startswith("foreign")


def test_gpus_table_without_devices_says_only_cpu_trials_run() -> None:
    text = gpus_table({"backend": "nvml", "devices": []})
    assert text.startswith("backend: nvml\n")
    assert "no GPU found" in text
    assert "gpus_per_trial: 0" in text


def experiment(**overrides: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": "e1", "name": "digits", "state": "running",
        "trials": {"running": 2, "completed": 3, "stopped": 1, "failed": 1},
        "max_trials": 30, "metric": "val_accuracy", "goal": "maximize",
        "best": {"objective": 0.912345, "trial": "e1/4"}, "submitted_at": time.time() - 65,
    }
    e.update(overrides)
    return e


def test_experiments_table() -> None:
    text = experiments_table([
        experiment(owner="alice"),
        experiment(id="e2", name="x", goal="minimize", best=None, max_trials=None, owner=None,
                   trials={"running": 0, "completed": 0, "stopped": 0, "failed": 0}),
    ])
    header, first, second = text.splitlines()
    assert header.split() == ["ID", "NAME", "OWNER", "STATE", "TRIALS", "METRIC", "BEST",
                              "SUBMITTED"]
    assert first.split()[2] == "alice" and second.split()[2] == "-"  # no owner known
    assert "2 running, 4 done, 1 failed / 30" in first
    assert "val_accuracy max" in first
    assert "0.9123 (e1/4)" in first
    assert "1m0" in first and first.endswith("ago")
    assert "/ ?" in second
    assert "val_accuracy min" in second
    best = header.index("BEST")
    assert second[best:].startswith("- ")


def trial(number: int, **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "id": f"e1/{number}", "state": "completed", "objective": 0.5,
        "params": {"lr": 0.01}, "reports": 10, "attempts": 1,
        "devices": ["GPU-11111111-2222-3333-4444-555555555555"], "duration_s": 185.0,
        "reason": None,
    }
    t.update(overrides)
    return t


def test_trials_table_has_one_column_per_parameter() -> None:
    text = trials_table([
        trial(0),
        trial(1, state="failed", objective=None, params={"lr": 0.1, "opt": "adam"},
              devices=[], duration_s=None, reason="exit code 1"),
    ], metric="val_accuracy")
    header, first, second = text.splitlines()
    assert header.split() == ["TRIAL", "STATE", "VAL_ACCURACY", "lr", "opt", "TRIES", "REPORTS",
                              "GPUS", "TIME", "REASON"]
    assert "GPU-11111111 " in first  # shortened
    assert "GPU-11111111-" not in first
    assert "3m05s" in first
    opt = header.index("opt")
    assert first[opt:].startswith("- ")  # trial 0 had no `opt`
    assert second[opt:].startswith("adam")
    assert second.endswith("exit code 1")
    assert second[header.index("VAL_ACCURACY"):].startswith("- ")


def test_best_table_ranks_from_one() -> None:
    text = best_table([trial(4, objective=0.9), trial(2, objective=0.8)], metric="acc")
    lines = text.splitlines()
    assert lines[0].split() == ["RANK", "TRIAL", "ACC", "lr"]
    assert lines[1].split() == ["1", "e1/4", "0.9", "0.01"]
    assert lines[2].split() == ["2", "e1/2", "0.8", "0.01"]
