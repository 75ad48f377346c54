"""A report file that the trial replaces while it runs loses no report, and stores none twice.

A trainer may delete its report file and start a new one, or write its lines to another file
and rename that over it. The file's identity does not tell: ext4 gives a file created after a
delete the inode number the deleted one had. So the reader reads again, with what is new, the
bytes before where it stopped: when they are not the ones it read, the file is another, read
from its start; when they are (a file rewritten whole, all lines so far), it reads on.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon.reports import HypertuneFileReader, ReportFileReader


def _lines(*steps: int, **extra: Any) -> str:
    return "".join(json.dumps({"step": s, "score": s / 10, **extra}) + "\n" for s in steps)


def _steps(reader: ReportFileReader, *, final: bool = False) -> list[Any]:
    return [r.values["step"] for r in reader.poll(final=final)]


def _replace(path: Path, text: str) -> None:
    """``text`` written to a temporary file renamed over ``path`` (an atomic rewrite)."""
    fresh = path.with_name(path.name + ".tmp")
    fresh.write_text(text)
    os.replace(fresh, path)


def test_a_file_deleted_and_written_again_is_read_from_its_start(tmp_path: Path) -> None:
    # The reviewer's case: one line read, the file deleted, three new lines in a new file,
    # longer than the first: its first line was skipped (read from the old position).
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(0))
    assert _steps(reader) == [0]
    path.unlink()
    assert _steps(reader) == []  # not there for a while: nothing
    path.write_text(_lines(1, 2, 3))
    assert _steps(reader) == [1, 2, 3]
    assert reader.skipped == 0
    assert reader.problems == [
        "file replaced or rewritten: its first 26 bytes, already read, are not the same now;"
        " read again from its start"]


def test_a_new_file_of_the_same_size_is_read_at_the_final_poll(tmp_path: Path) -> None:
    # Nothing past the old position: only the change of the file's identity (here its mtime:
    # ext4 gives the new file the old one's inode) says that it must be looked at.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1))
    assert _steps(reader) == [1]
    before = path.stat()
    path.unlink()
    path.write_text(_lines(2))
    assert path.stat().st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))  # written later
    assert _steps(reader, final=True) == [2]


def test_a_file_renamed_over_with_other_lines_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1, 2))
    assert _steps(reader) == [1, 2]
    _replace(path, _lines(1, 2, 3, run=2))  # a new run of the trainer, not the same lines
    assert [(r.values["step"], r.values["run"]) for r in reader.poll()] == [
        (1, 2), (2, 2), (3, 2)]


@pytest.mark.parametrize("every", [1, 7])
def test_a_file_renamed_over_whole_at_every_report_stores_each_report_once(
    tmp_path: Path, every: int,
) -> None:
    # A trainer that keeps all its lines and writes them to a new file at every report: the
    # new file holds the lines read, at the same place, and the reader reads on after them.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    stored: list[Any] = []
    for step in range(300):
        _replace(path, _lines(*range(step + 1)))
        if step % every == 0:
            stored += _steps(reader)
    stored += _steps(reader, final=True)
    assert stored == list(range(300))
    assert reader.problems == []


def test_a_replaced_file_that_is_shorter_is_read_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1, 2, 3))
    assert _steps(reader) == [1, 2, 3]
    _replace(path, _lines(7))
    assert _steps(reader) == [7]
    assert reader.problems == ["file shrank to 26 bytes; read again from its start"]
    with path.open("a") as f:
        f.write(_lines(8))
    assert _steps(reader, final=True) == [8]  # and read on from there


def test_a_half_written_line_read_before_the_file_was_rewritten_whole_is_read_once(
    tmp_path: Path,
) -> None:
    # The bytes kept to compare include those of a line not yet ended (consumed, pending).
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    whole = _lines(1, 2)
    path.write_text(whole[:-5])
    assert _steps(reader) == [1]
    _replace(path, whole + _lines(3))
    assert _steps(reader) == [2, 3]
    assert reader.problems == []


def test_a_file_rewritten_in_place_past_the_position_is_read_from_its_start(
    tmp_path: Path,
) -> None:
    # Opened with "w" while the trial runs, and longer than what was read by the next poll:
    # what lies past the old position is the middle of other lines.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1))
    assert _steps(reader) == [1]
    path.write_text(_lines(11, 12, 13))
    assert _steps(reader) == [11, 12, 13]
    assert reader.skipped == 0


def test_a_restarted_reader_takes_the_file_as_it_is_then_sees_it_replaced(
    tmp_path: Path,
) -> None:
    # A restarted daemon knows only how far it read (the trial log keeps the offset): the
    # bytes before are taken for the ones read, in the pread that reads what follows.
    path = tmp_path / "reports.jsonl"
    path.write_text(_lines(1, 2))
    reader = ReportFileReader(path, offset=path.stat().st_size)
    with path.open("a") as f:
        f.write(_lines(3))
    assert _steps(reader) == [3]
    path.unlink()
    path.write_text(_lines(4, 5, 6, 7))
    assert _steps(reader) == [4, 5, 6, 7]


def test_a_status_line_in_a_replaced_file_is_this_attempts(tmp_path: Path) -> None:
    # Read from its start, all of the new file is this attempt's, a status line too.
    path = tmp_path / "reports.jsonl"
    path.write_text(_lines(1))
    size = path.stat().st_size
    reader = ReportFileReader(path, offset=size, status_from=size)
    assert _steps(reader) == []
    path.unlink()
    path.write_text(_lines(2, 3) + json.dumps({"status": "failed", "reason": "mine"}) + "\n")
    assert _steps(reader, final=True) == [2, 3]
    assert reader.status == ("failed", "mine")


def test_a_poll_that_finds_the_file_unchanged_reads_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The check costs no read while nothing is written: a running trial is polled often.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1))
    assert _steps(reader) == [1]
    reads: list[int] = []
    real_pread = os.pread

    def pread(fd: int, n: int, at: int) -> bytes:
        reads.append(at)
        return real_pread(fd, n, at)

    monkeypatch.setattr(os, "pread", pread)
    assert _steps(reader) == [] and _steps(reader) == []
    assert reads == []
    with path.open("a") as f:
        f.write(_lines(2))
    assert _steps(reader) == [2]
    assert len(reads) == 1  # the bytes read last, and what follows them, in one pread


def test_unread_bytes_counts_a_file_renamed_over_whole(tmp_path: Path) -> None:
    # The runner reads a big poll in a worker thread: another file may be read whole.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    path.write_text(_lines(1))
    assert _steps(reader) == [1]
    _replace(path, _lines(5, 6))
    assert reader.unread_bytes() == path.stat().st_size
    assert _steps(reader) == [5, 6]
    with path.open("a") as f:
        f.write(_lines(7))
    assert reader.unread_bytes() == len(_lines(7))


def test_hypertune_file_rewritten_by_rename_is_still_deduplicated(tmp_path: Path) -> None:
    # hypertune's file is rewritten whole at every report: its entries are told by what they
    # are, whatever file holds them.
    path = tmp_path / "hypertune.json"
    reader = HypertuneFileReader(path, "score")
    entries: list[str] = []
    seen: list[Any] = []
    for step in range(5):
        entries.append(json.dumps({"global_step": str(step), "score": "0.5",
                                   "timestamp": 1000.0 + step, "trial": "0"}) + "\n")
        _replace(path, "".join(entries))
        seen += [r.values["step"] for r in reader.poll()]
    path.unlink()
    path.write_text("".join(entries))
    seen += [r.values["step"] for r in reader.poll(final=True)]
    assert seen == [0, 1, 2, 3, 4]
