"""Schedule execution control routes.

| route | role |
| --- | --- |
| GET  /api/v1/schedule/results?day=YYYY-MM-DD&subject= | viewer |
| GET  /api/v1/schedule/plans?day=&subject=   (every version, oldest first) | viewer |
| POST /api/v1/schedule/plans   {"plans": [{"day", "subject", "unit", "values"}], "comment"} or text/csv | operator |
| GET  /api/v1/schedule/live    (the current hour as last computed) | viewer |
| POST /api/v1/schedule/recompute?day= | operator |

`subject` filters on any entity: a subject, a zone (North, South, West, North-South) or a
zone's miners (`miners:North`). `day` defaults to today in the schedule's time zone. The
service is `ctx.features["schedule"]` (`detectors.schedule.service.ScheduleService`); without
it the read routes still answer from the database and imports use `[schedule]` from the config.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from collector.api.context import ApiContext, get_ctx, require_role
from core.records import utcnow
from detectors.schedule.calendar import operating_day
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanImportError, parse_csv, parse_json
from detectors.schedule.service import ScheduleService
from storage.schedule import ScheduleStore

MAX_BODY = 5 * 1024 * 1024


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data, default=_default), status=status, content_type="application/json")


def _default(o: object) -> str:
    return o.isoformat() if isinstance(o, (datetime, date)) else str(o)


class JsonError(web.HTTPException):
    """An error answered as JSON: `{"error": message, ...}` with the given status."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message, **extra}, default=_default),
                         content_type="application/json")


def _error(status: int, message: str, **extra: Any) -> web.HTTPException:
    return JsonError(status, message, **extra)


def _service(ctx: ApiContext) -> ScheduleService | None:
    svc = ctx.features.get("schedule")
    return svc if isinstance(svc, ScheduleService) else None


def _config(ctx: ApiContext) -> ScheduleConfig:
    svc = _service(ctx)
    if svc is not None:
        return svc.config
    cfg = ctx.config.sections.get("schedule")
    if isinstance(cfg, ScheduleConfig):
        return cfg
    raise _error(503, "schedule control is not configured (no [schedule] section)")


def _day(request: web.Request, ctx: ApiContext) -> date:
    raw = request.query.get("day", "").strip()
    if not raw:
        svc = _service(ctx)
        now = svc.clock() if svc is not None else utcnow()
        return operating_day(now, _config(ctx).tz)
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _error(400, f"parameter 'day': {raw!r} is not a date (YYYY-MM-DD)") from None


def _subject(request: web.Request) -> str | None:
    v = request.query.get("subject", "").strip()
    return v or None


async def results(request: web.Request) -> web.Response:
    """Per-hour plan against actual of one operating day."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    day = _day(request, ctx)
    rows = await ScheduleStore(ctx.db).results(day, _subject(request))
    return _json({"day": day, "results": rows})


async def plans(request: web.Request) -> web.Response:
    """Every stored version of the plans of one day."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    day = _day(request, ctx)
    return _json({"day": day, "versions": await ScheduleStore(ctx.db).plan_history(day, _subject(request))})


async def import_plans(request: web.Request) -> web.Response:
    """Validate and store plans (all or nothing); 400 lists every problem."""
    user = require_role(request, "operator")
    ctx = get_ctx(request)
    cfg = _config(ctx)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _error(413, f"body larger than {MAX_BODY} bytes")
    try:
        if request.content_type in ("text/csv", "text/plain"):
            imp = parse_csv(await request.text(), cfg, source=f"api:{user}")
        else:
            try:
                doc = await request.json()
            except (ValueError, UnicodeDecodeError):
                raise _error(400, "request body must be a JSON object (or text/csv)") from None
            imp = parse_json(doc, cfg, source=f"api:{user}")
    except PlanImportError as e:
        raise _error(400, "plan import rejected, nothing stored",
                     issues=[{"line": i.line, "field": i.column, "reason": i.reason} for i in e.issues]) from None
    svc = _service(ctx)
    if svc is not None:
        stored = await svc.import_plans(imp, user)
    else:
        stored = await ScheduleService(cfg, ScheduleStore(ctx.db), None, ctx.journal, utcnow).import_plans(imp, user)
    return _json({"stored": [{"day": s.day, "subject": s.subject, "version": s.version} for s in stored]}, 201)


async def live(request: web.Request) -> web.Response:
    """The current hour's results as the service last computed them."""
    require_role(request, "viewer")
    svc = _service(get_ctx(request))
    if svc is None:
        raise _error(503, "the schedule service is not running")
    out = [{"entity": r.entity, "kind": r.entity_kind, "zone": r.zone, "hour": r.hour.number,
            "hour_start": r.hour.start, "plan_mwh": r.plan_mwh, "actual_mwh": r.actual_mwh,
            "projected_mwh": r.projected_mwh, "deviation_mwh": r.deviation_mwh, "deviation_pct": r.deviation_pct,
            "band_mwh": r.band_mwh, "completeness": r.completeness, "verdict": r.verdict}
           for r in svc.last_results]
    return _json({"now": svc.clock(), "results": out})


async def recompute(request: web.Request) -> web.Response:
    """Recompute every closed hour of a day now (changes are journaled)."""
    require_role(request, "operator")
    ctx = get_ctx(request)
    svc = _service(ctx)
    if svc is None:
        raise _error(503, "the schedule service is not running")
    day = _day(request, ctx)
    return _json({"day": day, "hours": await svc.recompute_day(day)})


class ScheduleCollector(Collector):
    """Exports the schedule service's counters at scrape time (`gridwatch_schedule_*`)."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        svc = _service(self.ctx)
        if svc is None:
            return []
        ns = "gridwatch_schedule"
        ticks = CounterMetricFamily(f"{ns}_ticks", "Schedule computations run")
        ticks.add_metric([], float(svc.ticks))
        errors = CounterMetricFamily(f"{ns}_tick_errors", "Schedule computations that failed")
        errors.add_metric([], float(svc.tick_errors))
        recomputed = CounterMetricFamily(f"{ns}_recomputed_hours", "Closed hours recomputed after late or "
                                         "corrected data with a changed result")
        recomputed.add_metric([], float(svc.recomputed_hours))
        warnings = CounterMetricFamily(f"{ns}_early_warnings", "Early warnings raised")
        warnings.add_metric([], float(svc.early_warnings))
        last = GaugeMetricFamily(f"{ns}_last_tick_seconds", "Duration of the last schedule computation")
        last.add_metric([], svc.last_tick_seconds)
        verdicts = GaugeMetricFamily(f"{ns}_current_hour_entities", "Entities of the current hour by verdict",
                                     labels=["kind", "verdict"])
        counts: dict[tuple[str, str], int] = {}
        for r in svc.last_results:
            counts[(r.entity_kind, r.verdict)] = counts.get((r.entity_kind, r.verdict), 0) + 1
        for (kind, verdict), n in sorted(counts.items()):
            verdicts.add_metric([kind, verdict], float(n))
        return [ticks, errors, recomputed, warnings, last, verdicts]


def setup(app: web.Application, ctx: ApiContext) -> None:
    """Add the schedule routes and the schedule metrics to `ctx.registry`."""
    try:
        ctx.registry.register(ScheduleCollector(ctx))
    except ValueError:  # already registered in this registry (the app was built twice)
        pass
    app.router.add_get("/api/v1/schedule/results", results)
    app.router.add_get("/api/v1/schedule/plans", plans)
    app.router.add_post("/api/v1/schedule/plans", import_plans)
    app.router.add_get("/api/v1/schedule/live", live)
    app.router.add_post("/api/v1/schedule/recompute", recompute)
