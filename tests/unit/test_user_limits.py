"""Per-user limits: what they count, the wait reasons they give, and that placement asks the
user database only for a message, not for every experiment at every pass (the database may be
a slow directory, and placement runs on the event loop)."""

from __future__ import annotations

import pwd
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import pytest

from gpusched._daemon import access
from gpusched._daemon.experiment import ExperimentRun
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store
from gpusched._daemon.trial_runner import TrialRunner
from gpusched._daemon.user_limits import Usage, UserLimits
from gpusched.config import DaemonSettings
from tests.unit.test_experiment import run

ALICE, BOB, GONE = 1001, 1002, 4242


@dataclass
class _Trial:
    processes_gone: bool = False


@dataclass
class _Runner:
    """The part of a TrialRunner that the limits (and the scheduler's counts) read."""

    exp: ExperimentRun
    trial: _Trial
    uuids: tuple[str, ...] = ("GPU-1",)


def runner(exp: ExperimentRun, *, gone: bool = False) -> TrialRunner:
    return cast(TrialRunner, _Runner(exp, _Trial(gone)))


def experiment(tmp_path: Path, owner: int | None, exp_id: str = "e1", **spec: object
               ) -> ExperimentRun:
    exp = run(tmp_path, max_trials=8, **spec)
    exp.id, exp.owner_uid = exp_id, owner
    return exp


def limits(**settings: object) -> UserLimits:
    return UserLimits(DaemonSettings().with_overrides(dict(settings), "test"))


@pytest.fixture
def lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """The uids the user database is asked about (alice and bob exist, nobody else)."""
    asked: list[int] = []
    names = {ALICE: "alice", BOB: "bob"}

    def getpwuid(uid: int) -> pwd.struct_passwd:
        asked.append(uid)
        return pwd.struct_passwd((names[uid], "x", uid, uid, "", f"/home/{names[uid]}", "/bin/sh"))

    access.clear_cache()
    monkeypatch.setattr(pwd, "getpwuid", getpwuid)
    yield asked
    access.clear_cache()


def test_usage_counts_gpus_and_trials_per_owner_while_processes_live(tmp_path: Path) -> None:
    half = experiment(tmp_path, ALICE, gpus_per_trial=0.5)
    cpu = experiment(tmp_path, ALICE, "e2", gpus_per_trial=0)
    bobs = experiment(tmp_path, BOB, "e3")
    usage = UserLimits.usage([runner(half), runner(half), runner(cpu), runner(bobs),
                              runner(bobs, gone=True)])
    assert usage == {ALICE: (1.0, 3), BOB: (1.0, 1)}


def test_no_limit_hit_asks_no_name(tmp_path: Path, lookups: list[int]) -> None:
    lim = limits(max_gpus_per_user=2, max_trials_per_user=3)
    exps = [experiment(tmp_path, uid, f"e{uid}") for uid in (ALICE, BOB, GONE, None)]
    usage: Usage = {ALICE: (1.0, 1), BOB: (0.0, 0)}
    for _ in range(100):  # placement passes
        assert [lim.blocked(e, usage) for e in exps] == [None] * 4
    assert lookups == []


def test_a_limit_hit_names_the_owner_once_per_ttl(tmp_path: Path, lookups: list[int]) -> None:
    lim = limits(max_gpus_per_user=2, max_trials_per_user=3)
    alices = experiment(tmp_path, ALICE)
    for _ in range(100):
        assert lim.blocked(alices, {ALICE: (1.0, 3)}) == (
            "per-user limit: alice runs 3 trials (max_trials_per_user = 3)")
        assert lim.blocked(alices, {ALICE: (2.0, 2)}) == (
            "per-user limit: alice holds 2 of 2 GPUs (max_gpus_per_user), a trial needs 1")
    assert lookups == [ALICE]


def test_owners_without_a_name(tmp_path: Path, lookups: list[int]) -> None:
    lim = limits(max_trials_per_user=1)
    assert lim.blocked(experiment(tmp_path, GONE), {GONE: (0.0, 1)}) == (
        "per-user limit: 4242 runs 1 trials (max_trials_per_user = 1)")
    assert lim.blocked(experiment(tmp_path, None), {None: (0.0, 1)}) == (
        "per-user limit: its owner runs 1 trials (max_trials_per_user = 1)")
    assert lookups == [GONE]  # None is never looked up


def test_a_cpu_only_trial_is_not_held_by_the_gpu_limit(tmp_path: Path, lookups: list[int]
                                                       ) -> None:
    lim = limits(max_gpus_per_user=1)
    assert lim.blocked(experiment(tmp_path, ALICE, gpus_per_trial=0), {ALICE: (1.0, 1)}) is None
    assert lookups == []


def test_submit_refuses_a_trial_over_the_gpu_limit() -> None:
    # A problem at the file's gpus_per_trial, listed with the file's others (Scheduler.submit).
    assert limits(max_gpus_per_user=2).submit_problem(2) is None
    assert limits().submit_problem(64) is None  # no limit
    assert limits(max_gpus_per_user=2).submit_problem(3) == (
        "3 is over this daemon's per-user limit of 2 GPUs (max_gpus_per_user): ask for fewer")
    assert repr(limits(max_gpus_per_user=1.5, max_trials_per_user=4)) == (
        "<UserLimits gpus=1.5 trials=4>")


def test_the_scheduler_asks_no_name_to_say_why_an_experiment_waits(
    tmp_path: Path, lookups: list[int],
) -> None:
    settings = DaemonSettings().with_overrides({"max_trials_per_user": 1}, "test")
    scheduler = Scheduler(store=cast(Store, None), backend=cast(GpuBackend, None),
                          settings=settings, state_dir=tmp_path / "state")
    alices, bobs = experiment(tmp_path, ALICE), experiment(tmp_path, BOB, "e2")
    scheduler.active = {"e1": alices, "e2": bobs}
    for _ in range(20):  # `gpusched ls` asked again and again
        waiting = scheduler.waiting("e1")
        assert waiting is not None and waiting["code"] != "user_limit"
    assert lookups == []
    scheduler.runners = {"e1/0": runner(alices)}  # alice is now at her limit
    for _ in range(20):
        waiting = scheduler.waiting("e1")
        assert waiting is not None and waiting["code"] == "user_limit"
        assert waiting["message"] == ("per-user limit: alice runs 1 trials"
                                      " (max_trials_per_user = 1)")
        scheduler.waiting("e2")  # bob is under his: his reason needs no name
    assert lookups == [ALICE]
