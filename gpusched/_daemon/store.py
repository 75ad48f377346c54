"""The SQLite trial log: the daemon's source of truth, and the only module that imports aiosqlite.

WAL mode so that readers never block the one writer (the daemon); a schema version with ordered
migrations; reports inserted in batches. ``sqlite3.Error`` never leaves this module: it becomes
:class:`~gpusched.errors.StoreError`.

Reads, migrations and big batches go through aiosqlite's thread; small writes (a trial's start
or end, an event) are made on the event loop by :class:`~gpusched._daemon.loop_writer.LoopWriter`
whenever that cannot block it (see there), else in the thread too. Either way they are taken one
at a time, in the order they were asked for.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import aiosqlite
import anyio

from gpusched._daemon.loop_writer import LoopWriter, Statement, run_statements
from gpusched.errors import StoreError
from gpusched.log import get_logger
from gpusched.protocol import jsonable

__all__ = ["Store", "ReadPosition", "ReportBatch", "open_store", "encode_reports", "SCHEMA_VERSION",
           "TRIAL_COLUMNS", "WARNING_EVENTS"]

T = TypeVar("T")
log = get_logger("gpusched.store")

# The kinds of event that warn of something the user should fix (a stop: key no trial reports:
# experiment.STOP_KEY_EVENT; a metric no trial reports, with a close key: METRIC_EVENT).
# ``events(last=N)`` returns them whatever their age: `gpusched show EXP` shows the last 50
# events, and an experiment of more than ~20 trials pushes a warning given at its first
# trial's end out of those. Each is an event of the experiment itself (no trial's).
WARNING_EVENTS: tuple[str, ...] = ("stop_key_never_reported", "metric_never_reported")
# The files SQLite keeps next to the log, named by these suffixes (see _make_private).
_SIDE_FILES = ("-wal", "-shm", "-journal")


@dataclass(frozen=True)
class ReadPosition:
    """How far a trial's report files have been read: bytes of complete lines of the report
    file, and the time of the last hypertune entry taken (None: none yet)."""

    report_offset: int
    hypertune_ts: float | None

# Each entry migrates the schema from version i to i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE experiments (
        id TEXT PRIMARY KEY,
        seq INTEGER NOT NULL UNIQUE,
        name TEXT NOT NULL,
        spec TEXT NOT NULL,
        seed INTEGER NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        owner_uid INTEGER,
        state TEXT NOT NULL,
        reason TEXT,
        submitted_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL
    );
    CREATE INDEX experiments_state ON experiments(state);
    CREATE TABLE trials (
        experiment_id TEXT NOT NULL REFERENCES experiments(id),
        number INTEGER NOT NULL,
        params TEXT NOT NULL,
        state TEXT NOT NULL,
        devices TEXT NOT NULL DEFAULT '[]',
        pid INTEGER,
        attempts INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER,
        exit_signal INTEGER,
        created_at REAL NOT NULL,
        started_at REAL,
        ended_at REAL,
        objective REAL,
        reason TEXT,
        reports INTEGER NOT NULL DEFAULT 0,
        dir TEXT NOT NULL,
        PRIMARY KEY (experiment_id, number)
    );
    CREATE INDEX trials_state ON trials(state);
    CREATE TABLE reports (
        experiment_id TEXT NOT NULL,
        trial INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (experiment_id, trial, seq)
    ) WITHOUT ROWID;
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        t REAL NOT NULL,
        kind TEXT NOT NULL,
        experiment_id TEXT,
        trial INTEGER,
        data TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_experiment ON events(experiment_id, trial);
    """,
    # 1 -> 2: how far a trial's report files have been read into the log, so that a restarted
    # daemon reads on from there (what a trial wrote while the daemon was down is not lost).
    """
    ALTER TABLE trials ADD COLUMN report_offset INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE trials ADD COLUMN hypertune_ts REAL;
    """,
    # 2 -> 3: a search plugin's budget for the trial (Hyperband's epochs) and the trial it
    # continues from (its checkpoint folder). NUMERIC keeps a whole budget an integer.
    """
    ALTER TABLE trials ADD COLUMN budget NUMERIC;
    ALTER TABLE trials ADD COLUMN continues INTEGER;
    """,
    # 3 -> 4: the submitter's umask, which the experiment's trial files and processes get
    # (NULL: a client that sent none, and experiments from before: the daemon's own).
    """
    ALTER TABLE experiments ADD COLUMN umask INTEGER;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

TRIAL_COLUMNS = (
    "number", "state", "objective", "attempts", "exit_code", "exit_signal", "created_at",
    "started_at", "ended_at", "reports", "pid",
)
_TRIAL_FIELDS = frozenset(TRIAL_COLUMNS) | {
    "params", "devices", "reason", "dir", "report_offset", "hypertune_ts"}
_EXPERIMENT_FIELDS = frozenset({"state", "reason", "started_at", "ended_at"})


def encode_reports(reports: Sequence[dict[str, Any]]) -> list[str]:
    """Reports as the JSON text the log stores (strict JSON: NaN becomes null)."""
    return [json.dumps(jsonable(r), separators=(",", ":")) for r in reports]


def _decode_row(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in ("spec", "params", "devices", "data"):
        if key in out and isinstance(out[key], str):
            out[key] = json.loads(out[key])
    return out


class Store:
    """Async access to the trial log. Create with :func:`open_store`."""

    def __init__(self, db: aiosqlite.Connection, path: Path,
                 loop_writer: LoopWriter | None = None) -> None:
        self._db = db
        self.path = path
        self._loop_writer = loop_writer
        # Many tasks, one writer at a time: without this, two trials' report batches would
        # interleave their BEGIN ... COMMIT, and writes would not be taken in order.
        self._write_lock = anyio.Lock()
        # Set while keep_checkpointing runs: writes then only ask for a checkpoint.
        self._checkpoint_wanted: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"<Store {self.path} schema={SCHEMA_VERSION}>"

    async def keep_checkpointing(self) -> None:
        """Checkpoint the WAL whenever the loop writer's writes make one due, until cancelled.

        Run in the daemon's task group: a checkpoint fsyncs (milliseconds, more on a busy
        disk), and the trial start or end whose write made it due then does not wait for it,
        nor do the writes after it (which go on through the loop's own connection while this
        one checkpoints: a PASSIVE checkpoint blocks no writer). Without this task running,
        the write that makes a checkpoint due makes it.
        """
        try:
            while True:
                self._checkpoint_wanted = wanted = anyio.Event()
                await wanted.wait()
                await self._checkpoint(locked=False)
        finally:
            self._checkpoint_wanted = None

    async def _migrate(self) -> None:
        version = (await self._fetchone("PRAGMA user_version"))[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} has schema {version}, newer than this gpusched ({SCHEMA_VERSION}):"
                " upgrade gpusched"
            )
        for target in range(version, SCHEMA_VERSION):
            await self._db.executescript(
                f"BEGIN; {MIGRATIONS[target]}; PRAGMA user_version = {target + 1}; COMMIT;"
            )

    # A read is one trip to SQLite's thread, its statement done before the trip ends. Made in
    # several (aiosqlite's execute, then fetch, then close), it kept its statement, and with
    # it a snapshot of the log, open between them: a write in the thread meanwhile, after one
    # on the event loop, met that stale snapshot and failed at once ("database is locked",
    # which no busy_timeout waits out).

    async def _fetchone(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return await self._in_db_thread(lambda conn: _fetch_one(conn, sql, args))

    async def _fetchall(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return await self._in_db_thread(
            lambda conn: [_decode_row(r) for r in conn.execute(sql, args).fetchall()])

    # -- writes -------------------------------------------------------------------------------

    async def create_experiment(
        self, *, name: str, spec: dict[str, Any], seed: int, priority: int,
        owner_uid: int | None, umask: int | None = None,
    ) -> str:
        """Record a newly submitted experiment (state ``queued``); return its id (``e<seq>``).
        ``umask``: its submitter's (None: unknown, the daemon's applies)."""
        # The next seq is read and taken in one step: two submits at once get distinct ids.
        async with self._write_lock:
            try:
                row = await self._fetchone("SELECT COALESCE(MAX(seq), 0) + 1 FROM experiments")
                seq = int(row[0])
                exp_id = f"e{seq}"
                await self._db.execute(
                    "INSERT INTO experiments (id, seq, name, spec, seed, priority, owner_uid,"
                    " umask, state, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (exp_id, seq, name, json.dumps(spec), seed, priority, owner_uid, umask,
                     time.time()),
                )
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write the trial log {self.path}: {exc}") from exc
        return exp_id

    async def update_experiment(self, exp_id: str, **fields: Any) -> None:
        """Set some of state, reason, started_at, ended_at."""
        bad = set(fields) - _EXPERIMENT_FIELDS
        assert not bad, bad
        cols = ", ".join(f"{k} = ?" for k in fields)
        await self._write(f"UPDATE experiments SET {cols} WHERE id = ?", (*fields.values(), exp_id))

    async def create_trial(
        self, exp_id: str, number: int, params: dict[str, Any], trial_dir: str, *,
        budget: float | None = None, continues: int | None = None,
    ) -> None:
        """Record a new trial in state ``queued`` (with its budget and the trial it continues,
        when its search plugin gave them)."""
        await self._write(
            "INSERT INTO trials (experiment_id, number, params, state, created_at, dir, budget,"
            " continues) VALUES (?, ?, ?, 'queued', ?, ?, ?, ?)",
            (exp_id, number, json.dumps(params), time.time(), trial_dir, budget, continues),
        )

    async def update_trial(self, exp_id: str, number: int, **fields: Any) -> None:
        """Set some columns of a trial (``devices`` and ``params`` are JSON-encoded here)."""
        await self._write(*_trial_update(exp_id, number, fields))

    async def record_trial(
        self, exp_id: str, number: int, fields: dict[str, Any], event: str, *,
        reports: ReportBatch | None = None,
        experiment_events: Sequence[tuple[str, dict[str, Any]]] = (), **data: Any
    ) -> None:
        """:meth:`update_trial` and :meth:`add_event` in one transaction (one trip to SQLite's
        thread, and never one without the other); with ``reports``, that batch too (a
        trial's last reports and its end: one commit, and never the end without them); with
        ``experiment_events`` (kind, data), those events of the experiment too, in order (what
        its end decided or found: ``experiment_failing``, ``stop_key_never_reported``,
        ``metric_never_reported``)."""
        statements = [] if reports is None else _report_statements(exp_id, number, reports)
        statements += [_trial_update(exp_id, number, fields),
                       _event_insert(event, exp_id, number, data)]
        for kind, event_data in experiment_events:
            statements.append(_event_insert(kind, exp_id, None, event_data))
        await self._transaction(statements, what="the trial log")

    async def add_reports(
        self, exp_id: str, number: int, first_seq: int, reports: Sequence[dict[str, Any]]
    ) -> None:
        """Insert a batch of reports (numbered from ``first_seq``) in one transaction."""
        await self.add_encoded_reports(exp_id, number, first_seq, encode_reports(reports))

    async def add_encoded_reports(
        self, exp_id: str, number: int, first_seq: int, encoded: Sequence[str],
        *, read_to: ReadPosition | None = None,
    ) -> None:
        """:meth:`add_reports` for reports already encoded by :func:`encode_reports` (which a
        caller can run in a worker thread, off the event loop).

        ``read_to``: how far the trial's report files have been read with this batch, stored
        in the same transaction (a restarted daemon reads on from there).
        """
        if not encoded and read_to is None:
            return
        # One transaction for the whole batch: this is what makes 10k+ reports/s cheap.
        await self._transaction(
            _report_statements(exp_id, number, ReportBatch(first_seq, encoded, read_to)),
            what="reports to the trial log")

    async def add_event(
        self, kind: str, exp_id: str | None = None, trial: int | None = None, **data: Any
    ) -> None:
        """Append to the event log (what happened, when, to what)."""
        await self._write(*_event_insert(kind, exp_id, trial, data))

    async def _write(self, sql: str, args: Sequence[Any]) -> None:
        """One statement; SQLite errors become StoreError."""
        await self._transaction([(sql, args)], what="the trial log")

    async def _transaction(self, statements: list[Statement], *, what: str) -> None:
        """Run ``statements`` (``(sql, args)``; a list of argument tuples means executemany) in
        one transaction, rolled back on any error: on the event loop when the loop writer
        can, else in one trip to SQLite's thread."""
        writer = self._loop_writer
        try:
            # With no write in flight (none holds the lock, so none waits for it either), one
            # made here without yielding cannot overtake another: the lock, which costs two
            # trips round the event loop, is not needed for it.
            if writer is not None and not self._write_lock.locked() \
                    and writer.try_write(statements):
                if writer.checkpoint_due():
                    if self._checkpoint_wanted is not None:
                        self._checkpoint_wanted.set()
                    else:
                        await self._checkpoint()
                return
            async with self._write_lock:
                if writer is not None and writer.try_write(statements):
                    return
                await self._in_db_thread(lambda conn: run_statements(conn, statements))
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write {what} {self.path}: {exc}") from exc

    async def _checkpoint(self, *, locked: bool = True) -> None:
        """Checkpoint the WAL in the thread. A failure is logged, not raised: the write that
        made it due is committed, and its caller must not take it for failed (the next one
        is tried after another CHECKPOINT_EVERY writes). ``locked``: hold the write lock
        meanwhile (no write is made then)."""
        try:
            async with self._write_lock if locked else contextlib.nullcontext():
                await self._in_db_thread(_checkpoint)
        except sqlite3.Error as exc:
            log.warning("wal_checkpoint_failed", path=str(self.path), error=str(exc))

    async def _in_db_thread(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Call ``fn(connection)`` in aiosqlite's thread, the one that owns the connection.

        aiosqlite's public methods make one trip per statement, each a wake-up of that thread
        and then of the event loop; several statements as one function make one trip.
        ``Connection._execute`` is the primitive all of those methods use (aiosqlite 0.17
        to 0.22); the tests exercise it on every write.
        """
        execute: Any = self._db._execute  # untyped in aiosqlite
        result: T = await execute(fn, self._db._conn)
        return result

    # -- reads --------------------------------------------------------------------------------

    async def experiments(self, *, include_finished: bool = True) -> list[dict[str, Any]]:
        """Experiments, newest first."""
        where = "" if include_finished else "WHERE state IN ('queued', 'running')"
        return await self._fetchall(f"SELECT * FROM experiments {where} ORDER BY seq DESC")

    async def experiment(self, exp_id: str, *, caller_uid: int | None = None
                         ) -> dict[str, Any] | None:
        """One experiment by id, or by name: the newest with that name of ``caller_uid``'s
        own, else (they have none so named, or ``caller_uid`` is None) the newest of anyone's.

        On a shared daemon two users may both call a search ``sweep``: each one's name means
        their own, never a colleague's newer one (which `cancel` would refuse, or root's
        would cancel). A name only a colleague uses still names theirs."""
        # `owner_uid IS ?` is 0 or 1, never NULL (an experiment of no known owner is nobody's
        # own); with no caller, `? IS NOT NULL` makes the term 0 for every row.
        rows = await self._fetchall(
            "SELECT * FROM experiments WHERE id = ? OR name = ? ORDER BY (id = ?) DESC,"
            " (? IS NOT NULL AND owner_uid IS ?) DESC, seq DESC LIMIT 1",
            (exp_id, exp_id, exp_id, caller_uid, caller_uid),
        )
        return rows[0] if rows else None

    async def trials(self, exp_id: str | None = None) -> list[dict[str, Any]]:
        """Trials of one experiment (or of all), by number."""
        if exp_id is None:
            return await self._fetchall("SELECT * FROM trials ORDER BY experiment_id, number")
        return await self._fetchall(
            "SELECT * FROM trials WHERE experiment_id = ? ORDER BY number", (exp_id,)
        )

    async def trial(self, exp_id: str, number: int) -> dict[str, Any] | None:
        """One trial, or None."""
        rows = await self._fetchall(
            "SELECT * FROM trials WHERE experiment_id = ? AND number = ?", (exp_id, number)
        )
        return rows[0] if rows else None

    async def reports(self, exp_id: str, number: int) -> list[dict[str, Any]]:
        """Every stored report of a trial, in order."""
        rows = await self._fetchall(
            "SELECT data FROM reports WHERE experiment_id = ? AND trial = ? ORDER BY seq",
            (exp_id, number),
        )
        return [r["data"] for r in rows]

    async def all_reports(self, exp_id: str) -> dict[int, list[dict[str, Any]]]:
        """Every stored report of every trial of an experiment: trial number -> reports."""
        out: dict[int, list[dict[str, Any]]] = {}
        for row in await self._fetchall(
            "SELECT trial, data FROM reports WHERE experiment_id = ? ORDER BY trial, seq",
            (exp_id,),
        ):
            out.setdefault(row["trial"], []).append(row["data"])
        return out

    async def last_reports(self, exp_id: str) -> dict[int, dict[str, Any]]:
        """Each trial's latest stored report, in one query (trials without one are absent).

        One index seek per trial (`ls` and `watch` ask at every refresh): a MAX(seq) per
        report row would read every report, 50x slower at 500 trials of 400 reports.
        """
        rows = await self._fetchall(
            "SELECT t.number AS trial, (SELECT data FROM reports WHERE experiment_id ="
            " t.experiment_id AND trial = t.number ORDER BY seq DESC LIMIT 1) AS data"
            " FROM trials t WHERE t.experiment_id = ?",
            (exp_id,),
        )
        return {row["trial"]: row["data"] for row in rows if row["data"] is not None}

    async def last_report(self, exp_id: str, number: int) -> dict[str, Any] | None:
        """A trial's latest stored report, or None."""
        rows = await self._fetchall(
            "SELECT data FROM reports WHERE experiment_id = ? AND trial = ?"
            " ORDER BY seq DESC LIMIT 1", (exp_id, number),
        )
        return rows[0]["data"] if rows else None

    async def events(
        self, exp_id: str, trial: int | None = None, *, last: int = -1
    ) -> list[dict[str, Any]]:
        """The event log of an experiment (or of one trial), oldest first; ``last``: only the
        newest that many, and the older ones of :data:`WARNING_EVENTS`' kinds besides (at
        most ``last`` of those too: a warning is given once per key, so that many do not
        happen, but a log is not trusted to be small)."""
        where = "experiment_id = ?"
        args: list[Any] = [exp_id]
        if trial is not None:
            where += " AND trial = ?"
            args.append(trial)
        newest = f"SELECT * FROM events WHERE {where} ORDER BY id DESC LIMIT ?"
        if last < 0:  # every event: the warnings are among them
            rows = await self._fetchall(newest, (*args, last))
            return rows[::-1]
        kinds = ", ".join("?" * len(WARNING_EVENTS))
        # UNION drops a warning that is also among the newest (rows are equal to the id).
        return await self._fetchall(
            f"SELECT * FROM ({newest}) UNION SELECT * FROM (SELECT * FROM events WHERE {where}"
            f" AND kind IN ({kinds}) ORDER BY id LIMIT ?) ORDER BY id",
            (*args, last, *args, *WARNING_EVENTS, last))

    async def warnings(self, exp_id: str) -> list[str]:
        """The texts of the experiment's warning events (:data:`WARNING_EVENTS`), oldest
        first: what it said once that the user should fix (a ``stop:`` key no trial reports,
        a metric that looks misspelled)."""
        kinds = ", ".join("?" * len(WARNING_EVENTS))
        rows = await self._fetchall(
            f"SELECT data FROM events WHERE experiment_id = ? AND kind IN ({kinds}) ORDER BY id",
            (exp_id, *WARNING_EVENTS))
        return [str(r["data"]["reason"]) for r in rows if r["data"].get("reason")]

    async def warning_counts(self, exp_ids: Iterable[str]) -> dict[str, int]:
        """Experiment id -> how many warning events (:data:`WARNING_EVENTS`) it has, for
        each of ``exp_ids`` that has some. One query for them all (`gpusched ls`), an index
        seek each: the experiment's own events (no trial's), a few per experiment."""
        kinds = ", ".join("?" * len(WARNING_EVENTS))
        rows = await self._in_db_thread(lambda conn: conn.execute(
            "SELECT k.value, (SELECT COUNT(*) FROM events WHERE experiment_id = k.value AND"
            f" trial IS NULL AND kind IN ({kinds})) AS n FROM json_each(?) AS k",
            (*WARNING_EVENTS, json.dumps(list(exp_ids)))).fetchall())
        return {str(exp_id): int(n) for exp_id, n in rows if n}

    async def last_event(self, exp_id: str, kinds: Sequence[str]) -> dict[str, Any] | None:
        """The newest event of the experiment itself (no trial's) of one of ``kinds``."""
        marks = ", ".join("?" * len(kinds))
        rows = await self._fetchall(
            f"SELECT * FROM events WHERE experiment_id = ? AND trial IS NULL AND kind IN ({marks})"
            " ORDER BY id DESC LIMIT 1", (exp_id, *kinds))
        return rows[0] if rows else None

    async def event_counts(self, exp_id: str, kind: str) -> dict[int, int]:
        """Trial number -> how many events of ``kind`` the experiment's log has for it."""
        rows = await self._in_db_thread(lambda conn: conn.execute(
            "SELECT trial, COUNT(*) FROM events WHERE experiment_id = ? AND kind = ?"
            " AND trial IS NOT NULL GROUP BY trial", (exp_id, kind)).fetchall())
        return {int(t): int(n) for t, n in rows}

    async def keys_reported(self, exp_id: str, keys: Iterable[str], *,
                            numbers_only: bool = True) -> set[str]:
        """Those of ``keys`` that a stored report of the experiment gives a number (not
        ``true``/``false``, not NaN: the log stores NaN and the infinities as null), or, not
        ``numbers_only``, any value. One query, for a restart: each key's search stops at the
        first report that has it."""
        wanted = json.dumps(sorted(keys))
        # json_each walks a report's top level and names each key as it is, whatever its
        # characters (a JSON path could not quote them all: see metric_series).
        rows = await self._in_db_thread(lambda conn: conn.execute(
            "SELECT k.value FROM json_each(?) AS k WHERE EXISTS (SELECT 1 FROM reports AS r,"
            " json_each(r.data) AS j WHERE r.experiment_id = ? AND j.key = k.value"
            " AND (? OR j.type IN ('integer', 'real')))",
            (wanted, exp_id, not numbers_only)).fetchall())
        return {str(key) for (key,) in rows}

    async def metric_series(
        self, exp_id: str, numbers: Iterable[int], metric: str
    ) -> dict[int, list[tuple[int, float]]]:
        """For each trial, its (training_iteration, metric) pairs: a restarted daemon's view."""
        # Decoded here rather than with json_extract: a metric name may hold any character,
        # and a JSON path cannot quote all of them. This runs only at start and resume.
        out: dict[int, list[tuple[int, float]]] = {}
        for number in numbers:
            series = []
            for report in await self.reports(exp_id, number):
                value = report.get(metric)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    series.append((int(report.get("training_iteration") or 0), float(value)))
            out[number] = series
        return out

    async def close(self) -> None:
        """Close the database (idempotent)."""
        await self._db.close()


@asynccontextmanager
async def open_store(path: Path) -> AsyncIterator[Store]:
    """Open (creating and migrating as needed) the trial log at ``path``."""
    if not path.parent.is_dir():
        # Checked here: a failed aiosqlite.connect can leave its worker thread to report to an
        # event loop that is closed by then (an unhandled exception in that thread).
        raise StoreError(f"cannot open the trial log {path}: no folder {path.parent}")
    _make_private(path)
    try:
        db = await aiosqlite.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the trial log {path}: {exc}") from exc
    db.row_factory = sqlite3.Row
    store = Store(db, path)
    try:
        # WAL: readers never block the writer; NORMAL sync is safe under WAL across crashes of
        # the process (only an OS crash can lose the last transactions).
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA busy_timeout = 10000")
        await db.execute("PRAGMA foreign_keys = ON")
        await store._migrate()
        store._loop_writer = LoopWriter(path)  # after the migration: it sees the schema
    except sqlite3.Error as exc:
        await db.close()
        raise StoreError(f"trial log {path}: {exc}") from exc
    except BaseException:
        await db.close()  # a refused log (newer schema) must not leak its worker thread
        raise
    try:
        yield store
    finally:
        store._loop_writer.close()
        await db.close()


def _make_private(path: Path) -> None:
    """Create the trial log ``path`` with mode 0600 if it is not there, and take group's and
    others' access away from it and from its -wal, -shm and -journal if they are.

    The log holds every experiment's ``env`` values (API tokens), which `show` hides from
    other users; a root daemon's state folder is 0755 (its users reach their trial folders
    there), so a log made with the daemon's umask (0644) would give them to any local user.
    SQLite gives a -wal, -shm or -journal it creates the database file's mode: creating the
    database file 0600 first covers them. Those of an older state folder are tightened here.
    """
    try:
        # O_CREAT without O_EXCL: a log already there is kept as it is (an empty file is an
        # empty database to SQLite). The umask can only take bits away from 0600.
        os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
    except OSError as exc:
        raise StoreError(f"cannot open the trial log {path}: {exc.strerror or exc}") from None
    for file in (path, *(path.with_name(path.name + s) for s in _SIDE_FILES)):
        _tighten(file)


def _tighten(file: Path) -> None:
    """Take group's and others' access away from ``file``, if it is there; a file that
    cannot be changed is logged (SQLite then says whether the daemon can use it at all)."""
    try:
        mode = stat.S_IMODE(file.stat().st_mode)
        if mode & 0o077:
            file.chmod(mode & ~0o077)
    except FileNotFoundError:
        return
    except OSError as exc:
        log.warning("trial_log_not_private", path=str(file), error=exc.strerror or str(exc),
                    hint="make it readable by the daemon's user alone (chmod 600)")


def _fetch_one(conn: sqlite3.Connection, sql: str, args: Sequence[Any]) -> Any:
    """The first row of ``sql``, its statement closed (see Store._fetchone)."""
    cursor = conn.execute(sql, args)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()


def _checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL's pages into the database (PASSIVE: waits for no reader or writer); the
    loop writer leaves this to the thread, since it fsyncs."""
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")


class ReportBatch(NamedTuple):
    """Reports to store, encoded by :func:`encode_reports`, numbered from ``first_seq``;
    ``read_to``: how far the trial's report files have been read with them."""

    first_seq: int
    encoded: Sequence[str]
    read_to: ReadPosition | None = None


def _report_statements(exp_id: str, number: int, batch: ReportBatch) -> list[Statement]:
    rows = [(exp_id, number, batch.first_seq + i, data) for i, data in enumerate(batch.encoded)]
    sets: list[str] = ["reports = ?"]
    args: list[Any] = [batch.first_seq + len(rows)]
    if batch.read_to is not None:
        sets += ["report_offset = ?", "hypertune_ts = ?"]
        args += [batch.read_to.report_offset, batch.read_to.hypertune_ts]
    return [
        ("INSERT OR REPLACE INTO reports (experiment_id, trial, seq, data)"
         " VALUES (?, ?, ?, ?)", rows),
        (f"UPDATE trials SET {', '.join(sets)} WHERE experiment_id = ? AND number = ?",
         (*args, exp_id, number)),
    ]


def _trial_update(exp_id: str, number: int, fields: dict[str, Any]) -> tuple[str, tuple[Any, ...]]:
    """The UPDATE of some columns of a trial (``devices``, ``params`` JSON-encoded)."""
    bad = set(fields) - _TRIAL_FIELDS
    assert not bad, bad
    values = [json.dumps(v) if k in ("devices", "params") else v for k, v in fields.items()]
    cols = ", ".join(f"{k} = ?" for k in fields)
    return (f"UPDATE trials SET {cols} WHERE experiment_id = ? AND number = ?",
            (*values, exp_id, number))


def _event_insert(
    kind: str, exp_id: str | None, trial: int | None, data: dict[str, Any]
) -> tuple[str, tuple[Any, ...]]:
    """The INSERT of one event."""
    return ("INSERT INTO events (t, kind, experiment_id, trial, data) VALUES (?, ?, ?, ?, ?)",
            (time.time(), kind, exp_id, trial, json.dumps(jsonable(data))))
