"""One query API over both backends: raw readings or 15-minute / hourly / daily aggregates.

`step="auto"` picks raw readings for ranges up to 6 hours, 15-minute buckets up to 8 days,
hourly up to 93 days and daily beyond. Daily rows are computed from the hourly aggregate.
Aggregates skip bad-quality readings (INVALID, OUT_OF_RANGE, COMM_FAIL) and NaN.
`increase` is last minus the previous bucket's last (the interval delta of an energy counter,
which `delta` = last - first inside one bucket misses when a meter is read once per bucket).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, LiteralString

from storage.db import Database
from storage.maintenance import floor_time
from storage.sqlfiles import fetch_all, query

Step = Literal["raw", "15m", "1h", "1d", "auto"]
STEPS: dict[str, timedelta] = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "1d": timedelta(days=1)}
AUTO_LIMITS: tuple[tuple[timedelta, str], ...] = (
    (timedelta(hours=6), "raw"),
    (timedelta(days=8), "15m"),
    (timedelta(days=93), "1h"),
)


@dataclass(frozen=True, slots=True)
class ReadingRow:
    """A raw reading (`step == "raw"`) or an aggregate bucket starting at `ts`.

    For raw rows min = max = first = last = value, count = 1 and `quality` is set; for
    aggregates `value` is the average and `quality` is None.
    """

    point_id: int
    ts: datetime
    value: float | None
    min: float | None
    max: float | None
    first: float | None
    last: float | None
    count: int
    step: str
    quality: int | None = None
    delta: float | None = None
    increase: float | None = None

    @classmethod
    def from_raw(cls, row: Sequence[Any]) -> ReadingRow:
        """From (point_id, ts, value, quality)."""
        v = row[2]
        return cls(int(row[0]), row[1], v, v, v, v, v, 1, "raw", int(row[3]))

    @classmethod
    def from_agg(cls, row: Sequence[Any], step: str) -> ReadingRow:
        """From (point_id, bucket, avg, min, max, first, last, count, delta, increase)."""
        return cls(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], int(row[7]), step,
                   None, row[8], row[9])


@dataclass(frozen=True, slots=True)
class LatestReading:
    """The newest stored reading of a point."""

    point_id: int
    ts: datetime
    value: float | None
    quality: int
    received_at: datetime | None


def choose_step(start: datetime, end: datetime, step: str = "auto") -> str:
    """The step `query_readings` uses for this range: `step` itself unless it is "auto"."""
    if step != "auto":
        if step != "raw" and step not in STEPS:
            raise ValueError(f"step must be one of raw, 15m, 1h, 1d, auto (got {step!r})")
        return step
    span = end - start
    for limit, name in AUTO_LIMITS:
        if span <= limit:
            return name
    return "1d"


async def query_readings(db: Database, point_ids: Sequence[int], start: datetime, end: datetime,
                         step: str = "auto") -> list[ReadingRow]:
    """Readings of `point_ids` in [start, end), raw or aggregated, ordered by point and time.

    Aggregate buckets are included from the one containing `start`; `end` is exclusive.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("query_readings: start and end must be timezone-aware")
    chosen = choose_step(start, end, step)
    ids = sorted({int(i) for i in point_ids})
    if not ids or end <= start:
        return []
    async with db.connection() as conn:
        if chosen == "raw":
            cur = await conn.execute(query("readings.sql", "raw"), {"ids": ids, "start": start, "end": end})
            return [ReadingRow.from_raw(r) for r in await fetch_all(cur)]
        width = STEPS[chosen]
        lo = floor_time(start, width)
        name: LiteralString = {"15m": "agg_15m", "1h": "agg_1h", "1d": "agg_1d"}[chosen]
        cur = await conn.execute(query("readings.sql", name),
                                 {"ids": ids, "start": lo, "lookback": lo - width, "end": end})
        rows = [ReadingRow.from_agg(r, chosen) for r in await fetch_all(cur)]
    if chosen == "1d":  # the lookback day only served the lag() of `increase`
        rows = [r for r in rows if r.ts >= lo]
    return rows


async def latest_readings(db: Database, point_ids: Sequence[int]) -> dict[int, LatestReading]:
    """The newest reading of each point that has one (metering-point status, last update)."""
    ids = sorted({int(i) for i in point_ids})
    if not ids:
        return {}
    async with db.connection() as conn:
        cur = await conn.execute(query("readings.sql", "latest"), {"ids": ids})
        return {int(r[0]): LatestReading(int(r[0]), r[1], r[2], int(r[3]), r[4]) for r in await fetch_all(cur)}
