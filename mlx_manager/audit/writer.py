"""The audit log's writer: a bounded queue in memory, emptied into the database in batches.

A request only appends its finished row to the queue (no I/O, no lock, no await). A task on
the event loop writes the queue every `flush_s`, or as soon as `batch_rows` rows wait: one
INSERT of up to `batch_rows` rows per transaction, through the store's async engine (the
driver's I/O is off the loop: aiosqlite's thread, psycopg's async socket). When the queue is
full, because the database is slower than the traffic, a new row is dropped and counted
(`mlx_manager:audit_rows_dropped_total`, and a warning at most once a minute) rather than
making a request wait or memory grow. A batch the database refuses is dropped and counted
the same way. Closing writes whatever is queued.

Retention: every hour, rows older than the retention are deleted, a batch of ids at a time
(short transactions: the writer and readers are never held up for long).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Table, delete, insert, select

from mlx_manager.store.database import Database
from mlx_manager.store.tables import AuditRequestRow

log = logging.getLogger(__name__)

AUDIT_TABLE = cast(Table, AuditRequestRow.__table__)

# SQLAlchemy prepares a batch's parameters on the event loop (~12 µs a row): 200 rows keep a
# flush's hold on the loop to a few milliseconds, and the loop runs between batches.
BATCH_ROWS = 200
MAX_QUEUED_ROWS = 20_000  # ~10 MB of rows waiting at most
WARN_EVERY_S = 60.0
RETENTION_EVERY_S = 3600.0
DELETE_BATCH_ROWS = 5000


def dropped_counter(registry: CollectorRegistry) -> Counter:
    return Counter(
        "mlx_manager:audit_rows_dropped",
        "Audit rows dropped: the queue was full (a slow database) or the database refused them.",
        registry=registry,
    )


class AuditWriter:
    def __init__(
        self,
        flush_s: float,
        dropped: Counter | None = None,
        *,
        batch_rows: int = BATCH_ROWS,
        max_queued: int = MAX_QUEUED_ROWS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._flush_s = flush_s
        self._dropped = dropped
        self._batch_rows = batch_rows
        self._max_queued = max_queued
        self._clock = clock
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._database: Database | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._warned_at: float | None = None
        self.dropped_rows = 0
        self.written_rows = 0

    @property
    def queued(self) -> int:
        return len(self._queue)

    def submit(self, row: dict[str, Any]) -> None:
        """Queue a finished row; when the queue is full, drop it (counted)."""
        if len(self._queue) >= self._max_queued or self._closing:
            self._drop(1, "the queue is full (the database is slower than the requests)")
            return
        self._queue.append(row)
        if len(self._queue) >= self._batch_rows:
            self._wake.set()

    def start(self, database: Database) -> None:
        self._database = database
        self._task = asyncio.create_task(self._run(), name="audit-writer")

    async def close(self) -> None:
        """Write what is queued, then stop."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
            self._task = None

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._flush_s)
            self._wake.clear()
            await self.flush()
        await self.flush()

    async def flush(self) -> int:
        """Write the rows queued when it starts, a batch per INSERT; how many were written.

        Rows queued meanwhile wait for the next flush (at once if a full batch is waiting):
        chasing them under steady traffic wrote a trickle of tiny batches, each paying a
        transaction's fixed cost (~1.3 ms of CPU on SQLite), ~0.3 ms on every request."""
        written = 0
        due = len(self._queue)
        while due > 0:  # only this coroutine takes rows off the queue
            count = min(self._batch_rows, due)
            due -= count
            batch = [self._queue.popleft() for _ in range(count)]
            if self._database is None:
                self._drop(len(batch), "the audit log has no database")
                continue
            try:
                async with self._database.session() as session:
                    # Core, not the ORM's bulk path: that splits a batch by which values
                    # are None; this is one statement for the whole batch.
                    await session.execute(insert(AUDIT_TABLE), batch)
            except Exception as exc:  # whatever it is, the writer must live on
                self._drop(len(batch), f"the database refused them ({type(exc).__name__})")
                log.debug("audit batch refused: %s", exc)
                continue
            written += len(batch)
            await asyncio.sleep(0)  # the requests' tasks run between two batches
        self.written_rows += written
        return written

    def _drop(self, rows: int, why: str) -> None:
        self.dropped_rows += rows
        if self._dropped is not None:
            self._dropped.inc(rows)
        now = self._clock()
        if self._warned_at is None or now - self._warned_at >= WARN_EVERY_S:
            self._warned_at = now
            log.warning("audit log: dropped %d row(s) so far: %s", self.dropped_rows, why)


async def delete_older_than(
    database: Database, cutoff: datetime, batch_rows: int = DELETE_BATCH_ROWS
) -> int:
    """Delete the rows that arrived before `cutoff`, `batch_rows` per transaction; how many."""
    deleted = 0
    while True:
        ids = select(AuditRequestRow.id).where(AuditRequestRow.at < cutoff).limit(batch_rows)
        async with database.session() as session:
            result = await session.execute(
                delete(AuditRequestRow).where(AuditRequestRow.id.in_(ids.scalar_subquery()))
            )
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        deleted += count
        if count < batch_rows:
            return deleted
        await asyncio.sleep(0)  # let the writer and the readers in between batches


class Retention:
    """Deletes rows older than `days` at start, then every hour."""

    def __init__(self, days: int, every_s: float = RETENTION_EVERY_S) -> None:
        self._days = days
        self._every_s = every_s
        self._task: asyncio.Task[None] | None = None

    def start(self, database: Database) -> None:
        if self._days > 0:
            self._task = asyncio.create_task(self._run(database), name="audit-retention")

    async def _run(self, database: Database) -> None:
        while True:
            cutoff = datetime.now(UTC) - timedelta(days=self._days)
            try:
                deleted = await delete_older_than(database, cutoff)
                if deleted:
                    log.info("audit log: deleted %d row(s) older than %d days", deleted, self._days)
            except Exception as exc:  # tried again in an hour
                log.warning("audit log: retention failed: %s", exc)
            await asyncio.sleep(self._every_s)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
