"""`ReadingWriter`: the storage `Sink` — binary COPY of reading batches, all or nothing.

Fast path: one binary COPY straight into `readings` inside a transaction. When the batch
contains a (point_id, ts) already stored (a replay after a spool or a retry whose commit
reached the server) the COPY fails on the primary key; the writer then COPYs the batch into
a session-local temporary staging table and runs `INSERT ... SELECT ... ON CONFLICT
(point_id, ts) DO NOTHING`. The first stored value wins: replays never duplicate and never
overwrite; corrections of stored values go through the archive (with an audit trail).

On plain PostgreSQL a row whose day has no partition yet fails the COPY; the writer creates
the partitions of the batch's days and retries, so nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import errors as pgerr

from core.errors import SinkRejected, SinkUnavailable
from core.records import Reading
from storage.copyfmt import READING_COLUMNS, EncodeError, encode_readings
from storage.db import Database, translate
from storage.partitions import ensure_partitions, utc_day

_COPY_DIRECT = "COPY readings (point_id, ts, value, quality, received_at) FROM STDIN (FORMAT BINARY)"
_STAGE_CREATE = ("CREATE TEMP TABLE IF NOT EXISTS readings_stage "
                 "(point_id integer, ts timestamptz, value double precision, quality integer, "
                 "received_at timestamptz) ON COMMIT DELETE ROWS")
_COPY_STAGE = "COPY readings_stage (point_id, ts, value, quality, received_at) FROM STDIN (FORMAT BINARY)"
_STAGE_INSERT = ("INSERT INTO readings (point_id, ts, value, quality, received_at) "
                 "SELECT point_id, ts, value, quality, received_at FROM readings_stage "
                 "ON CONFLICT (point_id, ts) DO NOTHING")
_CHUNK = 1 << 20
assert READING_COLUMNS in _COPY_DIRECT


@dataclass
class WriterStats:
    """Counters of one writer (exported by the collector as metrics)."""

    batches: int = 0
    rows: int = 0  # rows in batches written successfully
    inserted: int = 0  # rows actually new (rows - duplicates)
    duplicates: int = 0  # rows already stored (replays), skipped
    fallbacks: int = 0  # batches that needed the staging path
    partitions_created: int = 0
    rejected: int = 0  # batches refused for their content
    failed: int = 0  # batches that failed for database trouble
    write_seconds: float = 0.0  # total seconds spent in write()
    last_write_seconds: float = 0.0


def _is_missing_partition(e: BaseException) -> bool:
    return isinstance(e, pgerr.CheckViolation) and "no partition" in str(e)


class ReadingWriter:
    """Writes reading batches to `readings` (satisfies `core.interfaces.Sink`).

    `write_timeout_s` bounds each statement (server-side `statement_timeout`); a timeout or a
    lost connection raises `SinkUnavailable` (spool and retry), bad content `SinkRejected`.
    """

    def __init__(self, db: Database, *, write_timeout_s: float | None = 30.0) -> None:
        self.db = db
        self.stats = WriterStats()
        self._timeout_ms = int(write_timeout_s * 1000) if write_timeout_s else 0
        self._dirty_since: datetime | None = None

    def pop_dirty_since(self) -> datetime | None:
        """The earliest `ts` written since the last call (for `refresh_rollups`), then reset."""
        d, self._dirty_since = self._dirty_since, None
        return d

    @property
    def dirty_since(self) -> datetime | None:
        """The earliest `ts` written since the last `pop_dirty_since()`."""
        return self._dirty_since

    async def write(self, batch: Sequence[Reading]) -> None:
        """Store `batch` all or nothing; a replay of stored rows creates no duplicates."""
        if not batch:
            return
        t0 = time.perf_counter()
        try:
            try:
                data = encode_readings(batch)
            except EncodeError as e:
                self.stats.rejected += 1
                raise SinkRejected(f"readings: {e}") from e
            try:
                inserted = await self._write(batch, data)
            except SinkRejected:
                self.stats.rejected += 1
                raise
            except SinkUnavailable:
                self.stats.failed += 1
                raise
        finally:
            dt = time.perf_counter() - t0
            self.stats.write_seconds += dt
            self.stats.last_write_seconds = dt
        self.stats.batches += 1
        self.stats.rows += len(batch)
        self.stats.inserted += inserted
        self.stats.duplicates += len(batch) - inserted
        lo = min(r.ts for r in batch)
        if self._dirty_since is None or lo < self._dirty_since:
            self._dirty_since = lo

    async def _write(self, batch: Sequence[Reading], data: bytes) -> int:
        staged = False
        for _attempt in range(4):
            try:
                async with self.db.pool.connection() as conn:
                    try:
                        if not staged:
                            await self._copy_direct(conn, data)
                            return len(batch)
                        return await self._copy_staged(conn, data)
                    except pgerr.UniqueViolation:
                        if staged:
                            raise
                        staged = True
                        self.stats.fallbacks += 1
                    except pgerr.CheckViolation as e:
                        if not _is_missing_partition(e) or self.db.backend != "postgres":
                            raise
                        created = await ensure_partitions(conn, {utc_day(r.ts) for r in batch})
                        self.stats.partitions_created += len(created)
            except psycopg.Error as e:
                raise translate(e, f"write of {len(batch)} readings") from e
        raise SinkUnavailable(f"write of {len(batch)} readings: gave up after repeated retries")

    async def _set_timeout(self, conn: psycopg.AsyncConnection[Any]) -> None:
        if self._timeout_ms:
            await conn.execute("SELECT set_config('statement_timeout', %s, true)", (str(self._timeout_ms),))

    async def _copy_direct(self, conn: psycopg.AsyncConnection[Any], data: bytes) -> None:
        async with conn.transaction():
            await self._set_timeout(conn)
            cur = conn.cursor()
            view = memoryview(data)
            async with cur.copy(_COPY_DIRECT) as copy:
                for i in range(0, len(data), _CHUNK):
                    await copy.write(view[i:i + _CHUNK])

    async def _copy_staged(self, conn: psycopg.AsyncConnection[Any], data: bytes) -> int:
        async with conn.transaction():
            await self._set_timeout(conn)
            await conn.execute(_STAGE_CREATE)
            cur = conn.cursor()
            view = memoryview(data)
            async with cur.copy(_COPY_STAGE) as copy:
                for i in range(0, len(data), _CHUNK):
                    await copy.write(view[i:i + _CHUNK])
            cur = await conn.execute(_STAGE_INSERT)
            return max(cur.rowcount, 0)
