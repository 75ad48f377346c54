"""A real daemon process on a real socket, with fake GPUs, for integration tests.

The daemon itself is started by :mod:`gpusched.testing.daemon` (which the benchmarks use too);
this module adds the tests' fast settings and small helpers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from gpusched.testing import daemon as _daemon
from gpusched.testing.daemon import DaemonProcess, stop_daemon
from gpusched.testing.daemon import fake_gpu_config as fake_config

__all__ = [
    "Daemon",
    "FAST_SETTINGS",
    "TERMINAL",
    "fake_config",
    "running_daemon",
    "stop_daemon",
    "trial_script",
    "wait_for",
]

T = TypeVar("T")
Daemon = DaemonProcess
TRIALS = Path(__file__).parent / "trials"
FAST_SETTINGS = {
    "poll_interval_s": 0.05,
    "release_poll_s": 0.02,
    "report_poll_s": 0.02,
    "grace_period_s": 3.0,
    "shutdown_grace_s": 3.0,
    "release_timeout_s": 10.0,
}
TERMINAL = _daemon.TERMINAL_STATES


def wait_for(check: Callable[[], T | None], timeout: float = 30.0, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(0.02)


@contextmanager
def running_daemon(
    tmp: Path, *, settings: dict[str, Any] | None = None, **options: Any
) -> Iterator[Daemon]:
    """Start ``gpusched daemon`` with the fast settings (``settings`` override them) and the
    options of :func:`gpusched.testing.daemon.start_daemon`; stop it (SIGTERM) at the end."""
    with _daemon.running_daemon(
        tmp, settings={**FAST_SETTINGS, **(settings or {})}, start_timeout_s=20.0, **options
    ) as daemon:
        yield daemon


def trial_script(name: str) -> str:
    """The path of a test trial script."""
    return str(TRIALS / name)
