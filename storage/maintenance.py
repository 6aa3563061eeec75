"""Maintenance of both backends: partitions/chunks, retention, compression, rollups, job health.

Plain PostgreSQL
    `maintain(db, now, cfg)` creates the daily partitions of the next `partition_ahead_days`
    and drops those past `retention_days`. `refresh_rollups(db, since)` re-aggregates every
    15-minute bucket from `since` (floored) on into `readings_15m`, then the hours from the
    15-minute rows into `readings_1h` (upserts: late data re-aggregates its buckets).
TimescaleDB
    `maintain()` makes the compression, retention and continuous-aggregate policies match the
    configuration, and also does their work by hand (drop old chunks, compress old chunks,
    and refresh the aggregates when their policy job failed or is missing): background jobs
    can fail silently (seen: "cannot drop portal"). `refresh_rollups()` calls
    `refresh_continuous_aggregate` for the window from `since`.

Every run of this module's work is recorded in `storage_jobs`; `job_health()` returns those
rows together with TimescaleDB's own `timescaledb_information.jobs` / `job_stats`, so a failed
job is visible (`JobHealth.failed`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from core.config import StorageConfig
from core.errors import SinkError
from storage.db import Database
from storage.migrate import applied_migrations
from storage.partitions import drop_partitions_before, ensure_partitions, utc_day
from storage.sqlfiles import fetch_all, fetch_one, query

log = logging.getLogger(__name__)

ROLLUP_LOCK = 0x67770003
_FAR_FUTURE = datetime(9999, 12, 31, tzinfo=UTC)
_ORIGIN = datetime(2000, 1, 1, tzinfo=UTC)
CAGG_START_OFFSET_DAYS = 3


def floor_time(dt: datetime, step: timedelta) -> datetime:
    """`dt` floored to a multiple of `step` since 2000-01-01 UTC (time_bucket / date_bin)."""
    dt = dt.astimezone(UTC)
    return _ORIGIN + ((dt - _ORIGIN) // step) * step


@dataclass(frozen=True, slots=True)
class JobHealth:
    """State of one background job: a TimescaleDB policy or GridWatch's own maintenance.

    `origin` is "timescaledb" or "gridwatch"; `last_status` is "Success"/"Failed"/"never" for
    TimescaleDB and "success"/"failed"/"never" for GridWatch's jobs.
    """

    origin: str
    name: str
    target: str
    job_id: int | None
    last_status: str
    last_run_at: datetime | None
    last_success_at: datetime | None
    total_runs: int
    total_failures: int
    next_start: datetime | None
    last_error: str
    scheduled: bool = True

    @property
    def failed(self) -> bool:
        """True when the job's last run failed."""
        return self.last_status.lower() == "failed"

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (datetimes as ISO strings)."""
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        d["failed"] = self.failed
        return d


@dataclass
class MaintenanceReport:
    """What one `maintain()` run did."""

    backend: str
    partitions_created: list[str] = field(default_factory=list)
    partitions_dropped: list[str] = field(default_factory=list)
    chunks_dropped: list[str] = field(default_factory=list)
    chunks_compressed: list[str] = field(default_factory=list)
    policies_changed: list[str] = field(default_factory=list)
    rollup_rows_deleted: int = 0
    rollups_refreshed: bool = False
    errors: list[str] = field(default_factory=list)


@asynccontextmanager
async def _job(db: Database, name: str, watermark: list[datetime | None] | None = None) -> AsyncIterator[None]:
    """Record a run of GridWatch job `name` in storage_jobs (success or failure)."""
    try:
        async with db.connection() as conn:
            await conn.execute(query("maintenance.sql", "job_started"), {"name": name})
    except SinkError as e:  # the bookkeeping must not hide the real work's outcome
        log.warning("cannot record start of job %s: %s", name, e)
    try:
        yield
    except BaseException as e:
        try:
            async with db.connection() as conn:
                await conn.execute(query("maintenance.sql", "job_failed"), {"name": name, "error": str(e)[:2000]})
        except SinkError as e2:
            log.warning("cannot record failure of job %s: %s", name, e2)
        raise
    try:
        async with db.connection() as conn:
            await conn.execute(query("maintenance.sql", "job_succeeded"),
                               {"name": name, "watermark": watermark[0] if watermark else None})
    except SinkError as e:
        log.warning("cannot record success of job %s: %s", name, e)


# --------------------------------------------------------------------------- rollups

async def refresh_rollups(db: Database, since: datetime, until: datetime | None = None) -> None:
    """Bring `readings_15m` and `readings_1h` up to date for readings with ts >= `since`.

    Call it after writes with the earliest ts written (`ReadingWriter.pop_dirty_since()`):
    every bucket from the one containing `since` up to `until` (default: the end) is
    re-aggregated, so late data corrects its buckets. Errors are translated
    (`SinkUnavailable` / `SinkRejected`).
    """
    if since.tzinfo is None:
        raise ValueError("refresh_rollups: since must be timezone-aware")
    mark: list[datetime | None] = [floor_time(since, timedelta(minutes=15))]  # storage_jobs.watermark
    async with _job(db, "rollups", mark):
        if db.backend == "timescaledb":
            await _refresh_caggs(db, since, until)
        else:
            await _refresh_tables(db, since, until)


async def _refresh_tables(db: Database, since: datetime, until: datetime | None) -> datetime:
    lo15 = floor_time(since, timedelta(minutes=15))
    lo1h = floor_time(since, timedelta(hours=1))
    hi = _FAR_FUTURE if until is None else until
    hi1h = _FAR_FUTURE if until is None else floor_time(until, timedelta(hours=1)) + timedelta(hours=1)
    hi15 = _FAR_FUTURE if until is None else floor_time(until, timedelta(minutes=15)) + timedelta(minutes=15)
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        await conn.execute(query("maintenance.sql", "refresh_15m"), {"lo": lo15, "hi": max(hi, hi15)})
        await conn.execute(query("maintenance.sql", "refresh_1h"), {"lo": lo1h, "hi": hi1h})
    return lo15


async def _refresh_caggs(db: Database, since: datetime, until: datetime | None) -> None:
    async with db.connection() as conn:
        cur = await conn.execute(query("maintenance.sql", "oldest_chunk_start"))
        row = await fetch_one(cur)
        await conn.commit()
        oldest: datetime | None = row[0] if row else None
        if oldest is None:
            return  # no data at all
        await conn.set_autocommit(True)  # refresh_continuous_aggregate refuses transactions
        try:
            for view, step in (("readings_15m", timedelta(minutes=15)), ("readings_1h", timedelta(hours=1))):
                lo = floor_time(max(since, oldest), step)
                hi = None if until is None else floor_time(until, step) + step
                await conn.execute(
                    "CALL refresh_continuous_aggregate(%s::regclass, %s::timestamptz, %s::timestamptz)",
                    (view, lo, hi))
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)


# --------------------------------------------------------------------------- maintain

async def maintain(db: Database, now: datetime, cfg: StorageConfig) -> MaintenanceReport:
    """Partitions ahead and retention (PostgreSQL) or policies + their work by hand (TimescaleDB)."""
    if now.tzinfo is None:
        raise ValueError("maintain: now must be timezone-aware")
    report = MaintenanceReport(backend=db.backend)
    if db.backend == "timescaledb":
        await _maintain_timescale(db, now, cfg, report)
    else:
        await _maintain_postgres(db, now, cfg, report)
    return report


async def _maintain_postgres(db: Database, now: datetime, cfg: StorageConfig, report: MaintenanceReport) -> None:
    today = utc_day(now)
    days = [today + timedelta(days=k) for k in range(0, cfg.partition_ahead_days + 1)]
    cutoff = now - timedelta(days=cfg.retention_days)
    async with _job(db, "partitions"), db.connection() as conn:
        report.partitions_created = await ensure_partitions(conn, days)
        report.partitions_dropped = await drop_partitions_before(conn, cutoff)
    if report.partitions_created or report.partitions_dropped:
        log.info("partitions: created %s, dropped %s", report.partitions_created, report.partitions_dropped)
    # 15-minute rollups live as long as raw data (whole days, like the partitions); hourly
    # rollups are kept.
    day_cutoff = floor_time(cutoff, timedelta(days=1))
    async with _job(db, "rollup_retention"), db.connection() as conn:
        cur = await conn.execute("DELETE FROM readings_15m WHERE bucket < %s", (day_cutoff,))
        report.rollup_rows_deleted = max(cur.rowcount, 0)


async def apply_policies(db: Database, cfg: StorageConfig) -> list[str]:
    """TimescaleDB: make the compression, retention and aggregate policies match `cfg`.

    Returns the policies added or replaced. No-op on plain PostgreSQL.
    """
    if db.backend != "timescaledb":
        return []
    changed: list[str] = []
    start_offset = max(1, min(CAGG_START_OFFSET_DAYS, cfg.retention_days - 1))
    async with db.connection() as conn:
        cur = await conn.execute(
            "SELECT proc_name, hypertable_name, config FROM timescaledb_information.jobs WHERE job_id >= 1000")
        jobs = await fetch_all(cur)

        def find(proc: str, key: str, hypertable: str | None = None) -> str | None:
            for name, ht, config in jobs:
                if name == proc and (hypertable is None or ht == hypertable):
                    return str((config or {}).get(key))
            return None

        async def interval_equals(text: str | None, days: int) -> bool:
            if text is None:
                return False
            c = await conn.execute("SELECT %s::interval = make_interval(days => %s)", (text, days))
            r = await c.fetchone()
            return bool(r and r[0])

        current = find("policy_compression", "compress_after", "readings")
        if not await interval_equals(current, cfg.compress_after_days):
            if current is not None:
                await conn.execute("SELECT remove_compression_policy('readings', if_exists => true)")
            await conn.execute("SELECT add_compression_policy('readings', make_interval(days => %s))",
                               (cfg.compress_after_days,))
            changed.append(f"compression after {cfg.compress_after_days} days")
        current = find("policy_retention", "drop_after", "readings")
        if not await interval_equals(current, cfg.retention_days):
            if current is not None:
                await conn.execute("SELECT remove_retention_policy('readings', if_exists => true)")
            await conn.execute("SELECT add_retention_policy('readings', make_interval(days => %s))",
                               (cfg.retention_days,))
            changed.append(f"retention {cfg.retention_days} days")
        current = find("policy_retention", "drop_after", "readings_15m")
        if not await interval_equals(current, cfg.retention_days):
            if current is not None:
                await conn.execute("SELECT remove_retention_policy('readings_15m', if_exists => true)")
            await conn.execute("SELECT add_retention_policy('readings_15m', make_interval(days => %s))",
                               (cfg.retention_days,))
            changed.append(f"retention readings_15m {cfg.retention_days} days")
        # For a continuous aggregate's refresh policy, jobs.hypertable_name is the view's name.
        have = {str(ht) for name, ht, _ in jobs if name == "policy_refresh_continuous_aggregate"}
        for view, end_offset, every in (("readings_15m", "15 minutes", "5 minutes"),
                                        ("readings_1h", "1 hour", "15 minutes")):
            if view in have:
                continue
            await conn.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => make_interval(days => %s),"
                " end_offset => %s::interval, schedule_interval => %s::interval, if_not_exists => true)",
                (view, start_offset, end_offset, every))
            changed.append(f"refresh {view}")
    return changed


async def _maintain_timescale(db: Database, now: datetime, cfg: StorageConfig, report: MaintenanceReport) -> None:
    report.policies_changed = await apply_policies(db, cfg)
    # The policies' work, by hand: idempotent, cheap when there is nothing to do.
    async with _job(db, "retention"), db.connection() as conn:
        cur = await conn.execute("SELECT drop_chunks('readings', older_than => %s::timestamptz)",
                                 (now - timedelta(days=cfg.retention_days),))
        report.chunks_dropped = [str(r[0]) for r in await fetch_all(cur)]
        cur = await conn.execute("SELECT drop_chunks('readings_15m', older_than => %s::timestamptz)",
                                 (now - timedelta(days=cfg.retention_days),))
        report.chunks_dropped += [str(r[0]) for r in await fetch_all(cur)]
    async with _job(db, "compression"), db.connection() as conn:
        cur = await conn.execute(
            "SELECT compress_chunk(c, if_not_compressed => true)::text"
            " FROM show_chunks('readings', older_than => %s::timestamptz) c"
            " JOIN timescaledb_information.chunks i"
            "   ON format('%%I.%%I', i.chunk_schema, i.chunk_name)::regclass = c"
            " WHERE NOT i.is_compressed",
            (now - timedelta(days=cfg.compress_after_days),))
        report.chunks_compressed = [str(r[0]) for r in await fetch_all(cur)]
    health = await job_health(db)
    cagg_jobs = [j for j in health if j.origin == "timescaledb" and j.name == "policy_refresh_continuous_aggregate"]
    if len(cagg_jobs) < 2 or any(j.failed for j in cagg_jobs):
        await refresh_rollups(db, now - timedelta(days=CAGG_START_OFFSET_DAYS))
        report.rollups_refreshed = True


# --------------------------------------------------------------------------- health, status

async def ping(db: Database, timeout_s: float = 5.0) -> None:
    """Raise `SinkUnavailable` unless the database answers a trivial query within `timeout_s`."""
    async with db.connection() as conn, conn.transaction():
        await conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(int(timeout_s * 1000)),))
        await conn.execute("SELECT 1")


async def job_health(db: Database) -> list[JobHealth]:
    """TimescaleDB's policy jobs (if any) and GridWatch's own maintenance jobs."""
    out: list[JobHealth] = []
    async with db.connection() as conn:
        if db.backend == "timescaledb":
            cur = await conn.execute(query("maintenance.sql", "timescale_jobs"))
            for (job_id, app, proc, target, scheduled, started, success, status, runs, failures,
                 next_start, err) in await fetch_all(cur):
                out.append(JobHealth(origin="timescaledb", name=str(proc), target=str(target or app),
                                     job_id=int(job_id), last_status=str(status), last_run_at=started,
                                     last_success_at=success, total_runs=int(runs),
                                     total_failures=int(failures), next_start=next_start,
                                     last_error=str(err or ""), scheduled=bool(scheduled)))
        cur = await conn.execute(query("maintenance.sql", "storage_jobs"))
        for name, started, success, status, err, runs, failures, _mark in await fetch_all(cur):
            out.append(JobHealth(origin="gridwatch", name=str(name), target="", job_id=None,
                                 last_status=str(status), last_run_at=started, last_success_at=success,
                                 total_runs=int(runs), total_failures=int(failures), next_start=None,
                                 last_error=str(err or "")))
    return out


def _iso(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


async def db_status(db: Database) -> dict[str, Any]:
    """Backend, versions, migrations, partitions or chunks and job health (JSON-friendly)."""
    status: dict[str, Any] = {"backend": db.backend}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT current_setting('server_version'), current_database()")
        row = await fetch_one(cur)
        status["server_version"], status["database"] = (str(row[0]), str(row[1])) if row else ("", "")
        cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'")
        row = await fetch_one(cur)
        status["timescaledb_version"] = str(row[0]) if row else None
        cur = await conn.execute("SELECT to_regclass('readings') IS NOT NULL")
        row = await fetch_one(cur)
        has_readings = bool(row and row[0])
        if has_readings and db.backend == "postgres":
            cur = await conn.execute(query("maintenance.sql", "partition_stats"))
            status["partitions"] = [{"name": r[0], "bound": r[1], "rows_estimate": max(int(r[2]), 0),
                                     "bytes": int(r[3])} for r in await fetch_all(cur)]
        elif has_readings:
            cur = await conn.execute(query("maintenance.sql", "chunk_stats"))
            status["chunks"] = [{"name": r[0], "start": _iso(r[1]), "end": _iso(r[2]), "compressed": bool(r[3])}
                                for r in await fetch_all(cur)]
    status["migrations"] = [m.file for m in await applied_migrations(db)]
    try:
        jobs = await job_health(db)
    except SinkError as e:
        status["jobs_error"] = str(e)
        jobs = []
    status["jobs"] = [j.as_dict() for j in jobs]
    status["failed_jobs"] = [j.name for j in jobs if j.failed]
    return status

