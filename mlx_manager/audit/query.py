"""Reading the audit log (GET /admin/requests): filters, keyset pages and aggregates.

Pages are newest first, by (arrival, id), with a keyset cursor: a page costs the same at any
depth and rows written meanwhile never shift it (an offset would do both wrong).

Percentiles are nearest-rank, computed the same way on SQLite and PostgreSQL: count the
filtered rows that have the value, then read the one at rank ceil(p * n) with
`ORDER BY value LIMIT 1 OFFSET rank - 1`. SQLite has no percentile function and
PostgreSQL's percentile_cont interpolates; one portable query keeps both databases' answers
identical (the tests check both). Each pick reads the filtered rows in value order: right
for a viewer over a filter; long-run dashboards have /metrics' histograms.

Bad parameters are a 400 (InvalidRequest) naming the parameter, never a 500.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from mlx_manager.audit.record import CLIENT_CLOSED
from mlx_manager.errors import InvalidRequest
from mlx_manager.store.columns import from_micros, to_micros, to_utc
from mlx_manager.store.database import Database
from mlx_manager.store.tables import AuditRequestRow as Row

MAX_LIMIT = 500
PERCENTILES = (50, 95)
_STATUS_CLASS = re.compile(r"^[1-5]xx$")


def parse_time(text: str, param: str) -> datetime:
    """An ISO 8601 instant (a date alone: its midnight; no zone: UTC) -> aware UTC."""
    try:
        return to_utc(datetime.fromisoformat(text.strip()))
    except ValueError:
        raise InvalidRequest(
            f"'{param}' must be an ISO 8601 time, e.g. 2026-12-05T10:00:00Z", param=param
        ) from None


def status_clause(text: str) -> ColumnElement[bool]:
    """`200` (exact), `4xx` (a class), `error` (400 and above but 499) or `aborted` (499)."""
    value = text.strip().lower()
    if value.isdigit() and len(value) == 3:
        return Row.status == int(value)
    if _STATUS_CLASS.match(value):
        low = int(value[0]) * 100
        return and_(Row.status >= low, Row.status < low + 100)
    if value == "error":
        return and_(Row.status >= 400, Row.status != CLIENT_CLOSED)
    if value == "aborted":
        return Row.status == CLIENT_CLOSED
    raise InvalidRequest(
        "'status' must be a code (200), a class (2xx, 4xx, 5xx), 'error' or 'aborted'",
        param="status",
    )


@dataclass(frozen=True, slots=True)
class RequestFilter:
    model: str | None = None  # requested or served
    backend: str | None = None  # a provider's name, or "local"
    status: str | None = None
    user: str | None = None
    key: str | None = None
    request_id: str | None = None
    api: str | None = None
    since: datetime | None = None  # arrival at or after
    until: datetime | None = None  # arrival before

    def clauses(self) -> list[ColumnElement[bool]]:
        found: list[ColumnElement[bool]] = []
        if self.model is not None:
            # served_model is stored only where it differs from the requested name
            found.append(or_(Row.model == self.model, Row.served_model == self.model))
        for column, value in (
            (Row.backend, self.backend),
            (Row.user_id, self.user),
            (Row.key_id, self.key),
            (Row.request_id, self.request_id),
            (Row.api, self.api),
        ):
            if value is not None:
                found.append(column == value)
        if self.status is not None:
            found.append(status_clause(self.status))
        if self.since is not None:
            found.append(Row.at >= self.since)
        if self.until is not None:
            found.append(Row.at < self.until)
        return found


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the (arrival, id) of its last row, opaque to the client."""

    at: datetime
    id: int

    def encode(self) -> str:
        raw = f"{to_micros(self.at)}.{self.id}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode()
            micros, row_id = raw.split(".")
            return cls(from_micros(int(micros)), int(row_id))
        except (ValueError, binascii.Error, UnicodeDecodeError, OverflowError):
            raise InvalidRequest(
                "'cursor' is not one this API gave (use next_cursor as it is)", param="cursor"
            ) from None

    def after(self) -> ColumnElement[bool]:
        """Rows after this one, newest first."""
        return or_(Row.at < self.at, and_(Row.at == self.at, Row.id < self.id))


async def page(
    database: Database, where: RequestFilter, limit: int, cursor: Cursor | None = None
) -> tuple[list[dict[str, Any]], Cursor | None]:
    """Up to `limit` rows, newest first, and the cursor of the next page (None: the last)."""
    clauses = where.clauses()
    if cursor is not None:
        clauses.append(cursor.after())
    query = select(Row).where(*clauses).order_by(Row.at.desc(), Row.id.desc()).limit(limit + 1)
    async with database.session() as session:
        rows = list((await session.scalars(query)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    following = Cursor(rows[-1].at, rows[-1].id) if more else None
    return [view(row) for row in rows], following


async def aggregates(database: Database, where: RequestFilter) -> dict[str, Any]:
    """Count, errors, aborts, latency and TTFT percentiles and token sums of the filtered
    rows (every page of them)."""
    clauses = where.clauses()
    errors = and_(Row.status >= 400, Row.status != CLIENT_CLOSED)
    totals = select(
        func.count(),
        func.sum(case((errors, 1), else_=0)),
        func.sum(case((Row.status == CLIENT_CLOSED, 1), else_=0)),
        func.sum(Row.prompt_tokens),
        func.sum(Row.completion_tokens),
        func.sum(Row.cached_tokens),
        func.count(Row.latency_ms),
        func.count(Row.ttft_ms),
    ).where(*clauses)
    async with database.session() as session:
        total = (await session.execute(totals)).one()
        count, failed, aborted = int(total[0]), int(total[1] or 0), int(total[2] or 0)
        latency = await _percentiles(session, Row.latency_ms, clauses, int(total[6]))
        ttft = await _percentiles(session, Row.ttft_ms, clauses, int(total[7]))
    return {
        "count": count,
        "errors": failed,
        "aborted": aborted,
        "error_rate": round(failed / count, 4) if count else None,
        "latency_ms": latency,
        "ttft_ms": ttft,
        "prompt_tokens": int(total[3] or 0),
        "completion_tokens": int(total[4] or 0),
        "cached_tokens": int(total[5] or 0),
    }


def nearest_rank(percent: float, count: int) -> int:
    """The 1-based rank of the `percent`th percentile among `count` sorted values."""
    return max(1, math.ceil(percent / 100 * count))


async def _percentiles(
    session: Any,
    column: InstrumentedAttribute[int | None],
    clauses: list[ColumnElement[bool]],
    count: int,
) -> dict[str, int | None]:
    picked: dict[str, int | None] = {}
    for percent in PERCENTILES:
        value = None
        if count:
            query = (
                select(column)
                .where(*clauses, column.is_not(None))
                .order_by(column)
                .offset(nearest_rank(percent, count) - 1)
                .limit(1)
            )
            value = (await session.execute(query)).scalar_one_or_none()
        picked[f"p{percent}"] = value
    return picked


def view(row: Row) -> dict[str, Any]:
    """A row as the API shows it."""
    return {
        "id": row.id,
        "request_id": row.request_id,
        "arrived_at": _iso(row.at),
        "first_token_at": _after(row.at, row.ttft_ms),
        "ended_at": _after(row.at, row.latency_ms),
        "ttft_ms": row.ttft_ms,
        "latency_ms": row.latency_ms,
        "api": row.api,
        "model": row.model,
        "served_model": row.served_model or (row.model if row.backend else None),
        "rule": row.rule,
        "backend_type": row.backend_type,
        "backend": row.backend,
        "attempts": [
            {"target": target, "failure": failure, "status": status}
            for target, failure, status in row.attempts or ()
        ],
        "status": row.status,
        "aborted": row.status == CLIENT_CLOSED,
        "error": row.error,
        "usage": {
            "prompt_tokens": row.prompt_tokens,
            "completion_tokens": row.completion_tokens,
            "cached_tokens": row.cached_tokens,
        },
        "stream": row.stream,
        "user_id": row.user_id,
        "key_id": row.key_id,
        "data_left_machine": row.left_machine,
        "prompt": row.prompt,
    }


def _iso(value: datetime) -> str:
    return to_utc(value).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _after(at: datetime, ms: int | None) -> str | None:
    return None if ms is None else _iso(at + timedelta(milliseconds=ms))
