"""A root daemon shared by several users: fair share is between users (owners), not between
experiments; a user whom the socket refuses is told why and how to get in, not to start a
daemon.

The placement order is checked on the scheduler itself (no daemon, no root), then on a real
root daemon with a real second user; the socket's refusals need root too (a real second user,
groups, a socket file of root's), and reuse tests/integration/test_users.py's fixtures.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.gpu_backend import GpuBackend
from gpusched._daemon.scheduler import Scheduler
from gpusched._daemon.store import Store
from gpusched.config import DaemonSettings
from gpusched.models import ExperimentState, TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment
from tests.integration.harness import Daemon, fake_config, running_daemon, wait_for
from tests.integration.test_users import (
    GROUP,
    as_user,
    client_path,
    ids,
    interpreter_for,
    needs_root,
    open_daemon_dir,
    other_user,
    shared_probe,
    shared_tmp,
    submit_as,
)

__all__ = ["other_user", "shared_tmp"]  # fixtures, used by name


_RUN = os.getpid() % 100000
OUTSIDE = f"gsto-{_RUN}"  # a group the other user is not in
MISSING = f"gsno-{_RUN}"  # a group that does not exist
ALICE, BOB = 1001, 1002
OWN_DAEMON = ("or run your own daemon with `gpusched daemon --socket PATH` and give each"
              " command --socket PATH (or GPUSCHED_SOCKET=PATH)")


# -- the placement order, on the scheduler itself ---------------------------------------------

def _experiment(seq: int, owner: int | None, *, holds: int = 0,
                **fields: Any) -> ExperimentRun:
    """Experiment ``e<seq>`` of ``owner``, with ``holds`` trials running."""
    spec = parse_experiment({"name": f"e{seq}", "command": "python t.py", "metric": "acc",
                             "max_trials": 10, **fields,
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=Path("/"))
    search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
    exp = ExperimentRun(f"e{seq}", seq, spec, 0, search, [], state=ExperimentState.RUNNING,
                        owner_uid=owner)
    for _ in range(holds):
        _start_trial(exp)
    return exp


def _start_trial(exp: ExperimentRun) -> None:
    """What a placement leaves in memory: a running trial in ``live``."""
    trial = TrialRun(number=len(exp.trials), params={"x": 1}, state=TrialState.RUNNING)
    exp.trials[trial.number] = trial
    exp.live[trial.number] = trial


def _scheduler(tmp_path: Path, *experiments: ExperimentRun) -> Scheduler:
    scheduler = Scheduler(store=cast(Store, None), backend=cast(GpuBackend, None),
                          settings=DaemonSettings(), state_dir=tmp_path)
    scheduler.active.update((e.id, e) for e in experiments)
    return scheduler


def _placements(scheduler: Scheduler, count: int) -> list[str]:
    """Start ``count`` trials one at a time, each for the first experiment in line then, as
    placement does when every GPU fits: the order is asked again after each."""
    placed = []
    for _ in range(count):
        first = scheduler._order()[0]
        _start_trial(first)
        placed.append(first.id)
    return placed


def test_splitting_a_search_into_experiments_gains_its_owner_nothing(tmp_path: Path) -> None:
    # Alice splits her search into three experiments, Bob submits one, last; four GPUs free.
    # Per experiment, Alice got three of them; per owner, two each.
    scheduler = _scheduler(tmp_path, _experiment(1, ALICE), _experiment(2, ALICE),
                           _experiment(3, ALICE), _experiment(4, BOB))
    assert _placements(scheduler, 4) == ["e1", "e4", "e2", "e4"]


def test_an_owners_experiments_that_want_no_more_trials_still_count(tmp_path: Path) -> None:
    # Alice's e1 is at its max_parallel_trials (so not in line) but holds a GPU: her e2 waits
    # behind Bob's e3, whose owner holds none, though e2 itself holds none and came first.
    full = _experiment(1, ALICE, holds=1, max_parallel_trials=1)
    scheduler = _scheduler(tmp_path, full, _experiment(2, ALICE), _experiment(3, BOB))
    assert [e.id for e in scheduler._order()] == ["e3", "e2"]


def test_priority_still_comes_before_fair_share_between_owners(tmp_path: Path) -> None:
    scheduler = _scheduler(tmp_path, _experiment(1, BOB),
                           _experiment(2, ALICE, holds=3, priority=5))
    assert [e.id for e in scheduler._order()] == ["e2", "e1"]


def test_fractions_of_gpus_summed_in_another_order_still_tie(tmp_path: Path) -> None:
    # Alice holds 1/5 + 2 x 1/15 GPUs, Bob 1/3: a tie between owners, so submit order
    # decides between their experiments that hold none (not a float's last bit: the sum is
    # 0.33333333333333337, 1/3 is 0.3333333333333333).
    scheduler = _scheduler(
        tmp_path, _experiment(1, ALICE, holds=1, gpus_per_trial="1/5"),
        _experiment(2, ALICE, holds=2, gpus_per_trial="1/15"),
        _experiment(3, BOB, holds=1, gpus_per_trial="1/3"),
        _experiment(4, ALICE), _experiment(5, BOB))
    assert scheduler._order()[0].id == "e4"


@pytest.mark.parametrize("owner", [ALICE, None])
def test_with_one_owner_the_order_is_the_experiments_fair_share_as_before(
    tmp_path: Path, owner: int | None,
) -> None:
    # A per-user daemon: the experiment holding fewer GPUs first, then submit order.
    scheduler = _scheduler(tmp_path, _experiment(1, owner, holds=2), _experiment(2, owner),
                           _experiment(3, owner, holds=1), _experiment(4, owner))
    assert _placements(scheduler, 6) == ["e2", "e4", "e2", "e3", "e4", "e1"]


# -- the same on a real root daemon, with a real second user ----------------------------------

@needs_root
def test_a_root_daemon_shares_freed_gpus_between_users_not_experiments(
    shared_tmp: Path, other_user: str,
) -> None:
    slow = shared_probe(shared_tmp, other_user, max_trials=4, command=[
        interpreter_for(other_user), str(shared_tmp / "probe.py"), "--sleep", "30"])
    busy = fake_config(4)
    for dev in busy["devices"]:
        dev["foreign_used_mib"] = 4000  # another program's: no trial starts yet
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}, fake=busy) as d:
        open_daemon_dir(d)
        roots = [d.submit(slow, name=f"root-{n}") for n in range(3)]
        theirs = submit_as(other_user, d, {**slow, "name": "theirs"})
        d.set_fake(fake_config(4))  # all four free at once
        wait_for(lambda: all(g["state"] == "busy" for g in d.client.gpus()["devices"]), 20,
                 "all four GPUs busy")
        running = {e["id"]: e["trials"]["running"] for e in d.client.experiments()}
        for exp in running:
            d.cli("cancel", exp)
    # Per experiment, root's three would have taken three GPUs and the other user's one.
    assert running[theirs] == 2, running
    assert sum(running[e] for e in roots) == 2, running


# -- a user whom the socket refuses -----------------------------------------------------------

@pytest.fixture(scope="module")
def outside_group(other_user: str) -> Iterator[str]:
    """A group that ``other_user`` is not in."""
    subprocess.run(["groupadd", "--system", OUTSIDE], capture_output=True, check=False)
    yield OUTSIDE
    subprocess.run(["groupdel", OUTSIDE], capture_output=True, check=False)


def _as_user_with_groups(user: str, d: Daemon, groups: list[int], *args: str
                         ) -> subprocess.CompletedProcess[str]:
    """``gpusched ARGS`` run by ``user`` with only ``groups`` besides its primary group: as
    in a session that began before the user was added to another group."""
    code = "import sys; from gpusched.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([interpreter_for(user), "-c", code, args[0], "--socket", str(d.socket),
                           *args[1:]], **{**ids(user), "extra_groups": groups},
                          capture_output=True, text=True, timeout=60, check=False, cwd="/",
                          env={"PYTHONPATH": client_path(), "PATH": "/usr/bin"})


@needs_root
def test_a_user_outside_the_socket_group_is_told_to_join_it_not_to_start_a_daemon(
    shared_tmp: Path, other_user: str, outside_group: str,
) -> None:
    with running_daemon(shared_tmp / "d", settings={"socket_group": outside_group}) as d:
        open_daemon_dir(d)
        listed = as_user(other_user, d, "ls")
        waited = as_user(other_user, d, "wait", "e1")
    said = (f"gpusched: permission denied on {d.socket}: it belongs to the group"
            f" '{outside_group}'; ask an admin to add you (`usermod -aG {outside_group}"
            f" {other_user}`) and log in again, {OWN_DAEMON}\n")
    assert (listed.returncode, listed.stderr) == (1, said)
    # For `gpusched wait`, as when no daemon answers: the outcome is unknown to this user.
    assert (waited.returncode, waited.stderr) == (69, said)


@needs_root
def test_a_user_who_joined_the_group_after_logging_in_is_told_to_log_in_again(
    shared_tmp: Path, other_user: str,
) -> None:
    with running_daemon(shared_tmp / "d", settings={"socket_group": GROUP}) as d:
        open_daemon_dir(d)
        assert as_user(other_user, d, "ls").returncode == 0  # with the group, it may
        stale = _as_user_with_groups(other_user, d, [], "ls")
    assert (stale.returncode, stale.stderr) == (
        1, f"gpusched: permission denied on {d.socket}: it belongs to the group '{GROUP}',"
           f" which you joined after you logged in; log in again (or run `newgrp {GROUP}`),"
           f" {OWN_DAEMON}\n")


@needs_root
def test_a_socket_shared_with_no_group_or_behind_a_closed_folder_says_so(
    shared_tmp: Path, other_user: str,
) -> None:
    # A root daemon whose socket_group does not exist keeps its socket root's alone (0600).
    with running_daemon(shared_tmp / "d", settings={"socket_group": MISSING}) as d:
        open_daemon_dir(d)
        alone = as_user(other_user, d, "ls")
        d.tmp.chmod(0o700)
        closed = as_user(other_user, d, "ls")
    assert (alone.returncode, alone.stderr) == (
        1, f"gpusched: permission denied on {d.socket}: only its owner (root) may use it"
           " (mode 0600); ask an admin to share it through the daemon's socket_group setting"
           f" (a group that exists, with you in it), {OWN_DAEMON}\n")
    assert (closed.returncode, closed.stderr) == (
        1, f"gpusched: permission denied on {d.socket}: a folder above it is closed to you;"
           f" check the path, {OWN_DAEMON}\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the socket another owner")
def test_a_per_user_daemons_socket_is_said_to_be_its_users_own(tmp_path: Path) -> None:
    # Another user refused by a per-user daemon's socket was told to ask an admin for its
    # socket_group, which a daemon not run as root does not apply.
    from gpusched.client import _permission_denied

    sock = tmp_path / "gpusched.sock"
    sock.touch(mode=0o600)
    os.chown(sock, 65534, 65534)
    said = _permission_denied(str(sock))
    assert "own daemon, whose socket is theirs alone (mode 0600)" in said, said
    assert "socket_group" not in said
