"""A trial's reports across its attempts: ``time_total_s`` keeps counting on a retry, a resume,
and for what is read back after a daemon crash; nothing the trial writes stops the collector."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Literal

import pytest

from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.report_collector import ReportCollector
from gpusched._daemon.reports import AutoFill, Report
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import ReadPosition, open_store
from gpusched.models import AUTO_FILLED_FIELDS, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment

T0 = 1_700_000_000.0  # a whole second: stored timestamps (int) are exact


def _lines(*reports: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in reports)


def test_the_fields_filled_in_are_the_ones_the_views_and_checks_know() -> None:
    # The views (ls's columns), the stop: key checks and the warnings name these fields by
    # AUTO_FILLED_FIELDS: a field added here and not there would be taken for the trainer's.
    filled = AutoFill(T0).fill({"loss": 1.0}, T0 + 1)
    assert [k for k in filled if k != "loss"] == list(AUTO_FILLED_FIELDS)


# -- AutoFill.after ------------------------------------------------------------------------------


def test_a_retry_counts_on_from_the_last_stored_report() -> None:
    fill = AutoFill.after({"time_total_s": 60.0, "timestamp": int(T0) - 30}, T0, iteration=7)
    out = fill.fill({}, now=T0 + 10)
    assert (out["training_iteration"], out["time_total_s"], out["time_this_iter_s"]) == (8, 70, 10)


def test_reports_read_on_after_a_crash_count_on_from_the_last_stored_one() -> None:
    # The attempt started at T0; the dead daemon stored its reports up to T0 + 20 (30 s in,
    # with 10 s from an earlier attempt): the next, written at T0 + 25, is 35 s in.
    fill = AutoFill.after({"time_total_s": 30.0, "timestamp": int(T0) + 20}, T0, iteration=2)
    out = fill.fill_report(Report({"acc": 1}, T0 + 25), read_time=T0 + 900)
    assert (out["training_iteration"], out["time_total_s"], out["time_this_iter_s"]) == (3, 35, 5)


def test_an_attempt_of_unknown_start_counts_from_its_first_report() -> None:
    fill = AutoFill.after({"time_total_s": 20.0, "timestamp": int(T0)}, None)
    assert "start_time=unknown" in repr(fill)
    first, second = fill.fill({}, now=T0 + 500), fill.fill({}, now=T0 + 530)
    assert (first["time_total_s"], first["time_this_iter_s"]) == (20, 0)
    assert (second["time_total_s"], second["time_this_iter_s"]) == (50, 30)
    assert "start_time=1700000500.000" in repr(fill)


@pytest.mark.parametrize("total", [True, "60", None, math.nan, math.inf, -5.0, 10**400, [60]])
@pytest.mark.parametrize("stamp", [True, "x", math.nan, 10**400, -(10**400), None])
def test_a_last_report_without_usable_times_counts_from_zero(total: Any, stamp: Any) -> None:
    fill = AutoFill.after({"time_total_s": total, "timestamp": stamp}, T0)
    assert fill.fill({}, now=T0 + 4)["time_total_s"] == 4.0


# -- ReportCollector -----------------------------------------------------------------------------


def test_a_retried_attempt_continues_time_total_s(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    files.reports.write_text(_lines({"acc": 0.1, "_t": T0}, {"acc": 0.2, "_t": T0 + 60}))
    stored = {"acc": 0.2, "training_iteration": 2, "time_total_s": 60.0, "timestamp": int(T0)}
    before = time.time()
    collector = ReportCollector(files, metric_tag="acc", first_iteration=2,
                                resume_at=ReadPosition(files.reports.stat().st_size, None),
                                last_report=stored)
    after = time.time()
    with files.reports.open("a") as f:
        f.write(_lines({"acc": 0.3, "_t": after + 5}))
    (report,) = collector.poll()
    assert report["training_iteration"] == 3 and report["acc"] == 0.3
    assert 65.0 <= report["time_total_s"] <= 65.0 + (after - before)


def test_without_a_last_report_time_starts_at_zero(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    before = time.time()
    collector = ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None))
    after = time.time()
    files.reports.write_text(_lines({"acc": 0.3, "_t": after + 5}))
    (report,) = collector.poll()
    assert report["training_iteration"] == 1
    assert 5.0 <= report["time_total_s"] <= 5.0 + (after - before)


@pytest.mark.parametrize("file_written", [T0 + 5, T0 + 20, None])
def test_until_takes_only_the_reports_known_to_be_written_by_then(
    tmp_path: Path, file_written: float | None,
) -> None:
    # A restart takes a stopped trial's reports up to the end of its stop's grace period
    # (T0 + 10): by their own times, a line without one by the file's last write.
    files = TrialFiles(tmp_path)
    collector = ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None))
    files.reports.write_text(
        _lines({"acc": 1, "_t": T0 + 1}, {"acc": 2}, {"acc": 3, "_t": T0 + 11}))
    files.hypertune.write_text(_lines(
        {"acc": "4", "timestamp": T0 + 2, "global_step": "1"},
        {"acc": "5", "timestamp": T0 + 12, "global_step": "2"}))
    taken = collector.poll(final=True, until=T0 + 10, untimed_at=file_written)
    untimed_in_time = file_written is not None and file_written <= T0 + 10
    # In the order written (4 at T0 + 2 before 2, of unknown time: taken as read, now).
    assert [r["acc"] for r in taken] == ([1, 4, 2] if untimed_in_time else [1, 4])
    assert collector.poll(final=True) == []  # read past, not left for later


def test_reports_through_both_files_are_taken_in_the_order_they_were_written(
    tmp_path: Path,
) -> None:
    # A Keras trainer with hypertune's callback for the metric and trial.report for the rest:
    # one poll used to take all of the report file's lines, then all of hypertune's entries.
    files = TrialFiles(tmp_path)
    collector = ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None))
    files.reports.write_text(_lines({"loss": 0.9, "_t": T0 + 1}, {"loss": 0.5, "_t": T0 + 3},
                                    {"loss": 0.2, "_t": T0 + 5}))
    files.hypertune.write_text(_lines(
        {"acc": "0.6", "timestamp": T0 + 2, "global_step": "1"},
        {"acc": "0.8", "timestamp": T0 + 4, "global_step": "2"}))
    taken = collector.poll(final=True)
    assert [r.get("loss", r.get("acc")) for r in taken] == [0.9, 0.6, 0.5, 0.8, 0.2]
    assert [r["training_iteration"] for r in taken] == [1, 2, 3, 4, 5]
    times = [r["time_total_s"] for r in taken]
    assert times == sorted(times)


def test_the_collector_survives_whatever_the_trial_writes(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    collector = ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None))
    huge = "1" + "0" * 400
    files.reports.write_text(
        '{"acc": 1}\n{"status": ["ok"], "loss": 1}\n'
        f'{{"acc": 2, "_t": {huge}}}\nnonsense\n{{"acc": 3}}\n')
    files.hypertune.write_text(f'{{"acc": "4", "timestamp": {huge}, "global_step": "1"}}\n')
    assert [r.get("acc") for r in collector.poll(final=True)] == [1, None, 2, 3, 4]
    assert collector.take_problems() == [
        "line 2: 'status': not a number or text, dropped (a bool, null, list, object, or an int"
        " too large)", "line 4: not a JSON object: 'nonsense'"]
    assert collector.status is None


def test_a_metric_value_that_cannot_be_a_result_is_said_so(tmp_path: Path) -> None:
    # A shell trainer's `jq --arg` quotes the number: the trial then ends "without reporting
    # 'acc'", and the log said nothing about why.
    files = TrialFiles(tmp_path)
    collector = ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None))
    files.reports.write_text('{"acc": "0.91"}\n{"acc": NaN, "loss": "x"}\n{"acc": 1}\n')
    assert collector.poll()[0]["acc"] == "0.91"  # kept, as text
    assert collector.take_problems() == [
        "acc = '0.91': text, not a number a result can be made of",
        "acc = nan: not finite, not a number a result can be made of"]
    with files.reports.open("a") as f:
        f.write('{"acc": Infinity}\n' * 5 + "nonsense\n")
    collector.poll()
    # Each source's new problems, whichever grew: none is lost or said twice.
    assert collector.take_problems() == [
        "line 9: not a JSON object: 'nonsense'",
        "acc = inf: not finite, not a number a result can be made of"]
    assert collector.take_problems() == []


def test_a_report_file_that_cannot_be_read_is_a_problem_not_an_error(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    files.reports.mkdir()
    files.hypertune.symlink_to("/etc/passwd")
    collector = ReportCollector(files, metric_tag="acc")  # no position: reads nothing old
    assert collector.unread_bytes() == 0
    assert collector.poll() == [] and collector.poll(final=True) == []
    problems = collector.take_problems()
    assert len(problems) == 2 and all(": not read: " in p for p in problems)
    assert collector.take_problems() == []


# -- reports read back after a crash (restore) --------------------------------------------------


async def _restore(tmp_path: Path, state: TrialState, *, started_at: float | None,
                   stored: list[dict[str, Any]], stored_lines: str, new_lines: str,
                   ) -> list[dict[str, Any]]:
    """A log whose trial 0 is in ``state`` with ``stored`` reports (read up to the end of
    ``stored_lines``), and a report file that goes on with ``new_lines``: restored, its
    reports."""
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    files = TrialFiles(tmp_path / "t0")
    files.dir.mkdir()
    files.reports.write_text(stored_lines + new_lines)
    async with open_store(tmp_path / "log.db") as store:
        exp_id = await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        await store.create_trial(exp_id, 0, {"x": 1}, str(files.dir))
        await store.update_trial(exp_id, 0, state=state.value, started_at=started_at,
                                 attempts=1)
        await store.add_encoded_reports(
            exp_id, 0, 0, [json.dumps(r) for r in stored],
            read_to=ReadPosition(len(stored_lines.encode()), None))
        search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
        exp = ExperimentRun(exp_id, int(exp_id[1:]), spec, 0, search, [])
        await restore_trials(store, exp)
        assert exp.trials[0].state is TrialState.INTERRUPTED
        reports = await store.reports(exp_id, 0)
        assert exp.trials[0].last_report == reports[-1]
        return reports


async def test_reports_of_the_running_attempt_keep_their_own_times(tmp_path: Path) -> None:
    # The attempt started at T0, after an earlier one of 10 s; the dead daemon stored its
    # reports up to T0 + 20; the trial wrote two more before it was stopped.
    stored = [{"acc": 0.1, "training_iteration": 1, "time_total_s": 10.0, "timestamp": int(T0)},
              {"acc": 0.2, "training_iteration": 2, "time_total_s": 30.0,
               "timestamp": int(T0) + 20}]
    reports = await _restore(
        tmp_path, TrialState.RUNNING, started_at=T0, stored=stored,
        stored_lines=_lines({"acc": 0.2, "_t": T0 + 20}),
        new_lines=_lines({"acc": 0.3, "_t": T0 + 25}, {"acc": 0.4, "_t": T0 + 40}))
    assert [(r["training_iteration"], r["time_total_s"], r["time_this_iter_s"])
            for r in reports[2:]] == [(3, 35, 5), (4, 50, 15)]
    assert [r["timestamp"] for r in reports[2:]] == [int(T0) + 25, int(T0) + 40]


async def test_reports_of_the_first_attempt_read_after_a_crash_count_from_its_start(
    tmp_path: Path
) -> None:
    reports = await _restore(
        tmp_path, TrialState.RUNNING, started_at=T0, stored=[], stored_lines="",
        new_lines=_lines({"acc": 0.3, "_t": T0 + 25}, {"acc": 0.4, "_t": T0 + 40}))
    assert [(r["time_total_s"], r["time_this_iter_s"]) for r in reports] == [(25, 25), (40, 15)]


async def test_reports_of_an_attempt_the_log_never_recorded_count_on_monotonically(
    tmp_path: Path
) -> None:
    # Queued again after an attempt that stored 20 s of reports; a daemon started it and was
    # killed before it recorded that: when this attempt started is not known.
    stored = [{"acc": 0.2, "training_iteration": 1, "time_total_s": 20.0, "timestamp": int(T0)}]
    reports = await _restore(
        tmp_path, TrialState.QUEUED, started_at=T0 - 20, stored=stored,
        stored_lines=_lines({"acc": 0.2, "_t": T0}),
        new_lines=_lines({"acc": 0.3, "_t": T0 + 500}, {"acc": 0.4, "_t": T0 + 530}))
    assert [(r["training_iteration"], r["time_total_s"]) for r in reports[1:]] == [(2, 20),
                                                                                   (3, 50)]


# -- an attempt that ended, saying how, while the daemon was down (restore) ---------------------

STATUS = '{"status": "failed", "reason": "out of data"}\n'
FATAL = '{"status": "fatal", "reason": "license expired"}\n'


async def _restored_with(
    tmp_path: Path, *, state: TrialState = TrialState.RUNNING, ending: str = STATUS,
    started_at: float = T0, ended_at: float | None = None, written_at: float = T0 + 60,
    stopped_pids: tuple[int, ...] = (), events: tuple[str, ...] = ("experiment_submitted",),
    number: int = 1, max_failed_trials: int | None = 10,
    status_from: int | Literal["absent"] | None = "absent",
) -> tuple[ExperimentRun, dict[str, Any], list[dict[str, Any]]]:
    """A log whose trial ``number`` (pid 4242) is in ``state``, one report stored, and a
    report file that goes on with a report and ``ending``, last written at ``written_at``;
    ``stopped_pids``: its processes that the restart stopped; ``status_from``: where the
    attempt's lines begin, as its ``trial_started`` event says (None: an event without it,
    as a gpusched before it was recorded wrote; "absent": no such event). Restored: the
    experiment, the trial's row and its events."""
    limits = {} if max_failed_trials is None else {"max_failed_trials": max_failed_trials}
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc", **limits,
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    files = TrialFiles(tmp_path / "t")
    files.dir.mkdir()
    stored_lines = _lines({"acc": 0.1, "_t": T0 + 10})
    files.reports.write_text(stored_lines + _lines({"acc": 0.2, "_t": T0 + 50}) + ending)
    os.utime(files.reports, (written_at, written_at))
    async with open_store(tmp_path / "log.db") as store:
        exp_id = await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        for kind in events:
            await store.add_event(kind, exp_id)
        for n in range(number):  # the trials before it completed
            await store.create_trial(exp_id, n, {"x": 1}, str(tmp_path / f"t{n}"))
            await store.update_trial(exp_id, n, state="completed", objective=0.5)
        await store.create_trial(exp_id, number, {"x": 1}, str(files.dir))
        await store.update_trial(exp_id, number, state=state.value, started_at=started_at,
                                 ended_at=ended_at, attempts=1, pid=4242)
        if status_from != "absent":
            where = {} if status_from is None else {"status_from": status_from}
            await store.add_event("trial_started", exp_id, number, pid=4242, attempt=1, **where)
        await store.add_encoded_reports(
            exp_id, number, 0, [json.dumps({"acc": 0.1, "training_iteration": 1})],
            read_to=ReadPosition(len(stored_lines), None))
        search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
        exp = ExperimentRun(exp_id, int(exp_id[1:]), spec, 0, search, [])
        await restore_trials(store, exp, {str(files.dir): list(stopped_pids)})
        row = await store.trial(exp_id, number)
        assert row is not None
        return exp, row, await store.events(exp_id)


async def test_an_attempt_that_ended_with_its_status_line_while_the_daemon_was_down_failed(
    tmp_path: Path,
) -> None:
    exp, row, events = await _restored_with(tmp_path)
    reason = "out of data (exit code not known: it ended while the daemon was down)"
    assert (row["state"], row["reason"], row["attempts"]) == ("failed", reason, 1)
    assert (row["exit_code"], row["ended_at"], row["reports"]) == (None, T0 + 60, 2)
    assert exp.trials[1].state is TrialState.FAILED and exp.requeued == []
    [ended] = [e for e in events if e["kind"] == "trial_ended"]
    assert ended["data"]["reason"] == reason and ended["data"]["reports_recovered"] == 1
    assert not any(e["kind"] in ("trial_interrupted", "experiment_failing") for e in events)


async def test_stragglers_stopped_at_the_restart_do_not_undo_what_the_leader_said(
    tmp_path: Path,
) -> None:
    # The leader (4242) had exited; a data loader worker it left behind was stopped now.
    _, row, _ = await _restored_with(tmp_path, stopped_pids=(4300,))
    assert row["state"] == "failed"


async def test_an_attempt_whose_leader_was_stopped_at_the_restart_runs_again(
    tmp_path: Path,
) -> None:
    # It was still there (in its teardown, say): this daemon ended it, and it runs again.
    exp, row, _ = await _restored_with(tmp_path, stopped_pids=(4242, 4300))
    assert (row["state"], row["reason"]) == ("interrupted", "the daemon went down while it ran")
    assert exp.requeued == [1]


async def test_an_earlier_attempts_status_line_does_not_end_the_cut_off_one(
    tmp_path: Path,
) -> None:
    # Written before this attempt started (by one cancelled, then resumed): not its word.
    exp, row, _ = await _restored_with(tmp_path, written_at=T0 - 5)
    assert row["state"] == "interrupted" and exp.requeued == [1]


# Where the cut-off attempt's status line begins in _restored_with's report file.
STATUS_AT = len(_lines({"acc": 0.1, "_t": T0 + 10}) + _lines({"acc": 0.2, "_t": T0 + 50}))


@pytest.mark.parametrize("status_from", [0, STATUS_AT])
async def test_a_status_line_written_in_the_spawns_clock_tick_is_the_attempts(
    tmp_path: Path, status_from: int,
) -> None:
    # Written at once: the file's coarse time is before the logged start. Where the line
    # begins says it is this attempt's.
    _, row, _ = await _restored_with(tmp_path, written_at=T0 - 0.004, status_from=status_from)
    assert (row["state"], row["attempts"]) == ("failed", 1)


async def test_a_status_line_before_where_the_attempt_began_is_an_earlier_ones(
    tmp_path: Path,
) -> None:
    # The earlier attempt's line, the file's last: this attempt wrote nothing before it was
    # cut off, yet the file's time is after its start (touched by a copy, or a clock step).
    exp, row, _ = await _restored_with(tmp_path, written_at=T0 + 60,
                                       status_from=STATUS_AT + len(STATUS))
    assert row["state"] == "interrupted" and exp.requeued == [1]


async def test_a_report_file_rewritten_shorter_than_where_the_attempt_began_is_its_own(
    tmp_path: Path,
) -> None:
    # The attempt opened the file with "w": all of what is there now is its own.
    _, row, _ = await _restored_with(tmp_path, written_at=T0 - 0.004, status_from=10_000)
    assert row["state"] == "failed"


@pytest.mark.parametrize(("written_at", "state"), [(T0 - 0.004, "interrupted"),
                                                   (T0 + 60, "failed")])
async def test_a_log_without_where_the_attempt_began_goes_by_the_files_time(
    tmp_path: Path, written_at: float, state: str,
) -> None:
    # Its trial_started event was written by a gpusched that did not record it.
    _, row, _ = await _restored_with(tmp_path, written_at=written_at, status_from=None)
    assert row["state"] == state


async def test_a_report_after_the_status_line_leaves_the_attempt_to_run_again(
    tmp_path: Path,
) -> None:
    _, row, _ = await _restored_with(tmp_path, ending=STATUS + _lines({"acc": 0.3}))
    assert row["state"] == "interrupted"


async def test_a_fatal_status_line_fails_the_experiment_at_the_restart(tmp_path: Path) -> None:
    exp, row, events = await _restored_with(tmp_path, ending=FATAL)
    assert row["state"] == "failed"
    assert row["reason"].startswith("license expired (exit code not known")
    [failing] = [e for e in events if e["kind"] == "experiment_failing"]
    assert failing["data"]["reason"] == f"trial {exp.id}/1 raised a fatal error: license expired"


async def test_the_first_trials_failure_at_the_restart_is_judged_by_the_rules(
    tmp_path: Path,
) -> None:
    # As the live daemon: without max_failed_trials, the first trial's failure ends it.
    exp, _, events = await _restored_with(tmp_path, number=0, max_failed_trials=None)
    assert exp.trials[0].state is TrialState.FAILED
    [failing] = [e for e in events if e["kind"] == "experiment_failing"]
    assert failing["data"]["reason"].startswith(f"the first trial, {exp.id}/0, failed")


async def test_a_decision_made_before_the_crash_is_not_made_again(tmp_path: Path) -> None:
    # A cancel was asked before the crash: the experiment ends cancelled, not failed.
    _, row, events = await _restored_with(
        tmp_path, ending=FATAL, events=("experiment_submitted", "experiment_cancel_requested"))
    assert row["state"] == "failed"
    assert not any(e["kind"] == "experiment_failing" for e in events)


async def test_an_attempt_the_log_never_recorded_that_said_it_failed_counts(
    tmp_path: Path,
) -> None:
    # Queued for a retry at T0 + 20; a daemon started it again and was killed before it
    # recorded that. The status line written since is that attempt's.
    exp, row, _ = await _restored_with(tmp_path, state=TrialState.QUEUED, started_at=T0,
                                       ended_at=T0 + 20)
    assert (row["state"], row["attempts"]) == ("failed", 2)
    assert exp.requeued == []


async def test_a_queued_trials_older_status_line_is_not_a_new_attempts(tmp_path: Path) -> None:
    # Interrupted at T0 + 80 (graceful stop), after it wrote the line: nothing ran since.
    exp, row, _ = await _restored_with(tmp_path, state=TrialState.INTERRUPTED, started_at=T0,
                                       ended_at=T0 + 80, ending=FATAL)
    assert row["state"] == "interrupted" and exp.requeued == [1]
