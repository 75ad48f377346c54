"""The line of a crashed trial's stderr that says why, for its reason: the exception that ends
its last Python traceback, else its last meaningful line.

``exited with code 1: RuntimeError: CUDA out of memory. ...``: the error is in ``gpusched ls``
and ``gpusched show``, without opening the log (Ray Tune and KerasTuner show it so). The
exception, not what came after it: a library's exit handler often prints last (Weights &
Biases' ``wandb: Find logs at: ...``). Only the file's last 16 KiB are read, once, when a trial
crashed: never for a trial that completed.

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

# A traceback must begin within the tail for its exception to be found: a deep one (a PyTorch
# Lightning stack of 40 frames, a chained exception, a CUDA error's long message) takes a few
# KiB, and an exit handler's lines come after it. Read once per crash: 16 KiB cost nothing.
TAIL_BYTES = 16 * 1024
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
_TRACEBACK = "Traceback (most recent call last):"
# The header of an exception group's traceback as it begins at the top level (a group inside
# another, or a sub-exception's traceback, has a `|` margin in front instead).
_GROUP_HEADER = re.compile(r" *\+ Exception Group " + re.escape(_TRACEBACK))
# The margin of an exception group's traceback: `  | ` before its lines, `  +-+---- 1 ----`
# and `    +----` around its sub-exceptions (the frames' own indentation is kept).
_MARGIN = re.compile(r" *[|+] ?")
_UTF16 = ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"))


def last_stderr_line(path: Path, *, start: int = 0, owner: int | None = None,
                     daemon_uid: int | None = None) -> str | None:
    """The line that says why (see :func:`last_meaningful_line`) of what the file at ``path``
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
    """The line of ``data`` that says why it crashed, cleaned for a reason: the exception line
    that ends its last Python traceback (:func:`_exception_line`) when it has one, else its
    last line with a letter or a digit in it.

    Cleaned: decoded as UTF-8, or as UTF-16 after its byte-order mark (undecodable bytes as
    U+FFFD), without terminal escapes or control characters, whitespace runs as one space, an
    exception group's ``|`` margin removed, and at most ``MAX_SHOWN`` characters (cut with an
    ellipsis). Without a traceback, a line of ``-``, ``^`` or ``+`` (a traceback's frame or
    marker) is skipped, and a carriage return (a progress bar's redraw) ends a line. ``cut``:
    ``data`` begins inside a line, shown with an ellipsis in front if it is the one. None when
    no line has a letter or a digit.
    """
    lines = _ESCAPES.sub("", _decoded(data, cut=cut)).splitlines()
    found = _exception_line(lines)
    if found is not None:
        return _capped(found)
    for index in range(len(lines) - 1, -1, -1):
        line = _clean(lines[index])
        if any(ch.isalnum() for ch in line):
            return _capped(_ELLIPSIS + line if cut and index == 0 else line)
    return None


def _exception_line(lines: list[str]) -> str | None:
    """The exception line (cleaned) that ends the last traceback in ``lines``; None when there
    is no traceback, or its exception line was not written (a trial killed as it printed).

    The last traceback is the one whose header comes last: with chained exceptions ("During
    handling of the above exception, ...") the one raised last, and with a worker's traceback
    quoted in an exception's message (PyTorch's DataLoader: ``Original Traceback (most recent
    call last):``) the worker's own error. Its exception line is the first line after its
    indented frames that is not indented: an exception note, a message's second line or an
    exit handler's output comes after it. An exception group's header begins a block with a
    margin, whose last exception is taken (:func:`_last_in_group`).
    """
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if _GROUP_HEADER.match(line):
            return _last_in_group(lines[index + 1:])
        # A traceback inside a group (behind its `|` margin) is the group's: found above.
        if _TRACEBACK in line and not line.lstrip().startswith("|"):
            return _first_unindented(lines[index + 1:])
    return None


def _first_unindented(lines: list[str]) -> str | None:
    """The first line of a traceback's ``lines`` (after its header) that is not indented and
    has a letter or a digit: its exception (the frames, their code and markers are indented)."""
    for line in lines:
        if line[:1].isspace():
            continue
        cleaned = _clean(line)
        if any(ch.isalnum() for ch in cleaned):
            return cleaned
    return None


def _last_in_group(lines: list[str]) -> str | None:
    """The last exception of an exception group's traceback (``lines``: after its header): of
    the lines behind its margin, the last unindented one that follows a frame, a traceback's
    header or a sub-exception's separator (``+---- 2 ----``). The group's own line (``eg (2
    sub-exceptions)``) comes before its sub-exceptions: the one shown is a real error, the
    innermost last one, as a wrapping task group's single error is."""
    found = None
    after_frame = True  # the header: what follows may be the exception (no frames)
    for line in lines:
        margin = _MARGIN.match(line)
        if margin is None:
            break  # the group's block has ended: what follows is other output
        inner = line[margin.end():]
        if inner[:1].isspace():  # a frame, its code or a marker
            after_frame = bool(inner.strip())
        elif inner[:1] in ("-", "+") or _TRACEBACK in inner:  # a separator or a header
            after_frame = True
        else:
            cleaned = _clean(inner)
            if after_frame and any(ch.isalnum() for ch in cleaned):
                found = cleaned
            after_frame = False
    return found


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
