"""In-place CPU accounting of the daemon's event loop, per function, for dispatch_profile.py.

Loaded into the daemon through a ``sitecustomize`` module that dispatch_profile.py puts on its
``PYTHONPATH``: :func:`arm` waits for ``gpusched._daemon.main`` to be imported, then wraps the
functions of :data:`TARGETS` so that each call adds the main thread's CPU time
(``time.thread_time_ns``) spent inside it, inclusive of what it calls; a coroutine function is
timed step by step, so its time excludes what other tasks do while it waits. At exit the
totals go, as JSON, to the file named by ``GPUSCHED_BENCH_PROFILE``.

Why not cProfile or a sampling profiler: the costs that matter here are a few tens of
microseconds per trial that are several times their cost in a micro-benchmark, because that
code is never in the caches (numpy's generator set-up: ~10-20 us alone, ~0.14 ms in place).
cProfile's own overhead drowns them, and py-spy's sampling stops the process. This adds about
2-3 us per wrapped call, which the table's caveat says.
"""

from __future__ import annotations

import atexit
import collections
import functools
import importlib
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import sys
import threading
import time
from collections.abc import Callable, Generator, Sequence
from types import ModuleType
from typing import Any

__all__ = ["TARGETS", "arm", "install"]

ENV = "GPUSCHED_BENCH_PROFILE"
# (module, class or None for module-level functions, names): what a trial's dispatch runs.
TARGETS: list[tuple[str, str | None, list[str]]] = [
    ("asyncio.base_events", "BaseEventLoop", ["_run_once"]),
    ("selectors", "EpollSelector", ["select"]),
    ("gpusched._daemon.trial_runner", "TrialRunner",
     ["run", "_read_last", "_finish", "_conclude", "_record_start", "_stop_escapees", "_watch",
      "_ingest_now", "_release"]),
    ("gpusched._daemon.store", "Store",
     ["record_trial", "create_trial", "add_encoded_reports", "_transaction"]),
    ("gpusched._daemon.launcher", "TrialFiles", ["create"]),
    ("gpusched._daemon.launcher", "TrialProcess", ["stop"]),
    ("gpusched._daemon.launcher", None, ["trial_environment", "spawn_trial", "_open_log"]),
    ("gpusched._daemon.child", None, ["spawn_child"]),
    ("gpusched._daemon.child", "PidfdChild", ["_reap", "__init__"]),
    ("gpusched._daemon.scheduler", "Scheduler",
     ["_place_what_fits", "_next_trial", "_ask", "_launch", "_poll_devices_once",
      "_read_devices"]),
    ("gpusched._daemon.report_collector", "ReportCollector", ["__init__", "poll",
                                                              "unread_bytes"]),
    ("gpusched._daemon.fake_gpus", "FakeBackend", ["read"]),
    ("gpusched._daemon.server", "Server", ["_connection"]),
    ("structlog._base", "BoundLoggerBase", ["_proxy_to_logger"]),
    ("gpusched_plugins.random_search", "RandomSearch", ["suggest"]),
]
TOTAL = "(main thread, all of it)"

_cpu: collections.Counter[str] = collections.Counter()
_calls: collections.Counter[str] = collections.Counter()
_main = threading.main_thread().ident
_clock = time.thread_time_ns


def _on_main() -> bool:
    return threading.get_ident() == _main


class _Timed:
    """Awaits a coroutine, adding the main thread's CPU time of each of its steps to ``name``."""

    def __init__(self, coro: Any, name: str) -> None:
        self._coro, self._name = coro, name

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, name = self._coro, self._name
        value: Any = None
        error: BaseException | None = None
        while True:
            on_main, start = _on_main(), _clock()
            try:
                step = coro.send(value) if error is None else coro.throw(error)
            except StopIteration as stop:
                return stop.value
            finally:
                if on_main:
                    _cpu[name] += _clock() - start
            try:
                value, error = (yield step), None
            except BaseException as exc:  # delivered into the coroutine at its next step
                value, error = None, exc


def _wrap(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            _calls[name] += 1
            return await _Timed(fn(*args, **kwargs), name)
        return timed_async

    @functools.wraps(fn)
    def timed(*args: Any, **kwargs: Any) -> Any:
        if not _on_main():
            return fn(*args, **kwargs)
        _calls[name] += 1
        start = _clock()
        try:
            return fn(*args, **kwargs)
        finally:
            _cpu[name] += _clock() - start
    return timed


def install() -> None:
    """Wrap every function of :data:`TARGETS` that exists (in the modules that imported a
    module-level one by name, too), and write the totals at exit."""
    for module_name, class_name, names in TARGETS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        owner: Any = getattr(module, class_name, None) if class_name else module
        if owner is None:
            continue
        for name in names:
            original = (owner.__dict__ if class_name else vars(module)).get(name)
            if original is None:
                continue
            wrapped = _wrap(original, f"{class_name + '.' if class_name else ''}{name}")
            setattr(owner, name, wrapped)
            if class_name is None:
                for other in list(sys.modules.values()):
                    if getattr(other, name, None) is original:
                        setattr(other, name, wrapped)
    started = _clock()

    def dump() -> None:
        _cpu[TOTAL] = _clock() - started
        path = os.environ.get(ENV)
        if path:
            with open(path, "w") as out:
                json.dump({"cpu_ns": dict(_cpu), "calls": dict(_calls)}, out)
    atexit.register(dump)


class _AfterDaemonImport(importlib.abc.MetaPathFinder):
    """Calls :func:`install` once ``gpusched._daemon.main`` has been executed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "gpusched._daemon.main":
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        execute = loader.exec_module

        def exec_then_install(module: ModuleType) -> None:
            execute(module)
            install()
        loader.exec_module = exec_then_install  # type: ignore[method-assign]
        return spec


def arm() -> None:
    """Install the accounting in this process once it imports the daemon (a no-op without
    ``GPUSCHED_BENCH_PROFILE``: the CLI started with the same environment is left alone)."""
    if os.environ.get(ENV):
        sys.meta_path.insert(0, _AfterDaemonImport())
