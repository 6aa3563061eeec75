"""Archive routes: series, CSV and 80020 export, metering-point status, manual corrections.

| route | role |
| --- | --- |
| GET  /api/v1/archive/series?points=a,b&from=&to=&step=auto|raw|15m|1h|1d | viewer |
| GET  /api/v1/archive/export.csv?points=&from=&to=&step= | viewer |
| GET  /api/v1/archive/export/80020?points=&day=&number=&sender=&inn=&area=&area_inn= | viewer |
| GET  /api/v1/archive/status?zone=&subject=&device=&inactive_after_s=3600 | viewer |
| GET  /api/v1/archive/corrections?state=proposed|applied|rejected&point= | viewer |
| POST /api/v1/archive/corrections  {"point", "ts", "value", "reason"} | operator |
| POST /api/v1/archive/corrections/{id}/confirm  {"comment"} (a different user) | operator |
| POST /api/v1/archive/corrections/{id}/reject   {"comment"} (a different user) | operator |

Both correction steps go to the event journal (kind `correction`); an applied correction marks
its hours for recomputation by the schedule service (`ctx.features["schedule"]`).
Times: ISO 8601 (naive = UTC), epoch seconds or `now-1h`. `day` is an operating day in the
schedule's time zone (default Asia/Almaty when no `[schedule]` section exists).
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from collector.api.context import ApiContext, JsonError, get_ctx, json_object_body, require_role
from core.records import Event, utcnow
from detectors.schedule.config import ScheduleConfig
from storage.archive import (
    ArchiveError,
    Correction,
    CorrectionError,
    FourEyesError,
    decide_correction,
    export_80020,
    get_correction,
    list_corrections,
    point_status,
    points_by_name,
    propose_correction,
    rows_to_csv,
    series,
)
from storage.readings import ReadingRow

MAX_POINTS = 500
STEPS = ("auto", "raw", "15m", "1h", "1d")


def _default(o: object) -> str:
    return o.isoformat() if isinstance(o, (datetime, date)) else str(o)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=_default), status=status, content_type="application/json")


def _time(name: str, raw: str | None, default: datetime) -> datetime:
    if raw is None or raw.strip() == "":
        return default
    t = raw.strip()
    try:
        if t.startswith("now"):
            rest = t[3:]
            if not rest:
                return utcnow()
            n, unit = float(rest[1:-1]), rest[-1]
            secs = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * n
            return utcnow() + (-1 if rest[0] == "-" else 1) * timedelta(seconds=secs)
        if t.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(t), UTC)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, KeyError, IndexError):
        raise JsonError(400, f"parameter {name!r}: {raw!r} is not a time (ISO 8601, epoch seconds or now-1h)") from None


def _now(ctx: ApiContext) -> datetime:
    """The daemon's time: `features["clock"]` or the schedule service's clock (accelerated in
    demos), else the wall clock."""
    clock = ctx.features.get("clock") or getattr(ctx.features.get("schedule"), "clock", None)
    if callable(clock):
        t = clock()
        if isinstance(t, datetime) and t.tzinfo is not None:
            return t
    return utcnow()


def _tz(ctx: ApiContext) -> ZoneInfo:
    svc = ctx.features.get("schedule")
    cfg = getattr(svc, "config", None) or ctx.config.sections.get("schedule")
    return cfg.tz if isinstance(cfg, ScheduleConfig) else ZoneInfo("Asia/Almaty")


async def _points(request: web.Request) -> tuple[list[int], dict[int, str], list[Any]]:
    raw = request.query.get("points", "") or request.query.get("point", "")
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names:
        raise JsonError(400, "parameter 'points': give one or more point names, comma separated")
    if len(names) > MAX_POINTS:
        raise JsonError(400, f"parameter 'points': at most {MAX_POINTS} points per request")
    try:
        refs = await points_by_name(get_ctx(request).db, names)
    except ArchiveError as e:
        raise JsonError(404, f"parameter 'points': {e}") from None
    return [r.id for r in refs], {r.id: r.name for r in refs}, refs


def _range(request: web.Request) -> tuple[datetime, datetime, str]:
    now = _now(get_ctx(request))
    end = _time("to", request.query.get("to"), now)
    start = _time("from", request.query.get("from"), end - timedelta(days=1))
    step = request.query.get("step", "auto")
    if step not in STEPS:
        raise JsonError(400, f"parameter 'step': {step!r} is not one of {', '.join(STEPS)}")
    if end <= start:
        raise JsonError(400, "parameter 'to' must be after 'from'")
    return start, end, step


async def _series(request: web.Request) -> tuple[list[ReadingRow], dict[int, str], list[int], datetime, datetime, str]:
    """The series a request asks for: (rows, names, ids, from, to, step), viewer role required."""
    require_role(request, "viewer")
    ids, names, _ = await _points(request)
    start, end, step = _range(request)
    try:
        rows = await series(get_ctx(request).db, ids, start, end, step)
    except ArchiveError as e:
        raise JsonError(400, str(e)) from None
    return rows, names, ids, start, end, step


async def get_series(request: web.Request) -> web.Response:
    """Readings or aggregates of many points over a range."""
    rows, names, ids, start, end, step = await _series(request)
    out: dict[str, list[dict[str, Any]]] = {names[i]: [] for i in ids}
    for r in rows:
        out[names[r.point_id]].append({"ts": r.ts, "value": r.value, "min": r.min, "max": r.max, "count": r.count,
                                       "increase": r.increase, "quality": r.quality})
    return _json({"from": start, "to": end, "step": rows[0].step if rows else step, "series": out})


async def export_csv(request: web.Request) -> web.Response:
    """The same data as CSV (attachment)."""
    rows, names, _, start, _, _ = await _series(request)
    return web.Response(text=rows_to_csv(rows, names), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="gridwatch_{start:%Y%m%dT%H%M}.csv"'})


async def export_xml_80020(request: web.Request) -> web.Response:
    """An 80020 XML message for one operating day (attachment, windows-1251)."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    _, _, refs = await _points(request)
    tz = _tz(ctx)
    raw_day = request.query.get("day", "")
    try:
        day = date.fromisoformat(raw_day) if raw_day else (_now(ctx).astimezone(tz).date() - timedelta(days=1))
        number = int(request.query.get("number", "1"))
    except ValueError:
        raise JsonError(400, "parameter 'day' must be YYYY-MM-DD and 'number' an integer") from None
    q = request.query
    try:
        data = await export_80020(ctx.db, refs, day, tz, sender_name=q.get("sender", ctx.config.collector.instance),
                                  sender_inn=q.get("inn", "000000000000"), area_name=q.get("area", "GridWatch"),
                                  area_inn=q.get("area_inn", q.get("inn", "000000000000")), number=number,
                                  created=_now(ctx))
    except ArchiveError as e:
        raise JsonError(400, str(e)) from None
    return web.Response(body=data, content_type="application/xml", charset="windows-1251",
                        headers={"Content-Disposition": f'attachment; filename="80020_{day:%Y%m%d}_{number}.xml"'})


async def status(request: web.Request) -> web.Response:
    """Metering-point status: active/inactive, last reading time, automatic or manual."""
    require_role(request, "viewer")
    q = request.query
    try:
        after = float(q.get("inactive_after_s", "3600"))
    except ValueError:
        raise JsonError(400, "parameter 'inactive_after_s' must be a number") from None
    ctx = get_ctx(request)
    rows = await point_status(ctx.db, _now(ctx), timedelta(seconds=after), zone=q.get("zone") or None,
                              subject=q.get("subject") or None, device=q.get("device") or None)
    counts = {s: sum(1 for r in rows if r.state == s) for s in ("active", "inactive", "never")}
    return _json({"counts": counts, "points": [r.as_dict() for r in rows]})


async def corrections(request: web.Request) -> web.Response:
    """Corrections, newest first."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    state = request.query.get("state") or None
    if state not in (None, "proposed", "applied", "rejected"):
        raise JsonError(400, "parameter 'state' must be proposed, applied or rejected")
    pid = None
    if request.query.get("point"):
        try:
            pid = (await points_by_name(ctx.db, [request.query["point"]]))[0].id
        except ArchiveError as e:
            raise JsonError(404, f"parameter 'point': {e}") from None
    return _json({"corrections": [c.as_dict() for c in await list_corrections(ctx.db, state=state, point_id=pid)]})


async def _journal(ctx: ApiContext, c: Correction, actor: str, message: str) -> None:
    await ctx.journal.record(Event(kind="correction", source="archive", message=message, ts=_now(ctx), actor=actor,
                                   details=c.as_dict()))


async def propose(request: web.Request) -> web.Response:
    """Step 1: an operator proposes a corrected value (or a missing reading)."""
    user = require_role(request, "operator")
    ctx = get_ctx(request)
    data = await json_object_body(request)
    point = data.get("point")
    if not isinstance(point, str) or not point:
        raise JsonError(400, "field 'point' (a point name) is required")
    value = data.get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise JsonError(400, "field 'value' must be a number")
    reason = data.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise JsonError(400, "field 'reason' is required")
    ts = _time("ts", str(data.get("ts") or ""), datetime.min.replace(tzinfo=UTC))
    if ts == datetime.min.replace(tzinfo=UTC):
        raise JsonError(400, "field 'ts' (the reading's time) is required")
    try:
        (ref,) = await points_by_name(ctx.db, [point])
        c = await propose_correction(ctx.db, ref.id, ts, float(value), reason, actor=user, now=_now(ctx))
    except CorrectionError as e:
        raise JsonError(409, str(e)) from None
    except ArchiveError as e:
        raise JsonError(404, f"field 'point': {e}") from None
    await _journal(ctx, c, user, f"{user} proposed correction {c.id}: {point} at {ts.isoformat()} "
                   f"{c.original_value} -> {c.new_value} ({reason.strip()})")
    return _json(c.as_dict(), 201)


async def _decide(request: web.Request, approve: bool) -> web.Response:
    user = require_role(request, "operator")
    ctx = get_ctx(request)
    try:
        cid = int(request.match_info["id"])
    except ValueError:
        raise JsonError(400, "correction id must be an integer") from None
    comment = str((await json_object_body(request)).get("comment") or "")[:1000]
    try:
        await get_correction(ctx.db, cid)
        c = await decide_correction(ctx.db, cid, actor=user, approve=approve, comment=comment, now=_now(ctx))
    except FourEyesError as e:
        raise JsonError(403, str(e)) from None
    except CorrectionError as e:
        raise JsonError(404 if "does not exist" in str(e) else 409, str(e)) from None
    verb = "confirmed and applied" if approve else "rejected"
    await _journal(ctx, c, user, f"{user} {verb} correction {c.id} proposed by {c.proposed_by}: {c.point} at "
                   f"{c.ts.isoformat()} {c.original_value} -> {c.new_value}")
    if approve:
        svc = ctx.features.get("schedule")
        mark = getattr(svc, "mark_dirty", None)
        if callable(mark):
            mark(c.ts)
    return _json(c.as_dict())


async def confirm(request: web.Request) -> web.Response:
    """Step 2: a second operator confirms; the reading gets the value flagged MANUAL."""
    return await _decide(request, True)


async def reject(request: web.Request) -> web.Response:
    """Step 2 (negative): a second operator rejects; the reading is untouched."""
    return await _decide(request, False)


def setup(app: web.Application, ctx: ApiContext) -> None:
    """Add the archive routes."""
    app.router.add_get("/api/v1/archive/series", get_series)
    app.router.add_get("/api/v1/archive/export.csv", export_csv)
    app.router.add_get("/api/v1/archive/export/80020", export_xml_80020)
    app.router.add_get("/api/v1/archive/status", status)
    app.router.add_get("/api/v1/archive/corrections", corrections)
    app.router.add_post("/api/v1/archive/corrections", propose)
    app.router.add_post("/api/v1/archive/corrections/{id}/confirm", confirm)
    app.router.add_post("/api/v1/archive/corrections/{id}/reject", reject)
