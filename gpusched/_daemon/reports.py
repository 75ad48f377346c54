"""A running trial's report files, turned into records incrementally.

Two sources, both polled by the daemon while the trial runs and once more (``final=True``) after
it exits:

- :class:`ReportFileReader` tails ``GPUSCHED_REPORT_FILE``: JSON Lines that the trial appends.
  Only new bytes are read, in big chunks; a trailing line without ``"\\n"`` is half-written and
  waits for the next poll, except at the final poll, where a complete JSON object is accepted.
  A ``{"status": "failed"|"fatal", "reason": ...}`` line is not a report: it sets ``status``
  (:func:`status_at_end` finds the one a file ends with, for a restarted daemon). A file that
  shrank, that a retry rewrote (``watch_rewrite``), or whose bytes before where reading
  stopped are not the ones read (another file: deleted and written again, or renamed over),
  is read again from its start; one rewritten whole with the lines read kept is read on.
- :class:`HypertuneFileReader` reads ``CLOUD_ML_HP_METRIC_FILE``, which Google's
  ``cloudml-hypertune`` rewrites whole at every report, keeping its last 100 entries, each like
  ``{"global_step": "3", "<tag>": "0.91", "timestamp": 1525851440.12, "trial": "0"}``.
  Entries are deduplicated across rewrites and their numeric strings become numbers.

Values kept: ``int``, ``float`` (NaN and infinities included: the scheduler treats a non-finite
metric as missing) and ``str``; anything else (``bool``, ``null``, lists, objects) is dropped.

Nothing a trial writes makes a poll raise: a line that cannot be taken is skipped, and a file
that cannot be read (a link, a FIFO, a folder, one the daemon may not open; for another user's
trial, a hard link or a file of a third user: see :func:`why_not_read`) is as if absent; either
is described in ``problems``, for the daemon's log.

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
from typing import Any, NamedTuple

__all__ = [
    "Metric", "Report", "ReportFileReader", "HypertuneFileReader", "AutoFill",
    "regular_file_size", "StatusLine", "status_at_end", "why_not_read",
]

Metric = float | int | str
_INT64 = 2**63
_MAX_PROBLEMS = 5
_CHUNK = 8 << 20  # bytes per read: large, so 100k small lines cost a handful of syscalls
# A trial's folder belongs to its user, and a root daemon reads what is in it: a link there
# must not make it read a file the user may not (O_NOFOLLOW), nor a FIFO block its event loop
# (O_NONBLOCK, then only regular files); nor a hard link (see why_not_read). None is read, and
# each is said once.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_MAX_POLL = 64 << 20  # bytes per poll while the trial runs: a backlog is read in slices
_MAX_PENDING = 16 << 20  # a "line" this long without a newline is garbage, not a slow writer
# A report is a few numbers: a line longer than this (a tensor printed, an image in base64 at
# every step) is not stored, or the trial log would grow by as much at each.
_MAX_LINE = 1 << 20
# Of an earlier attempt's bytes, the last this many are kept to see a retry's rewrite: two or
# three lines (gpusched.trial.report's hold their "_t" times, which no rewrite repeats).
_WATCHED = 256
_STATUS_TAIL = 64 << 10  # bytes read from a report file's end to find its status line
# hypertune's file holds 100 short entries: one this big is not its, and is not read (whole,
# at every change, it would take the daemon's memory).
_MAX_HYPERTUNE_FILE = 64 << 20
_FLOAT_RANGE = 2**1023  # float() of an int this large or larger may overflow
# typeshed declares make_scanner as a class whose argument is itself; it takes a JSONDecoder.
_scan = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]
_STATUSES = frozenset({"failed", "fatal"})
_HYPERTUNE_DEFAULT_TAG = "training/hptuning/metric"
_HYPERTUNE_KEEPS = 100  # entries that cloudml-hypertune keeps in its file
_HYPERTUNE_REMEMBERS = 16 * _HYPERTUNE_KEEPS  # entries known as read: 16 writers' windows


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
        self._unreadable: str | None = None  # why the file could not be read, last time

    def _problem(self, message: str, *, skip: bool = True) -> None:
        self.skipped += skip
        if len(self.problems) < _MAX_PROBLEMS:
            self.problems.append(message)

    def _cannot_read(self, path: Path, exc: OSError) -> None:
        """The file is there but not read (it counts as absent): said once, not at each poll,
        until it has been read again."""
        why = f"{path.name}: not read: {exc.strerror or exc}"
        if why != self._unreadable:
            self._unreadable = why
            self._problem(why, skip=False)

    def _was_read(self) -> None:
        self._unreadable = None


class _NotAReportFile(OSError):
    """Something is at a report file's path, but not a file the daemon reads."""


def why_not_read(st: os.stat_result, owner: int | None,
                 daemon_uid: int | None = None) -> str | None:
    """Why the daemon does not read a file of a trial's folder (``st``: its ``fstat``, made
    through a descriptor opened with ``O_NOFOLLOW``), or None when it may.

    Only a regular file. ``owner``: the uid of the other user the trial runs as (a root
    daemon's trial), None for the daemon's own. Such a user may plant a hard link to a file it
    may not read (where ``fs.protected_hardlinks`` is off), whose text would reach what that
    user sees: its file is read only if it belongs to that user or to the daemon
    (``daemon_uid``, this process's effective uid by default) and has no other name.
    """
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({stat.filemode(st.st_mode)})"  # "d...": a folder
    if owner is None:  # the daemon's own user: nothing more to look at, no syscall
        return None
    if st.st_nlink != 1:
        return (f"it has {st.st_nlink} names (a hard link), and the trial runs as another"
                " user")
    if st.st_uid != owner and st.st_uid != (os.geteuid() if daemon_uid is None else daemon_uid):
        return f"owned by uid {st.st_uid}, neither the trial's user (uid {owner}) nor the daemon"
    return None


def _open_report_file(path: Path, owner: int | None = None) -> tuple[int, os.stat_result]:
    """A read-only fd of the regular file ``path`` and its ``fstat``; FileNotFoundError when
    there is nothing there, another OSError when what is there is not read (``owner``: see
    :func:`why_not_read`)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _NotAReportFile(errno.ELOOP, "a symbolic link, not followed") from None
        if exc.errno == errno.ENOTDIR:
            raise _NotAReportFile(errno.ENOTDIR, "a part of its path is not a folder") from None
        raise  # FileNotFoundError; PermissionError, EIO... (the caller says so)
    try:
        st = os.fstat(fd)
        if (why := why_not_read(st, owner)) is not None:
            raise _NotAReportFile(errno.EACCES, why)
    except OSError:
        os.close(fd)
        raise
    return fd, st


def _regular_stat(path: Path) -> os.stat_result | None:
    """The ``lstat`` of the regular file at ``path``; None for none, or for anything else
    there (a link, a FIFO...: not read, see :func:`_open_report_file`)."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def regular_file_size(path: Path) -> int:
    """The size of the regular file at ``path``; 0 for none, or for anything else there."""
    st = _regular_stat(path)
    return 0 if st is None else st.st_size


def _integer(value: int) -> int | float | None:
    """An int as it is stored: SQLite stores 64-bit integers; a larger one is still a number,
    as a float; None for one too large for a float, too (dropped)."""
    if -_INT64 <= value < _INT64:
        return value
    return float(value) if abs(value) < _FLOAT_RANGE else None


def _clean(raw: dict[str, Any]) -> tuple[dict[str, Metric], list[str]]:
    """The values of ``raw`` that can be stored, and the names of those that cannot; the slow
    path, taken only when one cannot."""
    out: dict[str, Metric] = {}
    dropped: list[str] = []
    for key, value in raw.items():
        kind = type(value)
        if kind is float or kind is str:
            out[key] = value
        elif kind is int and (number := _integer(value)) is not None:
            out[key] = number
        else:
            dropped.append(key)
    return out, dropped


def _encodable(text: str) -> str:
    """``text`` as UTF-8 can hold it: a lone surrogate (JSON's ``"\\udcff"``, which Python
    gives for undecodable bytes in a file name) becomes its escape, as text. SQLite refuses
    it, and so would a terminal."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _without_surrogates(raw: dict[str, Any]) -> dict[str, Any]:
    """``raw`` with its keys and text values :func:`_encodable`; called only for a line that
    escapes a surrogate (``\\ud800``-``\\udfff``), so the common line pays one search."""
    return {_encodable(k): _encodable(v) if type(v) is str else v for k, v in raw.items()}


def _escapes_surrogate(line: str | bytes) -> bool:
    """Whether ``line`` (JSON text) may hold a surrogate escape (a pair too: then no harm)."""
    if isinstance(line, bytes):
        return b"\\ud" in line or b"\\uD" in line
    return "\\ud" in line or "\\uD" in line


def _time(value: Any) -> float | None:
    """A report's own time, when it carries a usable one (a finite number of seconds)."""
    kind = type(value)
    if kind is int:
        return float(value) if abs(value) < _FLOAT_RANGE else None  # math.isfinite would raise
    if kind is float and math.isfinite(value):
        return float(value)
    return None


def _text(value: Any) -> str:
    """``value`` as text (a status line's reason, a part of an entry's identity); never raises,
    whatever JSON gave."""
    if type(value) is str:
        return value
    try:
        return str(value)
    except (RecursionError, ValueError):  # nested to the parser's limit; an int too long
        return f"<{type(value).__name__}>"


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

    def __init__(self, path: str | os.PathLike[str], offset: int = 0,
                 *, status_from: int = 0, watch_rewrite: bool = False,
                 owner: int | None = None) -> None:
        """``owner``: the uid of the other user the trial runs as, None for the daemon's own
        (see :func:`why_not_read`).

        ``status_from``: where this attempt's own lines begin. A status line before it was
        an earlier attempt's (one interrupted before its lines were read): its reports count,
        its status does not (it would decide how this attempt ended).

        ``watch_rewrite``: the ``offset`` bytes before were an earlier attempt's, and the
        attempt about to start may rewrite the file rather than append to it (a trainer that
        opens it with ``"w"``). What they are now is kept: if they change, the file is read
        again from its start, all of it this attempt's. Without this, only a file that
        shrank below ``offset`` was seen to be rewritten, and a retry that wrote more than
        ``offset`` bytes before the first poll lost its first reports. Bytes rewritten the
        same as before cannot be told from bytes kept: a poll that finds the file past
        ``offset`` takes them for the stored reports, one that finds it shorter reads it all
        again (which of the two depends on when the poll comes: docs/failures.md says so).
        """
        super().__init__()
        self.path = Path(path)
        self.owner = owner
        self.offset = offset  # bytes consumed, pending bytes included
        self.status: tuple[str, str] | None = None
        self._status_from = status_from
        self._dropped: set[str] = set()  # names whose values were dropped, said once each
        self._pending = b""
        self._line = 0
        # The last bytes before ``offset`` (min(_WATCHED, offset) of them), as read: a read
        # takes them again with what follows, in the same pread, and if they changed the file
        # is not the one that was read (see _read_on). None: not known (bytes this reader did
        # not read, a restarted daemon's: taken as they are at its first read; while watched:
        # there were none, and whatever is found is this attempt's).
        self._tail: bytes | None = b"" if offset == 0 else None
        # The file's (st_dev, st_ino, st_mtime_ns) at the last poll: when they change and it
        # did not grow, it was replaced (deleted and written again, or another renamed over
        # it) or rewritten, maybe to the same size: its tail is looked at.
        self._seen: tuple[int, int, int] | None = None
        # While watched, the earlier attempt's last bytes (_tail) are looked at at every poll,
        # until this attempt is seen appending after them.
        self._watching = watch_rewrite and offset > 0  # a new folder's reader: no syscall
        if self._watching:
            try:
                self._tail = _bytes_before(self.path, offset, owner)
            except FileNotFoundError:
                pass  # gone: whatever is there later is this attempt's
            except _NotAReportFile:
                pass  # a link, a FIFO...: not read; a file there later is this attempt's
            except OSError:
                self._watching = False  # not read now (EIO, EACCES): nothing to compare with

    def __repr__(self) -> str:
        return f"<ReportFileReader {self.path} offset={self.offset} skipped={self.skipped}>"

    def poll(self, *, final: bool = False) -> list[Report]:
        """Read what was appended since the last poll; ``final`` after the trial has exited.
        Never raises for what the trial wrote: what cannot be taken is in ``problems``."""
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
        return self._parse(lines, buf, self.offset - len(buf))

    @property
    def read_through(self) -> int:
        """Bytes of the file consumed as complete lines (a half-written line not included)."""
        return self.offset - len(self._pending)

    def unread_bytes(self) -> int:
        """How much the next poll may read (a stat; 0 when there is no file to read): what is
        past ``offset``; the whole file when that poll may read it again from its start (it
        is shorter than ``offset``, or a retry may have rewritten it: see ``watch_rewrite``).
        The runner reads a big poll in a worker thread: a rewritten file of 64 MiB must not be
        taken for a few new bytes."""
        st = _regular_stat(self.path)
        if st is None:
            return 0
        size = st.st_size
        if self._watching or size < self.offset or (
                self._seen is not None and (st.st_dev, st.st_ino) != self._seen[:2]):
            return size  # rewritten, or another file (one renamed over it): maybe read whole
        return size - self.offset

    def _read_new(self, limit: int | None) -> bytes:
        """The bytes past ``offset`` (at most ``limit``); none while the file is not there or
        cannot be read: what it holds is read once it can be."""
        try:
            data = self._read_file(limit)
        except FileNotFoundError:
            return b""  # the trial has not reported yet
        except OSError as exc:
            self._cannot_read(self.path, exc)
            return b""
        self._was_read()
        return data

    def _read_file(self, limit: int | None) -> bytes:
        fd, st = _open_report_file(self.path, self.owner)
        try:
            size, seen = st.st_size, (st.st_dev, st.st_ino, st.st_mtime_ns)
            if size < self.offset:
                self._start_over(f"file shrank to {size} bytes")
            end = _end(self.offset, size, limit)
            if self._watching:
                data = self._unless_rewritten(fd, _read_range(fd, self.offset, end), limit)
                if data:
                    self._keep_tail(data)
            elif end > self.offset or seen != self._seen:
                data = self._read_on(fd, end, size, limit)
            else:
                data = b""  # not written since the last poll: no read
            self._seen = seen
            # Consumed only once all is read: after a failed read (EIO) it is read again.
            self.offset += len(data)
            return data
        finally:
            os.close(fd)

    def _read_on(self, fd: int, end: int, size: int, limit: int | None) -> bytes:
        """The bytes from ``offset`` to ``end``; or the file from its start, when the bytes
        before ``offset``, read in the same pread, are not the ones read (``_tail``).

        A trainer may delete its report file and write a new one, or write its lines to
        another file and rename that over it: neither is told by the file's identity alone
        (ext4 gives a file created after a delete the freed inode's number), so its bytes
        are looked at, at every read. A file rewritten whole with the lines read kept (all
        lines so far, renamed over at every report) holds the same bytes there: it is read on,
        and each report is stored once."""
        known = min(_WATCHED, self.offset)
        raw = _read_range(fd, self.offset - known, end)
        if len(raw) < known:
            return b""  # it shrank since its fstat: the next poll sees it shorter
        # _tail None: bytes not read by this reader (see __init__), taken as they are.
        if self._tail is not None and raw[:known] != self._tail:
            self._start_over(f"file replaced or rewritten: its first {self.offset} bytes,"
                             " already read, are not the same now")
            raw, known = _read_range(fd, 0, _end(0, size, limit)), 0
        self._tail = raw[-_WATCHED:]  # the bytes before the offset once raw is consumed
        return raw[known:]

    def _keep_tail(self, data: bytes) -> None:
        """``_tail`` once ``data``, read at ``offset``, is consumed."""
        if len(data) >= _WATCHED:
            self._tail = data[-_WATCHED:]
        else:
            self._tail = ((self._tail or b"") + data)[-_WATCHED:]

    def _unless_rewritten(self, fd: int, data: bytes, limit: int | None) -> bytes:
        """``data``, read on after the earlier attempt's bytes; or, if this attempt rewrote
        those, the file from its start. Looked at after ``data`` was read, so that a rewrite
        racing that read is seen too."""
        at = self.offset  # where the earlier attempt's bytes end: nothing is consumed yet
        if _bytes_at(fd, at) == self._tail:
            if data:
                self._watching = False  # this attempt appends: the earlier bytes stay
            return data
        self._start_over(f"file rewritten: its first {at} bytes, an earlier attempt's, changed"
                         " since this attempt started")
        return _read_range(fd, 0, _end(0, os.fstat(fd).st_size, limit))

    def _start_over(self, why: str) -> None:
        """The file is not what was read: read it again from its start, all of it this
        attempt's (a status line in it too)."""
        self._problem(f"{why}; read again from its start", skip=False)
        self.offset, self._pending, self._line = 0, b"", 0
        self._tail = b""
        self._status_from = 0
        self._watching = False

    def _parse(self, lines: list[str], buf: bytes, buf_at: int) -> list[Report]:
        """The reports of ``lines``, decoded from ``buf``, which starts at byte ``buf_at``."""
        reports: list[Report] = []
        # One search of the whole read; only when it finds an escape is each line searched.
        surrogates = _escapes_surrogate(buf)
        for number, line in enumerate(lines, self._line + 1):
            if len(line) > _MAX_LINE:
                self._problem(f"line {number}: {len(line)} characters, over the {_MAX_LINE}"
                              " a report line may have: not stored (report numbers and short"
                              " text; save anything bigger in the trial's folder)")
                continue
            raw = _object(line)
            if raw is None:
                self._problem(f"line {number}: not a JSON object: {line[:80]!r}")
                continue
            if surrogates and _escapes_surrogate(line):
                raw = _without_surrogates(raw)
            status = raw.get("status")
            # A list or an object is no status (nor a value: it is dropped below).
            if type(status) is str and status in _STATUSES:
                start = buf_at
                if start < self._status_from:  # rare: found where its line begins
                    start += _line_start(buf, number - self._line - 1)
                if start >= self._status_from:  # else an earlier attempt's: not this one's
                    self.status = (status, _text(raw.get("reason", "")))
                continue
            when = raw.pop("_t", None)
            if _storable(raw):
                values = raw
            else:
                values, dropped = _clean(raw)
                # Said once per name: a flag reported at every step (`"is_best": true`) must
                # not fill the few problems kept, hiding the lines that were skipped.
                dropped = [k for k in dropped if k not in self._dropped]
                self._dropped.update(dropped)
                if dropped:
                    shown = ", ".join(repr(k[:40]) for k in dropped[:5])
                    self._problem(f"line {number}: {shown}: not a number or text, dropped "
                                  "(a bool, null, list, object, or an int too large)",
                                  skip=False)
            reports.append(Report(values, _time(when)))
        self._line += len(lines)
        return reports


def _end(start: int, size: int, limit: int | None) -> int:
    """Where a read from ``start`` of a file of ``size`` bytes stops: at most ``limit`` on."""
    return size if limit is None else min(size, start + limit)


def _read_range(fd: int, start: int, end: int) -> bytes:
    """The bytes of ``fd`` from ``start`` to ``end`` (fewer if the file is shorter now)."""
    at, chunks = start, []
    while at < end:
        chunk = os.pread(fd, min(_CHUNK, end - at), at)
        if not chunk:
            break
        chunks.append(chunk)
        at += len(chunk)
    return b"".join(chunks)


def _bytes_at(fd: int, end: int) -> bytes:
    """The last :data:`_WATCHED` bytes before ``end`` (fewer in a shorter file)."""
    start = max(0, end - _WATCHED)
    return os.pread(fd, end - start, start)


def _bytes_before(path: Path, end: int, owner: int | None) -> bytes:
    """:func:`_bytes_at` of the report file at ``path``; its errors as for a read of it."""
    fd, _ = _open_report_file(path, owner)
    try:
        return _bytes_at(fd, end)
    finally:
        os.close(fd)


def _line_start(buf: bytes, index: int) -> int:
    """Where line ``index`` (from 0) of ``buf`` starts in it. Lines are split on b"\\n" as
    their decoded text is on "\\n": a 0x0A byte is a newline in UTF-8 whatever surrounds it."""
    at = 0
    for _ in range(index):
        at = buf.index(b"\n", at) + 1
    return at


class StatusLine(NamedTuple):
    """The ``{"status": ...}`` line a report file ends with, when the file was last written
    (its mtime: when that line was written), where in the file the line begins and how long
    the file is (which attempt wrote it: see restore.py's ``_said_at_its_end``)."""

    status: str  # "failed" or "fatal"
    reason: str
    written_at: float
    at: int  # the byte offset of the line's first byte
    size: int  # the file's size when it was read


def status_at_end(path: str | os.PathLike[str], owner: int | None = None) -> StatusLine | None:
    """The status line that the report file at ``path`` ends with (its last line that is not
    blank), or None: for a file that ends with anything else, or that is not there or not
    read (see :func:`_open_report_file`; ``owner``: :func:`why_not_read`'s). For a restarted
    daemon, which did not see the attempt end: nothing after that line, the attempt stopped
    once it had written it."""
    try:
        fd, st = _open_report_file(Path(path), owner)
    except OSError:
        return None
    size = st.st_size
    try:
        written_at = os.fstat(fd).st_mtime
        start = max(0, size - _STATUS_TAIL)
        tail = _read_range(fd, start, size).rstrip()
    except OSError:
        return None
    finally:
        os.close(fd)
    cut = tail.rfind(b"\n")
    if cut < 0 and start > 0:
        return None  # a last line longer than a status line is
    at = start + cut + 1  # cut is -1 for a file of one line: it begins at 0
    line = tail[cut + 1:].decode("utf-8", "replace")
    raw = _object(line)
    if raw is None:
        return None
    status = raw.get("status")
    if type(status) is not str or status not in _STATUSES:
        return None
    if _escapes_surrogate(line):
        raw = _without_surrogates(raw)
    return StatusLine(status, _text(raw.get("reason", "")), written_at, at, size)


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
        *, taken_through: float | None = None, owner: int | None = None,
    ) -> None:
        """``taken_through``: entries stamped at or before this time were taken already (by a
        daemon that stopped); they are skipped. ``owner``: the uid of the other user the trial
        runs as, None for the daemon's own (see :func:`why_not_read`)."""
        super().__init__()
        self.path = Path(path)
        self.owner = owner
        self.metric_tag = metric_tag
        self.last_ts: float | None = taken_through  # the newest entry's time taken so far
        self._taken_through = taken_through
        self._stat: tuple[int, int] | None = None
        # Identities of the entries seen, oldest first, the last _HYPERTUNE_REMEMBERS of them.
        self._seen: dict[tuple[Any, ...], None] = {}

    def __repr__(self) -> str:
        return f"<HypertuneFileReader {self.path} seen={len(self._seen)}>"

    def poll(self, *, final: bool = False) -> list[Report]:
        """Re-read the file if it changed; ``final`` reads it regardless and reports bad lines.
        Never raises for what the trial wrote: what cannot be taken is in ``problems``."""
        try:
            st = os.lstat(self.path)  # a link is not followed (and not read: see _read)
            seen = (st.st_mtime_ns, st.st_size)
            if seen == self._stat and not final:
                return []
            data = self._read()
        except FileNotFoundError:
            return []
        except OSError as exc:
            self._cannot_read(self.path, exc)
            return []
        self._was_read()
        entries, complete = self._entries(data, final)
        # A read racing a rewrite sees a prefix: read it again at the next poll, even if the
        # writer has finished by then and (mtime, size) is back to what it was.
        self._stat = seen if complete and len(data) == st.st_size else None
        return self._new(entries)

    def _read(self) -> bytes:
        fd, st = _open_report_file(self.path, self.owner)
        size = st.st_size
        try:
            if size > _MAX_HYPERTUNE_FILE:
                raise _NotAReportFile(errno.EFBIG, f"{size} bytes, too large for hypertune's")
            chunks = []
            left = _MAX_HYPERTUNE_FILE + 1  # it may grow while read: still at most this much
            while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
                chunks.append(chunk)
                left -= len(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)

    def unread_bytes(self) -> int:
        """How much the next poll would read: the whole file if it changed, else 0."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return 0
        if not stat.S_ISREG(st.st_mode) or (st.st_mtime_ns, st.st_size) == self._stat:
            return 0
        return min(st.st_size, _MAX_HYPERTUNE_FILE)

    def _entries(self, data: bytes, final: bool) -> tuple[list[dict[str, Any]], bool]:
        lines = data.split(b"\n")
        complete = not lines[-1]  # the writer always ends its lines; else it is mid-rewrite
        if complete or not final:
            lines.pop()
        entries = []
        surrogates = _escapes_surrogate(data)  # see ReportFileReader._parse
        for line in lines:
            try:
                raw = json.loads(line)
            except (ValueError, RecursionError):
                raw = None
            if type(raw) is dict:
                if surrogates and _escapes_surrogate(line):
                    raw = _without_surrogates(raw)
                entries.append(raw)
            elif final:
                self._problem(f"not a hypertune entry: {line[:80]!r}")
            else:
                complete = False
        return entries, complete

    def _new(self, entries: list[dict[str, Any]]) -> list[Report]:
        # An entry's identity is all of it (timestamp, global_step, value, trial): two reports
        # never share their time.time(); text because values may be unhashable.
        keys = [tuple(sorted((k, _text(v)) for k, v in e.items())) for e in entries]
        if (keys and keys[0] not in self._seen and self._seen
                and len(keys) >= _HYPERTUNE_KEEPS):
            # A full window that begins past all we saw: it slid over entries never read.
            self._problem("entries were rewritten away before they were read", skip=False)
        reports = []
        for key, entry in zip(keys, entries, strict=True):
            if key not in self._seen:
                # Remembered well past one window: two HyperTune objects in one trainer (a
                # callback and a helper, two ranks) each rewrite the file with their own last
                # 100 entries, in turns; what one's rewrite drops, the other's brings back.
                self._seen[key] = None
                if len(self._seen) > _HYPERTUNE_REMEMBERS:
                    del self._seen[next(iter(self._seen))]
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
            kind = type(value)
            if kind is str:
                values[name] = _number(value)
            elif kind is float:
                values[name] = value
            elif kind is int and (number := _integer(value)) is not None:
                values[name] = number
        return Report(values, _time(entry.get("timestamp")))


class AutoFill:
    """Ray Tune's auto-filled fields, for the reports of one trial in the order they arrive.

    ``iteration`` and ``elapsed_before`` carry on from earlier attempts of the same trial
    (a retry or a resume), so ``training_iteration`` and ``time_total_s`` keep counting.
    ``start_time`` None: the attempt's start is not known, and its first report stands for it
    (the time before that report is not counted, rather than guessed).
    """

    def __init__(
        self, start_time: float | None, *, iteration: int = 0, elapsed_before: float = 0.0
    ) -> None:
        self.start_time = start_time
        self.iteration = iteration
        self.elapsed_before = elapsed_before
        self._last = start_time

    @classmethod
    def after(
        cls, last_report: Mapping[str, Any], start_time: float | None, *, iteration: int = 0
    ) -> AutoFill:
        """For an attempt of a trial whose last stored report is ``last_report`` (``{}``: none):
        its ``time_total_s`` goes on from that report's.

        That report may be of this very attempt, when what it wrote is read on after a daemon
        crash: the time up to it is in its ``time_total_s`` already, so the count goes on from
        its ``timestamp`` (the later of the two) rather than from ``start_time``. A timestamp is
        whole seconds: less than one may be counted twice.
        """
        elapsed = _time(last_report.get("time_total_s"))
        stamped = _time(last_report.get("timestamp"))
        if start_time is not None and stamped is not None:
            start_time = max(start_time, stamped)
        return cls(start_time, iteration=iteration, elapsed_before=max(0.0, elapsed or 0.0))

    def __repr__(self) -> str:
        start = "unknown" if self.start_time is None else f"{self.start_time:.3f}"
        return f"<AutoFill iteration={self.iteration} start_time={start}>"

    def fill(self, values: Mapping[str, Metric], now: float) -> dict[str, Metric]:
        """``values`` with the four fields added (overwriting user-given ones, as Ray does)."""
        start, last = self.start_time, self._last
        if start is None or last is None:
            start = last = self.start_time = now  # the first report of an unknown start
        self.iteration += 1
        # Clocks can step backwards; a negative duration would only confuse stopping rules.
        this_iter = max(0.0, now - last)
        self._last = max(last, now)
        out = dict(values)
        out["training_iteration"] = self.iteration
        out["time_total_s"] = self.elapsed_before + max(0.0, now - start)
        out["time_this_iter_s"] = this_iter
        out["timestamp"] = int(now)
        return out

    def fill_report(self, report: Report, read_time: float) -> dict[str, Metric]:
        """:meth:`fill` at the report's own time, or at ``read_time`` when it carries none."""
        return self.fill(report.values, report.time if report.time is not None else read_time)
