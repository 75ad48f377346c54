"""structlog set-up: the one module that configures logging.

Events, not sentences: ``log.info("trial_started", trial="e3/7", pid=123)``. JSON lines on
stdout when it is not a terminal (journald, files), console rendering on a terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

import structlog

from gpusched.errors import ConfigError

__all__ = ["configure_logging", "get_logger"]


def _private_opener(path: str, flags: int) -> int:
    return os.open(path, flags, 0o640)


def configure_logging(*, level: str = "info", stream: TextIO | None = None,
                      json: bool | None = None, also_to: str | None = None) -> None:
    """Configure structlog for the daemon. ``json=None`` picks by whether ``stream`` is a tty.

    ``also_to``: a file that gets every line too (appended; the ``log_file`` setting).
    """
    first = stream if stream is not None else sys.stdout  # None: started with stdout closed
    use_json = not _is_terminal(first) if json is None else json
    targets = [] if first is None else [first]
    if also_to is not None:
        try:
            # Line-buffered and open for the daemon's life: every event reaches the file at
            # once, and logrotate's copytruncate works with an O_APPEND file. Made 0640 (not
            # the umask's 0644): its lines name experiments, pids and trials' failure reasons.
            targets.append(open(also_to, "a", buffering=1, encoding="utf-8",  # noqa: SIM115
                                opener=_private_opener))
        except OSError as exc:
            raise ConfigError(f"log_file {also_to}: cannot open it ({exc.strerror})") from None
    out = cast(TextIO, _Tee(*targets))  # print() needs only write() and flush()
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_logger_name,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=_NamedPrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (OSError, ValueError):  # closed, or a stream that cannot say
        return False


class _Tee:
    """Writes to the daemon's stdout and its log file, each on its own: a write that fails (a
    pipe whose reader is gone, a terminal hung up, a full disk) is dropped and that stream
    given up, never raised into the code that logged (the scheduler, often in its own error
    handling: a log line must not take the daemon down), and the other stream goes on."""

    def __init__(self, *streams: TextIO) -> None:
        self._streams = list(streams)

    def write(self, text: str) -> int:
        self._each(lambda stream: stream.write(text))
        return len(text)

    def flush(self) -> None:
        self._each(lambda stream: stream.flush())

    def _each(self, do: Callable[[TextIO], object]) -> None:
        for stream in list(self._streams):
            try:
                do(stream)
            except (OSError, ValueError):  # ValueError: written after it was closed
                self._streams.remove(stream)


class _NamedPrintLogger(structlog.PrintLogger):
    """structlog's PrintLogger (one flushed line per event) with a ``name``."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedPrintLoggerFactory:
    """Makes :class:`_NamedPrintLogger` s; ``get_logger(name)`` passes the name."""

    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedPrintLogger:
        return _NamedPrintLogger(self._file, str(args[0]) if args else "gpusched")


def get_logger(name: str) -> Any:
    """A structlog logger with ``logger=name`` in every event.

    Lazy: modules create their loggers at import, before :func:`configure_logging` runs, and
    the configuration is read at the first event. (Calling ``.bind()`` on the proxy here
    would build the logger at once, from structlog's default configuration: console output
    and no level filter, whatever the daemon asked for.) The name travels as the logger
    factory's argument and :func:`structlog.stdlib.add_logger_name` puts it in the event.
    """
    return structlog.get_logger(name)
