"""Column types of our own.

`Timestamp`: a UTC instant, `timestamptz` on PostgreSQL and integer microseconds since the
Unix epoch on SQLite. SQLAlchemy's SQLite DATETIME is a 26-character text without the zone,
repeated in every index that holds it; a table written once per request (the audit log) and
indexed by time in several composite indexes pays that many times per row. The integer is
8 bytes at most, exact, ordered like the instant, and reads on SQLite as
`datetime(at / 1000000, 'unixepoch')`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def timestamp_ddl() -> TypeEngine[Any]:
    """The column type as a migration writes it (migrations never import `Timestamp`)."""
    return DateTime(timezone=True).with_variant(BigInteger(), "sqlite")


def to_utc(value: datetime) -> datetime:
    """An aware datetime in UTC; a naive one is taken to be UTC already."""
    return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)


def to_micros(value: datetime) -> int:
    return (to_utc(value) - EPOCH) // _MICROSECOND


def from_micros(value: int) -> datetime:
    return EPOCH + timedelta(microseconds=value)


class Timestamp(TypeDecorator[datetime]):
    impl = DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return to_micros(value) if dialect.name == "sqlite" else to_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return from_micros(int(value)) if dialect.name == "sqlite" else to_utc(value)
