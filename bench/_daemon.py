"""What the benchmarks share: a real ``gpusched daemon`` on fake GPUs in a temporary folder,
and the tables they print.

The daemon comes from :mod:`gpusched.testing.daemon`, as in the integration tests:
:func:`running_daemon` writes a ``[daemon]`` TOML config and a fake-GPU file, starts
``python -m gpusched daemon --fake-gpus FILE`` as a user would, waits until its socket answers,
and stops it with SIGTERM at the end; ``daemon.submit_file`` submits an experiment file through
the real CLI (``gpusched submit``) and ``daemon.wait_experiment`` blocks in ``Client.wait`` (the
daemon answers when the experiment ends). For crash tests, :func:`start_daemon` starts one
without a ``with`` block, :func:`kill_daemon` SIGKILLs it, and :func:`start_daemon` on the same
folder starts it again on the same socket and state folder.
"""

from __future__ import annotations

import compileall
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpusched.testing.daemon import TERMINAL_STATES as TERMINAL
from gpusched.testing.daemon import (
    DaemonProcess,
    fake_gpu_config,
    kill_daemon,
    log_tail,
    running_daemon,
    start_daemon,
    stop_daemon,
)

__all__ = [
    "DaemonProcess",
    "TERMINAL",
    "compile_bytecode",
    "cpu_seconds",
    "describe_settings",
    "fake_gpus",
    "kill_daemon",
    "log_tail",
    "machine",
    "median",
    "print_table",
    "running_daemon",
    "start_daemon",
    "stop_daemon",
    "vm_hwm_kib",
    "write_experiment",
]


ROOT = Path(__file__).resolve().parent.parent


def compile_bytecode(root: Path = ROOT) -> str:
    """Compile gpusched's and its plugins' bytecode in ``root`` (this repository, or another
    checkout a benchmark runs), as ``pip install`` does for an installed package, so that the
    daemon and each CLI command do not compile their modules again at every start (an editable
    install leaves that to the first import, and with ``PYTHONDONTWRITEBYTECODE`` set that
    first import never writes it). A note for the table."""
    for folder in ("gpusched", "plugins"):
        compileall.compile_dir(root / folder, quiet=1)
    unset = "" if not sys.flags.dont_write_bytecode else " (PYTHONDONTWRITEBYTECODE is set here)"
    return f"gpusched's bytecode compiled before timing, as an installed package has it{unset}"


def fake_gpus(count: int, *, release_delay_s: float = 0.0) -> dict[str, Any]:
    """A fake-GPU file (SPEC section 7) with ``count`` idle devices."""
    return fake_gpu_config(count, release_delay_s=release_delay_s)


def describe_settings(settings: Mapping[str, object], fake: Mapping[str, Any]) -> str:
    """One line naming every daemon setting and the fake-GPU release delay used."""
    parts = [f"{k}={v}" for k, v in settings.items()]
    parts.append(f"fake release_delay_s={fake.get('release_delay_s', 0.0)}")
    return ", ".join(parts)


def write_experiment(path: Path, experiment: Mapping[str, Any]) -> Path:
    """Write an experiment file (YAML) and return its path."""
    path.write_text(yaml.safe_dump(dict(experiment), sort_keys=False))
    return path


def vm_hwm_kib(pid: int) -> int:
    """Peak resident memory (``VmHWM``) of a live process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of a live process and of its reaped children, in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # fields 3.. of proc(5); the name may hold ")"
    tick = float(os.sysconf("SC_CLK_TCK"))
    own = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    children = (int(fields[13]) + int(fields[14])) / tick  # cutime, cstime
    return own, children


def median(values: Sequence[float]) -> float:
    """The median (the middle run of 3)."""
    return float(statistics.median(values))


def machine() -> str:
    """A short description of the host the numbers come from."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), Linux {platform.release()},"
            f" Python {platform.python_version()}")


def print_table(title: str, notes: Sequence[str], header: Sequence[str],
                rows: Sequence[Sequence[str]]) -> None:
    """A plain-text table: a title, note lines, then aligned columns."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(title)
    for note in notes:
        print(f"  {note}")
    print()
    line = "  ".join(h.ljust(w) if i == 0 else h.rjust(w)
                     for i, (h, w) in enumerate(zip(header, widths, strict=True)))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                        for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    print(flush=True)
