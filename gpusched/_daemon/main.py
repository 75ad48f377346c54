"""`gpusched daemon`: start, serve until a signal, shut down in order.

The first SIGTERM or SIGINT stops admitting trials, sends the running ones SIGTERM with the
grace period, records them ``interrupted`` (they run again at the next start) and exits; a
second SIGINT forces the exit (uvicorn's ``server.py`` does the same), still killing every
trial process on the way out.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import os
import signal
import socket
import sys
from pathlib import Path

import anyio
from anyio import CancelScope

from gpusched._daemon import wake_placement
from gpusched._daemon.activation import take_activated_socket
from gpusched._daemon.fake_gpus import FakeBackend
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.nvml import NvmlBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.sdnotify import Notifier
from gpusched._daemon.server import Server, prepare_socket_path
from gpusched._daemon.state_lock import holding_state_dir
from gpusched._daemon.store import open_store
from gpusched.config import DaemonSettings
from gpusched.errors import ConfigError
from gpusched.log import get_logger
from gpusched.plugins import describe_plugins

__all__ = ["make_backend", "run_daemon"]

STATUS_EVERY_S = 2.0  # how often the systemd status line is refreshed (when it changed)

log = get_logger("gpusched.daemon")


def make_backend(fake_gpus: str | None) -> GpuBackend:
    """The fake backend for ``--fake-gpus N|FILE``, else NVML."""
    if fake_gpus is not None:
        return FakeBackend.from_arg(fake_gpus)
    return NvmlBackend()


async def _keep_notifying(notifier: Notifier, scheduler: Scheduler) -> None:
    """Watchdog pings (twice per WATCHDOG_USEC, as sd_notify(3) advises) and the status line."""
    if not notifier.enabled:
        return
    period = STATUS_EVERY_S if notifier.watchdog_s is None else min(
        STATUS_EVERY_S, notifier.watchdog_s / 2)
    last = ""
    while True:
        await anyio.sleep(period)
        if notifier.watchdog_s is not None:
            notifier.watchdog()
        if not scheduler.closing and (line := scheduler.status_line()) != last:
            notifier.status(line)
            last = line


async def _watch_signals(scheduler: Scheduler, force: CancelScope, notifier: Notifier) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            if scheduler.closing:
                if signum == signal.SIGINT:
                    log.warning("shutdown_forced")
                    force.cancel()
                continue
            log.info("signal_received", signal=signal.Signals(signum).name)
            notifier.stopping()
            await scheduler.shutdown()


async def _preload_plugins() -> None:
    """Import every installed plugin once, in a worker thread, right after start-up.

    The first submit then does not pay for the imports (numpy alone is ~100 ms), and a plugin
    that cannot be loaded is in the daemon's log from the start, not only when someone uses it.
    """
    try:
        rows = await anyio.to_thread.run_sync(describe_plugins)
    except Exception as exc:  # broken package metadata must not stop the daemon
        log.warning("plugins_unreadable", error=repr(exc))
        return
    for row in rows:
        if row["error"]:
            log.warning("plugin_unusable", kind=row["kind"], name=row["name"], error=row["error"])
    # Everything imported so far (numpy, the plugins, anyio, structlog: some 10^5 objects) lives
    # as long as the daemon: out of the collector's reach, a full collection no longer walks
    # them, where it used to stall the loop for milliseconds every few trials.
    gc.freeze()
    log.info("plugins_loaded", search=[r["name"] for r in rows if r["kind"] == "search"],
             stopping=[r["name"] for r in rows if r["kind"] == "stopping"])


def _watch_children_with_pidfds() -> None:
    """Python 3.11's default child watcher starts a thread per subprocess (about 2 ms of the
    event loop's time for each trial spawned); a pidfd watcher needs none. 3.12+ picks it."""
    if sys.version_info >= (3, 12) or not hasattr(asyncio, "PidfdChildWatcher"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # a kernel older than 5.3
        return
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    asyncio.set_child_watcher(watcher)


def _make_state_dir(state_dir: Path) -> None:
    """Create the state folder, or say in one line why it cannot be and what to do."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, FileExistsError):
            why = "it exists and is not a folder"
        raise ConfigError(f"cannot create the state folder {state_dir}: {why}: choose"
                          " one you may write with --state-dir (or state_dir in the config"
                          " file)") from None


async def run_daemon(
    *, socket_path: Path, state_dir: Path, settings: DaemonSettings, backend: GpuBackend,
    socket_mode: int = 0o600,
) -> None:
    """Run the daemon until it is told to stop."""
    _watch_children_with_pidfds()
    loop = asyncio.get_running_loop()
    wake_placement.install(loop)  # a trial's exit wakes the loop on the CPU it freed
    try:
        await _run(socket_path=socket_path, state_dir=state_dir, settings=settings,
                   backend=backend, socket_mode=socket_mode)
    finally:
        wake_placement.uninstall(loop)


async def _run(
    *, socket_path: Path, state_dir: Path, settings: DaemonSettings, backend: GpuBackend,
    socket_mode: int,
) -> None:
    """run_daemon's body: the state folder, then serving."""
    notifier = Notifier()
    activated = take_activated_socket()  # before anything copies the environment
    _make_state_dir(state_dir)
    # Both before the trial log is read: a restart's recovery stops every process of the log's
    # unfinished trials, which, under a daemon that still runs, are its live trials.
    try:
        with holding_state_dir(state_dir, socket_path):
            if activated is None:  # systemd's socket is ours; a path may have a daemon on it
                prepare_socket_path(socket_path, remove_stale=False)
            await _serve(socket_path=socket_path, state_dir=state_dir, settings=settings,
                         backend=backend, socket_mode=socket_mode, activated=activated,
                         notifier=notifier)
    finally:
        backend.close()
    log.info("daemon_stopped")


async def _serve(
    *, socket_path: Path, state_dir: Path, settings: DaemonSettings, backend: GpuBackend,
    socket_mode: int, activated: socket.socket | None, notifier: Notifier,
) -> None:
    """Recover, then schedule and serve until told to stop (run_daemon holds the folder)."""
    async with open_store(state_dir / "trials.db") as store:
        scheduler = Scheduler(store=store, backend=backend, settings=settings,
                              state_dir=state_dir)
        server = Server(scheduler)
        async with anyio.create_task_group() as tg:

            async def scheduler_then_stop(*, task_status: anyio.abc.TaskStatus[None]) -> None:
                await scheduler.run(task_status=task_status)
                tg.cancel_scope.cancel()  # every trial is recorded: stop serving, exit

            await tg.start(scheduler_then_stop)
            tg.start_soon(_watch_signals, scheduler, tg.cancel_scope, notifier)
            await tg.start(functools.partial(server.serve, socket_path, mode=socket_mode,
                                             activated=activated))
            log.info("daemon_ready", pid=os.getpid(), socket=str(socket_path),
                     state_dir=str(state_dir), backend=backend.kind,
                     gpus=len(scheduler.devices.slots))
            notifier.ready(scheduler.status_line())
            tg.start_soon(store.keep_checkpointing)
            tg.start_soon(_preload_plugins)
            tg.start_soon(_keep_notifying, notifier, scheduler)
