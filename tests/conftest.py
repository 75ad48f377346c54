"""Suite-wide checks: no process of any trial started by the tests outlives the test run."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LEFTOVER_WAIT_S = 10.0


def trial_processes_under(root: Path) -> dict[int, str]:
    """pid -> trial folder, for live processes whose GPUSCHED_TRIAL_DIR is under ``root``."""
    prefix = f"GPUSCHED_TRIAL_DIR={root}".encode()
    found: dict[int, str] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read()
            with open(f"/proc/{name}/stat", "rb") as fh:
                if fh.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                    continue  # exited; only its parent's wait is missing
        except (OSError, IndexError):
            continue
        for var in environ.split(b"\0"):
            if var.startswith(prefix):
                found[int(name)] = var.split(b"=", 1)[1].decode(errors="replace")
    return found


@pytest.fixture(scope="session", autouse=True)
def no_trial_outlives_the_tests(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the last test: every trial process the tests' daemons started is gone."""
    root = tmp_path_factory.getbasetemp()
    yield
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while (left := trial_processes_under(root)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, f"trial processes outlived the tests: {left}"
