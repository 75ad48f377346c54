"""Small writes to the trial log, made on the event loop itself.

Every trial start and end is a small write (a row update and an event). Made in aiosqlite's
thread, each one costs two thread wake-ups and two hand-overs of the GIL; on a busy host,
where the trials themselves want every core, that was most of the daemon's CPU time per trial
(the dispatch benchmark, bench/dispatch.py). In WAL mode with ``synchronous = NORMAL`` such a
commit appends a few pages to the WAL without an fsync: tens of microseconds, less than the
hand-over itself. So small writes are made here, on a second connection, under three rules
that keep the event loop from ever waiting on the disk or on another process:

- ``busy_timeout = 0`` and ``BEGIN IMMEDIATE``: when another process holds the write lock,
  the write is not attempted here; the caller makes it in the thread, which waits.
- ``wal_autocheckpoint = 0``: the checkpoint (which fsyncs) never runs here; the caller runs
  one in the thread every ``CHECKPOINT_EVERY`` writes made here.
- only small batches (``MAX_ROWS``): a batch of thousands of reports goes to the thread.

What is left is the page cache: a ``write(2)`` of a few pages can still be throttled while
trainers write gigabytes of checkpoints to the same disk. The kernel throttles a writer in
proportion to how much it dirties, so such a pause stays short for a few pages; it would
have held the thread's write, and with it the trial's start or end, as long.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["LoopWriter", "Statement", "run_statements", "MAX_ROWS", "CHECKPOINT_EVERY"]

# (sql, args); a list of argument tuples means executemany.
Statement = tuple[str, Any]
MAX_ROWS = 64
CHECKPOINT_EVERY = 200
_BUSY = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


def run_statements(conn: sqlite3.Connection, statements: Sequence[Statement],
                   begin: str = "BEGIN") -> None:
    """Run ``statements`` in one transaction on ``conn`` (autocommit mode); roll back on any
    error, which propagates."""
    conn.execute(begin)
    try:
        for sql, args in statements:
            if isinstance(args, list):
                conn.executemany(sql, args)
            else:
                conn.execute(sql, args)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def rows_in(statements: Sequence[Statement]) -> int:
    """How many rows a batch writes (an executemany counts each of its argument tuples)."""
    return sum(len(args) if isinstance(args, list) else 1 for _, args in statements)


class LoopWriter:
    """The event loop's own connection to the trial log, for small writes (see the module
    docstring). Not thread-safe: use it from the event loop's thread only."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, isolation_level=None)
        try:
            self._conn.execute("PRAGMA busy_timeout = 0")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA wal_autocheckpoint = 0")
            self._conn.execute("PRAGMA foreign_keys = ON")
            # Read the schema now (~5 ms), not in the first trial's write.
            self._conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchall()
        except BaseException:
            self._conn.close()
            raise
        self._since_checkpoint = 0

    def try_write(self, statements: Sequence[Statement]) -> bool:
        """Commit ``statements`` here and return True; False, having written nothing, when
        the batch is too big for the loop or another process holds the log's write lock.
        Other SQLite errors propagate (after a rollback)."""
        if rows_in(statements) > MAX_ROWS:
            return False
        try:
            run_statements(self._conn, statements, begin="BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _BUSY:  # the primary code of an extended one
                return False
            raise
        self._since_checkpoint += 1
        return True

    def checkpoint_due(self) -> bool:
        """Whether enough writes were made here that the WAL should be checkpointed (by the
        caller, off the loop); True once per ``CHECKPOINT_EVERY`` writes."""
        if self._since_checkpoint < CHECKPOINT_EVERY:
            return False
        self._since_checkpoint = 0
        return True

    def close(self) -> None:
        """Close the connection (idempotent)."""
        self._conn.close()
