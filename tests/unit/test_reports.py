"""Report files into records: tailing JSON Lines, hypertune rewrites, Ray's auto-filled fields."""

from __future__ import annotations

import errno
import json
import math
import os
import random
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gpusched._daemon import reports as reports_module
from gpusched._daemon.reports import (
    AutoFill,
    HypertuneFileReader,
    Report,
    ReportFileReader,
    StatusLine,
    status_at_end,
)


def _append(path: Path, data: str | bytes) -> None:
    with open(path, "ab") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# -- ReportFileReader ---------------------------------------------------------------------------


def test_missing_file_gives_nothing_until_it_appears(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    assert reader.poll() == []
    _append(path, '{"step": 1, "acc": 0.5}\n')
    assert reader.poll() == [Report({"step": 1, "acc": 0.5})]


def test_half_written_line_waits_for_its_end(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"step": 1, "acc": 0.5}\n{"step": 2, "ac')
    assert [r.values for r in reader.poll()] == [{"step": 1, "acc": 0.5}]
    assert reader.poll() == []  # nothing new, the half line still pending
    _append(path, 'c": 0.75}\n{"step": 3')
    assert [r.values for r in reader.poll()] == [{"step": 2, "acc": 0.75}]
    _append(path, ', "acc": 1}\n')
    assert [r.values for r in reader.poll()] == [{"step": 3, "acc": 1}]
    assert reader.skipped == 0
    assert reader.offset == path.stat().st_size


def test_a_huge_report_line_is_not_stored(tmp_path: Path) -> None:
    # A 50 MB line (a tensor printed into a value) was stored whole: the trial log grew by as
    # much at each such report.
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    huge = json.dumps({"score": 0.5, "pad": "x" * (2 << 20)})
    _append(path, '{"step": 1, "score": 0.25}\n' + huge + '\n{"step": 3, "score": 0.75}\n')
    assert [r.values for r in reader.poll(final=True)] == [
        {"step": 1, "score": 0.25}, {"step": 3, "score": 0.75}]
    assert reader.skipped == 1
    assert reader.problems[0].startswith(f"line 2: {len(huge)} characters, over the")
    big = json.dumps({"score": 0.5, "note": "y" * (512 << 10)})  # under the limit: kept
    _append(path, big + "\n")
    assert [r.values["score"] for r in reader.poll()] == [0.5]


def test_split_inside_a_multibyte_character(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    data = '{"phase": "\u00e9t\u00e9", "acc": 1.5}\n'.encode()
    _append(path, data[:13])  # cuts the two bytes of the first "é" apart
    assert reader.poll() == []
    _append(path, data[13:])
    assert [r.values for r in reader.poll()] == [{"phase": "\u00e9t\u00e9", "acc": 1.5}]


def test_final_poll_accepts_a_last_object_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"acc": 0.1}\n{"acc": 0.2}')
    assert [r.values for r in reader.poll()] == [{"acc": 0.1}]
    assert [r.values for r in reader.poll(final=True)] == [{"acc": 0.2}]


def test_final_poll_skips_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"acc": 0.1}\n{"acc": 0.')
    assert [r.values for r in reader.poll(final=True)] == [{"acc": 0.1}]
    assert reader.skipped == 1


def test_garbage_and_blank_lines_are_skipped_counted_and_described(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    lines = ["not json", "", "[1, 2]", '"text"', '{"acc": 0.5}', "{broken", "   ", "7", "null"]
    lines += ['{"acc": 0.6}']
    _append(path, "\n".join(lines) + "\n")
    reader = ReportFileReader(path)
    assert [r.values for r in reader.poll()] == [{"acc": 0.5}, {"acc": 0.6}]
    assert reader.skipped == 8
    assert len(reader.problems) == 5  # the first few only: a log line each, not a flood
    assert reader.problems[0].startswith("line 1: not a JSON object")
    assert reader.problems[1].startswith("line 2:")


def test_values_other_than_numbers_and_strings_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    line = {"a": 1, "b": 2.5, "c": "x", "d": True, "e": None, "f": [1], "g": {"h": 1}}
    _append(path, json.dumps(line) + "\n" + '{"big": 1' + "0" * 30 + "}\n")
    reports = ReportFileReader(path).poll()
    assert reports[0].values == {"a": 1, "b": 2.5, "c": "x"}
    assert reports[1].values == {"big": 1e30}  # too big for SQLite's integers: a float
    assert type(reports[1].values["big"]) is float


def test_non_finite_numbers_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"loss": NaN, "x": Infinity, "y": -Infinity}\n')
    (report,) = ReportFileReader(path).poll()
    assert math.isnan(float(report.values["loss"]))
    assert report.values["x"] == math.inf
    assert report.values["y"] == -math.inf


def test_whitespace_and_crlf_around_an_object_are_forgiven(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '  {"acc": 1}\r\n{ "acc" : 2 }\t\n')
    assert [r.values for r in ReportFileReader(path).poll()] == [{"acc": 1}, {"acc": 2}]


def test_t_becomes_the_report_time(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1, "_t": 1700000000.5}\n{"acc": 2, "_t": "soon"}\n{"acc": 3}\n')
    reports = ReportFileReader(path).poll()
    assert reports == [
        Report({"acc": 1}, 1700000000.5),
        Report({"acc": 2}, None),
        Report({"acc": 3}, None),
    ]


def test_status_lines_are_not_reports_and_the_last_wins(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"acc": 1}\n{"status": "failed", "reason": "out of data"}\n')
    assert [r.values for r in reader.poll()] == [{"acc": 1}]
    assert reader.status == ("failed", "out of data")
    _append(path, '{"status": "fatal", "reason": "license expired"}\n{"status": "ok", "n": 1}\n')
    # Only "failed" and "fatal" are statuses; any other value is an ordinary string metric.
    assert [r.values for r in reader.poll()] == [{"status": "ok", "n": 1}]
    assert reader.status == ("fatal", "license expired")


def test_an_earlier_attempts_status_line_is_not_this_attempts(tmp_path: Path) -> None:
    # An attempt interrupted after writing a status line but before it was read: its reports
    # still count, its status must not decide how the next attempt (reading on) ended.
    path = tmp_path / "reports.jsonl"
    old = '{"acc": 1}\n{"status": "fatal", "reason": "\u00e9arlier"}\n{"acc": 2}\n'
    _append(path, old)
    reader = ReportFileReader(path, offset=0, status_from=len(old.encode()))
    _append(path, '{"acc": 3}\n')
    assert [r.values["acc"] for r in reader.poll()] == [1, 2, 3]
    assert reader.status is None
    _append(path, '{"status": "failed", "reason": "mine"}\n')
    assert reader.poll() == []
    assert reader.status == ("failed", "mine")


def test_a_status_line_of_this_attempt_counts_when_read_with_older_lines(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    old = '{"status": "failed", "reason": "old"}\n\xff\xfe\n'.encode("latin-1")
    _append(path, old)
    reader = ReportFileReader(path, status_from=len(old))
    _append(path, '{"acc": 3}\n{"status": "failed", "reason": "new"}')
    assert [r.values for r in reader.poll(final=True)] == [{"acc": 3}]
    assert reader.status == ("failed", "new")


def test_a_lone_surrogate_becomes_its_escape_as_text(tmp_path: Path) -> None:
    # json.dumps writes os.fsdecode(b"data-\xff.csv") as "data-\udcff.csv"; read back, a lone
    # surrogate crashed the trial log's write of the reason (SQLite cannot encode it).
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    name = os.fsdecode(b"data-\xff.csv")
    _append(path, json.dumps({"file": name, "k\udc80": 1, "ok": "\ud83d\ude00"}) + "\n"
            + json.dumps({"status": "failed", "reason": f"cannot read {name}"}) + "\n")
    [report] = reader.poll()
    assert report.values == {"file": "data-\\udcff.csv", "k\\udc80": 1, "ok": "\U0001f600"}
    assert reader.status == ("failed", "cannot read data-\\udcff.csv")
    for text in (*report.values, report.values["file"], reader.status[1]):
        str(text).encode("utf-8")  # raises for a surrogate


def test_values_that_cannot_be_stored_are_said_to_be_dropped(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, f'{{"acc": 1, "done": true, "x": null, "big": {10**400}}}\n{{"acc": 2}}\n')
    assert [r.values for r in reader.poll()] == [{"acc": 1}, {"acc": 2}]
    assert reader.skipped == 0
    assert reader.problems == [
        "line 1: 'done', 'x', 'big': not a number or text, dropped (a bool, null, list, object,"
        " or an int too large)"]


def test_a_value_dropped_at_every_line_is_said_once_and_hides_nothing(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"acc": 0.5, "is_best": true}\n' * 10 + '{"acc": \n')
    assert len(reader.poll(final=True)) == 10
    assert len(reader.problems) == 2 and "'is_best'" in reader.problems[0]
    assert reader.problems[1].startswith("line 11: not a JSON object")


def test_a_status_line_after_the_file_was_rewritten_is_this_attempts(tmp_path: Path) -> None:
    # A retry that truncates the file (open(..., "w")) writes all of it: its status counts.
    path = tmp_path / "reports.jsonl"
    _append(path, '{"loss": 1}\n' * 20)
    size = path.stat().st_size  # all read and stored before this attempt
    reader = ReportFileReader(path, offset=size, status_from=size)
    path.write_text('{"loss": 0.4}\n{"status": "failed", "reason": "mine"}\n')
    assert [r.values for r in reader.poll()] == [{"loss": 0.4}]
    assert reader.status == ("failed", "mine")


def test_a_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    _append(path, '{"acc": 1}\n{"acc": 2}\n{"acc": 2.5')
    assert len(reader.poll()) == 2
    path.write_text('{"acc": 3}\n')  # the half line pending from before must not stick to it
    assert [r.values for r in reader.poll()] == [{"acc": 3}]
    assert "shrank" in reader.problems[0]
    assert reader.skipped == 0


def test_offset_resumes_where_an_earlier_reader_stopped(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1}\n')
    first = ReportFileReader(path)
    first.poll()
    _append(path, '{"acc": 2}\n')
    assert [r.values for r in ReportFileReader(path, offset=first.offset).poll()] == [{"acc": 2}]


def test_many_reports_in_one_poll(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, "".join(f'{{"step": {i}, "acc": {i / 10}}}\n' for i in range(50_000)))
    reports = ReportFileReader(path).poll()
    assert len(reports) == 50_000
    assert reports[-1].values == {"step": 49_999, "acc": 4999.9}


# -- status_at_end: how an attempt a restarted daemon did not watch said it ended -------------


def test_the_status_line_a_report_file_ends_with_is_found(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1}\n{"status": "failed", "reason": "early"}\n{"acc": 2}\n'
                  '{"status": "fatal", "reason": "license expired"}\n\n')
    said = status_at_end(path)
    size = path.stat().st_size
    at = size - len('{"status": "fatal", "reason": "license expired"}\n\n')
    assert said == StatusLine("fatal", "license expired", path.stat().st_mtime, at, size)


@pytest.mark.parametrize("ending", [
    '{"status": "failed", "reason": "x"}\n{"acc": 2}\n',  # reported after it
    '{"status": "ok", "reason": "x"}\n',  # no status: a metric
    '{"status": ["failed"], "reason": "x"}\n',
    '{"status": "failed", "reas',  # cut off as it was written
    "",
])
def test_a_report_file_that_ends_otherwise_says_nothing(tmp_path: Path, ending: str) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1}\n' + ending)
    assert status_at_end(path) is None


def test_a_status_line_without_its_newline_counts(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"status": "failed", "reason": "no data in shard 0"}')
    size = path.stat().st_size
    assert status_at_end(path) == ("failed", "no data in shard 0", path.stat().st_mtime, 0, size)


def test_the_status_line_of_a_long_report_file_is_read_from_its_end(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1}\n' * 100_000 + '{"status": "failed", "reason": "\\udcff"}\n')
    said = status_at_end(path)
    assert said is not None and (said.status, said.reason) == ("failed", "\\udcff")
    assert said.at == len('{"acc": 1}\n') * 100_000  # found in a tail read from far past 0
    _append(path, '{"status": "failed", "reason": "' + "x" * (1 << 17) + '"}\n')
    assert status_at_end(path) is None  # a last line longer than any status line is


def test_no_report_file_or_one_not_read_says_nothing(tmp_path: Path) -> None:
    assert status_at_end(tmp_path / "none.jsonl") is None
    (tmp_path / "folder").mkdir()
    assert status_at_end(tmp_path / "folder") is None
    target = tmp_path / "target.jsonl"
    target.write_text('{"status": "fatal", "reason": "planted"}\n')
    (tmp_path / "link.jsonl").symlink_to(target)
    assert status_at_end(tmp_path / "link.jsonl") is None


# -- HypertuneFileReader ------------------------------------------------------------------------


class _HypertuneWriter:
    """Writes its file the way cloudml-hypertune's HyperTune does: whole, last 100 entries."""

    def __init__(self, path: Path, tag: str = "val_accuracy") -> None:
        self.path, self.tag, self.entries = path, tag, list[dict[str, object]]()

    def report(self, value: float, step: int, when: float) -> str:
        entry = {"timestamp": when, "trial": "3", self.tag: str(float(value))}
        entry["global_step"] = str(step)
        self.entries = [*self.entries, entry][-100:]
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries)
        self.path.write_text(text)
        return text


def test_hypertune_entries_become_numbers_once_each(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    assert reader.poll() == []
    writer.report(0.5, 1, 1000.0)
    writer.report(0.75, 2, 1001.0)
    assert reader.poll() == [
        Report({"val_accuracy": 0.5, "step": 1}, 1000.0),
        Report({"val_accuracy": 0.75, "step": 2}, 1001.0),
    ]
    writer.report(0.875, 3, 1002.0)
    assert reader.poll() == [Report({"val_accuracy": 0.875, "step": 3}, 1002.0)]
    assert reader.poll(final=True) == []
    assert reader.skipped == 0


def test_hypertune_window_of_100_slides_without_repeats_or_losses(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    steps: list[object] = []
    for step in range(250):
        writer.report(step / 1000, step, 1000.0 + step)
        if step % 7 == 0:
            steps += [r.values["step"] for r in reader.poll()]
    steps += [r.values["step"] for r in reader.poll(final=True)]
    assert steps == list(range(250))
    assert len(path.read_text().splitlines()) == 100
    assert reader.problems == []
    assert "seen=250>" in repr(reader)


def test_hypertune_entries_are_remembered_within_a_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports_module, "_HYPERTUNE_REMEMBERS", 150)
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    for step in range(400):
        writer.report(step / 1000, step, 1000.0 + step)
        assert [r.values["step"] for r in reader.poll()] == [step]
    assert "seen=150>" in repr(reader)


def test_a_hypertune_entry_with_a_lone_surrogate_is_read_as_text(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    path.write_text(json.dumps({"timestamp": 1000.0, "trial": "0", "val_accuracy": "0.5",
                                "note": os.fsdecode(b"\xff")}) + "\n")
    [report] = HypertuneFileReader(path, "val_accuracy").poll()
    assert report.values == {"val_accuracy": 0.5, "note": "\\udcff"}


def test_two_hypertune_writers_in_one_trainer_are_each_read_once(tmp_path: Path) -> None:
    # Each HyperTune object keeps its own last 100 entries and rewrites the whole file with
    # them: taking turns, each rewrite once brought back all of the other's as new reports.
    path = tmp_path / "hypertune.metrics"
    first, second = _HypertuneWriter(path), _HypertuneWriter(path, tag="val_loss")
    reader = HypertuneFileReader(path, "val_accuracy")
    taken: list[object] = []
    for step in range(150):
        first.report(step / 1000, step, 1000.0 + step)
        taken += [r.values.get("val_accuracy") for r in reader.poll()]
        second.report(step / 1000, step, 2000.0 + step)
        taken += [r.values.get("val_loss") for r in reader.poll()]
    assert len(taken) == 300 and taken == [step / 1000 for step in range(150) for _ in (1, 2)]
    assert reader.problems == []


def test_hypertune_reports_rewritten_away_unread_are_flagged(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    writer.report(0.1, 0, 1000.0)
    assert len(reader.poll()) == 1
    for step in range(1, 151):
        writer.report(0.1, step, 1000.0 + step)
    assert [r.values["step"] for r in reader.poll()] == list(range(51, 151))
    assert "rewritten away" in reader.problems[0]


def test_hypertune_half_rewritten_file_is_read_again(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    writer.report(0.1, 1, 1000.0)
    writer.report(0.2, 2, 1001.0)
    assert len(reader.poll()) == 2
    text = writer.report(0.3, 3, 1002.0)
    for cut in (0, len(text) // 2, len(text) - 5):  # truncated, then caught mid-rewrite
        path.write_text(text[:cut])
        assert reader.poll() == []
    # The writer finishes; even with the same mtime, the reader must look again.
    path.write_text(text)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert [r.values for r in reader.poll()] == [{"val_accuracy": 0.3, "step": 3}]
    assert reader.skipped == 0


class _RacingReader(HypertuneFileReader):
    """Its first read lands while the writer has only just begun its rewrite."""

    raced = False

    def _read(self) -> bytes:
        data = super()._read()
        if not self.raced:
            self.raced = True
            return data[: len(data) // 2]
        return data


def test_hypertune_read_caught_mid_rewrite_is_done_again_at_the_next_poll(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), _RacingReader(path, "val_accuracy")
    for step in range(4):
        writer.report(0.5, step, 1000.0 + step)
    assert [r.values["step"] for r in reader.poll()] == [0, 1]
    # The file is unchanged since: same mtime and size as at that first stat.
    assert [r.values["step"] for r in reader.poll()] == [2, 3]
    assert reader.poll() == []


def test_hypertune_unchanged_file_is_not_read_again(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    writer.report(0.1, 1, 1000.0)
    assert len(reader.poll()) == 1
    # Same size and mtime but different bytes: only a reader that re-reads would notice.
    st = path.stat()
    path.write_text(path.read_text().replace("0.1", "0.2"))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert reader.poll() == []
    assert len(reader.poll(final=True)) == 1  # the final poll always reads


def test_hypertune_final_poll_reports_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    path.write_text('{"global_step": "1", "timestamp": 5.0, "trial": "0", "acc": "1"}\nnope\n{"a')
    reader = HypertuneFileReader(path, "acc")
    assert [r.values for r in reader.poll()] == [{"acc": 1, "step": 1}]
    assert reader.skipped == 0  # mid-rewrite, perhaps: no verdict yet
    assert reader.poll(final=True) == []
    assert reader.skipped == 2


def test_hypertune_default_tag_and_other_strings(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    entry = {"global_step": "0", "timestamp": 7, "trial": "1", "training/hptuning/metric": "nan"}
    entry |= {"checkpoint_path": "gs://b/ckpt", "huge": "9" * 30, "rate": "1e-05"}
    path.write_text(json.dumps(entry) + "\n")
    (report,) = HypertuneFileReader(path, "val_accuracy").poll()
    assert report.time == 7.0
    assert report.values["step"] == 0
    assert report.values["checkpoint_path"] == "gs://b/ckpt"
    assert math.isnan(float(report.values["val_accuracy"]))  # the untagged metric is ours
    assert "trial" not in report.values
    assert report.values["huge"] == 1e30
    assert report.values["rate"] == 1e-05


# -- AutoFill ----------------------------------------------------------------------------------


def test_autofill_numbers_and_times_reports() -> None:
    fill = AutoFill(start_time=1000.0)
    first = fill.fill({"acc": 0.5}, now=1002.5)
    second = fill.fill({"acc": 0.6, "training_iteration": 99, "timestamp": 1}, now=1003.0)
    assert first == {
        "acc": 0.5,
        "training_iteration": 1,
        "time_total_s": 2.5,
        "time_this_iter_s": 2.5,
        "timestamp": 1002,
    }
    # As in Ray, the auto-filled fields win over the user's.
    assert second == {
        "acc": 0.6,
        "training_iteration": 2,
        "time_total_s": 3.0,
        "time_this_iter_s": 0.5,
        "timestamp": 1003,
    }
    assert "iteration=2" in repr(fill)


def test_autofill_continues_a_retried_trial() -> None:
    fill = AutoFill(start_time=5000.0, iteration=7, elapsed_before=60.0)
    out = fill.fill({}, now=5010.0)
    assert (out["training_iteration"], out["time_total_s"], out["time_this_iter_s"]) == (8, 70, 10)


def test_autofill_uses_the_reports_own_time_and_never_goes_backwards() -> None:
    fill = AutoFill(start_time=100.0)
    assert fill.fill_report(Report({"a": 1}, 104.0), read_time=110.0)["time_total_s"] == 4.0
    assert fill.fill_report(Report({"a": 2}), read_time=110.0)["time_this_iter_s"] == 6.0
    stepped_back = fill.fill({"a": 3}, now=108.0)  # the wall clock stepped back
    assert stepped_back["time_this_iter_s"] == 0.0
    assert stepped_back["time_total_s"] == 8.0


@pytest.mark.parametrize("final", [False, True])
def test_readers_share_the_poll_signature(tmp_path: Path, final: bool) -> None:
    for reader in (ReportFileReader(tmp_path / "a"), HypertuneFileReader(tmp_path / "b")):
        assert reader.poll(final=final) == []
        assert reader.skipped == 0
        assert reader.problems == []


def test_hypertune_reader_racing_a_writer_sees_each_entry_once(tmp_path: Path) -> None:
    # Real threads, real rewrites: whatever a poll catches half-written, no entry is lost or
    # seen twice (a full window of equal-length entries keeps the size constant, too).
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    done = threading.Event()

    def write() -> None:
        for step in range(100, 700):
            writer.report(0.5, step, 1000.0 + step)
            if step % 5 == 0:
                time.sleep(0.0005)  # let the reader keep up: 100 unread entries are lost
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    steps: list[object] = []
    while not done.is_set():
        steps += [r.values["step"] for r in reader.poll()]
    thread.join()
    steps += [r.values["step"] for r in reader.poll()]
    assert steps == list(range(100, 700))


def test_unread_bytes_says_what_the_next_poll_would_read(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    reader = ReportFileReader(path)
    assert reader.unread_bytes() == 0  # no file yet
    line = '{"step": 1, "acc": 0.5}\n'
    _append(path, line)
    assert reader.unread_bytes() == len(line)
    reader.poll()
    assert reader.unread_bytes() == 0
    hyper = HypertuneFileReader(tmp_path / "hypertune.json", "acc")
    assert hyper.unread_bytes() == 0
    entry = json.dumps({"acc": "0.5", "global_step": "1"}) + "\n"
    hyper.path.write_text(entry)
    assert hyper.unread_bytes() == len(entry)  # the whole file is read again when it changed
    hyper.poll()
    assert hyper.unread_bytes() == 0


def test_a_resumed_reader_takes_only_what_came_after_its_position(tmp_path: Path) -> None:
    # A daemon stopped after storing up to line 1 / the entry of t=1000; the trial wrote on.
    path = tmp_path / "reports.jsonl"
    first = '{"step": 0, "acc": 0.1}\n'
    _append(path, first + '{"step": 1, "acc": 0.2}\n{"step": 2, "ac')
    reader = ReportFileReader(path, offset=len(first))
    assert [r.values["step"] for r in reader.poll()] == [1]
    assert reader.read_through == path.stat().st_size - len('{"step": 2, "ac')  # whole lines
    hyper = tmp_path / "hypertune.json"
    writer = _HypertuneWriter(hyper)
    writer.report(0.1, 1, 1000.0)
    writer.report(0.2, 2, 1001.0)
    resumed = HypertuneFileReader(hyper, "val_accuracy", taken_through=1000.0)
    assert [r.values["step"] for r in resumed.poll()] == [2.0]
    assert resumed.last_ts == 1001.0


# -- files a trial's user controls (a root daemon reads them) ---------------------------------


@pytest.mark.parametrize("kind", ["reports", "hypertune"])
def test_a_link_in_place_of_a_report_file_is_not_followed(tmp_path: Path, kind: str) -> None:
    secret = tmp_path / "root-only.jsonl"
    secret.write_text('{"step": 1, "val_accuracy": 0.5, "password": "hunter2"}\n')
    path = tmp_path / "planted"
    path.symlink_to(secret)
    reader = (ReportFileReader(path) if kind == "reports"
              else HypertuneFileReader(path, "val_accuracy"))
    assert reader.poll(final=True) == []


@pytest.mark.parametrize("kind", ["reports", "hypertune"])
def test_a_fifo_in_place_of_a_report_file_does_not_block_the_reader(
    tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "planted"
    os.mkfifo(path)
    reader = (ReportFileReader(path) if kind == "reports"
              else HypertuneFileReader(path, "val_accuracy"))
    started = time.monotonic()
    assert reader.poll(final=True) == []  # an open() without O_NONBLOCK would hang here
    assert time.monotonic() - started < 1.0


# -- nothing a trial writes makes a poll raise ---------------------------------------------------

_HUGE = "1" + "0" * 400  # a JSON integer too large for a float


def test_a_status_that_is_a_list_or_an_object_is_a_dropped_value(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": 1}\n{"status": ["ok"], "loss": 1}\n{"status": {"failed": 1}}\n'
                  '{"status": ["failed"], "reason": "x"}\n{"acc": 2}\n')
    reader = ReportFileReader(path)
    assert [r.values for r in reader.poll()] == [
        {"acc": 1}, {"loss": 1}, {}, {"reason": "x"}, {"acc": 2}]
    assert reader.status is None


def test_a_status_reason_of_any_kind_becomes_text(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    deep = "[" * 900 + "]" * 900  # nested about as deep as the parser goes
    _append(path, '{"status": "failed", "reason": ["disk", {"full": true}]}\n'
                  f'{{"status": "fatal", "reason": {deep}}}\n{{"acc": 1}}\n')
    reader = ReportFileReader(path)
    assert [r.values for r in reader.poll()] == [{"acc": 1}]
    assert reader.status is not None and reader.status[0] == "fatal"
    assert reader.problems == []


@pytest.mark.parametrize("when", [_HUGE, "-" + _HUGE, "NaN", "Infinity", "-Infinity", "true",
                                  "null", "[1]", '{"s": 1}', '"1700000000"', "1e400"])
def test_a_t_that_is_no_usable_time_is_ignored(tmp_path: Path, when: str) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, f'{{"acc": 1, "_t": 5}}\n{{"acc": 2, "_t": {when}}}\n{{"acc": 3, "_t": 7.5}}\n')
    reader = ReportFileReader(path)
    assert reader.poll() == [Report({"acc": 1}, 5.0), Report({"acc": 2}), Report({"acc": 3}, 7.5)]
    assert reader.skipped == 0


def test_values_of_odd_kinds_never_raise_and_neighbours_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "reports.jsonl"
    odd = [f'{{"step": {_HUGE}}}', f'{{"step": -{_HUGE}, "acc": 0.5}}', '{"step": [1, 2]}',
           '{"step": "3", "loss": -0.0}', '{"step": 1.5e308, "x": 1e999}', '{"": 1, "_t": []}',
           '{"a": "\\ud800", "\\udfff": 1}', '{"n": 9223372036854775808}',
           '{"n": -9223372036854775808}', f'{{"deep": {"[" * 900 + "]" * 900}}}',
           "{" + ", ".join(f'"k{i}": {i}' for i in range(5000)) + "}"]
    lines = [line for o in odd for line in (o, f'{{"good": {len(o)}}}')]
    _append(path, "\n".join(lines) + "\n")
    reports = ReportFileReader(path).poll()
    assert [r.values for r in reports[1::2]] == [{"good": len(o)} for o in odd]
    got = [r.values for r in reports[0::2]]
    assert got[0] == {} and got[1] == {"acc": 0.5}  # beyond a float: dropped
    assert got[2] == {} and got[3] == {"step": "3", "loss": -0.0}
    assert got[4] == {"step": 1.5e308, "x": math.inf}
    assert got[5] == {"": 1}
    assert got[7] == {"n": 2.0**63} and got[8] == {"n": -(2**63)}
    assert got[9] == {} and len(got[10]) == 5000


def test_a_fuzzed_report_file_never_makes_a_poll_raise(tmp_path: Path) -> None:
    rng = random.Random(7)
    atoms = ["0", "-1", "1.5", _HUGE, "-" + _HUGE, "1e400", "NaN", "Infinity", "-Infinity",
             "true", "false", "null", '""', '"failed"', '"fatal"', '"\\ud800"', "[]", "{}",
             "[" * 990 + "]" * 990, '{"a": [1, {"b": null}]}', "9" * 5000]
    keys = ["status", "reason", "_t", "step", "acc", "training_iteration", ""]
    path = tmp_path / "reports.jsonl"
    expected = []
    with open(path, "wb") as f:
        for i in range(2000):
            if i % 3 == 0:
                f.write(b'{"good": %d}\n' % i)
                expected.append(i)
                continue
            fields = [f'"{rng.choice(keys)}": {rng.choice(atoms)}'
                      for _ in range(rng.randint(0, 4))]
            text = "{" + ", ".join(fields) + "}"
            if rng.random() < 0.2:  # cut short, or garbled (a NUL, a byte that is no UTF-8)
                text = text[: rng.randint(0, len(text))] + rng.choice(["", "\x00", "\udcff", "}"])
            f.write(text.encode("utf-8", "surrogateescape") + b"\n")
        f.write(b'{"good": "last", "_t": %s}' % _HUGE.encode())  # no newline: the final poll's
    reader = ReportFileReader(path)
    reports = reader.poll() + reader.poll(final=True)
    goods = [r.values["good"] for r in reports if set(r.values) == {"good"}]
    assert goods == [*expected, "last"]


def test_hypertune_values_and_timestamps_of_odd_kinds_never_raise(tmp_path: Path) -> None:
    path = tmp_path / "hypertune.metrics"
    deep = "[" * 900 + "]" * 900
    lines = [
        f'{{"global_step": "1", "acc": "0.5", "timestamp": {_HUGE}, "trial": "0"}}',
        f'{{"global_step": "2", "acc": {_HUGE}, "n": 9223372036854775808, "timestamp": 2.0}}',
        f'{{"global_step": [2], "acc": "{_HUGE}", "timestamp": NaN, "deep": {deep}}}',
        f'{{"global_step": "4", "acc": "{"9" * 5000}", "timestamp": "soon", "x": {{"y": 1}}}}',
        '{"global_step": "5", "acc": "0.75", "timestamp": 5.0}',
    ]
    path.write_text("\n".join(lines) + "\n")
    reader = HypertuneFileReader(path, "acc")
    assert reader.poll() == [
        Report({"step": 1, "acc": 0.5}),
        Report({"step": 2, "n": 2.0**63}, 2.0),  # an int beyond a float is dropped
        Report({"acc": math.inf}),
        Report({"step": 4, "acc": math.inf}),
        Report({"step": 5, "acc": 0.75}, 5.0),
    ]
    assert reader.poll(final=True) == []
    assert reader.skipped == 0


def _deepest_parse() -> int:
    """How deep JSON can be nested for json.loads called from here."""
    for depth in range(sys.getrecursionlimit(), 0, -1):
        try:
            json.loads("[" * depth + "]" * depth)
        except RecursionError:
            continue
        return depth
    raise AssertionError("nothing parses")


def test_values_nested_to_the_parsers_limit_never_raise(tmp_path: Path) -> None:
    # A value nested nearly as deep as the parser goes is parsed, and may then be too deep to
    # be made text (a reason, an entry's identity): its line is taken, or skipped, never fatal.
    top = _deepest_parse()
    depths = range(top - 40, top + 6)
    reports, hyper = tmp_path / "reports.jsonl", tmp_path / "hypertune.metrics"
    _append(reports, "".join(
        f'{{"status": "failed", "reason": {"[" * d + "]" * d}}}\n{{"d": {d}}}\n' for d in depths))
    hyper.write_text("".join(
        f'{{"timestamp": {d}, "acc": "1", "v": {"[" * d + "]" * d}}}\n' for d in depths))
    reader = ReportFileReader(reports)
    assert [r.values for r in reader.poll(final=True)] == [{"d": d} for d in depths]
    assert reader.status is not None
    entries = HypertuneFileReader(hyper, "acc").poll(final=True)
    assert entries and all(r.values == {"acc": 1} for r in entries)


def test_text_of_a_value_too_deep_to_print_is_its_kind() -> None:
    # Deeper than any parse gives (a safety net): str() itself would raise RecursionError.
    value: list[Any] = []
    for _ in range(10 * sys.getrecursionlimit()):
        value = [value]
    assert reports_module._text(value) == "<list>"
    assert reports_module._text("as is") == "as is"
    assert reports_module._text(None) == "None"


# -- report files that cannot be read ----------------------------------------------------------


def _plant(path: Path, kind: str) -> None:
    """Put something that is not a readable report file at ``path``."""
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "socket":
        cwd = os.getcwd()
        os.chdir(path.parent)  # a relative name: tmp_path is longer than a socket's may be
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)  # the socket file stays after the close
        finally:
            os.chdir(cwd)
    elif kind == "link loop":
        path.symlink_to(path)
    elif kind == "link":
        target = path.with_name("target")
        target.write_text('{"acc": 1}\n')
        path.symlink_to(target)


@pytest.mark.parametrize("reader_kind", ["reports", "hypertune"])
@pytest.mark.parametrize("kind", ["folder", "fifo", "socket", "link loop", "link"])
def test_something_else_at_a_report_files_path_is_said_once_and_read_as_nothing(
    tmp_path: Path, reader_kind: str, kind: str
) -> None:
    path = tmp_path / "planted"
    _plant(path, kind)
    reader = (ReportFileReader(path) if reader_kind == "reports"
              else HypertuneFileReader(path, "acc"))
    assert reader.unread_bytes() == 0
    for final in (False, False, True):
        assert reader.poll(final=final) == []
    assert len(reader.problems) == 1 and "planted: not read" in reader.problems[0]
    assert reader.skipped == 0
    # Replaced by a report file, it is read; broken again, it is said again.
    (path.rmdir if kind == "folder" else path.unlink)()
    path.write_text('{"acc": "1", "timestamp": 1.0}\n')
    expected = {"acc": "1", "timestamp": 1.0} if reader_kind == "reports" else {"acc": 1}
    assert [r.values for r in reader.poll(final=True)] == [expected]
    path.unlink()
    _plant(path, kind)
    reader.poll()
    assert len(reader.problems) == 2


@pytest.mark.parametrize("reader_kind", ["reports", "hypertune"])
@pytest.mark.parametrize("error", [PermissionError, IsADirectoryError, OSError])
def test_a_report_file_the_daemon_cannot_open_is_said_once_and_read_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader_kind: str, error: type[OSError]
) -> None:
    path = tmp_path / "reports.jsonl"
    _append(path, '{"acc": "1", "global_step": "1", "timestamp": 1.0}\n')
    real_open = os.open

    def refusing_open(file: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if Path(file) == path:
            raise error(errno.EACCES, "refused for the test")
        return real_open(file, flags, *args, **kwargs)

    reader = (ReportFileReader(path) if reader_kind == "reports"
              else HypertuneFileReader(path, "acc"))
    monkeypatch.setattr(os, "open", refusing_open)
    assert reader.poll() == [] and reader.poll(final=True) == []
    assert reader.problems == ["reports.jsonl: not read: refused for the test"]
    monkeypatch.undo()
    assert len(reader.poll(final=True)) == 1  # nothing was lost meanwhile


def test_a_hypertune_file_too_large_to_be_hypertunes_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports_module, "_MAX_HYPERTUNE_FILE", 1000)
    path = tmp_path / "hypertune.metrics"
    writer, reader = _HypertuneWriter(path), HypertuneFileReader(path, "val_accuracy")
    writer.report(0.5, 1, 1000.0)
    assert len(reader.poll()) == 1
    for step in range(2, 30):
        writer.report(0.5, step, 1000.0 + step)
    assert reader.unread_bytes() == 1000
    assert reader.poll() == [] and reader.poll(final=True) == []
    assert len(reader.problems) == 1 and "too large" in reader.problems[0]


def test_a_read_that_fails_midway_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reports_module, "_CHUNK", 16)  # several reads per poll
    path = tmp_path / "reports.jsonl"
    _append(path, "".join(f'{{"step": {i}}}\n' for i in range(10)))
    real_pread, calls = os.pread, [0]

    def failing_pread(fd: int, n: int, offset: int) -> bytes:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(errno.EIO, "Input/output error")
        return real_pread(fd, n, offset)

    reader = ReportFileReader(path)
    monkeypatch.setattr(os, "pread", failing_pread)
    assert reader.poll() == []
    assert reader.problems == ["reports.jsonl: not read: Input/output error"]
    assert [r.values["step"] for r in reader.poll()] == list(range(10))
