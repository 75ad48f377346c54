"""How the scheduler ends experiments when several endings meet: a retry requeued while its
experiment fails or is cancelled, a time_budget timer of a run that was resumed since, two
resumes at once, a trial whose row is written as shutdown begins, a runner that fails; and
what a submit or a resume refuses (the file's problems only the daemon can see, a resume with
nothing left to run).

Each of these once left an experiment `running` forever, ended the wrong run, ran a trial
twice, or started a trial that shutdown would not stop. A real trial log (SQLite) and the
real scheduler; no daemon process, no trial process.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import pytest

from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store, open_store
from gpusched.config import DaemonSettings
from gpusched.errors import RequestError, SpecError
from gpusched.models import ExperimentState, TrialState
from gpusched.plugin_api import SearchPlugin as SearchPluginBase
from gpusched.plugins import make_search_plugin
from gpusched.spec import ExperimentSpec, parse_experiment


def _spec(tmp_path: Path, **extra: Any) -> ExperimentSpec:
    return parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "max_trials": 10, **extra,
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)


def _run(spec: ExperimentSpec, exp_id: str = "e1") -> ExperimentRun:
    search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
    return ExperimentRun(exp_id, int(exp_id[1:]), spec, 0, search, [],
                         state=ExperimentState.RUNNING)


@asynccontextmanager
async def scheduling(tmp_path: Path, **extra: Any
                     ) -> AsyncIterator[tuple[Store, Scheduler, ExperimentRun]]:
    """A scheduler (no GPUs) over a real log, with one running experiment ``e1``."""
    async with open_store(tmp_path / "log.db") as store:
        spec = _spec(tmp_path, **extra)
        await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0, priority=0,
                                      owner_uid=os.getuid())
        await store.update_experiment("e1", state="running", started_at=1.0)
        scheduler = Scheduler(store=store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        exp = _run(spec)
        scheduler.active[exp.id] = exp
        yield store, scheduler, exp


async def _running_trial(scheduler: Scheduler, exp: ExperimentRun) -> TrialRun:
    trial = await scheduler._next_trial(exp)
    assert trial is not None
    trial.state = TrialState.RUNNING
    exp.live[trial.number] = trial
    return trial


async def _states(store: Store) -> tuple[str, list[tuple[str, str | None]]]:
    row = await store.experiment("e1")
    assert row is not None
    return row["state"], [(t["state"], t["reason"]) for t in await store.trials("e1")]


@pytest.mark.parametrize(("ending", "ended", "because"), [
    ("failure", "failed", "experiment failed: search plugin 'random' failed: boom"),
    ("cancel", "cancelled", "cancelled"),
    # Its only trial cancelled: no result, so it fails (resume runs that trial again).
    ("budget", "failed", "time_budget of 60s used up"),
])
@pytest.mark.parametrize("how", [TrialState.QUEUED, TrialState.INTERRUPTED])
async def test_a_trial_requeued_as_its_experiment_ends_is_cancelled_and_the_experiment_ends(
    tmp_path: Path, ending: str, ended: str, because: str, how: TrialState,
) -> None:
    # QUEUED: a crash with a retry left; INTERRUPTED: its GPU was lost. The experiment began
    # to end meanwhile, for another reason (its search failed, a cancel, its time_budget).
    async with scheduling(tmp_path, time_budget="60s") as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        if ending == "failure":
            exp.failure = "search plugin 'random' failed: boom"
        elif ending == "cancel":
            exp.cancelling = True
        else:
            exp.budget_spent = True
        trial.state = how
        await scheduler._trial_ended(exp, trial, None)
        assert exp.id not in scheduler.active
        assert await _states(store) == (ended, [("cancelled", because)])


async def test_a_crash_with_retries_left_is_still_requeued_while_the_experiment_goes_on(
    tmp_path: Path,
) -> None:
    async with scheduling(tmp_path) as (_store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        trial.state = TrialState.QUEUED
        await scheduler._trial_ended(exp, trial, None)
        assert exp.requeued == [0] and exp.id in scheduler.active


async def test_the_time_budget_of_a_run_that_ended_spares_the_resumed_run(
    tmp_path: Path,
) -> None:
    async with scheduling(tmp_path, time_budget="60s") as (store, scheduler, old):
        resumed = _run(old.spec)  # what `resume` puts in its place: another ExperimentRun
        scheduler.active[old.id] = resumed
        await scheduler._spend_budget(old, deadline=0.0)  # the first run's timer fires
        assert scheduler.active.get("e1") is resumed and not resumed.budget_spent
        assert (await _states(store))[0] == "running"


async def test_resume_counts_the_start_afresh_and_two_at_once_resume_once(
    tmp_path: Path,
) -> None:
    async with scheduling(tmp_path) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        exp.cancelling = True
        trial.state = TrialState.CANCELLED  # cut short by the cancel: resume runs it again
        await store.update_trial("e1", 0, state="cancelled", reason="cancelled")
        await scheduler._trial_ended(exp, trial, None)
        assert (await _states(store))[0] == "cancelled"

        answers: list[str] = []
        refusals: list[str] = []

        async def resume() -> None:
            try:
                answers.append(await scheduler.resume("e1"))
            except RequestError as exc:
                refusals.append(str(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(resume)
            tg.start_soon(resume)
        assert answers == ["resuming e1: 1 trial to run again, up to 9 new ones"
                           " (max_trials: 10)"], refusals
        assert refusals == ["e1 is being resumed already"]
        assert scheduler.active["e1"].requeued == [0]
        row = await store.experiment("e1")
        assert row is not None and (row["state"], row["started_at"]) == ("queued", None)


async def test_a_trial_whose_row_is_written_as_shutdown_begins_is_not_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with scheduling(tmp_path) as (store, scheduler, exp):
        write = store.create_trial

        async def create_trial_then_sigterm(*args: Any, **kwargs: Any) -> None:
            await write(*args, **kwargs)
            await scheduler.shutdown()  # SIGTERM while the row was being written

        monkeypatch.setattr(store, "create_trial", create_trial_then_sigterm)
        assert await scheduler._next_trial(exp) is None
        assert exp.requeued == [0] and not exp.live
        assert (await _states(store))[1] == [("queued", None)]  # the next start runs it


class _Broken:
    """What the scheduler's runner guard sees of a runner whose ``run`` has a bug."""

    def __init__(self, exp: ExperimentRun, trial: TrialRun) -> None:
        self.exp, self.trial = exp, trial
        self.uuids: list[str] = []
        self.key = f"{exp.id}/{trial.number}"

    async def run(self) -> None:
        raise KeyError("a bug")


async def test_a_runner_that_fails_records_its_trial_failed_and_ends_the_experiment(
    tmp_path: Path,
) -> None:
    async with scheduling(tmp_path, max_trials=1) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        await scheduler._run_guarded(cast(Any, _Broken(exp, trial)))
        state, trials = await _states(store)
        row = await store.experiment("e1")
        # Its only trial has no result: the experiment fails (it once ended `completed`).
        assert state == "failed"
        ((trial_state, reason),) = trials
        assert trial_state == "failed"
        assert reason is not None and "gpusched bug" in reason and "KeyError" in reason
        assert row is not None
        assert row["reason"] == f"its only trial has no result: it failed (e1/0: {reason})"


async def test_an_experiment_that_cannot_be_restored_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A bug met while one experiment's trials were read back once kept the daemon (and
    # every other experiment) from starting at all.
    from gpusched._daemon import scheduler as scheduler_module
    from gpusched._daemon.restore import restore_trials as restore

    async with scheduling(tmp_path) as (store, _, exp):
        await store.create_experiment(name="other", spec=exp.spec.to_dict(), seed=0,
                                      priority=0, owner_uid=os.getuid())

        async def restore_but_e1(store: Store, exp: ExperimentRun, *args: Any) -> None:
            if exp.id == "e1":
                raise OverflowError("a report no one expected")
            await restore(store, exp, *args)

        monkeypatch.setattr(scheduler_module, "restore_trials", restore_but_e1)
        restarted = Scheduler(store=store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        await restarted._restore()
        assert list(restarted.active) == ["e2"]
        row = await store.experiment("e1")
        assert row is not None and row["state"] == "failed"
        assert "OverflowError('a report no one expected')" in row["reason"]


async def test_the_trials_resumed_from_keep_their_order_the_last_numbered_minus_one(
    tmp_path: Path,
) -> None:
    # They were once numbered -1, -2, ... from the first: a plugin that weighs recent trials
    # more (TPE, past 25 of them) took the earlier experiment's last trials for its oldest.
    from gpusched._daemon.restore import prior_trials

    async with scheduling(tmp_path) as (store, _, _exp):
        for number, x in enumerate([1, 2, 1]):
            await store.create_trial("e1", number, {"x": x}, str(tmp_path / str(number)))
            await store.add_reports("e1", number, 0, [{"acc": number / 10}])
            await store.update_trial("e1", number, state="completed")
        later = _spec(tmp_path, resume_from="e1")
        got = await prior_trials(store, later)
    assert [(v.number, v.objective) for v in got] == [(-3, 0.0), (-2, 0.1), (-1, 0.2)]


async def test_an_experiment_sent_as_a_mapping_is_checked_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A mapping may be as large as a request line (1 MiB): it was checked on the event loop,
    # which then answered no one (nor reaped a trial) for as long.
    import threading

    from gpusched._daemon import server as server_module
    from gpusched._daemon.server import Server

    threads: list[int] = []

    def parse_and_note(*args: Any, **kwargs: Any) -> ExperimentSpec:
        threads.append(threading.get_ident())
        return parse_experiment(*args, **kwargs)

    monkeypatch.setattr(server_module, "parse_experiment", parse_and_note)
    async with scheduling(tmp_path) as (_, scheduler, exp):
        answer = await Server(scheduler)._submit(
            {"base_dir": str(tmp_path), "experiment": exp.spec.to_dict()}, os.getuid())
    assert answer == {"id": "e2", "name": "exp", "warnings": []}
    assert threads and threads[0] != threading.get_ident()


async def test_shutdown_during_one_experiments_write_starts_no_other_experiments_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The first fix stopped only the experiment whose row was being written: placement went
    # on to the next experiment and started its waiting retry, which shutdown never stopped.
    launched: list[str] = []
    async with scheduling(tmp_path, gpus_per_trial=0) as (store, scheduler, e1):
        await store.create_experiment(name="two", spec=e1.spec.to_dict(), seed=0, priority=0,
                                      owner_uid=os.getuid())
        e2 = _run(e1.spec, "e2")
        scheduler.active["e2"] = e2
        retry = await _running_trial(scheduler, e2)  # e2/0, then requeued as a retry
        e2.live.clear()
        retry.state = TrialState.QUEUED
        e2.requeued.append(retry.number)
        write = store.create_trial

        async def create_trial_then_sigterm(*args: Any, **kwargs: Any) -> None:
            await write(*args, **kwargs)
            await scheduler.shutdown()

        monkeypatch.setattr(store, "create_trial", create_trial_then_sigterm)
        monkeypatch.setattr(scheduler, "_launch",
                            lambda exp, trial, uuids: launched.append(f"{exp.id}/{trial.number}"))
        e2.seq = 2
        await scheduler._place_what_fits()
    assert launched == []
    assert e2.requeued == [0] and e1.requeued == [0]


async def test_reports_read_with_an_end_the_log_refused_are_read_again_by_the_rerun(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The last reports were taken into memory (count, position, series) before their commit:
    # refused (the log locked, a full disk), the rerun read on past them and they were lost.
    from gpusched._daemon.devices import DeviceTable
    from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig
    from gpusched._daemon.trial_runner import TrialRunner
    from gpusched.errors import StoreError

    (tmp_path / "t.py").write_text(
        "import os\n"
        "with open(os.environ['GPUSCHED_REPORT_FILE'], 'a') as fh:\n"
        "    fh.write('{\"acc\": 1}\\n{\"acc\": 2}\\n')\n")
    async with scheduling(tmp_path) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        record = store.record_trial
        calls: list[str] = []

        async def refuse_once(*args: Any, **kwargs: Any) -> None:
            calls.append(args[3])  # the event: trial_started, trial_ended
            if calls == ["trial_started", "trial_ended"]:  # the first attempt's end
                raise StoreError("database is locked")
            await record(*args, **kwargs)

        monkeypatch.setattr(store, "record_trial", refuse_once)

        async def ended(*args: Any) -> None:
            pass

        def runner() -> TrialRunner:
            return TrialRunner(
                experiment=exp, trial=trial, uuids=[], store=store,
                backend=FakeBackend(FakeConfig(devices=())),
                devices=DeviceTable([], scheduler.settings),
                settings=DaemonSettings(report_poll_s=60.0), trial_dir=tmp_path / "trial",
                daemon_env=dict(os.environ), on_end=ended)

        with pytest.raises(StoreError):
            await runner().run()
        assert (trial.reports, trial.metric_values) == (0, [])
        await runner().run()  # the rerun
        stored = [r["acc"] for r in await store.reports("e1", 0)]
    assert stored == [1, 2, 1, 2]
    assert (trial.state, trial.reports) == (TrialState.COMPLETED, 4)


@pytest.mark.parametrize(("decision", "ended", "because"), [
    ("experiment_failing", "failed", "experiment failed: the first trial failed"),
    ("experiment_cancel_requested", "cancelled", "cancelled"),
    ("experiment_resumed", "running", None),  # a resume after the decision undoes it
    # A cancel after a rule fired: failed, as a daemon that lived on ends it.
    ("failing_then_cancel", "failed", "experiment failed: the first trial failed"),
])
async def test_an_ending_decided_before_a_kill_is_still_decided_after_the_restart(
    tmp_path: Path, decision: str, ended: str, because: str | None,
) -> None:
    # A failure rule fired (or a cancel came) and the other trials were being stopped when the
    # daemon was killed: the restart took the experiment up again, ran the stopped trials
    # again and went on searching.
    async with scheduling(tmp_path) as (store, scheduler, exp):
        for _ in range(2):
            await _running_trial(scheduler, exp)
        await store.update_trial("e1", 0, state="failed", reason="exited with code 1")
        await store.update_trial("e1", 1, state="running", pid=2**22 + 7)  # no such process
        if decision == "experiment_failing":
            await store.add_event(decision, "e1", reason="the first trial failed")
        elif decision == "failing_then_cancel":
            await store.add_event("experiment_failing", "e1", reason="the first trial failed")
            await store.add_event("experiment_cancel_requested", "e1")
        elif decision == "experiment_resumed":
            await store.add_event("experiment_cancel_requested", "e1")
            await store.add_event(decision, "e1")
        else:
            await store.add_event(decision, "e1")
        restarted = Scheduler(store=store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        await restarted._restore()
        state, trials = await _states(store)
    assert state == ended
    if because is not None:
        assert "e1" not in restarted.active
        assert trials[1] == ("cancelled", because)
    else:
        assert restarted.active["e1"].requeued == [1]


async def test_an_experiment_cannot_be_resumed_while_one_that_resumes_from_it_runs(
    tmp_path: Path,
) -> None:
    # Its trials are the other's history: resumed, it would change under that search (and a
    # restart would show the search another history).
    async with scheduling(tmp_path) as (store, scheduler, exp):
        await store.update_experiment("e1", state="failed")
        del scheduler.active["e1"]
        await store.create_experiment(name="later", spec=exp.spec.to_dict(), seed=0,
                                      priority=0, owner_uid=os.getuid())
        scheduler.active["e2"] = _run(_spec(tmp_path, resume_from="e1"), "e2")
        with pytest.raises(RequestError, match="e1 cannot be resumed while e2"):
            await scheduler.resume("e1")
        del scheduler.active["e2"]  # ended
        assert (await scheduler.resume("e1")).startswith("resuming e1")


async def test_a_tilde_in_workdir_is_the_submitters_home_not_the_daemons(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon parses every user's file: `workdir: ~/proj` once meant the daemon's home
    # (root's, for the system daemon).
    import pwd

    from gpusched._daemon import server as server_module
    from gpusched._daemon.server import Server
    from gpusched.errors import SpecError
    from gpusched.spec import parse_experiment_text

    (tmp_path / "alice" / "proj").mkdir(parents=True)
    text = ("command: python t.py\nmetric: acc\nworkdir: ~/proj\n"
            "params: [{name: x, type: double, min: 0, max: 1}]\n")
    spec = parse_experiment_text(text, source="e.yaml", base_dir="/",
                                 home=str(tmp_path / "alice"))
    assert spec.workdir == str(tmp_path / "alice" / "proj")
    try:
        other = pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody' on this host")
    # A root daemon refuses nobody before it reads the file (trials do not run as nobody):
    # here the daemon reads it as for a user that trials may run as, checked as itself.
    monkeypatch.setattr(server_module, "trial_identity", lambda uid: None)
    async with scheduling(tmp_path) as (_, scheduler, _exp):
        with pytest.raises(SpecError, match=f"{other.pw_dir}/proj"):
            await Server(scheduler)._submit(
                {"base_dir": "/", "text": text, "source": "e.yaml"}, other.pw_uid)


async def test_a_leftover_that_survives_sigkill_is_logged_and_left_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A process in uninterruptible sleep (wedged in a driver) takes SIGKILL only when it
    # wakes: the restart once waited for it forever, and the daemon never started.
    from structlog.testing import capture_logs

    from gpusched._daemon import recovery

    signals: list[int] = []
    monkeypatch.setattr(recovery, "leftover_processes",
                        lambda dirs, **kwargs: {"/state/trials/e1/0": [4321]})
    monkeypatch.setattr(recovery, "_signal", lambda pids, sig: signals.append(sig))
    monkeypatch.setattr(recovery, "UNKILLABLE_AFTER_S", 0.2)
    with capture_logs() as logs, anyio.fail_after(10):
        found = await recovery.stop_leftovers(["/state/trials/e1/0"], grace_s=0.1)
    assert found == {"/state/trials/e1/0": [4321]}
    assert signals[0] == 15 and signals[-1] == 9
    assert [e["event"] for e in logs] == ["leftover_processes_unkillable"]



class _Stoppable:
    """A running trial's runner, as far as a failure rule sees it."""

    def __init__(self) -> None:
        self.stops: list[tuple[TrialState, str]] = []

    def request_stop(self, state: TrialState, reason: str) -> bool:
        self.stops.append((state, reason))
        return True


@pytest.mark.parametrize("log_refuses", [False, True])
async def test_a_failure_rule_stops_the_running_trials_and_puts_its_decision_in_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_refuses: bool,
) -> None:
    # The decision is what a restart reads (experiment_failing). A log refusing it must not
    # keep the running trials from being stopped.
    from gpusched.errors import StoreError

    async with scheduling(tmp_path) as (store, scheduler, exp):
        first, second = await _running_trial(scheduler, exp), await _running_trial(scheduler, exp)
        other = _Stoppable()
        scheduler.runners["e1/1"] = cast(Any, other)
        if log_refuses:
            add = store.add_event

            async def refuse_failing(kind: str, *args: Any, **kwargs: Any) -> None:
                if kind == "experiment_failing":
                    raise StoreError("database is locked")
                await add(kind, *args, **kwargs)

            monkeypatch.setattr(store, "add_event", refuse_failing)
        first.state = TrialState.FAILED
        await scheduler._trial_ended(exp, first, None)
        event = await store.last_event("e1", ("experiment_failing",))
    # A direct call: the runner's reason for the trial is not there to be named.
    reason = "the first trial, e1/0, failed; set max_failed_trials to go on after failures, as" \
             " AI Platform does"
    assert other.stops == [(TrialState.CANCELLED, f"experiment failed: {reason}")]
    assert exp.failure == reason and second.number == 1
    if log_refuses:
        assert event is None
    else:
        assert event is not None and event["data"] == {"reason": reason}


async def test_a_search_plugins_failure_puts_its_decision_in_the_log(tmp_path: Path) -> None:
    class Broken(SearchPluginBase):
        def suggest(self, number: int, history: Any) -> Any:
            raise RuntimeError("boom")

    async with scheduling(tmp_path) as (store, scheduler, exp):
        exp.search = Broken(exp.spec.space(), goal=exp.spec.goal, seed=0, options={})
        assert await scheduler._next_trial(exp) is None
        event = await store.last_event("e1", ("experiment_failing",))
    assert event is not None
    assert event["data"]["reason"] == "search plugin 'random' failed: RuntimeError('boom')"


# -- what a submit or a resume refuses --------------------------------------------------------


@asynccontextmanager
async def idle_scheduler(tmp_path: Path, **settings: Any
                         ) -> AsyncIterator[tuple[Store, Scheduler]]:
    """A scheduler (no GPUs) over a real, empty log, with daemon ``settings``."""
    async with open_store(tmp_path / "log.db") as store:
        yield store, Scheduler(store=store, backend=cast(GpuBackend, None),
                               settings=DaemonSettings().with_overrides(settings, "test"),
                               state_dir=tmp_path / "state")


async def test_a_submit_lists_every_problem_the_daemon_finds_each_at_its_place(
    tmp_path: Path,
) -> None:
    # They were one RequestError, the first problem alone and no place: `gpusched submit`
    # exited 1 where a refused file exits 2 and lists every problem.
    async with idle_scheduler(tmp_path, max_gpus_per_user=1) as (store, scheduler):
        spec = _spec(tmp_path, gpus_per_trial=2, search="tpee", early_stopping="medain",
                     resume_from="e99")
        with pytest.raises(SpecError) as refused:
            await scheduler.submit(spec, os.getuid())
        assert await store.experiments() == []
    problems = refused.value.problems
    assert [p.place for p in problems] == [
        "gpus_per_trial", "search", "early_stopping", "resume_from"]
    assert problems[0].message == ("2 is over this daemon's per-user limit of 1 GPUs"
                                   " (max_gpus_per_user): ask for fewer")
    assert problems[1].message.startswith(
        "unknown search plugin 'tpee' (did you mean 'tpe'?) (installed: ")
    assert "random" in problems[1].message
    assert problems[2].message.startswith(
        "unknown stopping plugin 'medain' (did you mean 'median'?) (installed: ")
    assert problems[3].message == "no experiment 'e99' (`gpusched ls --all` lists them)"


async def test_a_submits_plugin_problems_are_at_the_name_or_the_options_as_written(
    tmp_path: Path,
) -> None:
    async with idle_scheduler(tmp_path) as (store, scheduler):
        await store.create_experiment(name="first", spec=_spec(tmp_path).to_dict(), seed=0,
                                      priority=0, owner_uid=os.getuid())
        await store.update_experiment("e1", state="running")
        options = _spec(tmp_path, search={"algorithm": "random", "bogus": 1},
                        early_stopping={"policy": "median", "nope": 2}, resume_from="first")
        names = _spec(tmp_path, search={"algorithm": "nosuch", "seed": 3},
                      early_stopping={"policy": "nosuch", "min_trials": 2})
        refusals = []
        for spec in (options, names):
            with pytest.raises(SpecError) as refused:
                await scheduler.submit(spec, os.getuid())
            refusals.append([(p.place, p.message) for p in refused.value.problems])
        assert [e["id"] for e in await store.experiments()] == ["e1"]
    (search, stopping, resume_from), (search_name, stopping_name) = refusals
    assert search[0] == "search" and search[1].startswith("search plugin 'random': ")
    assert "bogus" in search[1]
    assert stopping[0] == "early_stopping" and stopping[1].startswith(
        "stopping plugin 'median': ") and "nope" in stopping[1]
    assert resume_from == ("resume_from", "e1 is still running: wait until it ends"
                                          " (`gpusched wait e1`), then submit this again")
    assert search_name[0] == "search.algorithm"
    assert search_name[1].startswith("unknown search plugin 'nosuch' (installed: ")
    assert stopping_name[0] == "early_stopping.policy"


async def test_a_submit_makes_each_plugin_once_and_reads_no_plugin_list_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The checks are the plugins being made: the experiment runs the very ones checked.
    from gpusched import plugins as plugins_module
    from gpusched._daemon import scheduler as scheduler_module
    from gpusched.plugins import load_search_plugin as load

    made: list[Any] = []

    def counting(name: str) -> Any:
        class Counted(load(name)):  # type: ignore[misc]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                made.append(self)
                super().__init__(*args, **kwargs)
        return Counted

    def no_scan(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the installed plugins were listed again for a sound submit")

    monkeypatch.setattr(scheduler_module, "load_search_plugin", counting)
    monkeypatch.setattr(plugins_module, "find_plugins", no_scan)
    async with idle_scheduler(tmp_path) as (_store, scheduler):
        exp_id = await scheduler.submit(_spec(tmp_path, early_stopping="median"), os.getuid())
        exp = scheduler.active[exp_id]
    assert len(made) == 1 and exp.search is made[0]
    assert [type(s).__name__ for s in exp.stoppers] == ["MedianStopping"]


@pytest.mark.parametrize(("ended", "trial", "objective", "resumes"), [
    ("failed", "failed", None, False),  # `command: false`: it once ended `completed`
    ("cancelled", "completed", 0.5, False),  # cancelled as its last trial ended
    ("cancelled", "cancelled", None, True),  # cut short by the cancel: it runs again
    ("failed", "cancelled", None, True),  # a retry cancelled as a failure rule fired
])
async def test_resume_refuses_an_experiment_with_nothing_left_to_run(
    tmp_path: Path, ended: str, trial: str, objective: float | None, resumes: bool,
) -> None:
    async with scheduling(tmp_path, max_trials=1) as (store, scheduler, _exp):
        del scheduler.active["e1"]
        await store.create_trial("e1", 0, {"x": 1}, str(tmp_path / "0"))
        await store.update_trial("e1", 0, state=trial, objective=objective)
        await store.update_experiment("e1", state=ended, reason="why it ended", ended_at=2.0)
        if resumes:
            assert await scheduler.resume("e1") == (
                "resuming e1: 1 trial to run again, no new ones (max_trials: 1)")
            assert scheduler.active["e1"].requeued == [0]
            return
        with pytest.raises(RequestError) as refused:
            await scheduler.resume("e1")
        row = await store.experiment("e1")
        events = [e["kind"] for e in await store.events("e1")]
        trials = await _states(store)
    assert refused.value.code == "bad_request"
    # Trials without a result teach a resume_from nothing: it says to submit afresh instead.
    further = ("To search further, submit a new experiment (`gpusched submit FILE --set"
               " resume_from=e1`: its search learns from these trials' results)"
               if objective is not None else
               "None of its trials has a result to learn from (`gpusched show e1` says how"
               " they ended): fix the cause, then submit the file again")
    assert str(refused.value) == (
        f"e1 has nothing left to run: all of its max_trials (1) have run and no trial was cut"
        f" short, so it stays {ended}. {further}")
    assert "e1" not in scheduler.active and "experiment_resumed" not in events
    assert row is not None
    assert (row["state"], row["reason"], row["ended_at"]) == (ended, "why it ended", 2.0)
    assert trials == (ended, [(trial, None)])


async def test_resume_refuses_an_experiment_whose_search_has_nothing_more(
    tmp_path: Path,
) -> None:
    # A grid of 2 points under max_trials 10, both failed: resumed, the grid had nothing more
    # and the experiment ended `completed` (`wait` exited 0), as with max_trials all run.
    async with scheduling(tmp_path, search="grid") as (store, scheduler, _exp):
        del scheduler.active["e1"]
        for number, x in enumerate([1, 2]):
            await store.create_trial("e1", number, {"x": x}, str(tmp_path / str(number)))
            await store.update_trial("e1", number, state="failed")
        await store.update_experiment("e1", state="failed", reason="2 trials failed")
        with pytest.raises(RequestError) as refused:
            await scheduler.resume("e1")
        row = await store.experiment("e1")
    assert "its search has nothing more to suggest and no trial was cut short" in str(
        refused.value)
    assert row is not None and row["state"] == "failed" and "e1" not in scheduler.active


async def test_a_cancelled_experiment_ends_cancelled_whatever_a_stopping_trial_did(
    tmp_path: Path,
) -> None:
    # A stopping plugin's stop under way as the cancel came ended the trial `failed` (no
    # result): the first-trial rule then ended the experiment `failed`, not `cancelled`.
    async with scheduling(tmp_path) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)
        exp.cancelling = True
        trial.state = TrialState.FAILED
        await scheduler._trial_ended(exp, trial, None)
        assert exp.failure is None
        assert (await _states(store))[0] == "cancelled"


async def test_resume_refuses_an_experiment_whose_search_waits_with_nothing_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpusched_plugins.random_search import RandomSearch

    from gpusched.plugin_api import WAIT

    monkeypatch.setattr(RandomSearch, "suggest", lambda self, number, history: WAIT)
    async with scheduling(tmp_path) as (store, scheduler, _exp):
        del scheduler.active["e1"]
        await store.create_trial("e1", 0, {"x": 1}, str(tmp_path / "0"))
        await store.update_trial("e1", 0, state="failed")
        await store.update_experiment("e1", state="failed", reason="the first trial failed")
        with pytest.raises(RequestError, match="its search waits, with none of its trials"):
            await scheduler.resume("e1")


async def test_a_failure_rules_decision_is_written_with_the_trials_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It was a commit of its own after the end's: a daemon killed between the two restarted
    # with the failed trial and no decision, and went on to end the experiment `completed`.
    from gpusched._daemon.devices import DeviceTable
    from gpusched._daemon.fake_gpus import FakeBackend, FakeConfig
    from gpusched._daemon.trial_runner import TrialRunner

    (tmp_path / "t.py").write_text("raise SystemExit(3)\n")
    async with scheduling(tmp_path, command=f"{sys.executable} t.py",
                          max_retries_per_trial=0) as (store, scheduler, exp):
        trial = await _running_trial(scheduler, exp)

        async def killed_before_any_other_write(*args: Any, **kwargs: Any) -> None:
            raise AssertionError("no write may follow the end's in this test")

        monkeypatch.setattr(store, "add_event", killed_before_any_other_write)
        decided: list[str | None] = []

        async def ended(exp: ExperimentRun, trial: TrialRun, fatal: str | None,
                        failing: str | None) -> None:
            decided.append(failing)

        await TrialRunner(
            experiment=exp, trial=trial, uuids=[], store=store,
            backend=FakeBackend(FakeConfig(devices=())),
            devices=DeviceTable([], scheduler.settings),
            settings=DaemonSettings(), trial_dir=tmp_path / "trial",
            daemon_env=dict(os.environ), on_end=ended).run()
        events = [(e["kind"], e["trial"]) for e in await store.events("e1")]
    assert trial.state is TrialState.FAILED
    assert decided == [exp.failure] and exp.failure is not None
    assert exp.failure.startswith("the first trial, e1/0, failed")
    assert events[-2:] == [("trial_ended", 0), ("experiment_failing", None)]


async def test_a_resume_while_a_submit_learning_from_it_is_under_way_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The submit read the earlier experiment's trials, then the resume changed them: the
    # live search and a restarted one (reading them again) saw different histories.
    from gpusched._daemon import scheduler as scheduler_module
    from gpusched._daemon.restore import prior_trials as real

    reading, go_on = anyio.Event(), anyio.Event()

    async def slow_prior_trials(*args: Any) -> Any:
        reading.set()
        await go_on.wait()
        return await real(*args)

    monkeypatch.setattr(scheduler_module, "prior_trials", slow_prior_trials)
    async with scheduling(tmp_path) as (store, scheduler, _exp):
        del scheduler.active["e1"]
        await store.create_trial("e1", 0, {"x": 1}, str(tmp_path / "0"))
        await store.update_trial("e1", 0, state="cancelled")
        await store.update_experiment("e1", state="cancelled", reason="cancelled")
        submitted: list[str] = []

        async def submit() -> None:
            spec = _spec(tmp_path, resume_from="e1")
            submitted.append(await scheduler.submit(spec, os.getuid()))

        with anyio.fail_after(30):  # a regression fails, rather than hangs
            async with anyio.create_task_group() as tg:
                tg.start_soon(submit)
                await reading.wait()
                try:
                    with pytest.raises(RequestError, match="an experiment being submitted"):
                        await scheduler.resume("e1")
                finally:
                    go_on.set()  # a failed check must not leave the submit waiting
        assert submitted == ["e2"] and scheduler._learning_from == {}


# -- an experiment without a single result ----------------------------------------------------

BOOM = "exited with code 1: RuntimeError: boom"
NO_METRIC = "exited 0 without reporting 'acc' (it reported ac) (did you mean 'ac'?)"


async def _ended_trial(scheduler: Scheduler, exp: ExperimentRun, state: TrialState,
                       reason: str, objective: float | None = None) -> None:
    """Run ``exp``'s next trial to an end in ``state``, recorded as its runner records it,
    with no failure rule firing (as with a large max_failed_trials)."""
    trial = await _running_trial(scheduler, exp)
    trial.state, trial.objective = state, objective
    await scheduler.store.update_trial(exp.id, trial.number, state=state.value, reason=reason,
                                       objective=objective)
    await scheduler._trial_ended(exp, trial, None, None)


@pytest.mark.parametrize(("ends", "ended", "because"), [
    # Every trial failed: it once ended `completed`, and `wait` exited 0.
    ([("failed", "exited with code 3"), ("failed", "killed by signal SIGKILL"),
      ("failed", BOOM)],
     "failed", f"none of its 3 trials has a result: 3 failed (the last, e1/2: {BOOM})"),
    # The metric never reported: the last failure's own reason says so.
    ([("failed", NO_METRIC)] * 3,
     "failed", f"none of its 3 trials has a result: 3 failed (the last, e1/2: {NO_METRIC})"),
    # Counted by how they ended; the last failed one speaks for the failures.
    ([("failed", BOOM), ("cancelled", "cancelled"), ("failed", "exited with code 3")],
     "failed", "none of its 3 trials has a result: 2 failed (the last, e1/2: exited with"
               " code 3), 1 cancelled"),
    # One result is enough: it completes, as before.
    ([("failed", BOOM), ("completed", "exited 0; acc = 0.5"), ("failed", BOOM)],
     "completed", "3 trials run; best acc = 0.5 (trial e1/1)"),
])
async def test_an_experiment_whose_trials_all_ended_without_a_result_fails(
    tmp_path: Path, ends: list[tuple[str, str]], ended: str, because: str,
) -> None:
    async with scheduling(tmp_path, max_trials=3, max_failed_trials=100,
                          max_consecutive_failed_trials=100) as (store, scheduler, exp):
        for state, reason in ends:
            objective = 0.5 if state == "completed" else None
            await _ended_trial(scheduler, exp, TrialState(state), reason, objective)
        row = await store.experiment("e1")
        events = await store.events("e1")
    assert "e1" not in scheduler.active and exp.state is ExperimentState(ended)
    assert row is not None and (row["state"], row["reason"]) == (ended, because)
    assert events[-1]["kind"] == "experiment_ended"
    assert events[-1]["data"] == {"state": ended, "reason": because}


async def test_an_only_trial_without_a_result_and_a_spent_time_budget_say_so(
    tmp_path: Path,
) -> None:
    async with scheduling(tmp_path, max_trials=1, max_failed_trials=5) as (store, sched, exp):
        await _ended_trial(sched, exp, TrialState.FAILED, BOOM)
        only = await store.experiment("e1")
    (tmp_path / "budget").mkdir()
    async with scheduling(tmp_path / "budget", time_budget="60s") as (store, sched, exp):
        trial = await _running_trial(sched, exp)
        exp.budget_spent = True  # its stop leaves the trial `stopped`, without a result
        trial.state = TrialState.STOPPED
        await sched._trial_ended(exp, trial, None, None)
        budget = await store.experiment("e1")
    assert only is not None and (only["state"], only["reason"]) == (
        "failed", f"its only trial has no result: it failed (e1/0: {BOOM})")
    assert budget is not None and (budget["state"], budget["reason"]) == (
        "failed", "time_budget of 60s used up; its only trial has no result: it was stopped"
                  " without one")


async def test_a_search_exhausted_before_any_trial_ran_completes(tmp_path: Path) -> None:
    # A grid whose every point its resume_from history used: nothing failed, nothing is left
    # to search; `wait` must exit 0 on it, as it did before failing experiments without results.
    async with scheduling(tmp_path) as (store, scheduler, exp):
        exp.exhausted = True
        await scheduler._maybe_finish(exp)
        row = await store.experiment("e1")
    assert row is not None and (row["state"], row["reason"]) == (
        "completed", "search space exhausted before any trial ran")


async def test_a_restart_after_the_last_trial_failed_ends_it_as_the_live_daemon_would(
    tmp_path: Path,
) -> None:
    # The daemon was killed after the last trial's end was written, before the experiment's.
    (tmp_path / "live").mkdir()
    (tmp_path / "killed").mkdir()
    async with scheduling(tmp_path / "live", max_trials=2,
                          max_failed_trials=100) as (store, scheduler, exp):
        for _ in range(2):
            await _ended_trial(scheduler, exp, TrialState.FAILED, BOOM)
        live = await store.experiment("e1")
    async with scheduling(tmp_path / "killed", max_trials=2,
                          max_failed_trials=100) as (store, scheduler, exp):
        for _ in range(2):
            trial = await _running_trial(scheduler, exp)
            await store.update_trial("e1", trial.number, state="failed", reason=BOOM)
        restarted = Scheduler(store=store, backend=cast(GpuBackend, None),
                              settings=DaemonSettings(), state_dir=tmp_path / "state")
        await restarted._restore()
        after_restart = await store.experiment("e1")
    assert live is not None and after_restart is not None and "e1" not in restarted.active
    assert (after_restart["state"], after_restart["reason"]) == (live["state"], live["reason"])
    assert live["reason"] == f"none of its 2 trials has a result: 2 failed (the last, e1/1: {BOOM})"
