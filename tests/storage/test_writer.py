"""The COPY writer: ingest, idempotent replay, partitions on demand, error translation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import psycopg
import pytest

from core.errors import SinkRejected, SinkUnavailable
from core.records import Quality, Reading
from storage.db import Database
from storage.writer import ReadingWriter
from tests.storage.conftest import T0, ensure_days, readings, scalar

pytestmark = pytest.mark.integration

CHECKSUM = "SELECT count(*), coalesce(sum(value), 0), coalesce(sum(quality), 0), coalesce(sum(extract(epoch FROM ts)), 0) FROM readings"


async def checksum(db: Database) -> tuple[object, ...]:
    async with db.connection() as conn:
        cur = await conn.execute(CHECKSUM)
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


async def test_copy_ingest_and_idempotent_replay(any_db: Database) -> None:
    await ensure_days(any_db, T0, 2)
    w = ReadingWriter(any_db)
    batch = readings(range(1, 51), T0, 100, quality=Quality.SUBSTITUTED)  # 5,000 rows
    await w.write(batch)
    first = await checksum(any_db)
    assert first[0] == 5000
    assert first[1] == sum(r.value for r in batch)
    assert w.stats.fallbacks == 0 and w.stats.inserted == 5000

    await w.write(batch)  # replay: no duplicates, nothing changes
    assert await checksum(any_db) == first
    assert w.stats.fallbacks == 1 and w.stats.duplicates == 5000

    # A replayed batch that overlaps half old, half new rows stores only the new ones.
    more = readings(range(1, 51), T0 + timedelta(minutes=50), 100)
    await w.write(more)
    total = await checksum(any_db)
    assert total[0] == 5000 + 2500
    new_values = {(r.point_id, r.ts): r.value for r in batch}
    for r in more:
        new_values.setdefault((r.point_id, r.ts), r.value)  # first write wins
    assert total[1] == sum(new_values.values())
    assert w.dirty_since == T0
    assert w.pop_dirty_since() == T0 and w.dirty_since is None
    assert w.stats.write_seconds > 0


async def test_duplicates_inside_one_batch(any_db: Database) -> None:
    await ensure_days(any_db, T0, 1)
    w = ReadingWriter(any_db)
    r = Reading(point_id=7, ts=T0, value=1.5, quality=Quality.GOOD, received_at=T0)
    await w.write([r, r, Reading(point_id=7, ts=T0 + timedelta(seconds=1), value=2.0, quality=Quality.GOOD, received_at=T0)])
    assert await scalar(any_db, "SELECT count(*) FROM readings") == 2


async def test_empty_batch_is_a_no_op(any_db: Database) -> None:
    w = ReadingWriter(any_db)
    await w.write([])
    assert w.stats.batches == 0


async def test_partition_created_on_demand(db: Database) -> None:
    # No partition exists at all: the writer creates the days of the batch and keeps every row.
    w = ReadingWriter(db)
    days = [T0, T0 + timedelta(days=5), T0 - timedelta(days=40)]
    batch = [Reading(point_id=1, ts=d + timedelta(hours=3), value=float(i), quality=Quality.GOOD, received_at=d)
             for i, d in enumerate(days)]
    await w.write(batch)
    assert await scalar(db, "SELECT count(*) FROM readings") == 3
    assert w.stats.partitions_created == 3
    names = await scalar(db, "SELECT array_agg(relname::text ORDER BY relname) FROM pg_class WHERE relname LIKE 'readings_p%%' AND relkind = 'r'")
    assert names == ["readings_p20260129", "readings_p20260310", "readings_p20260315"]


async def test_concurrent_writers_same_new_day(db: Database) -> None:
    a, b = ReadingWriter(db), ReadingWriter(db)
    batch_a = readings([1, 2], T0 + timedelta(days=9), 10)
    batch_b = readings([3, 4], T0 + timedelta(days=9), 10)
    await asyncio.gather(a.write(batch_a), b.write(batch_b), a.write(batch_a))
    assert await scalar(db, "SELECT count(*) FROM readings") == 40


async def test_bad_data_is_rejected(any_db: Database) -> None:
    await ensure_days(any_db, T0, 1)
    w = ReadingWriter(any_db)
    naive = datetime(2026, 3, 10, 1, 0)
    with pytest.raises(SinkRejected, match="naive"):
        await w.write([Reading(point_id=1, ts=naive, value=1.0, quality=Quality.GOOD, received_at=T0)])
    with pytest.raises(SinkRejected, match="point_id"):
        await w.write([Reading(point_id=2**40, ts=T0, value=1.0, quality=Quality.GOOD, received_at=T0)])
    with pytest.raises(SinkRejected, match="value"):
        await w.write([Reading(point_id=1, ts=T0, value="x", quality=Quality.GOOD, received_at=T0)])  # type: ignore[arg-type]
    assert w.stats.rejected == 3
    assert await scalar(any_db, "SELECT count(*) FROM readings") == 0


async def test_timeout_is_unavailable_and_batch_not_half_written(any_db: Database) -> None:
    await ensure_days(any_db, T0, 1)
    w = ReadingWriter(any_db, write_timeout_s=0.3)
    async with await psycopg.AsyncConnection.connect(any_db.dsn) as locker:
        await locker.execute("LOCK TABLE readings IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(SinkUnavailable):
            await w.write(readings([1, 2, 3], T0, 10))
        await locker.rollback()
    assert w.stats.failed == 1
    assert await scalar(any_db, "SELECT count(*) FROM readings") == 0
    await ReadingWriter(any_db).write(readings([1, 2, 3], T0, 10))  # and it works once the lock is gone
    assert await scalar(any_db, "SELECT count(*) FROM readings") == 30


async def test_database_gone_is_unavailable(pg_dsn: str) -> None:
    from storage.migrate import migrate

    db = await Database.open(pg_dsn, backend="postgres", timeout=2.0)
    await migrate(db)
    w = ReadingWriter(db)
    await db.close()
    with pytest.raises(SinkUnavailable):
        await w.write(readings([1], T0, 1))
