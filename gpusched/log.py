"""structlog set-up: the one module that configures logging.

Events, not sentences: ``log.info("trial_started", trial="e3/7", pid=123)``. JSON lines on
stdout when it is not a terminal (journald, files), console rendering on a terminal.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

__all__ = ["configure_logging", "get_logger"]


def configure_logging(*, level: str = "info", stream: TextIO | None = None,
                      json: bool | None = None) -> None:
    """Configure structlog for the daemon. ``json=None`` picks by whether ``stream`` is a tty."""
    out = stream if stream is not None else sys.stdout
    use_json = (not out.isatty()) if json is None else json
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    """A structlog logger bound to ``logger=name``."""
    return structlog.get_logger(name).bind(logger=name)
