"""The hand-built binary COPY encoding round-trips exactly through PostgreSQL."""

from __future__ import annotations

import math
import struct
from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.records import Quality, Reading
from storage.copyfmt import COPY_HEADER, COPY_TRAILER, EncodeError, encode_readings, pg_micros
from storage.db import Database
from storage.writer import ReadingWriter
from tests.storage.conftest import ensure_days


def test_pg_micros() -> None:
    assert pg_micros(datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert pg_micros(datetime(2000, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))) == 0
    assert pg_micros(datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
    with pytest.raises(EncodeError, match="naive"):
        pg_micros(datetime(2026, 1, 1))


def test_layout() -> None:
    ts = datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)
    data = encode_readings([Reading(point_id=3, ts=ts, value=1.5, quality=Quality.INVALID, received_at=ts)])
    assert data.startswith(COPY_HEADER) and data.endswith(COPY_TRAILER)
    row = data[len(COPY_HEADER):-len(COPY_TRAILER)]
    assert struct.unpack(">hiiiqidiiiq", row) == (5, 4, 3, 8, 1_000_000, 8, 1.5, 4, 0x80, 8, 1_000_000)


@pytest.mark.integration
async def test_round_trip(any_db: Database) -> None:
    base = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    await ensure_days(any_db, base - timedelta(days=1), 3)
    plus5 = timezone(timedelta(hours=5))
    values = [0.0, -1.25, 1e308, -1e-308, math.pi, float("inf"), float("-inf"), float("nan")]
    batch = []
    for i, v in enumerate(values):
        ts = base + timedelta(microseconds=123457 * i, days=-1 if i % 3 == 0 else 0)
        if i % 2:
            ts = ts.astimezone(plus5)  # aware but not UTC
        q = Quality(0x80 | 0x2000 | 0x20_0000) if i == 1 else Quality.GOOD
        batch.append(Reading(point_id=2**31 - 1 - i, ts=ts, value=v, quality=q, received_at=ts + timedelta(seconds=1)))
    await ReadingWriter(any_db).write(batch)
    async with any_db.connection() as conn:
        cur = await conn.execute("SELECT point_id, ts, value, quality, received_at FROM readings ORDER BY point_id DESC")
        rows = await cur.fetchall()
    assert len(rows) == len(batch)
    for r, (pid, ts, value, quality, received_at) in zip(batch, rows, strict=True):
        assert pid == r.point_id and ts == r.ts and received_at == r.received_at and quality == int(r.quality)
        assert (math.isnan(value) and math.isnan(r.value)) or value == r.value
