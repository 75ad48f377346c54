"""The SQLite trial log: schema and migrations, experiments, trials, batched reports, events."""

from __future__ import annotations

import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from gpusched._daemon.experiment import STOP_KEY_EVENT
from gpusched._daemon.store import (
    SCHEMA_VERSION,
    WARNING_EVENTS,
    ReadPosition,
    ReportBatch,
    Store,
    open_store,
)
from gpusched.errors import StoreError

SPEC: dict[str, Any] = {"name": "exp", "metric": "acc", "params": []}


async def new_experiment(store: Store, name: str = "exp") -> str:
    return await store.create_experiment(name=name, spec={**SPEC, "name": name}, seed=7,
                                         priority=0, owner_uid=1000)


def pragma(path: Path, name: str) -> Any:
    with sqlite3.connect(path) as db:
        return db.execute(f"PRAGMA {name}").fetchone()[0]


# --- schema ---------------------------------------------------------------------------------


async def test_a_new_log_has_the_current_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with open_store(path) as store:
        assert repr(store) == f"<Store {path} schema={SCHEMA_VERSION}>"
    assert SCHEMA_VERSION >= 1
    assert pragma(path, "user_version") == SCHEMA_VERSION
    assert pragma(path, "journal_mode") == "wal"
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"experiments", "trials", "reports", "events"} <= tables


async def test_reopening_keeps_the_data(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    async with open_store(path) as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {"lr": 0.1}, "/t/0")
        await store.add_reports(exp, 0, 0, [{"acc": 0.5}])
    async with open_store(path) as store:
        row = await store.experiment(exp)
        assert row is not None
        assert row["spec"] == {**SPEC, "name": "exp"}
        assert (await store.trial(exp, 0) or {})["params"] == {"lr": 0.1}
        assert await store.reports(exp, 0) == [{"acc": 0.5}]
        assert await new_experiment(store) == "e2"  # numbering continues
    assert pragma(path, "user_version") == SCHEMA_VERSION


async def test_a_log_from_a_newer_gpusched_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError) as info:
        async with open_store(path):
            pass
    message = str(info.value)
    assert str(path) in message
    assert f"schema {SCHEMA_VERSION + 1}" in message
    assert "upgrade gpusched" in message
    assert pragma(path, "user_version") == SCHEMA_VERSION + 1  # untouched


async def test_a_refused_log_closes_its_connection(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = threading.active_count()
    with pytest.raises(StoreError) as info:
        async with open_store(path):
            pass
    # The caller still holds the error (as the CLI does while printing it): the aiosqlite
    # worker thread must be gone already, not whenever the error is dropped.
    assert "newer than this gpusched" in str(info.value)
    with anyio.move_on_after(1.0):
        while threading.active_count() > before:  # noqa: ASYNC110 -- a thread has no event
            await anyio.sleep(0.01)
    assert threading.active_count() == before


async def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match=r"log\.db"):
        async with open_store(path):
            pass


async def test_an_unreachable_path_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot open the trial log"):
        async with open_store(tmp_path / "missing" / "log.db"):
            pass


# --- experiments ----------------------------------------------------------------------------


async def test_experiment_ids_count_up_from_e1(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        assert [await new_experiment(store, f"x{i}") for i in range(3)] == ["e1", "e2", "e3"]
        rows = await store.experiments()
        assert [r["id"] for r in rows] == ["e3", "e2", "e1"]  # newest first
        assert rows[0]["seq"] == 3
        assert rows[0]["state"] == "queued"
        assert rows[0]["seed"] == 7
        assert rows[0]["owner_uid"] == 1000
        assert isinstance(rows[0]["submitted_at"], float)


async def test_concurrent_submits_get_distinct_ids(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        ids: list[str] = []

        async def submit(i: int) -> None:
            ids.append(await new_experiment(store, f"x{i}"))

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(submit, i)
        assert sorted(ids) == ["e1", "e2", "e3", "e4", "e5"]


async def test_an_experiment_is_found_by_id_or_by_its_newest_name(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        first = await new_experiment(store, "mnist")
        await new_experiment(store, "other")
        newest = await new_experiment(store, "mnist")
        assert (await store.experiment(first) or {})["id"] == first
        assert (await store.experiment("mnist") or {})["id"] == newest
        assert await store.experiment("nope") is None
        assert await store.experiment("e99") is None


async def test_an_id_wins_over_an_experiment_named_like_an_id(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        await new_experiment(store, "a")
        await new_experiment(store, "e1")  # e2, named "e1"
        assert (await store.experiment("e1") or {})["name"] == "a"


async def test_update_experiment_and_the_unfinished_filter(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        done = await new_experiment(store)
        live = await new_experiment(store)
        await store.update_experiment(done, state="failed", reason="first trial failed",
                                      started_at=1.0, ended_at=2.0)
        await store.update_experiment(live, state="running")
        row = await store.experiment(done)
        assert row is not None
        assert (row["state"], row["reason"], row["ended_at"]) == ("failed",
                                                                  "first trial failed", 2.0)
        assert [r["id"] for r in await store.experiments(include_finished=False)] == [live]
        assert len(await store.experiments()) == 2


# --- trials and reports ---------------------------------------------------------------------


async def test_create_and_update_trials(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 1, {"lr": 0.01, "opt": "adam"}, "/t/1")
        await store.create_trial(exp, 0, {"lr": 0.1, "opt": "sgd"}, "/t/0")
        fresh = await store.trial(exp, 0)
        assert fresh is not None
        assert (fresh["state"], fresh["devices"], fresh["reports"], fresh["attempts"]) == (
            "queued", [], 0, 0)
        assert fresh["dir"] == "/t/0"
        await store.update_trial(exp, 0, state="completed", devices=["GPU-a", "GPU-b"],
                                 objective=0.9, exit_code=0, pid=123, attempts=1)
        row = await store.trial(exp, 0)
        assert row is not None
        assert row["devices"] == ["GPU-a", "GPU-b"]
        assert (row["state"], row["objective"], row["exit_code"], row["pid"]) == (
            "completed", 0.9, 0, 123)
        assert [t["number"] for t in await store.trials(exp)] == [0, 1]
        assert await store.trial(exp, 5) is None


async def test_trials_of_all_experiments(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        a, b = await new_experiment(store), await new_experiment(store)
        await store.create_trial(b, 0, {}, "/b/0")
        await store.create_trial(a, 0, {}, "/a/0")
        await store.create_trial(a, 1, {}, "/a/1")
        rows = await store.trials()
        assert [(r["experiment_id"], r["number"]) for r in rows] == [(a, 0), (a, 1), (b, 0)]
        assert [r["number"] for r in await store.trials(b)] == [0]


async def test_a_duplicate_trial_is_a_store_error(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        with pytest.raises(StoreError, match="cannot write the trial log"):
            await store.create_trial(exp, 0, {}, "/t/0")


async def test_reports_are_added_in_batches_and_counted(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        await store.add_reports(exp, 0, 0, [{"step": i, "acc": i / 10} for i in range(3)])
        assert (await store.trial(exp, 0) or {})["reports"] == 3
        await store.add_reports(exp, 0, 3, [{"step": 3, "acc": 0.3}, {"step": 4, "acc": 0.4}])
        await store.add_reports(exp, 0, 5, [])  # nothing to do, and no count change
        assert (await store.trial(exp, 0) or {})["reports"] == 5
        assert [r["step"] for r in await store.reports(exp, 0)] == [0, 1, 2, 3, 4]
        assert await store.reports(exp, 1) == []


async def test_every_report_and_each_trials_last_one_of_an_experiment(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp, other = await new_experiment(store), await new_experiment(store, "other")
        for number in (0, 1, 2):
            await store.create_trial(exp, number, {}, f"/t/{number}")
        await store.create_trial(other, 0, {}, "/o/0")
        await store.add_reports(exp, 0, 0, [{"acc": 0.1}, {"acc": 0.2}])
        await store.add_reports(exp, 0, 2, [{"acc": 0.3}])
        await store.add_reports(exp, 2, 0, [{"acc": 0.9}])
        await store.add_reports(other, 0, 0, [{"acc": 0.5}])
        assert await store.last_reports(exp) == {0: {"acc": 0.3}, 2: {"acc": 0.9}}
        assert await store.all_reports(exp) == {
            0: [{"acc": 0.1}, {"acc": 0.2}, {"acc": 0.3}], 2: [{"acc": 0.9}]}
        assert await store.last_reports("e99") == {} and await store.all_reports("e99") == {}


async def test_reports_resent_with_the_same_numbers_replace_the_old_ones(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        await store.add_reports(exp, 0, 0, [{"acc": 0.1}, {"acc": 0.2}])
        await store.add_reports(exp, 0, 1, [{"acc": 0.25}])
        assert await store.reports(exp, 0) == [{"acc": 0.1}, {"acc": 0.25}]


async def test_nan_and_infinity_in_a_report_are_stored_as_null(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        await store.add_reports(exp, 0, 0, [{"loss": math.nan, "acc": math.inf,
                                             "ok": 1.5, "nested": [math.nan]}])
        assert await store.reports(exp, 0) == [
            {"loss": None, "acc": None, "ok": 1.5, "nested": [None]}
        ]
    with sqlite3.connect(tmp_path / "log.db") as db:
        (raw,) = db.execute("SELECT data FROM reports").fetchone()
    assert "NaN" not in raw
    assert "Infinity" not in raw


async def test_concurrent_report_batches_are_all_stored(tmp_path: Path) -> None:
    tasks, batches, per_batch = 5, 20, 3
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        for n in range(tasks):
            await store.create_trial(exp, n, {}, f"/t/{n}")

        async def writer(number: int) -> None:
            for b in range(batches):
                rows = [{"trial": number, "i": b * per_batch + j} for j in range(per_batch)]
                await store.add_reports(exp, number, b * per_batch, rows)
                await store.add_event("batch", exp, number, b=b)

        async with anyio.create_task_group() as tg:
            for n in range(tasks):
                tg.start_soon(writer, n)

        total = batches * per_batch
        for n in range(tasks):
            stored = await store.reports(exp, n)
            assert [r["i"] for r in stored] == list(range(total))
            assert {r["trial"] for r in stored} == {n}
            assert (await store.trial(exp, n) or {})["reports"] == total
            assert len(await store.events(exp, n)) == batches


# --- events and metric series ---------------------------------------------------------------


async def test_events_oldest_first_by_experiment_and_trial(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        a, b = await new_experiment(store), await new_experiment(store)
        await store.add_event("experiment_submitted", a, owner_uid=1000)
        await store.add_event("trial_started", a, 0, pid=12, devices=["GPU-x"])
        await store.add_event("trial_ended", a, 0, objective=math.nan)
        await store.add_event("experiment_submitted", b)
        await store.add_event("daemon_started")
        events = await store.events(a)
        assert [e["kind"] for e in events] == [
            "experiment_submitted", "trial_started", "trial_ended"]
        assert events[0]["data"] == {"owner_uid": 1000}
        assert events[0]["trial"] is None
        assert events[1]["data"] == {"pid": 12, "devices": ["GPU-x"]}
        assert events[2]["data"] == {"objective": None}
        assert isinstance(events[0]["t"], float)
        assert [e["kind"] for e in await store.events(a, 0)] == ["trial_started", "trial_ended"]
        assert [e["kind"] for e in await store.events(b)] == ["experiment_submitted"]


async def test_the_newest_events_come_with_the_experiments_older_warnings(
    tmp_path: Path,
) -> None:
    # `gpusched show EXP` asks for the last 50: a warning given at trial 0's end must not
    # scroll out of them as later trials start and end.
    async with open_store(tmp_path / "log.db") as store:
        exp, other = await new_experiment(store), await new_experiment(store)
        await store.add_event("experiment_submitted", exp)
        await store.add_event("trial_ended", exp, 0)
        await store.add_event(STOP_KEY_EVENT, exp, key="val_acc", reason="never reported")
        await store.add_event(STOP_KEY_EVENT, other, key="epoch", reason="never reported")
        for number in range(1, 6):
            await store.add_event("trial_started", exp, number)
            await store.add_event("trial_ended", exp, number)
        last4 = await store.events(exp, last=4)
        every = await store.events(exp)
        last30 = await store.events(exp, last=30)
        of_trial = await store.events(exp, 5, last=1)
    # Oldest first, the warning in its place; no other experiment's.
    assert [(e["kind"], e["trial"]) for e in last4] == [
        (STOP_KEY_EVENT, None), ("trial_started", 4), ("trial_ended", 4), ("trial_started", 5),
        ("trial_ended", 5)]
    assert last4[0]["data"] == {"key": "val_acc", "reason": "never reported"}
    # Among the newest already: once, as without the warnings' rule.
    assert last30 == every and len(every) == 13
    assert [e["kind"] for e in of_trial] == ["trial_ended"]  # a trial's: its own only


def test_the_stop_key_warning_is_a_warning_event() -> None:
    assert STOP_KEY_EVENT in WARNING_EVENTS


async def test_record_trial_writes_the_row_and_its_event_together(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {"lr": 0.1}, "/t/0")
        await store.record_trial(exp, 0, {"state": "running", "pid": 42, "devices": ["GPU-a"]},
                                 "trial_started", pid=42)
        trial = await store.trial(exp, 0)
        assert trial is not None
        assert (trial["state"], trial["pid"], trial["devices"]) == ("running", 42, ["GPU-a"])
        (event,) = await store.events(exp, 0)
        assert event["kind"] == "trial_started" and event["data"] == {"pid": 42}


async def test_record_trial_stores_a_last_report_batch_with_the_end(tmp_path: Path) -> None:
    # A trial's last reports and its end are one commit: never the end without them.
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        await store.add_encoded_reports(exp, 0, 0, ['{"loss": 3}'], read_to=ReadPosition(12, 0))
        await store.record_trial(
            exp, 0, {"state": "completed", "objective": 1.0}, "trial_ended",
            reports=ReportBatch(1, ['{"loss": 2}', '{"loss": 1}'], ReadPosition(36, 5.0)),
            state="completed")
        trial = await store.trial(exp, 0)
        assert trial is not None
        assert (trial["state"], trial["reports"]) == ("completed", 3)
        assert (trial["report_offset"], trial["hypertune_ts"]) == (36, 5.0)
        assert [r["loss"] for r in await store.reports(exp, 0)] == [3, 2, 1]
        (event,) = await store.events(exp, 0)
        assert event["data"] == {"state": "completed"}  # the batch is not the event's data


def refuse_events(path: Path, kind: str) -> None:
    """Make the log at ``path`` refuse every event of ``kind`` (as a full disk would refuse
    the commit that holds it)."""
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON events WHEN NEW.kind = '{kind}'"
                   " BEGIN SELECT RAISE(ABORT, 'refused'); END")


async def test_record_trial_writes_the_experiments_events_with_the_end(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        await store.record_trial(
            exp, 0, {"state": "completed"}, "trial_ended", state="completed",
            experiment_events=[("stop_key_never_reported", {"key": "a"}),
                               ("stop_key_never_reported", {"key": "b"})])
        events = await store.events(exp)
    assert [(e["kind"], e["trial"], e["data"]) for e in events] == [
        ("trial_ended", 0, {"state": "completed"}),
        ("stop_key_never_reported", None, {"key": "a"}),  # the experiment's, in order
        ("stop_key_never_reported", None, {"key": "b"}),
    ]


async def test_an_experiment_event_the_log_refuses_leaves_the_end_unrecorded(
    tmp_path: Path,
) -> None:
    # One commit: the end is never recorded without the events its end decided or found.
    path = tmp_path / "log.db"
    async with open_store(path) as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        refuse_events(path, "stop_key_never_reported")
        with pytest.raises(StoreError, match="refused"):
            await store.record_trial(
                exp, 0, {"state": "completed"}, "trial_ended",
                experiment_events=[("experiment_failing", {"reason": "x"}),
                                   ("stop_key_never_reported", {"key": "a"})])
        trial = await store.trial(exp, 0)
        assert trial is not None and trial["state"] == "queued"
        assert await store.events(exp) == []


async def test_a_failing_statement_rolls_back_the_whole_transaction(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        with pytest.raises(StoreError, match="cannot write the trial log"):
            await store._transaction([  # the second statement breaks a constraint
                ("UPDATE trials SET state = 'running' WHERE experiment_id = ?", (exp,)),
                ("INSERT INTO trials (experiment_id, number, params, state, created_at, dir)"
                 " VALUES (?, 0, '{}', 'queued', 0, '/t/0')", (exp,)),
            ], what="the trial log")
        trial = await store.trial(exp, 0)
        assert trial is not None and trial["state"] == "queued"  # the first one was undone
        await store.update_trial(exp, 0, state="running")  # and the log is usable after it
        assert (await store.trial(exp, 0) or {})["state"] == "running"


async def test_metric_series_pairs_iterations_with_finite_values(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        for n in range(3):
            await store.create_trial(exp, n, {}, f"/t/{n}")
        await store.add_reports(exp, 0, 0, [
            {"training_iteration": 1, "val acc": 0.5},
            {"training_iteration": 2, "loss": 3.0},  # no metric: skipped
            {"training_iteration": 3, "val acc": math.nan},  # stored null: skipped
            {"training_iteration": 4, "val acc": 1},
        ])
        await store.add_reports(exp, 1, 0, [{"val acc": 0.7}])  # no iteration: 0
        series = await store.metric_series(exp, [0, 1, 2], "val acc")
        assert series == {0: [(1, 0.5), (4, 1.0)], 1: [(0, 0.7)], 2: []}
        assert all(isinstance(v, float) for _, v in series[0])
        assert await store.metric_series(exp, [], "val acc") == {}


async def test_close_is_idempotent(tmp_path: Path) -> None:
    async with open_store(tmp_path / "log.db") as store:
        await store.close()
        await store.close()


async def test_metric_series_takes_any_metric_name(tmp_path: Path) -> None:
    # Regression: the name was spliced into a JSON path, so a '"' gave an empty series.
    async with open_store(tmp_path / "log.db") as store:
        exp = await store.create_experiment(name="q", spec={}, seed=0, priority=0,
                                             owner_uid=None)
        await store.create_trial(exp, 0, {}, "/tmp/x")
        name = 'acc "top-1" (%)'
        await store.add_reports(exp, 0, 0, [{name: 0.5, "training_iteration": 1},
                                             {name: 0.7, "training_iteration": 2}])
        assert await store.metric_series(exp, [0], name) == {0: [(1, 0.5), (2, 0.7)]}


async def test_a_version_1_log_is_migrated_and_keeps_its_trials(tmp_path: Path) -> None:
    from gpusched._daemon.store import MIGRATIONS, ReadPosition

    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:  # a log written by the first gpusched
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; PRAGMA user_version = 1; COMMIT;")
        db.execute("INSERT INTO experiments (id, seq, name, spec, seed, state, submitted_at)"
                   " VALUES ('e1', 1, 'exp', '{}', 7, 'running', 0)")
        db.execute("INSERT INTO trials (experiment_id, number, params, state, created_at, dir,"
                   " reports) VALUES ('e1', 0, '{}', 'running', 0, '/t/0', 3)")
    async with open_store(path) as store:
        trial = await store.trial("e1", 0)
        assert trial is not None and trial["reports"] == 3
        assert trial["report_offset"] == 0 and trial["hypertune_ts"] is None
        await store.add_encoded_reports("e1", 0, 3, ['{"a":1}'],
                                        read_to=ReadPosition(120, 1000.5))
        trial = await store.trial("e1", 0)
        assert trial is not None
        assert (trial["reports"], trial["report_offset"], trial["hypertune_ts"]) == (
            4, 120, 1000.5)
    assert pragma(path, "user_version") == SCHEMA_VERSION == 4


async def test_a_version_2_log_gets_budget_and_continues(tmp_path: Path) -> None:
    from gpusched._daemon.store import MIGRATIONS

    path = tmp_path / "log.db"
    with sqlite3.connect(path) as db:  # a log written before search plugins gave budgets
        db.executescript(f"BEGIN; {MIGRATIONS[0]}; {MIGRATIONS[1]}; PRAGMA user_version = 2;"
                         " COMMIT;")
        db.execute("INSERT INTO experiments (id, seq, name, spec, seed, state, submitted_at)"
                   " VALUES ('e1', 1, 'exp', '{}', 7, 'running', 0)")
        db.execute("INSERT INTO trials (experiment_id, number, params, state, created_at, dir)"
                   " VALUES ('e1', 0, '{}', 'completed', 0, '/t/0')")
    async with open_store(path) as store:
        old = await store.trial("e1", 0)
        assert old is not None and (old["budget"], old["continues"]) == (None, None)
        await store.create_trial("e1", 1, {"x": 1}, "/t/1", budget=9.0, continues=0)
        await store.create_trial("e1", 2, {"x": 1}, "/t/2", budget=0.25)
        new, frac = await store.trial("e1", 1), await store.trial("e1", 2)
        assert new is not None and frac is not None
        # A whole budget comes back an integer (NUMERIC), so it reaches the trial as "9".
        assert (new["budget"], new["continues"]) == (9, 0) and isinstance(new["budget"], int)
        assert (frac["budget"], frac["continues"]) == (0.25, None)
    assert pragma(path, "user_version") == SCHEMA_VERSION == 4


async def test_writes_reach_the_log_in_the_order_they_were_asked_for(tmp_path: Path) -> None:
    # The scheduler relies on it: a completed trial frees its experiment's next suggestion
    # while its end is being written, and the next trial's row must not get in first.
    path = tmp_path / "log.db"
    async with open_store(path) as store:
        exp = await store.create_experiment(name="x", spec={}, seed=0, priority=0,
                                            owner_uid=None)
        await store.create_trial(exp, 0, {"x": 1}, str(tmp_path / "0"))
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another writer holds the log for a moment
        seen: list[str | None] = []

        async def end_trial_0() -> None:
            await store.record_trial(exp, 0, {"state": "completed", "objective": 0.5},
                                     "trial_ended", state="completed")

        async def create_trial_1() -> None:
            await store.create_trial(exp, 1, {"x": 2}, str(tmp_path / "1"))
            # Trial 1's row is in: trial 0's end must be in already.
            check = sqlite3.connect(path)
            seen.append(check.execute("SELECT state FROM trials WHERE number = 0").fetchone()[0])
            check.close()

        async with anyio.create_task_group() as tg:
            tg.start_soon(end_trial_0)
            await anyio.lowlevel.checkpoint()  # trial 0's end asks first
            tg.start_soon(create_trial_1)
            await anyio.sleep(0.3)
            other.execute("COMMIT")
        other.close()
    assert seen == ["completed"]


# --- small writes on the event loop ---------------------------------------------------------


async def test_a_write_waiting_for_another_processs_lock_does_not_block_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.db"
    async with open_store(path) as store:
        exp = await new_experiment(store)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        ticks = 0
        done = anyio.Event()

        async def write() -> None:
            await store.add_event("while_locked", exp)  # small: the loop's, but it is busy
            done.set()

        async def tick() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await anyio.sleep(0.01)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            tg.start_soon(tick)
            await anyio.sleep(0.3)
            assert not done.is_set() and ticks >= 10  # waiting, in the thread: the loop runs
            other.execute("COMMIT")
        other.close()
        assert [e["kind"] for e in await store.events(exp)] == ["while_locked"]


async def test_a_big_batch_is_written_whole(tmp_path: Path) -> None:
    from gpusched._daemon.loop_writer import MAX_ROWS

    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.create_trial(exp, 0, {}, "/t/0")
        rows = [{"i": i} for i in range(3 * MAX_ROWS)]  # too big for the loop: the thread's
        await store.add_reports(exp, 0, 0, rows)
        await store.add_reports(exp, 0, len(rows), [{"i": len(rows)}])  # small: the loop's
        assert [r["i"] for r in await store.reports(exp, 0)] == list(range(len(rows) + 1))


async def test_the_wal_is_checkpointed_though_small_writes_never_checkpoint_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpusched._daemon import loop_writer

    async def wal_pages_after(writes: int, every: int) -> int:
        monkeypatch.setattr(loop_writer, "CHECKPOINT_EVERY", every)
        path = tmp_path / f"log-{every}.db"
        async with open_store(path) as store:
            exp = await new_experiment(store)
            for i in range(writes):
                await store.add_event("tick", exp, i, payload="x" * 2000)
            wal = path.with_name(path.name + "-wal")
            return wal.stat().st_size // 4096

    unbounded = await wal_pages_after(600, every=10**9)
    bounded = await wal_pages_after(600, every=100)
    assert bounded * 3 < unbounded, (bounded, unbounded)


async def test_a_small_write_waits_behind_a_big_one_in_flight(tmp_path: Path) -> None:
    # A big batch goes to the thread and holds the write lock while it waits for it; a small
    # write that comes meanwhile must not be made on the loop ahead of it.
    from gpusched._daemon.loop_writer import MAX_ROWS

    path = tmp_path / "log.db"
    async with open_store(path) as store:
        to_thread = store._in_db_thread

        async def slow_to_begin(fn: Any) -> Any:  # holds the lock before SQLite's own
            await anyio.sleep(0.2)
            return await to_thread(fn)

        store._in_db_thread = slow_to_begin  # type: ignore[method-assign]
        rows = [(0.0, "big", None, None, "{}") for _ in range(3 * MAX_ROWS)]
        big = [("INSERT INTO events (t, kind, experiment_id, trial, data)"
                " VALUES (?, ?, ?, ?, ?)", rows)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: store._transaction(big, what="events"))
            await anyio.wait_all_tasks_blocked()  # the big one holds the lock, in the thread
            await store.add_event("small")
        with sqlite3.connect(path) as db:
            kinds = [k for (k,) in db.execute("SELECT kind FROM events ORDER BY id")]
    assert kinds == ["big"] * len(rows) + ["small"]


async def test_a_failed_checkpoint_does_not_fail_the_write_that_made_it_due(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gpusched._daemon import loop_writer
    from gpusched._daemon import store as store_module

    def failing(conn: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(loop_writer, "CHECKPOINT_EVERY", 1)
    monkeypatch.setattr(store_module, "_checkpoint", failing)
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        await store.add_event("committed", exp)  # due, and the checkpoint fails: no error
        assert [e["kind"] for e in await store.events(exp)] == ["committed"]


async def test_with_keep_checkpointing_no_write_waits_for_a_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The daemon runs keep_checkpointing: the write that makes a checkpoint due, and those
    # after it, are made while the checkpoint (here: one held up in the thread) goes on.
    from gpusched._daemon import loop_writer
    from gpusched._daemon import store as store_module

    release, started = threading.Event(), threading.Event()
    real = store_module._checkpoint

    def slow(conn: sqlite3.Connection) -> None:
        started.set()
        release.wait(10)
        real(conn)

    monkeypatch.setattr(loop_writer, "CHECKPOINT_EVERY", 3)
    monkeypatch.setattr(store_module, "_checkpoint", slow)
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.keep_checkpointing)
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(5):
                for i in range(3):  # the third makes one due
                    await store.add_event("tick", exp, i)
                assert await anyio.to_thread.run_sync(started.wait, 5)
                for i in range(3, 7):  # made while the checkpoint is held up
                    await store.add_event("tick", exp, i)
            release.set()
            tg.cancel_scope.cancel()
        assert len(await store.events(exp)) == 7


async def test_reads_beside_writes_in_both_places_never_find_the_log_locked(
    tmp_path: Path,
) -> None:
    # A read made in several trips to SQLite's thread (execute, fetch, close) left its
    # statement, and with it an old snapshot, open between them. A big write in that thread
    # after a small write on the event loop then failed at once, "database is locked" (WAL's
    # stale snapshot, which no busy_timeout waits out): a trial's end with its reports lost.
    async with open_store(tmp_path / "log.db") as store:
        exp = await new_experiment(store)
        for n in range(3):
            await store.create_trial(exp, n, {}, f"/t/{n}")

        async def reader() -> None:
            for _ in range(150):
                await store.trials(exp)
                await store.trial(exp, 0)

        async def small_writer() -> None:  # on the event loop (the loop writer)
            for i in range(150):
                await store.update_trial(exp, 1, reason=f"r{i}")
                await anyio.lowlevel.checkpoint()

        async def big_writer() -> None:  # too many rows for the loop: in the thread
            for b in range(30):
                rows = [{"i": b * 100 + j} for j in range(100)]
                await store.add_reports(exp, 2, b * 100, rows)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(small_writer)
            tg.start_soon(big_writer)
        assert len(await store.reports(exp, 2)) == 3000
