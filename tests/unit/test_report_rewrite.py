"""A retry that rewrites its report file rather than appending to it loses no report.

An attempt of a trial reads its report file on from where the earlier attempts' reading
stopped. A trainer that opens the file with ``"w"`` rewrites it: once it has written more than
that position's bytes before the first poll, only a check of what lies before the position
tells that the file is not the one that was read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon import reports as reports_module
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.report_collector import ReportCollector
from gpusched._daemon.reports import ReportFileReader
from gpusched._daemon.store import ReadPosition


def _lines(*reports: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in reports)


def _steps(first: int, last: int, attempt: int) -> str:
    return _lines(*({"step": s, "attempt": attempt} for s in range(first, last + 1)))


def _earlier_attempt(path: Path) -> int:
    """The file as an earlier attempt left it, all read and stored: its size."""
    path.write_text(_steps(1, 3, attempt=1))
    return path.stat().st_size


def _watching(path: Path, size: int) -> ReportFileReader:
    """The reader of an attempt that starts now, reading on after ``size`` stored bytes."""
    return ReportFileReader(path, offset=size, status_from=size, watch_rewrite=True)


def test_a_retry_that_rewrote_past_the_old_position_before_the_first_poll_is_read_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    # Opened with "w": five steps, longer than what the first attempt wrote, then its end.
    path.write_text(_steps(1, 5, attempt=2) + '{"status": "failed", "reason": "mine"}\n')
    assert [(r.values["step"], r.values["attempt"]) for r in reader.poll()] == [
        (s, 2) for s in range(1, 6)]
    assert reader.status == ("failed", "mine")  # all of it is this attempt's
    assert reader.skipped == 0
    assert reader.problems == [
        "file rewritten: its first 78 bytes, an earlier attempt's, changed since this attempt"
        " started; read again from its start"]


def test_a_retry_that_replaced_the_file_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    fresh = tmp_path / "reports.jsonl.tmp"
    fresh.write_text(_steps(1, 4, attempt=2))
    os.replace(fresh, path)
    assert [r.values["step"] for r in reader.poll(final=True)] == [1, 2, 3, 4]


def test_a_rewrite_after_a_poll_that_found_the_file_untouched_is_seen(tmp_path: Path) -> None:
    # The first polls come before the trainer opens the file: nothing new, nothing changed.
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    assert reader.poll() == [] and reader.poll() == []
    path.write_text(_steps(1, 4, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [1, 2, 3, 4]


def test_a_retry_that_appends_reads_on_after_the_earlier_attempt(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    with path.open("a") as f:
        f.write(_steps(4, 6, attempt=2) + '{"status": "fatal", "reason": "mine"}\n')
    assert [r.values["step"] for r in reader.poll()] == [4, 5, 6]
    assert reader.status == ("fatal", "mine")
    assert reader.problems == []


def test_once_the_retry_is_seen_appending_it_is_watched_no_more(
    tmp_path: Path,
) -> None:
    # Seen appending, the attempt keeps the earlier bytes: the per-poll check ends there; a
    # later rewrite is caught when the file shrinks, or at the next read of new bytes.
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    reader = _watching(path, size)
    with path.open("a") as f:
        f.write(_steps(4, 4, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [4]
    path.write_text(_steps(7, 7, attempt=2))  # shorter than what was read
    assert [r.values["step"] for r in reader.poll()] == [7]
    assert "shrank" in reader.problems[0]


def test_bytes_rewritten_as_they_were_are_the_stored_reports(tmp_path: Path) -> None:
    # A retry that writes what the first attempt wrote, byte for byte, then goes on: the
    # same reports, not read twice.
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    path.write_text(_steps(1, 3, attempt=1) + _steps(4, 5, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [4, 5]
    assert reader.problems == []


def test_a_report_file_gone_at_the_start_is_all_this_attempts(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    path.unlink()  # removed between the attempts (by hand, by the trainer's cleanup)
    reader = _watching(path, size)
    path.write_text(_steps(1, 5, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [1, 2, 3, 4, 5]


def test_a_report_file_shorter_than_the_position_at_the_start_is_all_this_attempts(
    tmp_path: Path,
) -> None:
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    path.write_text(_steps(1, 1, attempt=1))  # cut short between the attempts
    reader = _watching(path, size)
    path.write_text(_steps(1, 5, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [1, 2, 3, 4, 5]


def test_a_link_at_the_start_and_a_file_later_is_all_this_attempts(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    reader = _watching(path, size)
    path.unlink()
    path.write_text(_steps(1, 5, attempt=2))
    assert [r.values["step"] for r in reader.poll()] == [1, 2, 3, 4, 5]


def test_a_rewrite_that_races_the_read_is_seen(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # The trainer's "w" lands between the poll's read of the new bytes and its check: the
    # check, made after the read, sees it, and what was read of the new file is read again.
    path = tmp_path / "reports.jsonl"
    reader = _watching(path, _earlier_attempt(path))
    with path.open("a") as f:
        f.write(_steps(4, 4, attempt=2))
    real = reports_module._read_range
    calls: list[int] = []

    def read_then_rewrite(fd: int, start: int, end: int) -> bytes:
        data = real(fd, start, end)
        if not calls:
            path.write_text(_steps(1, 6, attempt=3))  # same inode: open(..., "w")
        calls.append(start)
        return data

    monkeypatch.setattr(reports_module, "_read_range", read_then_rewrite)
    assert [(r.values["step"], r.values["attempt"]) for r in reader.poll()] == [
        (s, 3) for s in range(1, 7)]


def test_a_reader_not_told_to_watch_reads_on_from_its_offset(tmp_path: Path) -> None:
    # Reading on after a crash (restore): the attempt has run already; what is there now is
    # what there is.
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    reader = ReportFileReader(path, offset=size)
    with path.open("a") as f:
        f.write(_steps(4, 4, attempt=1))
    assert [r.values["step"] for r in reader.poll()] == [4]


def test_a_poll_that_may_read_the_file_again_is_said_to_read_all_of_it(tmp_path: Path) -> None:
    # The runner reads a big poll in a worker thread, by this estimate: a rewrite read again
    # from its start (up to 64 MiB) was taken for the few bytes past the old position, and
    # read and parsed on the event loop.
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    reader = _watching(path, size)
    assert reader.unread_bytes() == size  # nothing new yet, but the next poll may read it all
    path.write_text(_steps(1, 5, attempt=2))  # rewritten, longer than what was read
    assert reader.unread_bytes() == path.stat().st_size
    assert [r.values["step"] for r in reader.poll()] == [1, 2, 3, 4, 5]
    assert reader.unread_bytes() == 0  # read again; no longer watched
    with path.open("a") as f:
        f.write(_steps(6, 6, attempt=2))
    assert reader.unread_bytes() == len(_steps(6, 6, attempt=2))  # the normal path
    path.write_text(_steps(1, 1, attempt=3))  # shorter than what was read: read from 0
    assert reader.unread_bytes() == path.stat().st_size


def test_a_reader_not_watching_says_what_is_past_its_offset(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    size = _earlier_attempt(path)
    reader = ReportFileReader(path, offset=size)
    with path.open("a") as f:
        f.write(_steps(4, 4, attempt=1))
    assert reader.unread_bytes() == path.stat().st_size - size


# -- ReportCollector ---------------------------------------------------------------------------


def test_a_retried_attempts_collector_counts_a_rewrite_whole(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    size = _earlier_attempt(files.reports)
    collector = ReportCollector(files, metric_tag="step", first_iteration=3,
                                resume_at=ReadPosition(size, None), status_from=size)
    files.reports.write_text(_steps(1, 5, attempt=2))
    assert collector.unread_bytes() == files.reports.stat().st_size


def test_a_retried_attempts_collector_reads_a_rewritten_file_whole(tmp_path: Path) -> None:
    files = TrialFiles(tmp_path)
    size = _earlier_attempt(files.reports)
    stored = {"step": 3, "training_iteration": 3, "time_total_s": 3.0, "timestamp": 0}
    collector = ReportCollector(files, metric_tag="step", first_iteration=3,
                                resume_at=ReadPosition(size, None), last_report=stored,
                                status_from=size)
    files.reports.write_text(_steps(1, 5, attempt=2) + '{"status": "fatal", "reason": "x"}\n')
    reports = collector.poll(final=True)
    assert [(r["step"], r["training_iteration"]) for r in reports] == [
        (1, 4), (2, 5), (3, 6), (4, 7), (5, 8)]
    assert collector.status == ("fatal", "x")
    assert collector.position.report_offset == files.reports.stat().st_size


def test_an_attempt_in_a_folder_made_now_costs_no_syscall_to_watch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The completed-trial hot path: a new folder holds no earlier attempt's bytes.
    files = TrialFiles(tmp_path)
    touched: list[str] = []
    for name in ("open", "stat", "lstat", "pread"):
        real = getattr(os, name)

        def spy(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            touched.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    ReportCollector(files, metric_tag="acc", resume_at=ReadPosition(0, None), status_from=0)
    assert touched == []


def test_reports_read_on_after_a_crash_are_read_from_the_stored_position(
    tmp_path: Path,
) -> None:
    # The restarted daemon's read (an attempt that ran while it was down) takes the file as
    # it is: its start was not seen, so nothing of it was kept to compare with.
    files = TrialFiles(tmp_path)
    size = _earlier_attempt(files.reports)
    collector = ReportCollector(files, metric_tag="step", resume_at=ReadPosition(size, None),
                                started_at=1.0)
    files.reports.write_text(files.reports.read_text() + _steps(4, 4, attempt=2))
    assert [r["step"] for r in collector.poll(final=True)] == [4]
