"""The last meaningful line of a crashed trial's stderr, for its reason.

``exited with code 1: RuntimeError: CUDA out of memory. ...``: the error is in ``gpusched ls``
and ``gpusched show``, without opening the log (Ray Tune and KerasTuner show it so). Only the
file's last few KiB are read, once, when a trial crashed: never for a trial that completed.

A root daemon reads this file in a folder that belongs to the trial's user, who may have put
something else there: a symbolic link or a hard link to a file that user may not read
(``/etc/shadow``), whose last line the daemon would then copy into a reason the user can read;
or a FIFO, which would block the daemon's event loop. So the file is opened without following
links and without blocking, and read only if it is a regular file; for a trial of another user,
only if it has one link and belongs to that user or to the daemon (the rule of the report
files: :func:`~gpusched._daemon.reports.why_not_read`). Whatever is not read leaves the reason
as it was.
"""

from __future__ import annotations

import codecs
import os
import re
import unicodedata
from pathlib import Path

from gpusched._daemon.reports import why_not_read

__all__ = ["TAIL_BYTES", "MAX_SHOWN", "last_stderr_line", "read_tail", "last_meaningful_line"]

TAIL_BYTES = 4096  # a traceback's last line is in its last few KiB
MAX_SHOWN = 200  # characters of the line in a reason, its ellipsis included
_ELLIPSIS = "..."
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Terminal escape sequences (colours, cursor moves, titles, hyperlinks), ECMA-48: CSI (also as
# the 8-bit C1 character), OSC / DCS / SOS / PM / APC strings up to their terminator (or the
# end of the line), and the two- or three-character escapes.
_ESCAPES = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|\x1b[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?"
    r"|\x1b[ -/]*[0-~]?"
)
# Unicode categories dropped from a shown line: controls (the C0 and C1 sets: a bell, a
# backspace, a lone ESC), format characters (bidi overrides that would make the line read
# otherwise in a terminal, zero-width ones) and surrogates (SQLite's UTF-8 refuses a lone one).
_DROPPED = frozenset({"Cc", "Cf", "Cs"})
_UTF8_CONTINUATION = bytes(range(0x80, 0xC0))
_UTF16 = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def last_stderr_line(path: Path, *, start: int = 0, owner: int | None = None,
                     daemon_uid: int | None = None) -> str | None:
    """The last meaningful line (see :func:`last_meaningful_line`) of what the file at ``path``
    holds from byte ``start`` (an attempt's own output: earlier ones appended before it); None
    when it holds none, or is not read (see :func:`read_tail`)."""
    tail = read_tail(path, start=start, owner=owner, daemon_uid=daemon_uid)
    if tail is None:
        return None
    data, cut = tail
    return last_meaningful_line(data, cut=cut)


def read_tail(path: Path, *, start: int = 0, owner: int | None = None,
              daemon_uid: int | None = None) -> tuple[bytes, bool] | None:
    """The last ``TAIL_BYTES`` of the regular file at ``path`` from byte ``start`` (from its
    beginning when it is shorter than ``start``: it was truncated or replaced since), and
    whether they begin inside a line; None when there is no such file or it is not read.

    ``owner``: the uid of the other user the trial runs as (a root daemon's trial). The file
    is then read only if it belongs to that user or to the daemon (``daemon_uid``, this
    process's effective uid by default) and has exactly one link.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)  # ELOOP for a link; a FIFO opens without blocking
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if why_not_read(st, owner, daemon_uid) is not None:
            return None
        start = start if st.st_size >= start else 0
        offset = max(start, st.st_size - TAIL_BYTES)
        if offset == start:
            return os.pread(fd, st.st_size - offset, offset), False
        # One byte more, before the tail: a newline there says it begins with a whole line.
        data = os.pread(fd, st.st_size - offset + 1, offset - 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    return data[1:], data[:1] != b"\n"


def last_meaningful_line(data: bytes, *, cut: bool = False) -> str | None:
    """The last line of ``data`` with a letter or a digit in it, cleaned for a reason: decoded
    as UTF-8, or as UTF-16 after its byte-order mark (undecodable bytes as U+FFFD), without
    terminal escapes or control characters, whitespace runs as one space, an exception
    group's ``|`` margin removed, and at most ``MAX_SHOWN`` characters (cut with an ellipsis).
    A line of ``-``, ``^`` or ``+`` (a traceback's frame or marker) is skipped; a carriage
    return (a progress bar's redraw) ends a line. ``cut``: ``data`` begins inside a line,
    shown with an ellipsis in front if it is the one. None when no line has a letter or a
    digit.
    """
    lines = _ESCAPES.sub("", _decoded(data, cut=cut)).splitlines()
    for index in range(len(lines) - 1, -1, -1):
        line = _clean(lines[index])
        if any(ch.isalnum() for ch in line):
            return _capped(_ELLIPSIS + line if cut and index == 0 else line)
    return None


def _decoded(data: bytes, *, cut: bool) -> str:
    """``data`` as text: UTF-16 when it begins with that encoding's byte-order mark (the
    output's start, written by a tool that logs in UTF-16; the bytes 0xFF 0xFE and 0xFE 0xFF
    begin no UTF-8 text), else UTF-8. A UTF-8 byte-order mark decodes to U+FEFF, a format
    character that :func:`_clean` drops."""
    if cut:  # a character cut in two at the start is not shown as U+FFFD
        return data.lstrip(_UTF8_CONTINUATION).decode("utf-8", errors="replace")
    for bom, codec in _UTF16:
        if data.startswith(bom):
            text = data[len(bom):]
            # A last unit cut in two (a trial killed mid-write) is left out, not shown as U+FFFD.
            return text[:len(text) - len(text) % 2].decode(codec, errors="replace")
    return data.decode("utf-8", errors="replace")


def _clean(line: str) -> str:
    """``line`` without control, format or surrogate characters, its whitespace runs one
    space, and without the ``|`` margin of an exception group's traceback."""
    kept = "".join(" " if ch == "\t" else ch for ch in line
                   if ch == "\t" or unicodedata.category(ch) not in _DROPPED)
    return " ".join(kept.split()).lstrip("| ")


def _capped(line: str) -> str:
    if len(line) <= MAX_SHOWN:
        return line
    return line[:MAX_SHOWN - len(_ELLIPSIS)].rstrip() + _ELLIPSIS
