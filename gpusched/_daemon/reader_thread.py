"""One long-lived thread for the device reads, handed work through a C queue.

The GPU backend's reads can block (an NVML call on a failing GPU may not return for seconds),
so they never run on the event loop. The release barrier makes one such read after every
trial, on the critical path from one trial's exit to the next one's start. anyio's
``to_thread.run_sync`` costs the event loop ~0.2 ms per call on the benchmark machine
(a Python-level ``queue.Queue`` with its condition variable, a context copy, a cancel scope);
this thread takes a ``queue.SimpleQueue`` item and answers with one ``call_soon_threadsafe``.

Waiting for an answer is cancellable: the caller goes on, and the answer, when it comes, is
dropped. A read that never returns keeps this thread (a daemon thread: the process can still
exit) and the reads queued behind it, as it would keep anyio's worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["ReaderThread"]

T = TypeVar("T")
_Item = tuple[Callable[[], Any], "asyncio.Future[Any]", asyncio.AbstractEventLoop]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled meanwhile
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class ReaderThread:
    """Runs blocking calls one at a time, in order, in a thread started at the first call."""

    def __init__(self, name: str = "gpusched-device-reader") -> None:
        self._name = name
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        alive = self._thread is not None and self._thread.is_alive()
        return f"<ReaderThread {self._name} alive={alive}>"

    async def run(self, fn: Callable[[], T]) -> T:
        """``fn()`` in the thread; its result, or its exception raised here."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._start()
        self._queue.put((fn, future, loop))
        return await future

    def close(self) -> None:
        """Let the thread end after the calls already queued (it is not waited for); no call
        may follow."""
        self._closed = True
        self._queue.put(None)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._serve, name=self._name,
                                                daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, future, loop = item
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the caller, whatever it is
                error = exc
            with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
                loop.call_soon_threadsafe(_settle, future, result, error)
            del item, fn, future, result, error
