"""The audit log's reading side on SQLite and on a real PostgreSQL server: the migrated
schema, timestamps, every filter, keyset pages, and aggregates (nearest-rank percentiles)
that agree between the two databases."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, inspect, pool, select, text

from mlx_manager.audit.query import Cursor, RequestFilter, aggregates, page, parse_time
from mlx_manager.audit.writer import AuditWriter
from mlx_manager.errors import InvalidRequest
from mlx_manager.store.database import Database
from mlx_manager.store.tables import AuditRequestRow
from mlx_manager.store.urls import DatabaseUrls, database_urls
from tests.fixtures.audit_rows import row

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def urls(request: pytest.FixtureRequest, tmp_path: Path) -> DatabaseUrls:
    if request.param == "sqlite":
        return database_urls(None, tmp_path / "data")
    return database_urls(request.getfixturevalue("postgres_url"), tmp_path)


def run(urls: DatabaseUrls, test: Callable[[Database], Awaitable[None]]) -> None:
    async def main() -> None:
        database = await Database.open(urls)
        try:
            await test(database)
        finally:
            await database.close()

    asyncio.run(main())


async def fill(database: Database, rows: list[dict[str, Any]]) -> None:
    writer = AuditWriter(flush_s=60)
    for r in rows:
        writer.submit(r)
    writer.start(database)
    await writer.close()
    assert writer.written_rows == len(rows)


# A small known log: 12 requests a second apart (the last two at the same instant).
LOG = [
    row(0, T0, status=200, latency_ms=100, ttft_ms=10, prompt_tokens=5, completion_tokens=1),
    row(1, T0 + timedelta(seconds=1), status=200, latency_ms=200, ttft_ms=20, stream=True),
    row(
        2,
        T0 + timedelta(seconds=2),
        status=400,
        latency_ms=5,
        ttft_ms=None,
        error="invalid_value",
        backend=None,
        backend_type=None,
        prompt_tokens=None,
        completion_tokens=None,
    ),
    row(3, T0 + timedelta(seconds=3), status=499, latency_ms=900, ttft_ms=30),
    row(
        4,
        T0 + timedelta(seconds=4),
        status=200,
        latency_ms=400,
        ttft_ms=40,
        model="alias",
        served_model="m",
    ),
    row(
        5,
        T0 + timedelta(seconds=5),
        status=502,
        latency_ms=50,
        ttft_ms=None,
        error="upstream_unavailable",
        backend="cloud",
        backend_type="openai",
        left_machine=True,
        attempts=[["broken/x", "server", 500]],
    ),
    row(
        6,
        T0 + timedelta(seconds=6),
        status=200,
        latency_ms=300,
        ttft_ms=25,
        user_id="ann",
        key_id="k1",
        backend="cloud",
        backend_type="openai",
        rule="gpt-",
        model="gpt-4o",
        served_model="m2",
    ),
    row(
        7,
        T0 + timedelta(seconds=7),
        status=200,
        latency_ms=700,
        ttft_ms=70,
        user_id="bob",
        key_id="k2",
        api="anthropic.messages",
    ),
    row(
        8,
        T0 + timedelta(seconds=8),
        status=429,
        latency_ms=15,
        ttft_ms=None,
        error="rate_limit_exceeded",
    ),
    row(9, T0 + timedelta(seconds=9), status=200, latency_ms=800, ttft_ms=80, cached_tokens=2),
    row(10, T0 + timedelta(seconds=10), status=200, latency_ms=600, ttft_ms=60),
    row(11, T0 + timedelta(seconds=10), status=200, latency_ms=500, ttft_ms=50),
]


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [r["request_id"] for r in rows]


def test_the_migrated_table_is_the_declared_one(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        def columns_and_indexes(connection: Any) -> tuple[set[str], set[str]]:
            inspector = inspect(connection)
            columns = {c["name"] for c in inspector.get_columns("audit_requests")}
            indexes = {i["name"] or "" for i in inspector.get_indexes("audit_requests")}
            return columns, indexes

        async with database.engine.connect() as connection:
            columns, indexes = await connection.run_sync(columns_and_indexes)
        table = AuditRequestRow.__table__
        assert columns == {c.name for c in table.columns}
        assert indexes == {i.name for i in table.indexes}  # type: ignore[attr-defined]

    run(urls, test)


def test_times_round_trip_exactly_in_utc(urls: DatabaseUrls) -> None:
    at = datetime(2026, 12, 5, 13, 14, 15, 123456, tzinfo=UTC)
    local = at.astimezone(datetime.now().astimezone().tzinfo)

    async def test(database: Database) -> None:
        await fill(database, [row(1, at), row(2, local)])
        async with database.session() as session:
            stored = (await session.scalars(select(AuditRequestRow.at))).all()
        assert stored == [at, at]
        assert all(value.utcoffset() == timedelta(0) for value in stored)

    run(urls, test)


def test_sqlite_keeps_times_as_integer_microseconds(tmp_path: Path) -> None:
    urls = database_urls(None, tmp_path)

    async def test(database: Database) -> None:
        await fill(database, [row(1, T0)])

    run(urls, test)
    engine = create_engine(urls.sync_url, poolclass=pool.NullPool)
    with engine.connect() as connection:
        value = connection.execute(text("SELECT at FROM audit_requests")).scalar_one()
    engine.dispose()
    assert value == int(T0.timestamp()) * 1_000_000


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (RequestFilter(), list(range(12))),
        (RequestFilter(model="m"), [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]),  # served m too
        (RequestFilter(model="alias"), [4]),
        (RequestFilter(model="m2"), [6]),
        (RequestFilter(backend="cloud"), [5, 6]),
        (RequestFilter(status="200"), [0, 1, 4, 6, 7, 9, 10, 11]),
        (RequestFilter(status="4xx"), [2, 3, 8]),
        (RequestFilter(status="5xx"), [5]),
        (RequestFilter(status="error"), [2, 5, 8]),
        (RequestFilter(status="aborted"), [3]),
        (RequestFilter(user="ann"), [6]),
        (RequestFilter(key="k2"), [7]),
        (RequestFilter(request_id="req-9"), [9]),
        (RequestFilter(api="anthropic.messages"), [7]),
        (RequestFilter(since=T0 + timedelta(seconds=9)), [9, 10, 11]),
        (RequestFilter(until=T0 + timedelta(seconds=2)), [0, 1]),
        (
            RequestFilter(
                since=T0 + timedelta(seconds=1),
                until=T0 + timedelta(seconds=8),
                status="2xx",
                backend="local",
            ),
            [1, 4, 7],
        ),
    ],
)
def test_filters(urls: DatabaseUrls, where: RequestFilter, expected: list[int]) -> None:
    async def test(database: Database) -> None:
        await fill(database, LOG)
        rows, cursor = await page(database, where, 500)
        assert cursor is None
        # newest first; the two rows of one instant by id, newest first
        assert ids(rows) == [f"req-{n}" for n in sorted(expected, reverse=True)]

    run(urls, test)


def test_keyset_pages_cover_every_row_once_and_do_not_shift(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        await fill(database, LOG)
        seen: list[str] = []
        rows, cursor = await page(database, RequestFilter(), 5)
        seen += ids(rows)
        await fill(database, [row(99, T0 + timedelta(hours=1))])  # newer: never on later pages
        while cursor is not None:
            again = Cursor.decode(cursor.encode())
            assert again == cursor
            rows, cursor = await page(database, RequestFilter(), 5, again)
            seen += ids(rows)
        assert seen == [f"req-{n}" for n in (11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0)]
        first, _ = await page(database, RequestFilter(), 1)
        assert ids(first) == ["req-99"]

    run(urls, test)


def _nearest(values: list[int], percent: int) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(percent / 100 * len(ordered))) - 1]


@pytest.mark.parametrize("status", [None, "200"])
def test_aggregates(urls: DatabaseUrls, status: str | None) -> None:
    chosen = [r for r in LOG if status is None or r["status"] == int(status)]

    async def test(database: Database) -> None:
        await fill(database, LOG)
        found = await aggregates(database, RequestFilter(status=status))
        latencies = [r["latency_ms"] for r in chosen]
        ttfts = [r["ttft_ms"] for r in chosen if r["ttft_ms"] is not None]
        errors = sum(1 for r in chosen if r["status"] >= 400 and r["status"] != 499)
        assert found == {
            "count": len(chosen),
            "errors": errors,
            "aborted": sum(1 for r in chosen if r["status"] == 499),
            "error_rate": round(errors / len(chosen), 4),
            "latency_ms": {"p50": _nearest(latencies, 50), "p95": _nearest(latencies, 95)},
            "ttft_ms": {"p50": _nearest(ttfts, 50), "p95": _nearest(ttfts, 95)},
            "prompt_tokens": sum(r["prompt_tokens"] or 0 for r in chosen),
            "completion_tokens": sum(r["completion_tokens"] or 0 for r in chosen),
            "cached_tokens": sum(r["cached_tokens"] or 0 for r in chosen),
        }

    run(urls, test)


def test_aggregates_of_nothing(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        found = await aggregates(database, RequestFilter(model="none"))
        assert found["count"] == 0 and found["error_rate"] is None
        assert found["latency_ms"] == {"p50": None, "p95": None}

    run(urls, test)


def test_the_view_of_a_row(urls: DatabaseUrls) -> None:
    async def test(database: Database) -> None:
        await fill(database, LOG)
        (failed,), _ = await page(database, RequestFilter(request_id="req-5"), 5)
        assert failed["attempts"] == [{"target": "broken/x", "failure": "server", "status": 500}]
        assert failed["data_left_machine"] is True and failed["error"] == "upstream_unavailable"
        (ok,), _ = await page(database, RequestFilter(request_id="req-0"), 5)
        assert ok["arrived_at"] == "2026-12-05T12:00:00.000Z"
        assert ok["first_token_at"] == "2026-12-05T12:00:00.010Z"
        assert ok["ended_at"] == "2026-12-05T12:00:00.100Z"
        assert ok["served_model"] == "m" and ok["attempts"] == []
        assert ok["usage"] == {"prompt_tokens": 5, "completion_tokens": 1, "cached_tokens": 0}
        (aborted,), _ = await page(database, RequestFilter(request_id="req-3"), 5)
        assert aborted["aborted"] is True

    run(urls, test)


@pytest.mark.parametrize(
    ("call", "param"),
    [
        (lambda: RequestFilter(status="2x").clauses(), "status"),
        (lambda: RequestFilter(status="oops").clauses(), "status"),
        (lambda: parse_time("yesterday", "since"), "since"),
        (lambda: Cursor.decode("not-a-cursor"), "cursor"),
        (lambda: Cursor.decode("!!!"), "cursor"),
    ],
)
def test_bad_parameters_are_invalid_requests(call: Callable[[], object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        call()
    assert caught.value.param == param and caught.value.status == 400


def test_times_parse_as_utc() -> None:
    assert parse_time("2026-12-05T13:00:00+01:00", "since") == T0
    assert parse_time("2026-12-05T12:00:00Z", "since") == T0
    assert parse_time("2026-12-05T12:00:00", "since") == T0  # no zone: UTC
    assert parse_time("2026-12-05", "since") == T0 - timedelta(hours=12)
