"""A running trial's report files, turned into records incrementally.

Two sources, both polled by the daemon while the trial runs and once more (``final=True``) after
it exits:

- :class:`ReportFileReader` tails ``GPUSCHED_REPORT_FILE``: JSON Lines that the trial appends.
  Only new bytes are read, in big chunks; a trailing line without ``"\\n"`` is half-written and
  waits for the next poll, except at the final poll, where a complete JSON object is accepted.
  A ``{"status": "failed"|"fatal", "reason": ...}`` line is not a report: it sets ``status``.
- :class:`HypertuneFileReader` reads ``CLOUD_ML_HP_METRIC_FILE``, which Google's
  ``cloudml-hypertune`` rewrites whole at every report, keeping its last 100 entries, each like
  ``{"global_step": "3", "<tag>": "0.91", "timestamp": 1525851440.12, "trial": "0"}``.
  Entries are deduplicated across rewrites and their numeric strings become numbers.

Values kept: ``int``, ``float`` (NaN and infinities included: the scheduler treats a non-finite
metric as missing) and ``str``; anything else (``bool``, ``null``, lists, objects) is dropped.

:class:`AutoFill` adds Ray Tune's fields to each report: ``training_iteration`` (1, 2, 3, ...
per trial), ``time_total_s``, ``time_this_iter_s`` and ``timestamp`` (int unix seconds). As in
Ray, the auto-filled values win over user-given ones of the same name. A report's time is the
``"_t"`` that ``gpusched.trial.report`` writes (hypertune's ``timestamp``), else when it was read.
"""

from __future__ import annotations

import errno
import json
import json.scanner
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Metric", "Report", "ReportFileReader", "HypertuneFileReader", "AutoFill"]

Metric = float | int | str
_INT64 = 2**63
_MAX_PROBLEMS = 5
_CHUNK = 8 << 20  # bytes per read: large, so 100k small lines cost a handful of syscalls
# A trial's folder belongs to its user, and a root daemon reads what is in it: a link there
# must not make it read a file the user may not (O_NOFOLLOW), nor a FIFO block its event loop
# (O_NONBLOCK, then only regular files). Either counts as no report file.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_POLL = 64 << 20  # bytes per poll while the trial runs: a backlog is read in slices
_MAX_PENDING = 16 << 20  # a "line" this long without a newline is garbage, not a slow writer
# typeshed declares make_scanner as a class whose argument is itself; it takes a JSONDecoder.
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_STATUSES = frozenset({"failed", "fatal"})
_HYPERTUNE_DEFAULT_TAG = "training/hptuning/metric"
_HYPERTUNE_KEEPS = 100  # entries that cloudml-hypertune keeps in its file


@dataclass(frozen=True, slots=True)
class Report:
    """One report as the trial wrote it: its values, and when it was written, if known."""

    values: dict[str, Metric]
    time: float | None = None


class _Problems:
    """Counts skipped input and keeps the first few descriptions, for the daemon to log."""

    def __init__(self) -> None:
        self.skipped = 0
        self.problems: list[str] = []

    def _problem(self, message: str, *, skip: bool = True) -> None:
        self.skipped += skip
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message)


def _open_report_file(path: Path) -> tuple[int, int]:
    """A read-only fd of the regular file ``path`` and its size; FileNotFoundError for
    anything else."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno != errno.ELOOP:
            raise
        raise FileNotFoundError(errno.ENOENT, "a link, not a report file", str(path)) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileNotFoundError(errno.ENOENT, "not a regular file", str(path))
    return fd, st.st_size


def _clean(raw: dict[str, Any]) -> dict[str, Metric]:
    """The values of ``raw`` that can be stored; the slow path, taken only when one cannot."""
    out: dict[str, Metric] = {}
    for key, value in raw.items():
        kind = type(value)
        if kind is float or kind is str:
            out[key] = value
        elif kind is int:
            # SQLite stores 64-bit integers; a larger one is still a number, as a float.
            if -_INT64 <= value < _INT64:
                out[key] = value
            elif abs(value) < 2**1023:  # float() of a larger one overflows: drop it
                out[key] = float(value)
    return out


def _time(value: Any) -> float | None:
    """A report's own time, when it carries a usable one."""
    if type(value) in (float, int) and math.isfinite(value):
        return float(value)
    return None


def _storable(raw: dict[str, Any]) -> bool:
    """True when every value of ``raw`` is kept as it is (the fast path)."""
    for value in raw.values():
        kind = type(value)
        if not (kind is float or kind is str or (kind is int and -_INT64 <= value < _INT64)):
            return False
    return True


def _object(line: str) -> dict[str, Any] | None:
    """The JSON object that is the whole of ``line``, or None."""
    try:
        # The C scanner without json.loads' wrapping halves the cost of a typical line...
        raw, end = _scan(line, 0)
        if end != len(line):
            raise ValueError(line)
    except (ValueError, StopIteration):
        try:
            raw = json.loads(line)  # ...and json.loads still forgives surrounding whitespace.
        except (ValueError, RecursionError):
            return None
    except RecursionError:
        return None
    return raw if type(raw) is dict else None


class ReportFileReader(_Problems):
    """Tails a JSON Lines report file; :meth:`poll` returns the reports that are new."""

    def __init__(self, path: str | os.PathLike[str], offset: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.offset = offset  # bytes consumed, pending bytes included
        self.status: tuple[str, str] | None = None
        self._pending = b""
        self._line = 0

    def __repr__(self) -> str:
        return f"<ReportFileReader {self.path} offset={self.offset} skipped={self.skipped}>"

    def poll(self, *, final: bool = False) -> list[Report]:
        """Read what was appended since the last poll; ``final`` after the trial has exited."""
        data = self._read_new(None if final else _MAX_POLL)  # may drop a stale _pending
        buf = self._pending + data
        cut = buf.rfind(b"\n") + 1
        self._pending = buf[cut:]
        # Decoded as a whole, once; invalid UTF-8 becomes U+FFFD rather than costing the line.
        lines = buf[: cut - 1].decode("utf-8", "replace").split("\n") if cut else []
        if len(self._pending) > _MAX_PENDING:
            self._problem(f"line {self._line + len(lines) + 1}: longer than {_MAX_PENDING} bytes")
            self._pending = b""
        if final and self._pending:
            lines.append(self._pending.decode("utf-8", "replace"))
            self._pending = b""
        return self._parse(lines)

    @property
    def read_through(self) -> int:
        """Bytes of the file consumed as complete lines (a half-written line not included)."""
        return self.offset - len(self._pending)

    def unread_bytes(self) -> int:
        """How much the next poll would read (a stat; 0 when there is no file yet)."""
        try:
            return max(os.stat(self.path).st_size - self.offset, 0)
        except FileNotFoundError:
            return 0

    def _read_new(self, limit: int | None) -> bytes:
        try:
            fd, size = _open_report_file(self.path)
        except FileNotFoundError:
            return b""  # the trial has not reported yet
        try:
            if size < self.offset:
                self._problem(f"file shrank to {size} bytes; read again from its start", skip=False)
                self.offset, self._pending, self._line = 0, b"", 0
            end = size if limit is None else min(size, self.offset + limit)
            chunks = []
            while self.offset < end:
                chunk = os.pread(fd, min(_CHUNK, end - self.offset), self.offset)
                if not chunk:
                    break
                chunks.append(chunk)
                self.offset += len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def _parse(self, lines: list[str]) -> list[Report]:
        reports: list[Report] = []
        for number, line in enumerate(lines, self._line + 1):
            raw = _object(line)
            if raw is None:
                self._problem(f"line {number}: not a JSON object: {line[:80]!r}")
                continue
            if raw.get("status") in _STATUSES:
                self.status = (raw["status"], str(raw.get("reason", "")))
                continue
            when = raw.pop("_t", None)
            values = raw if _storable(raw) else _clean(raw)
            reports.append(Report(values, _time(when)))
        self._line += len(lines)
        return reports


def _number(text: str) -> Metric:
    """hypertune writes every value as ``str(value)``: give back the number where it is one."""
    try:
        number = int(text)
        return number if -_INT64 <= number < _INT64 else float(number)
    except (ValueError, OverflowError):
        pass
    try:
        return float(text)
    except ValueError:
        return text


class HypertuneFileReader(_Problems):
    """Reads the file that ``cloudml-hypertune`` rewrites at every report; new entries only."""

    def __init__(
        self, path: str | os.PathLike[str], metric_tag: str = "",
        *, taken_through: float | None = None,
    ) -> None:
        """``taken_through``: entries stamped at or before this time were taken already (by a
        daemon that stopped); they are skipped."""
        super().__init__()
        self.path = Path(path)
        self.metric_tag = metric_tag
        self.last_ts: float | None = taken_through  # the newest entry's time taken so far
        self._taken_through = taken_through
        self._stat: tuple[int, int] | None = None
        # Identities of the entries seen, oldest first. The file keeps a sliding window, so
        # entries older than its current first line never come back and are forgotten.
        self._seen: dict[tuple[Any, ...], None] = {}

    def __repr__(self) -> str:
        return f"<HypertuneFileReader {self.path} seen={len(self._seen)}>"

    def poll(self, *, final: bool = False) -> list[Report]:
        """Re-read the file if it changed; ``final`` reads it regardless and reports bad lines."""
        try:
            st = os.stat(self.path)
            stat = (st.st_mtime_ns, st.st_size)
            if stat == self._stat and not final:
                return []
            data = self._read()
        except FileNotFoundError:
            return []
        entries, complete = self._entries(data, final)
        # A read racing a rewrite sees a prefix: read it again at the next poll, even if the
        # writer has finished by then and (mtime, size) is back to what it was.
        self._stat = stat if complete and len(data) == st.st_size else None
        return self._new(entries)

    def _read(self) -> bytes:
        fd, _ = _open_report_file(self.path)
        try:
            chunks = []
            while chunk := os.read(fd, _CHUNK):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def unread_bytes(self) -> int:
        """How much the next poll would read: the whole file if it changed, else 0."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0
        return 0 if (st.st_mtime_ns, st.st_size) == self._stat else st.st_size

    def _entries(self, data: bytes, final: bool) -> tuple[list[dict[str, Any]], bool]:
        lines = data.split(b"\n")
        complete = not lines[-1]  # the writer always ends its lines; else it is mid-rewrite
        if complete or not final:
            lines.pop()
        entries = []
        for line in lines:
            try:
                raw = json.loads(line)
            except (ValueError, RecursionError):
                raw = None
            if type(raw) is dict:
                entries.append(raw)
            elif final:
                self._problem(f"not a hypertune entry: {line[:80]!r}")
            else:
                complete = False
        return entries, complete

    def _new(self, entries: list[dict[str, Any]]) -> list[Report]:
        # An entry's identity is all of it (timestamp, global_step, value, trial): two reports
        # never share their time.time(); str() because values may be unhashable.
        keys = [tuple(sorted((k, str(v)) for k, v in e.items())) for e in entries]
        if keys and keys[0] in self._seen:
            for old in list(self._seen):
                if old == keys[0]:
                    break
                del self._seen[old]
        elif keys:
            # The window slid past all we saw (or a new writer started afresh): forget it all.
            if self._seen and len(keys) >= _HYPERTUNE_KEEPS:
                self._problem("entries were rewritten away before they were read", skip=False)
            self._seen.clear()
        reports = []
        for key, entry in zip(keys, entries, strict=True):
            if key not in self._seen:
                self._seen[key] = None
                ts = _time(entry.get("timestamp"))
                if self._taken_through is not None and (ts is None or ts <= self._taken_through):
                    continue  # taken before a restart (or cannot tell: not taken twice)
                if ts is not None:
                    self.last_ts = ts if self.last_ts is None else max(self.last_ts, ts)
                reports.append(self._report(entry))
        return reports

    def _report(self, entry: dict[str, Any]) -> Report:
        values: dict[str, Metric] = {}
        for key, value in entry.items():
            if key in ("timestamp", "trial"):
                continue
            name = "step" if key == "global_step" else key
            if name == _HYPERTUNE_DEFAULT_TAG and self.metric_tag and self.metric_tag not in entry:
                name = self.metric_tag  # reported with no tag: it is the experiment's metric
            if type(value) is str:
                values[name] = _number(value)
            elif type(value) in (int, float):
                values[name] = value
        return Report(values, _time(entry.get("timestamp")))


class AutoFill:
    """Ray Tune's auto-filled fields, for the reports of one trial in the order they arrive.

    ``iteration`` and ``elapsed_before`` carry on from earlier attempts of the same trial
    (a retry or a resume), so ``training_iteration`` and ``time_total_s`` keep counting.
    """

    def __init__(
        self, start_time: float, *, iteration: int = 0, elapsed_before: float = 0.0
    ) -> None:
        self.start_time = start_time
        self.iteration = iteration
        self.elapsed_before = elapsed_before
        self._last = start_time

    def __repr__(self) -> str:
        return f"<AutoFill iteration={self.iteration} start_time={self.start_time:.3f}>"

    def fill(self, values: Mapping[str, Metric], now: float) -> dict[str, Metric]:
        """``values`` with the four fields added (overwriting user-given ones, as Ray does)."""
        self.iteration += 1
        # Clocks can step backwards; a negative duration would only confuse stopping rules.
        this_iter = max(0.0, now - self._last)
        self._last = max(self._last, now)
        out = dict(values)
        out["training_iteration"] = self.iteration
        out["time_total_s"] = self.elapsed_before + max(0.0, now - self.start_time)
        out["time_this_iter_s"] = this_iter
        out["timestamp"] = int(now)
        return out

    def fill_report(self, report: Report, read_time: float) -> dict[str, Metric]:
        """:meth:`fill` at the report's own time, or at ``read_time`` when it carries none."""
        return self.fill(report.values, report.time if report.time is not None else read_time)
