"""Schedule tables: versioned plans, per-hour measurements of points, and results.

Plain data in, plain data out: the schedule detector (detectors/schedule) does the arithmetic.
Queries are the named queries of `storage/sql/schedule.sql`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from psycopg.rows import dict_row

from core.records import BAD_QUALITY
from storage.db import Database
from storage.sqlfiles import fetch_all, fetch_one, query

_F = "schedule.sql"


@dataclass(frozen=True, slots=True)
class PlanHourRow:
    """One hour of a plan to store."""

    hour: int
    hour_start: datetime
    plan_mwh: float


@dataclass(frozen=True, slots=True)
class PlanVersionRow:
    """A plan for one (day, subject) to store as its next version."""

    day: date
    subject: str
    unit: str
    hours: Sequence[PlanHourRow]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """What an import stored: the new version number of (day, subject)."""

    day: date
    subject: str
    version: int


@dataclass(frozen=True, slots=True)
class CounterSpan:
    """Baseline and last good reading of an energy counter in one hour (None when absent)."""

    base_ts: datetime | None
    base_value: float | None
    last_ts: datetime | None
    last_value: float | None


RESULT_COLUMNS = ("entity", "entity_kind", "zone", "hour_start", "hour_end", "day", "hour", "plan_mwh", "actual_mwh",
                  "projected_mwh", "deviation_mwh", "deviation_pct", "band_mwh", "completeness", "verdict", "final",
                  "plan_version", "computed_at")


class ScheduleStore:
    """Plans and results of schedule execution control, on an open `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def import_plans(self, plans: Sequence[PlanVersionRow], *, actor: str, source: str = "",
                           comment: str = "") -> list[StoredVersion]:
        """Store every plan as a new version in ONE transaction: all or nothing."""
        out: list[StoredVersion] = []
        async with self.db.connection() as conn:
            async with conn.transaction():
                await conn.execute(query(_F, "lock_plans"))
                for p in plans:
                    cur = await conn.execute(query(_F, "next_version"), {"day": p.day, "subject": p.subject})
                    row = await fetch_one(cur)
                    version = int(row[0]) if row else 1
                    cur = await conn.execute(query(_F, "insert_version"), {
                        "day": p.day, "subject": p.subject, "version": version, "unit": p.unit,
                        "hours": len(p.hours), "actor": actor, "source": source, "comment": comment})
                    vrow = await fetch_one(cur)
                    assert vrow is not None
                    vid = vrow[0]
                    async with conn.cursor() as c2:
                        await c2.executemany(query(_F, "insert_hour"), [
                            {"version_id": vid, "hour": h.hour, "hour_start": h.hour_start, "plan_mwh": h.plan_mwh}
                            for h in p.hours])
                    out.append(StoredVersion(p.day, p.subject, version))
        return out

    async def plans_at(self, hour_start: datetime) -> dict[str, tuple[float, int]]:
        """subject -> (planned MWh, version) in force for the hour starting at `hour_start`."""
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "plans_at"), {"hour_start": hour_start})
            return {str(r[0]): (float(r[1]), int(r[2])) for r in await fetch_all(cur)}

    async def plan_history(self, day: date, subject: str | None = None) -> list[dict[str, Any]]:
        """Every version of the plans of `day` (optionally one subject), oldest first."""
        async with self.db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query(_F, "plan_history"), {"day": day, "subject": subject})
            return list(await cur.fetchall())

    async def point_ids(self, names: Sequence[str]) -> dict[str, int]:
        """name -> id of the registered points among `names`."""
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "point_ids"), {"names": list(names)})
            return {str(r[0]): int(r[1]) for r in await fetch_all(cur)}

    async def counter_spans(self, ids: Sequence[int], start: datetime, end: datetime,
                            tol: timedelta) -> dict[int, CounterSpan]:
        """Baseline and last good reading of each energy counter in `[start - tol, end]`."""
        if not ids:
            return {}
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "counter_energy"), {
                "ids": list(ids), "start": start, "end": end, "tol": tol, "bad": int(BAD_QUALITY)})
            return {int(r[0]): CounterSpan(r[1], r[2], r[3], r[4]) for r in await fetch_all(cur)}

    async def power_energy(self, ids: Sequence[int], start: datetime, end: datetime,
                           max_gap_s: float) -> dict[int, tuple[float, float]]:
        """point id -> (integral of power over the window in unit*h, covered seconds)."""
        if not ids:
            return {}
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "power_energy"), {
                "ids": list(ids), "start": start, "end": end, "max_gap": float(max_gap_s), "bad": int(BAD_QUALITY)})
            return {int(r[0]): (float(r[1] or 0.0), float(r[2] or 0.0)) for r in await fetch_all(cur)}

    async def upsert_results(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert or replace result rows (keys: RESULT_COLUMNS) in one transaction."""
        if not rows:
            return
        async with self.db.connection() as conn:
            async with conn.transaction():
                async with conn.cursor() as cur:
                    await cur.executemany(query(_F, "upsert_result"), [dict(r) for r in rows])

    async def results_at(self, hour_start: datetime) -> dict[str, dict[str, Any]]:
        """entity -> stored result row of the hour starting at `hour_start`."""
        async with self.db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query(_F, "results_at"), {"hour_start": hour_start})
            return {str(r["entity"]): r for r in await cur.fetchall()}

    async def results(self, day: date, entity: str | None = None) -> list[dict[str, Any]]:
        """Result rows of the operating day `day` (optionally one subject or zone)."""
        async with self.db.connection() as conn:
            cur = conn.cursor(row_factory=dict_row)
            await cur.execute(query(_F, "results_day"), {"day": day, "entity": entity})
            return list(await cur.fetchall())

    async def last_final_end(self) -> datetime | None:
        """End of the latest hour with a final result (None when there is none)."""
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "last_final_end"))
            row = await fetch_one(cur)
            return row[0] if row else None

    async def open_hours_before(self, before: datetime) -> list[datetime]:
        """Start of every hour with a result not yet final that started before `before`."""
        async with self.db.connection() as conn:
            cur = await conn.execute(query(_F, "open_hours_before"), {"before": before})
            return [r[0] for r in await fetch_all(cur)]
