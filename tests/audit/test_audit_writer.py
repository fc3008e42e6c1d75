"""The audit writer: batches (one INSERT per batch), drops and counts when its queue is full,
writes what is queued at shutdown, survives a refusing database; retention deletes in
batches. On SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import event, func, select

from mlx_manager.audit.record import AuditRecord
from mlx_manager.audit.writer import AuditWriter, Retention, delete_older_than, dropped_counter
from mlx_manager.store.database import Database
from mlx_manager.store.tables import AuditRequestRow
from mlx_manager.store.urls import DatabaseUrls, database_urls
from tests.fixtures.audit_rows import NOW, row


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrls:
    if request.param == "sqlite":
        return database_urls(None, tmp_path / "data")
    return database_urls(request.getfixturevalue("postgres_url"), tmp_path)


def run(test: Callable[[Database], Any], urls: DatabaseUrls) -> None:
    async def main() -> None:
        database = await Database.open(urls)
        try:
            await test(database)
        finally:
            await database.close()

    asyncio.run(main())


async def stored(database: Database) -> list[str]:
    async with database.session() as session:
        query = select(AuditRequestRow.request_id).order_by(AuditRequestRow.id)
        return list((await session.scalars(query)).all())


class Inserts:
    """Counts the INSERT statements the engine sends (SQLite: one executemany; PostgreSQL:
    one INSERT with many VALUES)."""

    def __init__(self, database: Database) -> None:
        self.statements = 0
        event.listen(database.engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO AUDIT_REQUESTS"):
            self.statements += 1


def test_rows_are_written_in_batches_one_insert_each(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        inserts = Inserts(database)
        writer = AuditWriter(flush_s=60, batch_rows=4)
        writer.start(database)
        for n in range(3):
            writer.submit(row(n))
        await asyncio.sleep(0.05)
        assert await stored(database) == []  # under a batch, before the interval: queued
        writer.submit(row(3))  # a full batch wakes the writer
        for _ in range(100):
            if writer.written_rows == 4:
                break
            await asyncio.sleep(0.01)
        assert await stored(database) == [f"req-{n}" for n in range(4)]
        for n in range(4, 13):
            writer.submit(row(n))
        await writer.close()
        assert await stored(database) == [f"req-{n}" for n in range(13)]
        assert inserts.statements == 4  # batches of 4, 4, 4, 1: never one per row
        assert writer.dropped_rows == 0

    run(test, urls)


def test_rows_queued_during_a_flush_wait_for_the_next(urls: DatabaseUrls) -> None:
    """Under steady traffic a flush must not chase the rows arriving while it writes: that
    wrote a trickle of one- or two-row INSERTs, each a whole transaction's cost."""

    async def test(database: Database) -> None:
        inserts = Inserts(database)
        writer = AuditWriter(flush_s=60, batch_rows=100)
        writer._database = database  # flushed by hand: no timer
        for n in range(10):
            writer.submit(row(n))
        flushing = asyncio.ensure_future(writer.flush())
        await asyncio.sleep(0)  # the flush has taken its rows and awaits the database
        for n in range(10, 13):
            writer.submit(row(n))
        assert await flushing == 10
        assert (inserts.statements, writer.queued) == (1, 3)
        assert await writer.flush() == 3
        assert await stored(database) == [f"req-{n}" for n in range(13)]

    run(test, urls)


def test_the_interval_flushes_a_partial_batch(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=0.05)
        writer.start(database)
        writer.submit(row(1))
        await asyncio.sleep(0.3)
        assert await stored(database) == ["req-1"]  # written, without a shutdown
        await writer.close()

    run(test, urls)


def test_a_full_queue_drops_and_counts(
    urls: DatabaseUrls, caplog: pytest.LogCaptureFixture
) -> None:
    async def test(database: Database) -> None:
        registry = CollectorRegistry()
        clock = [0.0]
        writer = AuditWriter(
            flush_s=60,
            dropped=dropped_counter(registry),
            batch_rows=100,
            max_queued=5,
            clock=lambda: clock[0],
        )
        # Not started: the database is "slow", nothing leaves the queue.
        with caplog.at_level(logging.WARNING, "mlx_manager.audit.writer"):
            for n in range(8):
                writer.submit(row(n))
            clock[0] = 30.0
            writer.submit(row(8))
            clock[0] = 61.0
            writer.submit(row(9))
        assert writer.queued == 5
        assert writer.dropped_rows == 5
        value = registry.get_sample_value("mlx_manager:audit_rows_dropped_total")
        assert value == 5
        warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
        assert len(warnings) == 2  # at most one a minute: at 0 s and at 61 s
        writer.start(database)
        await writer.close()  # the queued rows are written at shutdown
        assert await stored(database) == [f"req-{n}" for n in range(5)]

    run(test, urls)


def test_close_writes_what_is_queued(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=60, batch_rows=500)
        writer.start(database)
        for n in range(1200):
            writer.submit(row(n))
        await writer.close()
        assert len(await stored(database)) == 1200
        writer.submit(row(9999))  # after close: dropped, counted, never queued forever
        assert writer.dropped_rows == 1

    run(test, urls)


def test_a_refused_batch_is_dropped_and_the_writer_goes_on(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=60, batch_rows=2)
        writer.submit(row(1))
        writer.submit(row(2, status=None))  # NOT NULL: the database refuses the batch
        writer.submit(row(3))
        writer.start(database)
        await writer.close()
        assert writer.dropped_rows == 2
        assert await stored(database) == ["req-3"]

    run(test, urls)


def test_retention_deletes_old_rows_in_batches(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=60)
        old = [row(n, NOW - timedelta(days=40, seconds=n)) for n in range(7)]
        new = [row(100 + n, NOW - timedelta(days=1, seconds=n)) for n in range(3)]
        for r in old + new:
            writer.submit(r)
        writer.start(database)
        await writer.close()
        deleted = await delete_older_than(database, NOW - timedelta(days=30), batch_rows=3)
        assert deleted == 7
        assert sorted(await stored(database)) == sorted(r["request_id"] for r in new)

    run(test, urls)


def test_the_retention_task_runs_at_start(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=60)
        now = datetime.now(UTC)
        writer.submit(row(1, now - timedelta(days=3)))
        writer.submit(row(2, now))
        writer.start(database)
        await writer.close()
        retention = Retention(days=2)
        retention.start(database)
        for _ in range(100):
            if await stored(database) == ["req-2"]:
                break
            await asyncio.sleep(0.02)
        await retention.close()
        assert await stored(database) == ["req-2"]
        forever = Retention(days=0)
        forever.start(database)  # 0: keep forever, no task
        await forever.close()
        async with database.session() as session:
            assert await session.scalar(select(func.count()).select_from(AuditRequestRow)) == 1

    run(test, urls)


def test_a_batch_failing_in_any_way_never_stops_the_writer(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=0.02, batch_rows=1)
        writer.start(database)
        writer.submit(row(1, model="\ud800"))  # not UTF-8: the driver raises, not the database
        await asyncio.sleep(0.1)
        writer.submit(row(2))
        await writer.close()
        assert writer.dropped_rows == 1
        assert await stored(database) == ["req-2"]

    run(test, urls)


def test_what_clients_send_is_made_storable(urls: DatabaseUrls) -> None:
    """A model name with a lone surrogate (valid JSON) or a NUL (PostgreSQL refuses it) from
    a refused request's body still gives a row."""
    record = AuditRecord("req-odd", "openai.chat", NOW, 0.0)
    record.routed("bad\ud800name\x00", None)
    record.prompt = "hi\x00\udfff"

    async def test(database: Database) -> None:
        writer = AuditWriter(flush_s=60)
        writer.submit(record.row(400, None))
        writer.start(database)
        await writer.close()
        assert writer.dropped_rows == 0
        async with database.session() as session:
            stored_row = (await session.scalars(select(AuditRequestRow))).one()
        assert stored_row.model == "bad\ufffd\ufffd\ufffdname"
        assert stored_row.prompt == "hi\ufffd\ufffd\ufffd"

    run(test, urls)
