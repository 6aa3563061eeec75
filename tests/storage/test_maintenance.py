"""Partitions ahead and retention (PostgreSQL), job health, db_status, the COPY ceiling."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.config import StorageConfig
from core.errors import SinkRejected
from storage.bench import copy_ceiling
from storage.db import Database
from storage.maintenance import job_health, maintain, ping, refresh_rollups
from storage.partitions import existing_partitions
from storage.readings import query_readings
from storage.writer import ReadingWriter
from tests.storage.conftest import T0, readings, scalar

pytestmark = pytest.mark.integration


async def test_partitions_ahead_and_retention(db: Database) -> None:
    cfg = StorageConfig(retention_days=30, partition_ahead_days=3)
    now = T0 + timedelta(hours=13)
    report = await maintain(db, now, cfg)
    assert report.partitions_created == [f"readings_p202603{d}" for d in (10, 11, 12, 13)]
    assert (await maintain(db, now, cfg)).partitions_created == []  # idempotent

    w = ReadingWriter(db)
    old = readings([1, 2], T0 - timedelta(days=45), 10)  # past retention by then
    edge = readings([1, 2], T0 - timedelta(days=30), 10)  # the day that ends exactly at the cutoff day + 1
    fresh = readings([1, 2], T0, 10)
    await w.write(old + edge + fresh)
    await refresh_rollups(db, T0 - timedelta(days=45))
    assert await scalar(db, "SELECT count(*) FROM readings") == 60

    report = await maintain(db, now, cfg)
    assert report.partitions_dropped == ["readings_p20260124"]
    days = await _days(db)
    assert "readings_p20260124" not in days and "readings_p20260208" in days
    assert await scalar(db, "SELECT count(*) FROM readings") == 40
    assert report.rollup_rows_deleted == 2  # the 15-minute rows of the dropped day, one per point
    # Hourly rollups outlive raw retention and are not wiped by a refresh over the dropped range.
    await refresh_rollups(db, T0 - timedelta(days=45))
    rows = await query_readings(db, [1], T0 - timedelta(days=46), T0 + timedelta(days=1), step="1h")
    assert rows[0].ts == T0 - timedelta(days=45) and rows[0].count == 10

    health = {j.name: j for j in await job_health(db)}
    assert health["partitions"].last_status == "success" and health["partitions"].total_runs == 3
    assert health["rollup_retention"].last_status == "success"
    assert health["rollups"].last_status == "success" and not health["rollups"].failed


async def _days(db: Database) -> set[str]:
    async with db.connection() as conn:
        return set((await existing_partitions(conn)).values())


async def test_failed_job_is_visible(db: Database) -> None:
    async with db.connection() as conn:
        await conn.execute("ALTER TABLE readings_15m RENAME TO readings_15m_gone")
    with pytest.raises(SinkRejected):
        await refresh_rollups(db, T0)
    health = {j.name: j for j in await job_health(db)}
    assert health["rollups"].failed and "readings_15m" in health["rollups"].last_error
    assert health["rollups"].total_failures == 1


async def test_db_status_and_ceiling(any_db: Database) -> None:
    cfg = StorageConfig(retention_days=400, compress_after_days=7, partition_ahead_days=2)
    await maintain(any_db, T0, cfg)
    await ReadingWriter(any_db).write(readings([1], T0, 5))
    status = await any_db_status(any_db)
    assert status["backend"] == any_db.backend
    assert "001_points.sql" in status["migrations"]
    if any_db.backend == "postgres":
        assert [p["name"] for p in status["partitions"]][:3] == ["readings_p20260310", "readings_p20260311",
                                                                  "readings_p20260312"]
    else:
        assert status["timescaledb_version"] and status["chunks"]
    assert isinstance(status["jobs"], list) and status["failed_jobs"] == []

    await ping(any_db)
    rate = await copy_ceiling(any_db, n_points=50, rows=3000)
    assert rate > 0
    assert await scalar(any_db, "SELECT to_regclass('gw_bench_scratch')") is None


async def any_db_status(db: Database) -> dict[str, object]:
    from storage.maintenance import db_status

    return await db_status(db)
