"""Reading an experiment file's text: a bounded read, UTF-8, and the errors that say what is
wrong with the path. No YAML here, so that ``gpusched submit`` can send the text to the daemon
(which parses it) without importing a YAML parser (~30 ms of a ~100 ms command)."""

from __future__ import annotations

from pathlib import Path

from gpusched.errors import Problem, SpecError

__all__ = ["MAX_FILE_BYTES", "read_text"]

MAX_FILE_BYTES = 1024 * 1024
"""The largest experiment file read (a real one is a few KiB; a spec travels in one request)."""


def read_text(path: Path) -> str:
    """The text of an experiment file; SpecError naming the file when it cannot be read."""

    def fail(message: str) -> SpecError:
        return SpecError([Problem("", message)], str(path))

    try:
        with open(path, "rb") as fh:  # a bounded read: /dev/zero or a stray dataset would not end
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise fail(f"is over {MAX_FILE_BYTES // 1024} KiB: that is not an experiment file"
                       " (did you pass the wrong path?)")
        return raw.decode("utf-8-sig")
    except FileNotFoundError:
        raise fail("no such file") from None
    except IsADirectoryError:
        raise fail("is a directory, not an experiment file") from None
    except OSError as exc:
        raise fail(f"cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise fail(f"is not UTF-8 text (byte {exc.start} is not)") from None
