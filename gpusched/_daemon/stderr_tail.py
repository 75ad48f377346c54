"""The line of a crashed trial's stderr that says why, for its reason: the exception that ends
its last Python traceback (when little follows it) or a later ``Fatal Python error:``, else its
last meaningful line.

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

__all__ = ["TAIL_BYTES", "MAX_SHOWN", "MAX_LINES_AFTER", "last_stderr_line", "read_tail",
           "last_meaningful_line"]

# A traceback must begin within the tail for its exception to be found: a deep one (a PyTorch
# Lightning stack of 40 frames, a chained exception, a CUDA error's long message) takes a few
# KiB, and an exit handler's lines come after it. Read once per crash: 16 KiB cost nothing.
TAIL_BYTES = 16 * 1024
MAX_SHOWN = 200  # characters of the line in a reason, its ellipsis included
# Lines with a letter or a digit that may follow the exception line of the traceback that ended
# a trial: the rest of a multi-line message (a CUDA error's 3 lines of advice) and an exit
# handler's (Weights & Biases' 4). More is output printed after a handled exception was logged.
MAX_LINES_AFTER = 8
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
# What faulthandler prints first when the interpreter crashes (a segmentation fault, an abort).
_FATAL = "Fatal Python error: "
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
    """The line of ``data`` that says why it crashed, cleaned for a reason: its last ``Fatal
    Python error:`` line or the exception line that ends its last Python traceback, whichever
    comes last (:func:`_crash_line`), else its last line with a letter or a digit in it.

    Cleaned: decoded as UTF-8, or as UTF-16 after its byte-order mark (undecodable bytes as
    U+FFFD), without terminal escapes or control characters, whitespace runs as one space, an
    exception group's ``|`` margin removed, and at most ``MAX_SHOWN`` characters (cut with an
    ellipsis). Without a traceback, a line of ``-``, ``^`` or ``+`` (a traceback's frame or
    marker) is skipped, and a carriage return (a progress bar's redraw) ends a line. ``cut``:
    ``data`` begins inside a line, shown with an ellipsis in front if it is the one. None when
    no line has a letter or a digit.
    """
    lines = _ESCAPES.sub("", _decoded(data, cut=cut)).splitlines()
    found = _crash_line(lines)
    if found is not None:
        return _capped(found)
    for index in range(len(lines) - 1, -1, -1):
        line = _clean(lines[index])
        if _meaningful(line):
            return _capped(_ELLIPSIS + line if cut and index == 0 else line)
    return None


def _crash_line(lines: list[str]) -> str | None:
    """The line (cleaned) of ``lines`` that names the crash: the last ``Fatal Python error:``
    line when no traceback's header comes after it, else the exception line that ends the last
    traceback (:func:`_exception_line`) when at most ``MAX_LINES_AFTER`` lines with a letter or
    a digit follow it; None otherwise.

    A fatal error (faulthandler: a segmentation fault, an abort) is the crash itself, and its
    thread dump after it is no reason. An exception followed by more is not the crash: a
    handled one that was logged (``logger.exception``) before more output and another end
    (``sys.exit("message")``, a signal); only an exit handler's few lines (Weights & Biases')
    or the rest of its own message come after the one that ended the trial.
    """
    for index in range(len(lines) - 1, -1, -1):
        if _FATAL in lines[index]:
            return _clean(lines[index])
        found = _exception_line(lines, index)
        if found is not None:
            at, line = found
            after = sum(1 for rest in lines[at + 1:] if _meaningful(_clean(rest)))
            return line if after <= MAX_LINES_AFTER else None
        if _is_header(lines[index]):
            return None  # the last traceback's exception line was never written
    return None


def _is_header(line: str) -> bool:
    """Whether ``line`` begins a traceback, at the top level: an exception group's header, or
    a plain traceback's (a traceback inside a group, behind its ``|`` margin, is the group's)."""
    return bool(_GROUP_HEADER.match(line)) or (
        _TRACEBACK in line and not line.lstrip().startswith("|"))


def _exception_line(lines: list[str], index: int) -> tuple[int, str] | None:
    """Where in ``lines``, and which (cleaned), is the exception line that ends the traceback
    whose header is ``lines[index]``; None when that is no header, or its exception line was
    not written (a trial killed as it printed).

    The last traceback is the one whose header comes last: with chained exceptions ("During
    handling of the above exception, ...") the one raised last, and with a worker's traceback
    quoted in an exception's message (PyTorch's DataLoader: ``Original Traceback (most recent
    call last):``) the worker's own error. Its exception line is the first line after its
    frames that is not a frame's (:func:`_first_unindented`): an exception note, a message's
    second line or an exit handler's output comes after it. An exception group's header begins
    a block with a margin, whose last exception is taken (:func:`_last_in_group`).
    """
    line = lines[index]
    if _GROUP_HEADER.match(line):
        found = _last_in_group(lines[index + 1:])
    elif _is_header(line):
        found = _first_unindented(lines[index + 1:], _prefix(line, lines[index + 1:]))
    else:
        return None
    return None if found is None else (index + 1 + found[0], found[1])


def _prefix(header: str, rest: list[str]) -> str:
    """What is written before each line of the traceback whose ``header`` line is followed by
    ``rest``: what comes before ``Traceback`` on the header (torchrun's ``[rank0]: ``, a
    logger's) when the next line begins with it too, else nothing (DataLoader's ``Original``
    is a word of the header, not a prefix)."""
    prefix = header[:header.index(_TRACEBACK)]
    return prefix if rest and rest[0].startswith(prefix) else ""


def _first_unindented(lines: list[str], prefix: str) -> tuple[int, str] | None:
    """Where in a traceback's ``lines`` (after its header), and which (cleaned), is the first
    line with a letter or a digit that is not a frame's: its exception. Each line has
    ``prefix`` (the header's) before it, kept in the line shown; a line without it ends the
    traceback (other output) and gives None.

    A frame's lines are indented (its ``File`` line, its code, the ``^`` markers); loguru marks
    the frame that raised with ``> File ...`` and draws its variables with box-drawing
    characters (``│``, ``└``), as rich draws its frames (``╭``, ``│``, ``╰``)."""
    for index, line in enumerate(lines):
        if not line.startswith(prefix):
            return None
        inner = line[len(prefix):]
        if inner[:1].isspace() or inner.startswith("> ") or _is_box_drawing(inner[:1]):
            continue
        cleaned = _clean(line)
        if _meaningful(cleaned):
            return index, cleaned
    return None


def _is_box_drawing(char: str) -> bool:
    return "\u2500" <= char <= "\u257f"  # Unicode's Box Drawing block


def _meaningful(line: str) -> bool:
    """Whether ``line`` says something: it has a letter or a digit."""
    return any(ch.isalnum() for ch in line)


def _last_in_group(lines: list[str]) -> tuple[int, str] | None:
    """Where in an exception group's traceback (``lines``: after its header), and which, is its
    last exception: of
    the lines behind its margin, the last unindented one that follows a frame, a traceback's
    header or a sub-exception's separator (``+---- 2 ----``). The group's own line (``eg (2
    sub-exceptions)``) comes before its sub-exceptions: the one shown is a real error, the
    innermost last one, as a wrapping task group's single error is."""
    found = None
    after_frame = True  # the header: what follows may be the exception (no frames)
    for index, line in enumerate(lines):
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
            if after_frame and _meaningful(cleaned):
                found = index, cleaned
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
