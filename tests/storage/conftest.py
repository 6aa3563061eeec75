"""Storage test helpers: an open, migrated Database per test on each backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from core.records import Quality, Reading
from storage.db import Database
from storage.migrate import migrate

T0 = datetime(2026, 3, 10, 0, 0, tzinfo=UTC)


def readings(point_ids: Sequence[int], start: datetime, count: int, step: timedelta = timedelta(minutes=1),
             value: float = 0.0, quality: Quality = Quality.GOOD) -> list[Reading]:
    """`count` readings per point, every `step` from `start`, value = base + point*1000 + k."""
    out = []
    for k in range(count):
        ts = start + k * step
        for p in point_ids:
            out.append(Reading(point_id=p, ts=ts, value=value + p * 1000 + k, quality=quality, received_at=ts))
    return out


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    """A migrated plain-PostgreSQL database."""
    d = await Database.open(pg_dsn, backend="postgres")
    await migrate(d)
    try:
        yield d
    finally:
        await d.close()


@pytest.fixture
async def any_db(any_backend_dsn: str) -> AsyncIterator[Database]:
    """A migrated database on each backend (TimescaleDB only when GRIDWATCH_TEST_DSN is set)."""
    d = await Database.open(any_backend_dsn)
    await migrate(d)
    try:
        yield d
    finally:
        await d.close()


async def scalar(db: Database, sql: str, params: Sequence[object] | dict[str, object] | None = None) -> object:
    """First column of the first row."""
    async with db.connection() as conn:
        cur = await conn.execute(sql, params)  # type: ignore[arg-type]
        row = await cur.fetchone()
        return row[0] if row else None


async def ensure_days(db: Database, start: datetime, days: int) -> None:
    """Create daily partitions on plain PostgreSQL (no-op on TimescaleDB)."""
    if db.backend != "postgres":
        return
    from storage.partitions import ensure_partitions

    async with db.connection() as conn:
        await ensure_partitions(conn, [(start + timedelta(days=k)).date() for k in range(days)])
