"""The raw binary-COPY ceiling of the database in use (for `gridwatch bench ingest`)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from psycopg import sql

from core.records import Quality, Reading
from storage.copyfmt import encode_readings
from storage.db import Database
from storage.partitions import day_bounds

_SCRATCH = "gw_bench_scratch"


def synthetic_readings(n_points: int, rows: int, start: datetime | None = None) -> list[Reading]:
    """`rows` readings of `n_points` points, one per point per second from `start`."""
    t0 = start or datetime(2030, 1, 1, tzinfo=UTC)
    n = max(1, n_points)
    stamps = [t0 + timedelta(seconds=k) for k in range(rows // n + 1)]
    return [Reading(point_id=1 + i % n, ts=stamps[i // n], value=float(i % 1000), quality=Quality.GOOD,
                    received_at=stamps[i // n]) for i in range(rows)]


async def copy_ceiling(db: Database, n_points: int, rows: int, *, batch_rows: int = 50_000) -> float:
    """Rows/s of raw binary COPY of `rows` synthetic readings into a scratch table.

    The scratch table has the schema and indexes (primary key, BRIN on ts) of `readings` and its layout on this
    backend (daily partitions on PostgreSQL, a 1-day-chunk hypertable on TimescaleDB); the
    COPY buffers are encoded before timing starts, so this is the server's ceiling. The
    table is dropped afterwards.
    """
    data = synthetic_readings(n_points, rows)
    if not data:
        return 0.0
    buffers = [encode_readings(data[i:i + batch_rows]) for i in range(0, len(data), batch_rows)]
    days = sorted({r.ts.date() for r in (data[0], data[-1])})
    table = sql.Identifier(_SCRATCH)
    async with db.connection() as conn:
        await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        cols = sql.SQL("point_id integer NOT NULL, ts timestamptz NOT NULL, value double precision,"
                       " quality integer NOT NULL DEFAULT 0, received_at timestamptz, PRIMARY KEY (point_id, ts)")
        if db.backend == "timescaledb":
            await conn.execute(sql.SQL("CREATE TABLE {} ({})").format(table, cols))
            await conn.execute("SELECT create_hypertable(%s::regclass, by_range('ts', INTERVAL '1 day'),"
                               " create_default_indexes => false)", (_SCRATCH,))
        else:
            await conn.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY RANGE (ts)").format(table, cols))
            d = days[0]
            while d <= days[-1]:
                lo, hi = day_bounds(d)
                await conn.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(f"{_SCRATCH}_{d:%Y%m%d}"), table, sql.Literal(lo), sql.Literal(hi)))
                d += timedelta(days=1)
        await conn.execute(sql.SQL("CREATE INDEX ON {} USING brin (ts)").format(table))
        await conn.commit()
        try:
            copy_stmt = sql.SQL("COPY {} (point_id, ts, value, quality, received_at) FROM STDIN (FORMAT BINARY)"
                                ).format(table)
            t0 = time.perf_counter()
            for buf in buffers:
                async with conn.cursor().copy(copy_stmt) as copy:
                    await copy.write(buf)
                await conn.commit()
            elapsed = time.perf_counter() - t0
        finally:
            await conn.rollback()
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(table))
            await conn.commit()
    return len(data) / elapsed if elapsed > 0 else float("inf")
