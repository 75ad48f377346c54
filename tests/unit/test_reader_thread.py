"""ReaderThread: blocking calls run in one long-lived thread, in order, off the event loop."""

from __future__ import annotations

import functools
import threading
import time

import anyio
import pytest

from gpusched._daemon.reader_thread import ReaderThread


async def test_calls_run_in_one_other_thread_in_order_and_return_their_results() -> None:
    reader = ReaderThread()
    seen: list[tuple[int, str]] = []

    def call(i: int) -> int:
        seen.append((i, threading.current_thread().name))
        return i * i

    try:
        assert [await reader.run(functools.partial(call, i)) for i in range(5)] == [0, 1, 4, 9,
                                                                              16]
        async with anyio.create_task_group() as tg:  # queued at once: still one at a time
            for i in range(5, 10):
                tg.start_soon(reader.run, functools.partial(call, i))
    finally:
        reader.close()
    assert [i for i, _ in seen] == list(range(10))
    assert {name for _, name in seen} == {"gpusched-device-reader"}
    assert threading.current_thread().name not in {name for _, name in seen}


async def test_an_exception_in_the_thread_is_raised_to_the_caller() -> None:
    reader = ReaderThread()

    def broken() -> None:
        raise OSError("the driver went away")

    try:
        with pytest.raises(OSError, match="the driver went away"):
            await reader.run(broken)
        assert await reader.run(lambda: "still serving") == "still serving"
    finally:
        reader.close()


async def test_the_loop_runs_while_a_call_blocks_and_a_cancelled_wait_drops_its_answer() -> None:
    reader = ReaderThread()
    release = threading.Event()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.01)
            ticks += 1

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(tick)
            with anyio.move_on_after(0.2) as scope:
                await reader.run(lambda: release.wait(10))  # a hung read
            assert scope.cancelled_caught
            assert ticks >= 5  # the loop went on meanwhile
            release.set()
            # The dropped answer does not disturb the next call.
            assert await reader.run(lambda: 42) == 42
            tg.cancel_scope.cancel()
    finally:
        reader.close()


async def test_no_call_after_close() -> None:
    reader = ReaderThread()
    assert await reader.run(time.monotonic) > 0
    reader.close()
    assert "ReaderThread" in repr(reader)
    with pytest.raises(RuntimeError, match="closed"):
        await reader.run(time.monotonic)
