"""Logging set-up: a logger made at import follows the configuration made later."""

from __future__ import annotations

import io
import json
import re

import structlog

from gpusched.log import configure_logging, get_logger


def test_a_logger_made_before_configuration_renders_json_and_filters_by_level() -> None:
    early = get_logger("gpusched.test")  # as a module-level `log = get_logger(...)` is
    out = io.StringIO()
    try:
        configure_logging(level="warning", stream=out, json=True)
        early.info("not_shown", x=1)
        early.warning("shown", trial="e1/0")
        (line,) = out.getvalue().splitlines()
        event = json.loads(line)
        assert event["event"] == "shown" and event["trial"] == "e1/0"
        assert event["logger"] == "gpusched.test" and event["level"] == "warning"
        assert event["timestamp"].endswith("Z")  # ISO 8601, UTC
    finally:
        structlog.reset_defaults()


def test_console_rendering_when_asked() -> None:
    out = io.StringIO()
    try:
        configure_logging(stream=out, json=False)
        get_logger("gpusched.test").info("hello", n=3)
        text = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # without the colours
        assert "hello" in text and "n=3" in text and "gpusched.test" in text
        assert not text.lstrip().startswith("{")
    finally:
        structlog.reset_defaults()
