"""Logging set-up: a logger made at import follows the configuration made later."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import sys
from pathlib import Path

import pytest
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


def test_a_log_stream_that_fails_is_given_up_and_the_log_file_goes_on(tmp_path: Path) -> None:
    # `gpusched daemon | tee log` with tee gone: every event once raised BrokenPipeError into
    # the code that logged, often the scheduler's own error handling, and the daemon exited.
    read, write = os.pipe()
    os.close(read)
    gone = os.fdopen(write, "w")
    copy = tmp_path / "daemon.log"
    try:
        configure_logging(stream=gone, json=True, also_to=str(copy))
        log = get_logger("gpusched.test")
        log.info("first", n=1)  # no exception
        log.info("second", n=2)
        events = [json.loads(line)["event"] for line in copy.read_text().splitlines()]
        assert events == ["first", "second"]
    finally:
        structlog.reset_defaults()
        with contextlib.suppress(OSError):
            gone.close()


def test_a_daemon_started_with_stdout_closed_logs_to_its_file_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sys, "stdout", None)  # what `gpusched daemon >&-` gives Python
    copy = tmp_path / "daemon.log"
    try:
        configure_logging(also_to=str(copy))
        get_logger("gpusched.test").info("started")
        assert json.loads(copy.read_text())["event"] == "started"  # JSON: not a terminal
    finally:
        structlog.reset_defaults()


def test_a_new_log_file_is_not_for_every_local_user(tmp_path: Path) -> None:
    # It was made with the umask's 0644: its lines name experiments, pids and trials' failure
    # reasons (a trial's last stderr line), and log_file may be anywhere.
    copy = tmp_path / "daemon.log"
    old = os.umask(0o022)
    try:
        configure_logging(stream=io.StringIO(), also_to=str(copy))
        get_logger("gpusched.test").info("started")
        assert copy.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
        structlog.reset_defaults()
