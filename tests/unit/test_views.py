"""`ls`, `gpus` and `watch` tables, checked cell by cell; columns, filters and sorting."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest

from gpusched.errors import UsageError
from gpusched.views import listing, query, tables
from gpusched.views.gpus import gpus_table, memory_cell, short_uuids
from gpusched.views.watch import header_lines, render_snapshot

UUID0 = "GPU-11111111-2222-3333-4444-555555555555"
UUID1 = "GPU-99999999-2222-3333-4444-555555555555"


def trial(number: int, **overrides: Any) -> dict[str, Any]:
    t: dict[str, Any] = {
        "id": f"e1/{number}", "number": number, "state": "completed", "objective": 0.5,
        "params": {"lr": 0.01}, "reports": 10, "attempts": 1, "devices": [UUID0],
        "duration_s": 185.0, "reason": None, "waiting": None,
        "last_report": {"training_iteration": 10, "val_loss": 0.25},
    }
    t.update(overrides)
    return t


def experiment(**overrides: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "id": "e1", "name": "digits", "state": "running", "owner": "alice", "reason": None,
        "trials": {"total": 8, "queued": 0, "running": 2, "completed": 3, "stopped": 1,
                   "failed": 1, "cancelled": 0, "interrupted": 1},
        "max_trials": 30, "metric": "val_accuracy", "goal": "maximize",
        "best": {"objective": 0.912345, "trial": "e1/4", "params": {"lr": 0.01}},
        "submitted_at": time.time() - 65, "waiting": None,
    }
    e.update(overrides)
    return e


def cells(text: str) -> list[dict[str, str]]:
    """A table's rows as {header: cell}, cut at the header's column starts."""
    header, *lines = text.splitlines()
    names = header.split()
    starts = [header.index(f" {n}") + 1 if i else 0 for i, n in enumerate(names)]
    ends = [*starts[1:], None]
    return [{n: line[s:e].strip() for n, s, e in zip(names, starts, ends, strict=True)}
            for line in lines if line.strip()]


# --- lookup ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("column", "value"), [
    ("state", "completed"), ("params.lr", 0.01), ("lr", 0.01), ("val_loss", 0.25),
    ("last_report.val_loss", 0.25), ("iter", 10), ("trial", "e1/0"), ("tries", 1),
    ("gpus", [UUID0]), ("params.nope", query.MISSING), ("nope", query.MISSING),
    ("wait", query.MISSING),
])
def test_lookup_finds_keys_paths_aliases_and_bare_names(column: str, value: Any) -> None:
    got = query.lookup(trial(0), column)
    assert got is query.MISSING if value is query.MISSING else got == value


def test_wait_and_waiting_name_the_code_and_the_message() -> None:
    row = trial(0, waiting={"code": "behind", "message": "e2 goes first (submitted earlier)"})
    assert query.lookup(row, "wait") == "behind"
    assert query.lookup(row, "waiting") == "e2 goes first (submitted earlier)"
    kept = query.apply_filters([row, trial(1)], [query.parse_filter("wait == behind")], "ls")
    assert [r["number"] for r in kept] == [0]


@pytest.mark.parametrize("rows", [
    [trial(0), trial(1)],  # trials: nothing waits, no trial has reported
    [experiment(), experiment(id="e2", best=None)],  # experiments: nothing waits
])
def test_wait_is_a_column_even_when_no_row_waits(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        row["last_report"] = None
    for text in ("wait == no_free_gpu", "wait != no_free_gpu", "waiting == x"):
        assert query.apply_filters(rows, [query.parse_filter(text)], "ls") == []
    assert query.sort_rows(rows, ["-wait", "waiting"]) == rows  # all missing: order kept
    trials = "number" in rows[0]
    query.check_columns(rows, ["wait", "waiting", "waiting.code"], "ls --columns", trials=trials)
    with pytest.raises(UsageError, match=r"no column 'waiting\.cod'"):
        query.check_columns(rows, ["waiting.cod"], "ls --columns", trials=trials)


def test_best_objective_is_a_column_before_any_experiment_has_a_result() -> None:
    rows = [experiment(best=None), experiment(id="e2", best=None)]
    assert query.sort_rows(rows, ["best.objective"]) == rows
    query.check_columns(rows, ["best.objective"], "ls --sort", trials=False)
    with pytest.raises(UsageError, match=r"no column 'best\.objectiv'"):
        query.check_columns(rows, ["best.objectiv"], "ls --sort", trials=False)
    with pytest.raises(UsageError, match=r"no column 'best\.objective'"):  # trials have no best
        query.check_columns([trial(0)], ["best.objective"], "ls e1 --sort", trials=True)


def test_a_view_key_wins_over_a_parameter_of_the_same_name() -> None:
    row = trial(0, params={"state": "x"})
    assert query.lookup(row, "state") == "completed"
    assert query.lookup(row, "params.state") == "x"


# --- filters --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "numbers"), [
    ("val_loss < 0.3", [0, 2]),
    ("val_loss>=0.3", [1]),
    ("state == running", [2]),
    ("state != running", [0, 1]),
    ("lr == 0.1", [1]),
    ("opt == adam", [1]),
    ("opt == '1'", []),  # quoted: a word, never the number 1
    ("objective > 0.4", [0, 1]),  # trial 2 has none: a missing value never matches
])
def test_filters_compare_numbers_as_numbers_and_words_as_words(text: str,
                                                              numbers: list[int]) -> None:
    rows = [trial(0), trial(1, params={"lr": 0.1, "opt": "adam"},
                           last_report={"val_loss": 0.5}),
            trial(2, state="running", objective=None, last_report={"val_loss": 0.1})]
    kept = query.apply_filters(rows, [query.parse_filter(text)], "ls")
    assert [r["number"] for r in kept] == numbers


@pytest.mark.parametrize("text", ["val_loss", "val_loss >> 1", "val_loss <", "== 3", "a ~ b"])
def test_a_malformed_filter_says_how_to_write_one(text: str) -> None:
    with pytest.raises(UsageError, match="COLUMN OP VALUE"):
        query.parse_filter(text)


def test_a_column_no_row_has_names_the_columns() -> None:
    with pytest.raises(UsageError, match=r"no column 'val_acc'.*last_report\.val_loss"):
        query.check_columns([trial(0)], ["val_acc"], "ls e1 --filter", trials=True)


@pytest.mark.parametrize("text", ["lr > abc", "lr <= 'abc'", "val_loss >= x1"])
def test_ordering_numbers_against_a_word_is_refused_not_an_empty_table(text: str) -> None:
    # `lr > abc` gave an empty table and exit 0: a typo read as "nothing matches".
    rows = [trial(0, params={"lr": 0.1}), trial(1, params={"lr": 0.2})]
    with pytest.raises(UsageError, match=r"holds numbers, and .* is not one"):
        query.apply_filters(rows, [query.parse_filter(text)], "ls e1")
    words = [trial(0, params={"opt": "adam"}), trial(1, params={"opt": "sgd"})]
    assert len(query.apply_filters(words, [query.parse_filter("opt > b")], "ls e1")) == 1


# --- sorting --------------------------------------------------------------------------------


def test_sort_by_several_keys_with_missing_values_last_both_ways() -> None:
    rows = [trial(0, objective=0.5, state="failed"), trial(1, objective=None),
            trial(2, objective=0.9), trial(3, objective=0.5)]
    assert [r["number"] for r in query.sort_rows(rows, ["objective"])] == [0, 3, 2, 1]
    assert [r["number"] for r in query.sort_rows(rows, ["-objective"])] == [2, 0, 3, 1]
    assert [r["number"] for r in query.sort_rows(rows, ["objective"], desc=True)] == [2, 0, 3, 1]
    by_two = query.sort_rows(rows, ["objective", "-state"])
    assert [r["number"] for r in by_two] == [0, 3, 2, 1]  # "failed" < "completed" reversed


def test_sort_puts_numbers_before_words_in_a_mixed_column() -> None:
    rows = [trial(0, params={"x": "b"}), trial(1, params={"x": 2}), trial(2, params={"x": "a"})]
    assert [r["number"] for r in query.sort_rows(rows, ["x"])] == [1, 2, 0]


# --- tables ---------------------------------------------------------------------------------


def test_trials_table_cells() -> None:
    rows = [trial(0), trial(1, state="queued", objective=None, params={"lr": 0.1, "opt": "adam"},
                           devices=[], duration_s=None, last_report=None,
                           waiting={"code": "no_free_gpu", "message": "no free GPU: 2 busy"}),
            trial(2, devices=[UUID1, UUID0], state="failed", reason="exited with code 3")]
    text = tables.render_rows(rows, tables.trial_columns(rows), metric="val_accuracy",
                              index_of={UUID0: 0, UUID1: 1})
    assert text.splitlines()[0].split() == ["TRIAL", "STATE", "VAL_ACCURACY", "lr", "opt", "ITER",
                                            "TRIES", "GPUS", "TIME", "WHY"]
    first, second, third = cells(text)
    assert first == {"TRIAL": "e1/0", "STATE": "completed", "VAL_ACCURACY": "0.5", "lr": "0.01",
                     "opt": "-", "ITER": "10", "TRIES": "1", "GPUS": "0", "TIME": "3m05s",
                     "WHY": ""}
    assert second["WHY"] == "waiting: no free GPU: 2 busy"
    assert second["GPUS"] == "-" and second["opt"] == "adam" and second["ITER"] == "-"
    assert third["GPUS"] == "1,0" and third["WHY"] == "exited with code 3"


def test_budget_and_continues_columns_appear_when_the_search_sets_them() -> None:
    plain = [trial(0, budget=None, continues=None)]
    assert "budget" not in tables.trial_columns(plain)
    rows = [trial(0, budget=3, continues=None), trial(1, budget=9, continues="e1/0")]
    text = tables.render_rows(rows, tables.trial_columns(rows), metric="acc")
    got = [(r["TRIAL"], r["BUDGET"], r["CONTINUES"]) for r in cells(text)]
    assert got == [("e1/0", "3", "-"), ("e1/1", "9", "e1/0")]


def test_chosen_columns_with_metric_and_param_headers() -> None:
    text = tables.render_rows([trial(0)], ["id", "lr", "last_report.val_loss", "gpus"],
                              metric="acc")
    assert cells(text) == [{"TRIAL": "e1/0", "lr": "0.01", "val_loss": "0.25",
                            "GPUS": "GPU-11111111"}]  # no index known: a short UUID


def test_experiments_table_cells() -> None:
    rows = [experiment(), experiment(id="e2", name="x", goal="minimize", best=None, owner=None,
                                     max_trials=None, state="queued",
                                     waiting={"code": "behind", "trials": 4,
                                              "message": "lower priority than e1 (0 < 5)"})]
    text = tables.render_rows(rows, tables.experiment_columns(), trials=False)
    assert text.splitlines()[0].split() == ["ID", "NAME", "OWNER", "STATE", "TRIALS", "METRIC",
                                            "BEST", "SUBMITTED", "WHY"]
    first, second = cells(text)
    assert first["TRIALS"] == "2 running, 4 done, 1 failed / 30"
    assert first["METRIC"] == "val_accuracy max" and first["BEST"] == "0.9123 (e1/4)"
    assert first["SUBMITTED"].startswith("1m0") and first["SUBMITTED"].endswith("ago")
    assert second["OWNER"] == "-" and second["BEST"] == "-"
    assert second["TRIALS"] == "2 running, 4 queued, 4 done, 1 failed"  # no max_trials
    assert second["WHY"] == "waiting: lower priority than e1 (0 < 5)"


# --- gpus -----------------------------------------------------------------------------------


def device(**overrides: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "uuid": UUID0, "index": 0, "name": "Fake H100", "fake": True, "mig_parent_uuid": None,
        "memory_total_mib": 1000.0, "memory_used_mib": 300.0, "state": "free", "reason": None,
        "trials": [], "releasing": [], "processes": [], "foreign_processes": [],
    }
    d.update(overrides)
    return d


def test_gpus_table_cells_holders_owners_and_processes() -> None:
    text = gpus_table({"backend": "fake", "note": None, "devices": [
        device(state="busy", trials=["e1/0"], releasing=["e2/1"], memory_used_mib=550.0,
               processes=[40, 41]),
        device(index=1, uuid=UUID1, name="NVIDIA A100", fake=False, memory_used_mib=None,
               state="foreign", reason="process 555 was not started by gpusched",
               processes=[555], foreign_processes=[555]),
    ]}, owners={"e1": "alice", "e2": "bob"})
    lines = text.splitlines()
    assert lines[0] == "backend: fake (2 devices: 1 busy, 1 foreign)"
    table_end = lines.index("")
    rows = cells("\n".join(lines[1:table_end]))
    assert rows[0]["NAME"] == "Fake H100 [fake]" and rows[1]["NAME"] == "NVIDIA A100"
    assert rows[0]["UUID"] == "GPU-11111111…" and rows[1]["UUID"] == "GPU-99999999…"
    assert rows[0]["MEMORY"] == "[######----]  550 / 1000 MiB  55%"
    assert rows[0]["HOLDERS"] == "e1/0 (alice), e2/1 (bob) releasing"
    assert rows[1]["STATE"] == "foreign"
    assert rows[1]["WHY"] == "process 555 was not started by gpusched"
    assert lines[table_end + 1] == "processes:"
    procs = cells("\n".join(lines[table_end + 2:]))
    assert procs == [{"GPU": "0", "PID": "40", "TRIAL": "e1/0"},
                     {"GPU": "0", "PID": "41", "TRIAL": "e1/0"},
                     {"GPU": "1", "PID": "555", "TRIAL": "foreign (not started by gpusched)"}]


def test_gpus_without_devices_says_only_cpu_trials_run() -> None:
    text = gpus_table({"backend": "nvml", "devices": [], "note": "no NVIDIA driver"})
    assert text.splitlines() == ["backend: nvml", "no GPU found: no NVIDIA driver; only CPU-only"
                                 " trials (gpus_per_trial: 0) can run"]


def test_short_uuids_stay_apart() -> None:
    a, b = "GPU-12345678aa-x", "GPU-12345678bb-x"
    assert short_uuids([a, b]) == {a: "GPU-12345678a…", b: "GPU-12345678b…"}
    assert short_uuids(["MIG-abc"]) == {"MIG-abc": "MIG-abc"}


@pytest.mark.parametrize(("used", "cell"), [
    (0.0, "[----------]  0 / 100 MiB  0%"), (100.0, "[##########]  100 / 100 MiB  100%"),
    (None, "[??????????]  ? / 100 MiB"),
])
def test_memory_cell(used: float | None, cell: str) -> None:
    assert memory_cell(used, 100.0) == cell


# --- watch ----------------------------------------------------------------------------------


def test_watch_header_says_state_counts_best_and_why_it_waits() -> None:
    lines = header_lines(experiment(waiting={"code": "max_parallel_trials", "trials": 22,
                                             "message": "max_parallel_trials reached (2 of 2"
                                                        " running)"}))
    assert lines == [
        "== e1 digits (alice): running ==",
        "trials: 8 of 30 (2 running, 3 completed, 1 stopped, 1 failed, 1 interrupted,"
        " 22 to start)",
        "best val_accuracy (max): 0.9123 (e1/4) lr=0.01",
        "waiting: max_parallel_trials reached (2 of 2 running)",
    ]
    ended = header_lines(experiment(state="completed", reason="30 trials run", best=None))
    assert ended[0] == "== e1 digits (alice): completed: 30 trials run =="
    assert ended[2] == "best val_accuracy (max): - (no result yet)"


def test_watch_picture_lists_trials_with_params_last_metric_and_gpus() -> None:
    rows = [trial(0, last_report={"training_iteration": 7, "val_accuracy": 0.8,
                                  "time_total_s": 65.0}),
            trial(1, state="running", objective=None, devices=[UUID1], duration_s=None,
                  last_report={"training_iteration": 2, "val_accuracy": 0.4,
                               "time_total_s": 12.0})]
    text = render_snapshot(experiment(), rows, index_of={UUID0: 0, UUID1: 1})
    lines = text.splitlines()
    assert lines[3] == ""
    # TIME: an ended trial's duration; a running one's time at its last report (as `ls`).
    assert cells("\n".join(lines[4:])) == [
        {"TRIAL": "e1/0", "STATE": "completed", "lr": "0.01", "val_accuracy": "0.8",
         "OBJECTIVE": "0.5", "ITER": "7", "GPUS": "0", "TIME": "3m05s", "WHY": ""},
        {"TRIAL": "e1/1", "STATE": "running", "lr": "0.01", "val_accuracy": "0.4",
         "OBJECTIVE": "-", "ITER": "2", "GPUS": "1", "TIME": "12s", "WHY": ""}]


def test_watch_picture_fits_a_small_terminal_keeping_the_newest_trials() -> None:
    rows = [trial(n) for n in range(30)]
    lines = render_snapshot(experiment(), rows, height=12).splitlines()
    assert len(lines) == 12  # header 3, blank, table header, 6 rows, the note
    shown = [line.split()[0] for line in lines[4:-1]]
    assert shown[0] == "TRIAL" and shown[1:] == [f"e1/{n}" for n in range(24, 30)]
    assert lines[-1] == "(24 earlier trials not shown: gpusched ls e1)"


# --- names with dots (Hydra's `model.lr`) ---------------------------------------------------


def dotted(number: int, lr: float, **overrides: Any) -> dict[str, Any]:
    return trial(number, params={"model.lr": lr, "model": {"depth": 3}},
                 last_report={"training_iteration": 1, "eval.loss": lr * 10}, **overrides)


@pytest.mark.parametrize(("column", "value"), [
    ("params.model.lr", 0.1), ("model.lr", 0.1), ("last_report.eval.loss", 1.0),
    ("eval.loss", 1.0), ("params.model.depth", 3),  # a nested mapping still reads by path
    ("params.model.nope", query.MISSING),
])
def test_a_name_with_dots_is_one_name(column: str, value: Any) -> None:
    got = query.lookup(dotted(0, 0.1), column)
    assert got is query.MISSING if value is query.MISSING else got == value


def test_dotted_hyperparameters_show_sort_and_filter() -> None:
    rows = [dotted(0, 0.1), dotted(1, 0.01), dotted(2, 0.5)]
    text = tables.render_rows(rows, ["id", "params.model.lr", "model.lr", "eval.loss"],
                              metric="acc")
    assert text.splitlines()[0].split() == ["TRIAL", "model.lr", "model.lr", "eval.loss"]
    assert [line.split()[1:] for line in text.splitlines()[1:]] == [
        ["0.1", "0.1", "1"], ["0.01", "0.01", "0.1"], ["0.5", "0.5", "5"]]
    flat = [trial(0, params={"model.lr": 0.1, "opt": "sgd"})]  # the default table
    assert cells(tables.render_rows(flat, tables.trial_columns(flat), metric="acc"))[0] == {
        "TRIAL": "e1/0", "STATE": "completed", "ACC": "0.5", "model.lr": "0.1", "opt": "sgd",
        "ITER": "10", "TRIES": "1", "GPUS": "GPU-11111111", "TIME": "3m05s", "WHY": ""}
    by_lr = query.sort_rows(rows, ["params.model.lr"])
    assert [r["number"] for r in by_lr] == [1, 0, 2]
    kept = query.apply_filters(rows, [query.parse_filter("params.model.lr > 0.05"),
                                      query.parse_filter("eval.loss < 2")], "ls")
    assert [r["number"] for r in kept] == [0]


# --- times: the view's own, not a hyperparameter's or a metric's ----------------------------


def test_only_the_views_own_times_are_shown_as_ages_and_durations() -> None:
    now = time.time()
    rows = [trial(0, params={"lr_drop_at": 30, "warmup_s": 5400, "time_total_s": 7},
                  created_at=now - 65, duration_s=185.0,
                  last_report={"tokens_per_s": 5230.5, "time_total_s": 65.0,
                               "time_this_iter_s": 2.5, "timestamp": now - 3700})]
    text = tables.render_rows(rows, ["lr_drop_at", "params.warmup_s", "tokens_per_s",
                                     "last_report.tokens_per_s", "time_total_s",
                                     "last_report.time_total_s", "time_this_iter_s",
                                     "last_report.timestamp", "created_at", "duration_s",
                                     "time"], metric="acc")
    (row,) = [line.split("  ") for line in text.splitlines()[1:]]
    got = [c.strip() for c in row if c.strip()]
    assert got[:5] == ["30", "5400", "5230", "5230", "7"]  # a hyperparameter wins, as lookup
    assert got[5:7] == ["1m05s", "2.5s"]
    assert got[7].startswith("1h01m") and got[7].endswith("ago")
    assert got[8].startswith("1m0") and got[8].endswith("ago")
    assert got[9:] == ["3m05s", "3m05s"]


# --- what a trial wrote, on someone's terminal ----------------------------------------------


def test_control_characters_a_trial_wrote_never_reach_the_terminal() -> None:
    rows = [trial(0, state="failed", params={"opt": "a\x1b]2;pwned\x07b"},
                  reason="Traceback:\n  boom\r\x1b[2J\x9b31m"),
            trial(1, last_report={"note": "tab\there", "val_loss": 0.5})]
    text = tables.render_rows(rows, ["id", "opt", "note", "why"], metric="acc")
    assert not any(ord(c) < 0x20 or 0x7f <= ord(c) < 0xa0 for c in text.replace("\n", ""))
    lines = text.splitlines()
    assert len(lines) == 3  # one line per row: the reason's line breaks are shown, not made
    assert "a\\x1b]2;pwned\\x07b" in lines[1]
    assert "Traceback:⏎  boom\\r\\x1b[2J\\x9b31m" in lines[1]
    assert "tab\\there" in lines[2]
    exp = experiment(name="x\x1b[31m", waiting={"code": "behind", "trials": 1,
                                                  "message": "line\nbreak"})
    header = header_lines(exp)
    assert header[0].startswith("== e1 x\\x1b[31m (alice)") and header[-1] == "waiting: line⏎break"


def test_wide_characters_keep_the_columns_aligned() -> None:
    rows = [trial(0, params={"opt": "学习率"}), trial(1, params={"opt": "adam"})]
    lines = tables.render_rows(rows, ["opt", "id"], metric="acc").splitlines()
    assert lines[1] == "学习率  e1/0"  # six columns wide, then the separator
    assert lines[2] == "adam    e1/1"
    assert lines[0] == "opt     TRIAL"


# --- gpus: what the table shows -------------------------------------------------------------


def test_filter_and_sort_on_gpus_compare_the_indices_the_table_shows() -> None:
    index_of = {UUID0: 0, UUID1: 1}
    rows = [trial(0, devices=[UUID1]), trial(1, devices=[UUID0]), trial(2, devices=[]),
            trial(3, devices=[UUID1, UUID0])]
    on_0 = query.apply_filters(rows, [query.parse_filter("gpus == 0")], "ls", index_of=index_of)
    assert [r["number"] for r in on_0] == [1]
    on_both = query.apply_filters(rows, [query.parse_filter("gpus == 1,0")], "ls",
                                  index_of=index_of)
    assert [r["number"] for r in on_both] == [3]
    by_uuid = query.apply_filters(rows, [query.parse_filter(f"devices == {UUID0}")], "ls",
                                  index_of=index_of)
    assert [r["number"] for r in by_uuid] == [1]
    ordered = query.sort_rows(rows, ["gpus"], index_of=index_of)
    assert [r["number"] for r in ordered] == [1, 0, 3, 2]  # 0, 1, then "1,0", CPU-only last
    # UUID0 sorts before UUID1 as text, but GPU 1 holds UUID0 here: the indices decide.
    swapped = {UUID0: 1, UUID1: 0}
    assert [r["number"] for r in query.sort_rows(rows[:2], ["gpus"], index_of=swapped)] == [0, 1]
    text = tables.render_rows(rows, ["id", "gpus"], index_of=index_of)
    assert [r["GPUS"] for r in cells(text)] == ["1", "0", "-", "1,0"]


# --- descending: numbers still before words -------------------------------------------------


def test_a_descending_sort_keeps_numbers_before_words_and_missing_values_last() -> None:
    rows = [trial(0, params={"x": "b"}), trial(1, params={"x": 2}), trial(2, params={"x": "a"}),
            trial(3, params={"x": 7}), trial(4, params={})]
    assert [r["number"] for r in query.sort_rows(rows, ["-x"])] == [3, 1, 0, 2, 4]
    assert [r["number"] for r in query.sort_rows(rows, ["x"], desc=True)] == [3, 1, 0, 2, 4]
    assert [r["number"] for r in query.sort_rows(rows, ["x"])] == [1, 3, 2, 0, 4]


class FakeClient:
    """What `ls EXP` asks the daemon: the experiment, its trials, the devices (GPU 0 holds
    UUID1 here, so that sorting by UUID and by index differ)."""

    def __init__(self, socket: Any) -> None:
        pass

    def show(self, target: str) -> dict[str, Any]:
        return experiment()

    def trials(self, exp: str, *, last_report: bool) -> list[dict[str, Any]]:
        return [trial(0, devices=[UUID0]), trial(1, devices=[UUID1]), trial(2, devices=[])]

    def gpus(self) -> dict[str, Any]:
        return {"devices": [{"uuid": UUID0, "index": 1}, {"uuid": UUID1, "index": 0}]}


def ls_args(*, json: bool = False, columns: str | None = None, sort: str | None = None,
            filters: tuple[str, ...] = ()) -> argparse.Namespace:
    return argparse.Namespace(socket=None, experiment="e1", all=False, json=json,
                              columns=columns, sort=sort, desc=False, filter=list(filters),
                              limit=None)


def test_ls_filters_and_sorts_gpus_by_the_indices_it_shows(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(listing, "Client", FakeClient)
    listing.cmd_ls(ls_args(columns="id,gpus", filters=("gpus == 0",)))
    assert cells(capsys.readouterr().out) == [{"TRIAL": "e1/1", "GPUS": "0"}]
    listing.cmd_ls(ls_args(columns="id,gpus", sort="gpus"))
    assert [r["TRIAL"] for r in cells(capsys.readouterr().out)] == ["e1/1", "e1/0", "e1/2"]
    listing.cmd_ls(ls_args(json=True, filters=("gpus == 1",)))
    (row,) = json.loads(capsys.readouterr().out)
    assert row["id"] == "e1/0" and row["devices"] == [UUID0]  # the JSON is the daemon's view


# --- best without a result ------------------------------------------------------------------


@pytest.mark.parametrize(("view", "says"), [
    (experiment(state="running"), "no trial of crash has a result yet"),
    (experiment(state="queued", started_at=None), "no trial of crash has a result yet"),
    (experiment(state="failed", reason="none of its 9 trials has a result"),
     "no trial of crash has a result: it ended failed (none of its 9 trials has a result)"),
    (experiment(state="cancelled", reason="cancelled"),
     "no trial of crash has a result: it ended cancelled (cancelled)"),
    (experiment(state="completed", reason=None), "no trial of crash has a result: it ended"
                                                 " completed"),
    (experiment(state="failed", reason="a\x1b[2Jb"),  # anyone's text: shown printably
     "no trial of crash has a result: it ended failed (a\\x1b[2Jb)"),
])
def test_best_without_a_result_says_yet_only_while_it_goes_on(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        view: dict[str, Any], says: str) -> None:
    from gpusched import cli

    class BestClient:
        def __init__(self, socket: Any) -> None:
            pass

        def best(self, experiment: str, n: int) -> list[dict[str, Any]]:
            return []

        def show(self, target: str) -> dict[str, Any]:
            return view

    monkeypatch.setattr(cli, "Client", BestClient)
    args = argparse.Namespace(socket=None, experiment="crash", n=5, json=False)
    assert cli.cmd_best(args) == 0
    assert capsys.readouterr().out == says + "\n"
