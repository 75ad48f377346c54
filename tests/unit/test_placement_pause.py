"""The daemon's own resource problems pause placement; they are not the trials' fault.

A trial log that refuses writes (a full disk): no trainer starts until the log takes a write
again, and a start the log refused is no attempt. The daemon out of file descriptors or
processes as it starts a trial: the trial waits, with no attempt and no failure counted, and
the wait reason says why. Other errors at the start (a command not found, not executable) stay
the trial's failure. A real trial log (SQLite) and the real scheduler and runner; no daemon.
(tests/integration/test_daemon_resources.py meets both on a real daemon.)
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from gpusched._daemon import trial_runner as trial_runner_module
from gpusched._daemon.devices import DeviceTable
from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store
from gpusched._daemon.trial_runner import DaemonShortOf, TrialRunner
from gpusched.config import DaemonSettings
from gpusched.errors import StoreError
from gpusched.models import TrialState
from tests.unit.test_scheduler_endings import _running_trial, scheduling

TIMEOUT_S = 30.0


@asynccontextmanager
async def placing(tmp_path: Path, **extra: Any
                  ) -> AsyncIterator[tuple[Store, Scheduler, ExperimentRun]]:
    """:func:`scheduling` of a CPU-only experiment, with the scheduler's task group (where
    its runners and timers run) open."""
    async with scheduling(tmp_path, gpus_per_trial=0, **extra) as (store, scheduler, exp):
        with anyio.fail_after(TIMEOUT_S):
            async with anyio.create_task_group() as tg:
                scheduler._tg = tg
                yield store, scheduler, exp
                tg.cancel_scope.cancel()


def runner(tmp_path: Path, store: Store, exp: ExperimentRun, trial: TrialRun) -> TrialRunner:
    async def ended(*args: Any) -> None:
        pass

    settings = DaemonSettings(grace_period_s=1.0)
    return TrialRunner(experiment=exp, trial=trial, uuids=[], store=store,
                       backend=FakeBackend(FakeConfig(devices=())),
                       devices=DeviceTable([], settings), settings=settings,
                       trial_dir=tmp_path / "trial", daemon_env=dict(os.environ), on_end=ended)


def short_of(code: int) -> Any:
    """A spawn_trial that fails with ``code``, as the daemon's open() or fork() would."""
    async def spawn(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))
    return spawn


async def test_a_trial_to_run_again_is_not_started_while_the_log_still_refuses_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It has no row to write before its start (a new trial has): placed, its trainer would
    # be started, its start refused, and the trainer killed, every 2 s.
    async with placing(tmp_path, max_parallel_trials=1) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        exp.live.pop(trial.number)
        trial.state = TrialState.INTERRUPTED
        exp.requeued.append(trial.number)
        launched: list[int] = []

        def launch(e: ExperimentRun, t: TrialRun, uuids: list[str]) -> None:  # no trainer
            launched.append(t.number)
            t.state, e.live[t.number] = TrialState.RUNNING, t

        monkeypatch.setattr(scheduler, "_launch", launch)
        add_event = store.add_event
        refusing = True

        async def disk_full(*args: Any, **kwargs: Any) -> None:
            if refusing:
                raise StoreError("cannot write the trial log: database or disk is full")
            await add_event(*args, **kwargs)

        monkeypatch.setattr(store, "add_event", disk_full)
        scheduler._pause_placement(StoreError("cannot write the trial log: disk is full"))
        scheduler._paused_until = 0.0  # its 2 s are over: placement is tried again
        await scheduler._place_all()
        assert launched == [] and exp.requeued == [0]
        waiting = scheduler.waiting("e1")
        assert waiting is not None and waiting["code"] == "paused"
        assert waiting["message"].startswith("the trial log cannot be written")

        refusing = False  # space again
        scheduler._paused_until = 0.0
        await scheduler._place_all()
        assert launched == [0]
        assert not scheduler._placement_paused()


async def test_a_start_the_log_refused_is_no_attempt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The trainer is stopped at once: `attempts` and the next GPUSCHED_ATTEMPT count the runs
    # that the log has, not every try.
    seen = tmp_path / "attempts"
    (tmp_path / "t.py").write_text(
        "import os\n"
        f"with open({str(seen)!r}, 'a') as fh:\n"
        "    fh.write(os.environ['GPUSCHED_ATTEMPT'] + '\\n')\n"
        "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as fh:\n"
        "    fh.write('{\"acc\": 1}\\n')\n")
    async with scheduling(tmp_path, command=f"{sys.executable} t.py") as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        record = store.record_trial
        refusals = 2

        async def refuse_starts(*args: Any, **kwargs: Any) -> None:
            nonlocal refusals
            if args[3] == "trial_started" and refusals:
                refusals -= 1
                raise StoreError("cannot write the trial log: disk is full")
            await record(*args, **kwargs)

        monkeypatch.setattr(store, "record_trial", refuse_starts)
        for _ in range(2):
            with anyio.fail_after(TIMEOUT_S), pytest.raises(StoreError):
                await runner(tmp_path, store, exp, trial).run()
            assert trial.attempts == 0
        with anyio.fail_after(TIMEOUT_S):
            await runner(tmp_path, store, exp, trial).run()
        row = await store.trial("e1", 0)
        started = [e for e in await store.events("e1", 0) if e["kind"] == "trial_started"]
    assert trial.state is TrialState.COMPLETED
    assert row is not None and row["attempts"] == trial.attempts == len(started) == 1
    assert started[0]["data"]["attempt"] == 1
    assert seen.read_text().split()[-1] == "1"  # the run that counts was told it is the first


@pytest.mark.parametrize(("code", "said"), [
    (errno.EMFILE, "the daemon is out of file descriptors (Too many open files): placement is"
                   " paused, trials wait to start; raise its limit (LimitNOFILE= in its systemd"
                   " unit, `ulimit -n` in the shell that starts it) or run fewer trials at once"
                   " (max_parallel_trials)"),
    (errno.ENFILE, "the host is out of file descriptors (Too many open files in system)"),
    (errno.EAGAIN, "the daemon cannot start another process (Resource temporarily unavailable):"
                   " placement is paused, trials wait to start; raise its process limit"
                   " (TasksMax= or LimitNPROC="),
    (errno.ENOMEM, "the host has no memory left to start another process"),
    (errno.ENOSPC, "no space left for trial folders in "),
])
async def test_a_start_the_daemon_lacks_the_resources_for_is_not_the_trials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, said: str,
) -> None:
    monkeypatch.setattr(trial_runner_module, "spawn_trial", short_of(code))
    async with scheduling(tmp_path) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        with anyio.fail_after(TIMEOUT_S), pytest.raises(DaemonShortOf) as raised:
            await runner(tmp_path, store, exp, trial).run()
        row = await store.trial("e1", 0)
        events = await store.events("e1")
    assert str(raised.value).startswith(said)
    assert (trial.attempts, trial.failures, exp.failure) == (0, 0, None)
    assert row is not None and (row["state"], row["attempts"]) == ("queued", 0)
    assert not [e for e in events if e["trial"] is not None]  # nothing recorded of it


@pytest.mark.parametrize(("code", "said"), [(errno.EACCES, "Permission denied"),
                                            (errno.ENOENT, "No such file or directory")])
async def test_other_errors_at_the_start_stay_the_trials_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, said: str,
) -> None:
    monkeypatch.setattr(trial_runner_module, "spawn_trial", short_of(code))
    async with scheduling(tmp_path) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        with anyio.fail_after(TIMEOUT_S):
            await runner(tmp_path, store, exp, trial).run()
        row = await store.trial("e1", 0)
    assert trial.state is TrialState.FAILED
    assert row is not None and row["state"] == "failed" and row["attempts"] == 1
    assert row["reason"] == f"cannot start 'python' in {exp.spec.workdir}: {said}"


class RunnerEnds:
    """Wait for the scheduler's next runner to end, its outcome handled (_run_guarded)."""

    def __init__(self, scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch) -> None:
        self._ended = anyio.Event()
        guarded = scheduler._run_guarded

        async def run_guarded(runner: TrialRunner) -> None:
            await guarded(runner)
            self._ended.set()

        monkeypatch.setattr(scheduler, "_run_guarded", run_guarded)

    async def next(self) -> None:
        await self._ended.wait()
        self._ended = anyio.Event()


async def test_a_trial_the_daemon_could_not_start_waits_and_placement_pauses_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three of these in a row failed the experiment (max_consecutive_failed_trials), though
    # its trials were fine.
    monkeypatch.setattr(trial_runner_module, "spawn_trial", short_of(errno.EMFILE))
    async with placing(tmp_path, max_parallel_trials=1) as (store, scheduler, exp):
        ended = RunnerEnds(scheduler, monkeypatch)
        await scheduler._place_all()
        assert list(scheduler.runners) == ["e1/0"]
        await ended.next()
        waiting = scheduler.waiting("e1")
        row = await store.trial("e1", 0)
        assert exp.requeued == [0] and exp.failure is None
        trial = exp.trials[0]
        assert (trial.state, trial.attempts, trial.failures) == (TrialState.QUEUED, 0, 0)
        assert row is not None and row["state"] == "queued"
        assert waiting is not None and waiting["code"] == "paused"
        assert waiting["message"].startswith("the daemon is out of file descriptors")
        await scheduler._place_all()  # within the pause: nothing starts
        assert not scheduler.runners
        monkeypatch.setattr(trial_runner_module, "spawn_trial", short_of(errno.EACCES))
        scheduler._paused_until = 0.0  # the pause is over: no log write is needed to go on
        await scheduler._place_all()
        assert list(scheduler.runners) == ["e1/0"]  # the same trial, first in line
        await ended.next()
        waiting = scheduler.waiting("e1")
    assert waiting is None or waiting["code"] != "paused"


async def test_a_trial_the_daemon_could_not_start_is_cancelled_with_its_experiment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Cancelled while it was being started: queued again, it would keep the experiment from
    # ever ending.
    async with placing(tmp_path, max_parallel_trials=1) as (store, scheduler, exp):
        async def cancelled_meanwhile(*args: Any, **kwargs: Any) -> Any:
            await scheduler.cancel("e1", None)
            raise OSError(errno.EMFILE, os.strerror(errno.EMFILE))

        monkeypatch.setattr(trial_runner_module, "spawn_trial", cancelled_meanwhile)
        ended = RunnerEnds(scheduler, monkeypatch)
        await scheduler._place_all()
        await ended.next()
        row = await store.experiment("e1")
        trials = await store.trials("e1")
    assert "e1" not in scheduler.active and not exp.requeued
    assert row is not None and row["state"] == "cancelled"
    assert [(t["state"], t["reason"]) for t in trials] == [("cancelled", "cancelled")]


async def test_a_pause_is_said_once_however_many_trials_meet_it(tmp_path: Path) -> None:
    # Dozens of trials started together meet the same lack of file descriptors: one line.
    async with placing(tmp_path) as (_store, scheduler, _exp):
        with capture_logs() as logs:
            for number in range(3):
                error = OSError(errno.EMFILE, os.strerror(errno.EMFILE))
                scheduler._pause_placement(DaemonShortOf(error, tmp_path / "e1" / str(number)),
                                           f"e1/{number}")
        waiting = scheduler.waiting("e1")
    assert [(e["event"], e.get("trial")) for e in logs] == [("placement_paused", "e1/0")]
    assert waiting is not None and waiting["code"] == "paused"
