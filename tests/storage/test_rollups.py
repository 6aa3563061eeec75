"""Rollups / continuous aggregates against a direct SQL aggregate, late data, counters, queries."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from core.records import Quality, Reading
from storage.db import Database
from storage.maintenance import refresh_rollups
from storage.readings import latest_readings, query_readings
from storage.writer import ReadingWriter
from tests.storage.conftest import T0, ensure_days

pytestmark = pytest.mark.integration

ANALOG, COUNTER, NOISY = 1, 2, 3
START = T0 + timedelta(hours=22, minutes=7)  # crosses midnight: two days


def dataset() -> list[Reading]:
    out = []
    for k in range(240):  # every minute for 4 hours
        ts = START + timedelta(minutes=k)
        out.append(Reading(point_id=ANALOG, ts=ts, value=math.sin(k / 7) * 100, quality=Quality.GOOD, received_at=ts))
        out.append(Reading(point_id=COUNTER, ts=ts, value=5000.0 + 2.5 * k, quality=Quality.GOOD, received_at=ts))
        q = Quality.INVALID if k % 5 == 0 else (Quality.OUT_OF_RANGE if k % 7 == 0 else Quality.SUBSTITUTED)
        v = float("nan") if k % 11 == 0 else float(k % 13)
        out.append(Reading(point_id=NOISY, ts=ts, value=v, quality=q, received_at=ts))
    return out


def direct_sql(width: str) -> str:
    return f"""
    SELECT point_id, date_bin(INTERVAL '{width}', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS b,
           avg(value), min(value), max(value),
           (array_agg(value ORDER BY ts))[1], (array_agg(value ORDER BY ts DESC))[1], count(*)
    FROM readings WHERE (quality & 528512) = 0 AND value <> 'NaN'::float8
    GROUP BY 1, 2 ORDER BY 1, 2"""


async def fetch(db: Database, sql: str) -> list[tuple[Any, ...]]:
    async with db.connection() as conn:
        cur = await conn.execute(sql)  # type: ignore[arg-type]
        return [tuple(r) for r in await cur.fetchall()]


def norm(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in r) for r in rows]


async def assert_rollups_match(db: Database) -> None:
    for table, width in (("readings_15m", "15 minutes"), ("readings_1h", "1 hour")):
        got = await fetch(db, f"SELECT point_id, bucket, avg, min, max, first, last, count FROM {table} ORDER BY 1, 2")
        want = await fetch(db, direct_sql(width))
        assert norm(got) == norm(want), table
        deltas = await fetch(db, f"SELECT count(*) FROM {table} WHERE delta IS DISTINCT FROM last - first")
        assert deltas == [(0,)]


async def test_rollups_match_direct_aggregate_with_late_data(any_db: Database) -> None:
    await ensure_days(any_db, T0, 3)
    w = ReadingWriter(any_db)
    data = dataset()
    await w.write(data)
    since = w.pop_dirty_since()
    assert since == START
    await refresh_rollups(any_db, since)
    await assert_rollups_match(any_db)
    n15 = await fetch(any_db, "SELECT count(*) FROM readings_15m WHERE point_id = 1")
    assert n15 == [(17,)]  # 22:07 .. 02:06 touches 17 quarter hours

    # Late data: into an already aggregated bucket, plus a correction-free replay of old rows.
    late_ts = START + timedelta(minutes=38, seconds=30)
    late = [Reading(point_id=ANALOG, ts=late_ts, value=1e6, quality=Quality.GOOD, received_at=late_ts + timedelta(hours=3)),
            Reading(point_id=COUNTER, ts=late_ts, value=5000.0 + 2.5 * 38.5, quality=Quality.LATE, received_at=late_ts)]
    await w.write(late + data[:30])
    since = w.pop_dirty_since()
    assert since == START
    await refresh_rollups(any_db, late_ts)
    await assert_rollups_match(any_db)
    mx = await fetch(any_db, f"SELECT max FROM readings_15m WHERE point_id = 1 AND bucket = '{late_ts.replace(minute=45, second=0).isoformat()}'")
    assert mx == [(1e6,)]


async def test_query_steps_and_counter_increase(any_db: Database) -> None:
    await ensure_days(any_db, T0, 3)
    w = ReadingWriter(any_db)
    await w.write(dataset())
    await refresh_rollups(any_db, START)
    end = START + timedelta(hours=4)

    raw = await query_readings(any_db, [COUNTER], START, START + timedelta(hours=1))
    assert {r.step for r in raw} == {"raw"} and len(raw) == 60
    assert raw[0].ts == START and raw[0].value == 5000.0 and raw[0].quality == 0 and raw[0].count == 1

    q15 = await query_readings(any_db, [COUNTER, ANALOG], START, end, step="15m")
    assert [r.point_id for r in q15] == sorted(r.point_id for r in q15)
    counter = [r for r in q15 if r.point_id == COUNTER]
    assert counter[0].ts == START.replace(minute=0)  # the bucket containing start
    assert counter[0].increase is None  # nothing before it
    # A full quarter hour of a counter growing 2.5/min: delta inside = 14 * 2.5, increase = 15 * 2.5.
    full = counter[2]
    assert full.count == 15 and full.delta == pytest.approx(35.0) and full.increase == pytest.approx(37.5)
    assert full.value == pytest.approx((full.first + full.last) / 2)  # type: ignore[operator]

    h = await query_readings(any_db, [COUNTER], START, end, step="1h")
    assert [r.count for r in h] == [53, 60, 60, 60, 7]
    assert sum(r.count for r in h) == 240
    assert h[1].increase == pytest.approx(60 * 2.5)

    d = await query_readings(any_db, [COUNTER, NOISY], START, end, step="1d")
    want = await fetch(any_db, direct_sql("1 day"))
    want = [r for r in want if r[0] in (COUNTER, NOISY)]
    got = [(r.point_id, r.ts, r.value, r.min, r.max, r.first, r.last, r.count) for r in d]
    assert norm(got) == norm(want)
    assert d[1].increase == pytest.approx(d[1].last - d[0].last)  # type: ignore[operator]

    # auto: 4 hours -> raw; 3 days -> 15m; 30 days -> 1h; a year -> 1d
    assert {r.step for r in await query_readings(any_db, [ANALOG], START, end)} == {"raw"}
    assert {r.step for r in await query_readings(any_db, [ANALOG], START, START + timedelta(days=3))} == {"15m"}
    assert {r.step for r in await query_readings(any_db, [ANALOG], START, START + timedelta(days=30))} == {"1h"}
    assert {r.step for r in await query_readings(any_db, [ANALOG], START, START + timedelta(days=365))} == {"1d"}
    assert await query_readings(any_db, [], START, end) == []

    latest = await latest_readings(any_db, [ANALOG, COUNTER, 999])
    assert set(latest) == {ANALOG, COUNTER}
    assert latest[COUNTER].ts == START + timedelta(minutes=239) and latest[COUNTER].value == 5000.0 + 2.5 * 239
