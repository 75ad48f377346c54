"""Where a trial's auto-filled count goes on from (``count_start``): its own reports, or, for one
that continues another (hyperband's promotion), that trial's curve; and the same for reports
read back by a restarted daemon."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gpusched._daemon.experiment import ExperimentRun, TrialRun
from gpusched._daemon.launcher import TrialFiles
from gpusched._daemon.report_collector import count_start
from gpusched._daemon.restore import restore_trials
from gpusched._daemon.store import ReadPosition, open_store
from gpusched.models import TrialState
from gpusched.plugins import make_search_plugin
from gpusched.spec import parse_experiment

T0 = 1_700_000_000.0  # a whole second: stored timestamps (int) are exact


def _trial(number: int, continues: int | None = None, *, iterations: int = 0,
           total: float = 0.0) -> TrialRun:
    """A trial with ``iterations`` reports (the last at that training_iteration, ``total``
    seconds in)."""
    last = {} if not iterations else {"acc": 0.5, "training_iteration": iterations,
                                      "time_total_s": total, "timestamp": int(T0)}
    return TrialRun(number=number, params={}, continues=continues, reports=iterations,
                    last_report=last)


def test_a_trial_that_continues_none_counts_on_from_its_own_reports() -> None:
    trial = _trial(0, iterations=3, total=30.0)
    assert count_start(trial, {0: trial}) == (3, trial.last_report)


def test_a_continuation_goes_on_from_the_last_report_of_the_trial_it_continues() -> None:
    parent = _trial(4, iterations=2, total=20.0)
    child = _trial(7, continues=4)  # a promotion of 4, with no report yet
    assert count_start(child, {4: parent, 7: child}) == (2, parent.last_report)


def test_a_chain_counts_every_epoch_before_it() -> None:
    # 0 ran epochs 1-2; 3 continued it for epochs 3-5 (3 reports of its own, counted 3..5).
    first, second = _trial(0, iterations=2, total=20.0), _trial(3, continues=0)
    second.reports, second.last_report = 3, {"training_iteration": 5, "time_total_s": 50.0}
    third = _trial(8, continues=3)
    assert count_start(third, {0: first, 3: second, 8: third}) == (5, second.last_report)


def test_a_retried_continuation_counts_its_own_reports_after_the_others() -> None:
    # Its first attempt stored 2 reports (iterations 3 and 4, time on from its parent's).
    parent, child = _trial(4, iterations=2, total=20.0), _trial(7, continues=4)
    child.reports = 2
    child.last_report = {"training_iteration": 4, "time_total_s": 35.0, "timestamp": int(T0)}
    assert count_start(child, {4: parent, 7: child}) == (4, child.last_report)


def test_a_predecessor_that_reported_nothing_is_passed_over() -> None:
    grandparent = _trial(0, iterations=2, total=20.0)
    parent, child = _trial(2, continues=0), _trial(5, continues=2)
    trials = {0: grandparent, 2: parent, 5: child}
    assert count_start(child, trials) == (2, grandparent.last_report)
    # With none that reported, it counts from its own, as a fresh trial does.
    alone = {2: _trial(2), 5: child}
    assert count_start(child, alone) == (0, {})
    child.reports, child.last_report = 1, {"training_iteration": 1, "time_total_s": 5.0}
    assert count_start(child, alone) == (1, child.last_report)


def test_a_chain_edited_into_a_cycle_ends() -> None:
    a, b = _trial(1, continues=2), _trial(2, continues=1)
    assert count_start(a, {1: a, 2: b}) == (0, {})
    missing = _trial(3, continues=9)  # a trial the log does not have
    assert count_start(missing, {3: missing}) == (0, {})


# -- reports read back by a restarted daemon -----------------------------------------------------


async def _restored(tmp_path: Path, *, stored: list[dict[str, Any]], stored_lines: str,
                    new_lines: str) -> list[dict[str, Any]]:
    """A log whose trial 0 completed with two reports (iterations 1, 2; 20 s) and whose trial 1
    continues it, running from T0 when the daemon died, with ``stored`` reports of its own (read
    up to the end of ``stored_lines``) and a report file that goes on with ``new_lines``.
    Restored: trial 1's reports."""
    spec = parse_experiment({"name": "exp", "command": "python t.py", "metric": "acc",
                             "params": [{"name": "x", "type": "discrete", "values": [1, 2]}]},
                            base_dir=tmp_path)
    files = TrialFiles(tmp_path / "t1")
    files.dir.mkdir()
    files.reports.write_text(stored_lines + new_lines)
    async with open_store(tmp_path / "log.db") as store:
        exp_id = await store.create_experiment(name="exp", spec=spec.to_dict(), seed=0,
                                               priority=0, owner_uid=os.getuid())
        await store.create_trial(exp_id, 0, {"x": 1}, str(tmp_path / "t0"), budget=2)
        await store.update_trial(exp_id, 0, state="completed", objective=0.2, attempts=1)
        await store.add_encoded_reports(exp_id, 0, 0, [json.dumps(r) for r in (
            {"acc": 0.1, "training_iteration": 1, "time_total_s": 10.0, "timestamp": int(T0) - 50},
            {"acc": 0.2, "training_iteration": 2, "time_total_s": 20.0, "timestamp": int(T0) - 40},
        )], read_to=ReadPosition(100, None))
        await store.create_trial(exp_id, 1, {"x": 1}, str(files.dir), budget=6, continues=0)
        await store.update_trial(exp_id, 1, state=TrialState.RUNNING.value, started_at=T0,
                                 attempts=1)
        await store.add_encoded_reports(
            exp_id, 1, 0, [json.dumps(r) for r in stored],
            read_to=ReadPosition(len(stored_lines.encode()), None))
        search = make_search_plugin("random", spec.space(), goal=spec.goal, seed=0, options={})
        exp = ExperimentRun(exp_id, int(exp_id[1:]), spec, 0, search, [])
        await restore_trials(store, exp)
        assert exp.trials[1].state is TrialState.INTERRUPTED
        reports = await store.reports(exp_id, 1)
        assert exp.trials[1].reports == len(reports)  # its own count
        assert exp.trials[1].metric_steps == [r["training_iteration"] for r in reports]
        return reports


def _lines(*reports: dict[str, Any]) -> str:
    return "".join(json.dumps(r) + "\n" for r in reports)


async def test_a_continuations_reports_read_after_a_crash_count_on_from_its_parent(
    tmp_path: Path,
) -> None:
    # It stored nothing before the crash: its first reports follow its parent's last.
    reports = await _restored(tmp_path, stored=[], stored_lines="", new_lines=_lines(
        {"acc": 0.3, "_t": T0 + 5}, {"acc": 0.4, "_t": T0 + 9}))
    assert [(r["training_iteration"], r["time_total_s"]) for r in reports] == [(3, 25), (4, 29)]


async def test_a_continuations_reports_read_after_a_crash_follow_its_own_stored_ones(
    tmp_path: Path,
) -> None:
    stored = [{"acc": 0.3, "training_iteration": 3, "time_total_s": 25.0,
               "timestamp": int(T0) + 5}]
    reports = await _restored(tmp_path, stored=stored,
                              stored_lines=_lines({"acc": 0.3, "_t": T0 + 5}),
                              new_lines=_lines({"acc": 0.4, "_t": T0 + 9}))
    assert [(r["training_iteration"], r["time_total_s"]) for r in reports] == [(3, 25), (4, 29)]
