"""The metering archive: range queries, CSV and 80020 XML export, metering-point status, and
manual corrections with four-eyes confirmation.

Corrections: `propose_correction` keeps the reading's original value and quality in
`corrections`; `decide_correction` by a *different* user applies it (the reading gets the new
value flagged `Quality.MANUAL`; a missing reading is inserted) or rejects it, then refreshes the
affected rollup buckets. Journaling and schedule recomputation are the caller's (the API's)
job, so this module stays plain storage.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import psycopg

from core.errors import GridWatchError, SinkRejected
from core.records import BAD_QUALITY, Quality
from storage.db import Database
from storage.maintenance import refresh_rollups
from storage.partitions import ensure_partitions, utc_day
from storage.readings import ReadingRow, query_readings
from storage.sqlfiles import fetch_all, fetch_one, query

_F = "archive.sql"


class ArchiveError(GridWatchError):
    """An archive request cannot be served; the message names what is wrong."""


class CorrectionError(ArchiveError):
    """A correction step was refused (unknown id, wrong state, same user, stale original)."""


class FourEyesError(CorrectionError):
    """The user who proposed a correction tried to confirm it."""


@dataclass(frozen=True, slots=True)
class Correction:
    """A manual correction and its decision."""

    id: int
    point_id: int
    point: str
    ts: datetime
    original_existed: bool
    original_value: float | None
    original_quality: int | None
    new_value: float
    reason: str
    state: str
    proposed_by: str
    proposed_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    decision_comment: str

    @classmethod
    def from_row(cls, r: Sequence[Any]) -> Correction:
        """From the columns of `get_correction` / `list_corrections`."""
        return cls(int(r[0]), int(r[1]), str(r[2] or ""), r[3], bool(r[4]), r[5], r[6], float(r[7]), str(r[8]),
                   str(r[9]), str(r[10]), r[11], r[12], r[13], str(r[14] or ""))

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (datetimes as ISO strings)."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class PointStatus:
    """Metering-point status: active when its newest reading is recent enough."""

    point_id: int
    name: str
    device: str
    subject: str
    zone: str
    unit: str
    kind: str
    enabled: bool
    state: str  # active | inactive | never
    last_ts: datetime | None
    last_received_at: datetime | None
    last_mode: str | None  # automatic | manual
    last_quality: int | None
    last_manual_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True, slots=True)
class PointRef:
    """A point as exports need it: id, name, unit, kind and its metering code (meta.code)."""

    id: int
    name: str
    unit: str
    kind: str
    code: str
    channel: str


async def points_by_name(db: Database, names: Sequence[str]) -> list[PointRef]:
    """Resolve point names; `ArchiveError` names the first unknown one."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_F, "points_by_name"), {"names": list(names)})
        rows = {str(r[1]): r for r in await fetch_all(cur)}
    out = []
    for n in names:
        r = rows.get(n)
        if r is None:
            raise ArchiveError(f"unknown point {n!r}")
        meta = r[4] or {}
        out.append(PointRef(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(meta.get("code") or r[1]),
                            str(meta.get("channel") or "01")))
    return out


async def series(db: Database, point_ids: Sequence[int], start: datetime, end: datetime,
                 step: str = "auto") -> list[ReadingRow]:
    """Readings or aggregates (raw, 15m, 1h, 1d or auto by range length) of many points."""
    if end <= start:
        raise ArchiveError("the range is empty: 'to' must be after 'from'")
    try:
        return await query_readings(db, point_ids, start, end, step)
    except ValueError as e:
        raise ArchiveError(str(e)) from e


def rows_to_csv(rows: Sequence[ReadingRow], names: dict[int, str]) -> str:
    """CSV with one line per reading or bucket: point, ts (ISO UTC), value, min, max, count,
    increase (energy counters), quality (raw) — `.` decimal separator, RFC 4180 quoting."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow(["point", "ts", "step", "value", "min", "max", "count", "increase", "quality", "manual"])
    for r in rows:
        q = r.quality
        w.writerow([names.get(r.point_id, str(r.point_id)), r.ts.isoformat(), r.step, _num(r.value), _num(r.min),
                    _num(r.max), r.count, _num(r.increase), "" if q is None else q,
                    "" if q is None else int(bool(q & Quality.MANUAL))])
    return buf.getvalue()


def _num(v: float | None) -> str:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v))


_TO_KWH = {"Wh": 0.001, "kWh": 1.0, "MWh": 1000.0}


async def export_80020(db: Database, points: Sequence[PointRef], day: date, tz: ZoneInfo, *,
                       sender_name: str, sender_inn: str, area_name: str, area_inn: str, number: int,
                       created: datetime) -> bytes:
    """An 80020 (version 2) XML message: half-hourly active energy (kWh) of energy counters for
    one operating day in local time `tz`, encoded windows-1251 as the format requires.

    A half hour whose two counter readings are missing or bad is left out (the receiver sees
    the gap); one that includes a manually corrected reading carries `status="1"`.
    """
    for p in points:
        if p.kind != "counter" or p.unit not in _TO_KWH:
            raise ArchiveError(f"point {p.name!r}: 80020 carries energy counters in Wh/kWh/MWh "
                               f"(kind {p.kind!r}, unit {p.unit!r})")
    start = datetime.combine(day, time(0), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz)
    async with db.connection() as conn:
        cur = await conn.execute(query(_F, "raw_window"), {"ids": [p.id for p in points], "start": start,
                                                            "end": end})
        raw: dict[int, dict[datetime, tuple[float, int]]] = {}
        for pid, ts, value, quality in await fetch_all(cur):
            raw.setdefault(int(pid), {})[ts] = (value, int(quality))
    dst = 1 if (start.dst() or timedelta(0)) != timedelta(0) else 0
    out = ['<?xml version="1.0" encoding="windows-1251"?>',
           f'<message class="80020" version="2" number="{int(number)}">',
           "<datetime>",
           f"<timestamp>{created.astimezone(tz):%Y%m%d%H%M%S}</timestamp>",
           f"<daylightsavingtime>{dst}</daylightsavingtime>",
           f"<day>{day:%Y%m%d}</day>",
           "</datetime>",
           f"<sender><inn>{escape(sender_inn)}</inn><name>{escape(sender_name)}</name></sender>",
           f"<area><inn>{escape(area_inn)}</inn><name>{escape(area_name)}</name>"]
    for p in points:
        series_ = raw.get(p.id, {})
        out.append(f"<measuringpoint code={quoteattr(p.code)} name={quoteattr(p.name)}>")
        out.append(f'<measuringchannel code={quoteattr(p.channel)} desc="active energy, kWh">')
        t = start.astimezone(tz)
        while t < end:
            t2 = (t.astimezone(ZoneInfo("UTC")) + timedelta(minutes=30)).astimezone(tz)
            a, b = series_.get(t), series_.get(t2)
            if a is not None and b is not None and not (a[1] & BAD_QUALITY) and not (b[1] & BAD_QUALITY):
                kwh = (b[0] - a[0]) * _TO_KWH[p.unit]
                status = ' status="1"' if (a[1] | b[1]) & Quality.MANUAL else ""
                e_label = "2400" if t2 == end else f"{t2:%H%M}"
                out.append(f'<period start="{t:%H%M}" end="{e_label}"><value{status}>{round(kwh)}</value></period>')
            t = t2
        out.append("</measuringchannel>")
        out.append("</measuringpoint>")
    out.append("</area>")
    out.append("</message>")
    return ("\r\n".join(out) + "\r\n").encode("cp1251", errors="replace")


async def point_status(db: Database, now: datetime, inactive_after: timedelta, *, zone: str | None = None,
                       subject: str | None = None, device: str | None = None) -> list[PointStatus]:
    """Status of every point: active when its newest reading is at most `inactive_after` old."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_F, "point_status"), {"zone": zone, "subject": subject, "device": device})
        rows = await fetch_all(cur)
    out = []
    for r in rows:
        last_ts, quality = r[8], r[10]
        state = "never" if last_ts is None else ("active" if now - last_ts <= inactive_after else "inactive")
        mode = None if quality is None else ("manual" if int(quality) & Quality.MANUAL else "automatic")
        out.append(PointStatus(int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), str(r[6]),
                               bool(r[7]), state, last_ts, r[9], mode, None if quality is None else int(quality),
                               r[11]))
    return out


async def get_correction(db: Database, correction_id: int) -> Correction:
    """One correction; `CorrectionError` when unknown."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_F, "get_correction"), {"id": correction_id})
        row = await fetch_one(cur)
    if row is None:
        raise CorrectionError(f"correction {correction_id} does not exist")
    return Correction.from_row(row)


async def list_corrections(db: Database, *, state: str | None = None, point_id: int | None = None,
                           limit: int = 100) -> list[Correction]:
    """Corrections, newest first."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_F, "list_corrections"), {"state": state, "point_id": point_id,
                                                                  "limit": max(1, min(int(limit), 10_000))})
        return [Correction.from_row(r) for r in await fetch_all(cur)]


async def propose_correction(db: Database, point_id: int, ts: datetime, value: float, reason: str, *,
                             actor: str, now: datetime) -> Correction:
    """Record a proposal (step 1 of 2), keeping the reading's current value and quality."""
    if ts.tzinfo is None:
        raise CorrectionError("ts must be timezone-aware")
    if not math.isfinite(value):
        raise CorrectionError("value must be a finite number")
    if not reason.strip():
        raise CorrectionError("a reason is required")
    try:
        async with db.connection() as conn, conn.transaction():
            cur = await conn.execute(query(_F, "reading_for_update"), {"point_id": point_id, "ts": ts})
            row = await fetch_one(cur)
            cur = await conn.execute(query(_F, "insert_proposal"), {
                "point_id": point_id, "ts": ts, "existed": row is not None, "value": row[0] if row else None,
                "quality": int(row[1]) if row else None, "new_value": float(value), "reason": reason.strip(),
                "actor": actor, "now": now})
            new = await fetch_one(cur)
    except SinkRejected as e:
        if isinstance(e.__cause__, psycopg.errors.UniqueViolation):
            raise CorrectionError(f"point {point_id} at {ts.isoformat()} already has an open proposal") from e
        raise
    return await get_correction(db, int(new[0]))


async def decide_correction(db: Database, correction_id: int, *, actor: str, approve: bool, comment: str = "",
                            now: datetime) -> Correction:
    """Confirm (apply) or reject a proposal (step 2 of 2) as a user other than its proposer.

    Applying writes the new value flagged MANUAL (inserting the reading if it was missing),
    refuses when the reading changed since the proposal, and refreshes the rollups around it.
    """
    c = await get_correction(db, correction_id)
    if c.state != "proposed":
        raise CorrectionError(f"correction {correction_id} is already {c.state}")
    if c.proposed_by == actor:
        raise FourEyesError(f"correction {correction_id} was proposed by {actor}: a second user must confirm it")
    if approve and not c.original_existed and db.backend == "postgres":
        async with db.connection() as conn:
            await ensure_partitions(conn, [utc_day(c.ts)])
    async with db.connection() as conn, conn.transaction():
        cur = await conn.execute(query(_F, "correction_for_update"), {"id": correction_id})
        if await fetch_one(cur) is None:
            raise CorrectionError(f"correction {correction_id} does not exist")
        if approve:
            cur = await conn.execute(query(_F, "reading_for_update"), {"point_id": c.point_id, "ts": c.ts})
            row = await fetch_one(cur)
            now_value = None if row is None else (row[0], int(row[1]))
            was = None if not c.original_existed else (c.original_value, c.original_quality)
            if now_value != was:
                raise CorrectionError(f"correction {correction_id}: the reading changed since the proposal "
                                      f"(was {was}, now {now_value}); propose again")
            params = {"point_id": c.point_id, "ts": c.ts, "value": c.new_value, "quality": int(Quality.MANUAL),
                      "now": now}
            await conn.execute(query(_F, "update_reading" if row is not None else "insert_reading"), params)
        cur = await conn.execute(query(_F, "decide"), {"id": correction_id, "state": "applied" if approve else
                                                       "rejected", "actor": actor, "now": now, "comment": comment})
        if cur.rowcount != 1:
            raise CorrectionError(f"correction {correction_id} was decided by someone else meanwhile")
    if approve:
        await refresh_rollups(db, c.ts - timedelta(hours=1), c.ts + timedelta(hours=1))
    return await get_correction(db, correction_id)
