"""What a new user missed in `ls` and `show` (a walkthrough): the cancelled trials in an
experiment's TRIALS cell, and what a restart's recovery did in the event lines."""

from __future__ import annotations

from typing import Any

from gpusched.render import events_lines
from gpusched.views import tables
from tests.unit.test_views import cells, experiment


def trials_cell(**overrides: Any) -> str:
    row = experiment(**overrides)
    return cells(tables.render_rows([row], tables.experiment_columns(), trials=False))[0][
        "TRIALS"]


def counts(**overrides: int) -> dict[str, int]:
    base = {"total": 0, "queued": 0, "running": 0, "completed": 0, "stopped": 0, "failed": 0,
            "cancelled": 0, "interrupted": 0}
    return {**base, **overrides}


# --- the TRIALS cell ------------------------------------------------------------------------


def test_the_trials_cell_counts_cancelled_trials() -> None:
    # `e3 ... cancelled  0 running, 1 done, 0 failed / 6` hid the 3 trials the cancel ended.
    assert trials_cell(state="cancelled", trials=counts(total=4, completed=1, cancelled=3),
                       max_trials=6) == "0 running, 1 done, 0 failed, 3 cancelled / 6"
    assert trials_cell(state="failed", trials=counts(total=2, failed=1, cancelled=1),
                       max_trials=3) == "0 running, 0 done, 1 failed, 1 cancelled / 3"


def test_the_trials_cell_says_nothing_of_cancelled_trials_when_there_are_none() -> None:
    assert trials_cell(trials=counts(total=5, running=1, completed=3, stopped=1),
                       max_trials=None) == "1 running, 4 done, 0 failed"


def test_a_cancelled_count_comes_after_the_queued_ones_and_before_the_cap() -> None:
    waiting = {"code": "no_free_gpu", "message": "no free GPU", "trials": 2, "ahead": []}
    assert trials_cell(trials=counts(total=3, running=1, cancelled=2), waiting=waiting) == (
        "1 running, 2 queued, 0 done, 0 failed, 2 cancelled / 30")


# --- events: what a restart's recovery did --------------------------------------------------


def event(kind: str, **data: Any) -> dict[str, Any]:
    return {"t": 0.0, "trial": 5, "experiment_id": "e1", "kind": kind, "data": data}


def event_line(kind: str, **data: Any) -> str:
    header, line = events_lines([event(kind, **data)]).splitlines()
    assert header == "events:"
    return line


def test_an_interruption_says_which_pids_were_stopped_and_how_many_reports_recovered() -> None:
    line = event_line("trial_interrupted", reason="the daemon went down while it ran",
                      stopped_pids=[21670], reports_recovered=151)
    assert line.endswith("e1/5     trial_interrupted  the daemon went down while it ran"
                         " (stopped pid 21670; 151 reports recovered)")
    line = event_line("trial_interrupted", reason="the daemon went down while it ran",
                      stopped_pids=[21670, 21671], reports_recovered=1)
    assert line.endswith("(stopped pids 21670, 21671; 1 report recovered)")


def test_a_recovery_that_did_nothing_of_one_kind_leaves_it_out() -> None:
    went_down = "the daemon went down while it ran"
    assert event_line("trial_interrupted", reason=went_down, stopped_pids=[],
                      reports_recovered=7).endswith(f"{went_down} (7 reports recovered)")
    assert event_line("trial_interrupted", reason=went_down, stopped_pids=[21670],
                      reports_recovered=0).endswith(f"{went_down} (stopped pid 21670)")
    assert event_line("trial_interrupted", reason=went_down, stopped_pids=[],
                      reports_recovered=0).endswith(f"trial_interrupted  {went_down}")


def test_an_end_a_restart_recorded_says_what_its_recovery_did() -> None:
    line = event_line("trial_ended", state="stopped", reason="stop bound reached: acc >= 0.9",
                      exit_code=None, exit_signal=None, attempt=1, stopped_pids=[4242],
                      reports_recovered=12)
    assert line.endswith("trial_ended  stop bound reached: acc >= 0.9"
                         " (stopped pid 4242; 12 reports recovered)")


def test_other_events_are_shown_as_before() -> None:
    line = event_line("trial_ended", state="completed", reason="exited 0; acc = 0.9",
                      exit_code=0, exit_signal=None, attempt=1)
    assert line.endswith("e1/5     trial_ended  exited 0; acc = 0.9")
    assert event_line("trial_started", attempt=2).endswith("e1/5     trial_started")
