"""TimescaleDB only (GRIDWATCH_TEST_DSN): hypertable, caggs, policies, compression with late
data, retention by hand, and failed background jobs made visible."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from core.config import StorageConfig
from storage.db import Database
from storage.maintenance import job_health, maintain
from storage.migrate import migrate
from storage.readings import query_readings
from storage.writer import ReadingWriter
from tests.storage.conftest import readings, scalar

pytestmark = [pytest.mark.integration, pytest.mark.timescaledb]


@pytest.fixture
async def tsdb(timescale_dsn: str) -> AsyncIterator[Database]:
    d = await Database.open(timescale_dsn, backend="timescaledb")
    await migrate(d)
    try:
        yield d
    finally:
        await d.close()


async def test_schema(tsdb: Database) -> None:
    assert tsdb.backend == "timescaledb"
    assert await scalar(tsdb, "SELECT time_interval FROM timescaledb_information.dimensions"
                              " WHERE hypertable_name = 'readings'") == timedelta(days=1)
    assert await scalar(tsdb, "SELECT array_agg(view_name::text ORDER BY view_name)"
                              " FROM timescaledb_information.continuous_aggregates") == ["readings_15m", "readings_1h"]
    assert await scalar(tsdb, "SELECT compression_enabled FROM timescaledb_information.hypertables"
                              " WHERE hypertable_name = 'readings'") is True


async def test_policies_follow_config(tsdb: Database) -> None:
    now = datetime.now(UTC)
    r1 = await maintain(tsdb, now, StorageConfig(retention_days=30, compress_after_days=7))
    assert len(r1.policies_changed) == 5
    assert (await maintain(tsdb, now, StorageConfig(retention_days=30, compress_after_days=7))).policies_changed == []
    r3 = await maintain(tsdb, now, StorageConfig(retention_days=60, compress_after_days=7))
    assert r3.policies_changed == ["retention 60 days", "retention readings_15m 60 days"]
    jobs = [j for j in await job_health(tsdb) if j.origin == "timescaledb"]
    procs = sorted(j.name for j in jobs)
    assert procs == ["policy_compression", "policy_refresh_continuous_aggregate",
                     "policy_refresh_continuous_aggregate", "policy_retention", "policy_retention"]
    assert await scalar(tsdb, "SELECT config->>'drop_after' FROM timescaledb_information.jobs"
                              " WHERE proc_name = 'policy_retention' AND hypertable_name = 'readings'") == "60 days"


async def test_compression_late_data_and_retention_by_hand(tsdb: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old_day = (now - timedelta(days=20)).replace(hour=6, minute=0, second=0)
    w = ReadingWriter(tsdb)
    old = readings([1, 2, 3], old_day, 60)
    ancient = readings([1], now - timedelta(days=500), 5)
    await w.write(old + ancient + readings([1, 2, 3], now - timedelta(hours=1), 10))
    report = await maintain(tsdb, now, StorageConfig(retention_days=400, compress_after_days=7))
    assert len(report.chunks_dropped) == 1 and len(report.chunks_compressed) == 1
    assert await scalar(tsdb, "SELECT count(*) FROM readings") == 180 + 30
    assert await scalar(tsdb, "SELECT count(*) FROM timescaledb_information.chunks"
                              " WHERE hypertable_name = 'readings' AND is_compressed") == 1

    # Late data and a replay into the compressed chunk: stored once, no duplicates.
    late = readings([4], old_day, 5)
    await w.write(late)
    await w.write(late + old[:10])
    assert await scalar(tsdb, "SELECT count(*) FROM readings") == 180 + 30 + 5
    assert await scalar(tsdb, "SELECT count(*) FROM (SELECT point_id, ts FROM readings GROUP BY 1, 2 HAVING count(*) > 1) d") == 0
    rows = await query_readings(tsdb, [4], old_day, old_day + timedelta(hours=1), step="raw")
    assert len(rows) == 5


async def test_failed_background_job_is_visible(tsdb: Database) -> None:
    async with tsdb.connection() as conn:
        await conn.execute("CREATE PROCEDURE gw_always_fails(job_id int, config jsonb) LANGUAGE plpgsql AS"
                           " $$ BEGIN RAISE EXCEPTION 'gw test job failure'; END $$")
        await conn.execute("SELECT add_job('gw_always_fails', INTERVAL '1 hour', initial_start => now())")
    deadline = time.monotonic() + 60
    while True:
        jobs = [j for j in await job_health(tsdb) if j.name == "gw_always_fails"]
        assert len(jobs) == 1
        if jobs[0].failed:
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the scheduler never ran the failing job: {jobs[0]}")
        await asyncio.sleep(0.5)
    assert jobs[0].total_failures >= 1
    assert jobs[0].last_error  # the raised message, or "cannot drop portal" on PG 15.20 + TS 2.28.3


async def test_maintain_refreshes_by_hand_when_refresh_jobs_fail(tsdb: Database) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    await ReadingWriter(tsdb).write(readings([1, 2], now - timedelta(hours=5), 60))
    cfg = StorageConfig(retention_days=400, compress_after_days=7)
    await maintain(tsdb, now, cfg)  # adds the policies
    async with tsdb.connection() as conn:
        await conn.execute("SELECT alter_job(job_id, next_start => now()) FROM timescaledb_information.jobs"
                           " WHERE proc_name = 'policy_refresh_continuous_aggregate'")
    deadline = time.monotonic() + 60
    while True:
        jobs = [j for j in await job_health(tsdb) if j.name == "policy_refresh_continuous_aggregate"]
        if all(j.last_status != "never" and j.total_runs > 0 for j in jobs):
            break
        if time.monotonic() > deadline:
            pytest.fail(f"the scheduler never ran the refresh jobs: {jobs}")
        await asyncio.sleep(0.5)
    report = await maintain(tsdb, now, cfg)
    # Where the jobs fail (PostgreSQL 15.20 + TimescaleDB 2.28.3: "cannot drop portal"), maintain
    # does their work; either way the aggregates end up materialized.
    assert report.rollups_refreshed == any(j.failed for j in jobs)
    rows = await query_readings(tsdb, [1], now - timedelta(hours=6), now, step="15m")
    assert sum(r.count for r in rows) == 60
    async with tsdb.connection() as conn:  # look at the materialized part only
        await conn.execute("ALTER MATERIALIZED VIEW readings_15m SET (timescaledb.materialized_only = true)")
    assert await scalar(tsdb, "SELECT sum(count) FROM readings_15m") == 120
