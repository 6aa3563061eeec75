"""Alert, delivery and event-journal routes, and the alerting metrics.

| route | role |
| --- | --- |
| GET  /api/v1/alerts?state=&severity=&zone=&device=&rule=&before=&limit= | viewer |
| GET  /api/v1/alerts/{id} | viewer |
| GET  /api/v1/alerts/deliveries?status=&receiver=&alert_id=&before=&limit= | viewer |
| POST /api/v1/alerts/{id}/ack       {"comment": "..."} | operator |
| POST /api/v1/alerts/{id}/shelve    {"reason": "...", "until": ISO 8601 | "duration_s": n} | operator |
| POST /api/v1/alerts/{id}/unshelve | operator |
| GET  /api/v1/events?kind=&source=&actor=&from=&to=&q=&before=&limit= | viewer |

The service is `ctx.features["alerting"]` (`alerting.service.AlertingService`). Its counters
are exported at scrape time under `gridwatch_alerting_*` (see docs/alerting.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from alerting.lifecycle import sev_name
from alerting.service import AlertingService, AlertingStats
from collector.api.context import ApiContext, JsonError, get_ctx, json_object_body, query_int, require_role
from core.records import Severity, utcnow
from storage.alerts import AlertFilter, AlertRow, AlertStore, EventFilter

MAX_LIMIT = 1000
MAX_SHELVE = timedelta(days=31)


def _service(request: web.Request) -> AlertingService:
    svc = get_ctx(request).features.get("alerting")
    if not isinstance(svc, AlertingService):
        raise JsonError(503, "alerting is not enabled in this daemon")
    return svc


def _store(request: web.Request) -> AlertStore:
    svc = get_ctx(request).features.get("alerting")
    return svc.store if isinstance(svc, AlertingService) else AlertStore(get_ctx(request).db)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat() if dt is not None else None


def alert_json(r: AlertRow, now: datetime) -> dict[str, Any]:
    """The API form of an alert."""
    shelved = r.shelved_until is not None and r.shelved_until > now
    return {
        "id": r.id, "key": r.key, "rule": r.rule, "severity": sev_name(r.severity), "state": r.state,
        "summary": r.summary, "point_id": r.point_id, "device": r.device, "zone": r.zone, "subject": r.subject,
        "evidence": r.evidence, "recommendation": r.recommendation, "episode": r.episode,
        "started_at": _iso(r.started_at), "resolved_at": _iso(r.resolved_at), "last_seen_at": _iso(r.last_seen_at),
        "repeat_count": r.repeat_count, "flapping": r.flapping, "notified_state": r.notified_state,
        "acknowledged": ({"by": r.acked_by, "at": _iso(r.acked_at), "comment": r.ack_comment}
                         if r.acked_at is not None else None),
        "shelved": ({"by": r.shelved_by, "at": _iso(r.shelved_at), "until": _iso(r.shelved_until),
                     "reason": r.shelve_reason} if shelved else None),
        "escalation_level": r.escalation_level, "escalated_at": _iso(r.escalated_at),
    }


def _time(name: str, raw: str | None) -> datetime | None:
    if raw is None or raw == "":
        return None
    try:
        dt = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    except ValueError:
        raise JsonError(400, f"parameter {name!r}: {raw!r} is not an ISO 8601 time") from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _default(o: object) -> str:
    return o.isoformat() if isinstance(o, datetime) else str(o)


def _dumps(o: object) -> str:
    return json.dumps(o, default=_default)


def _alert_id(request: web.Request) -> int:
    try:
        return int(request.match_info["id"])
    except ValueError:
        raise JsonError(400, "alert id must be an integer") from None


def _text(data: dict[str, Any], name: str, *, required: bool = False, max_len: int = 1000) -> str:
    v = data.get(name, "")
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise JsonError(400, f"field {name!r} must be a string")
    if required and not v.strip():
        raise JsonError(400, f"field {name!r} is required")
    if len(v) > max_len:
        raise JsonError(400, f"field {name!r} is longer than {max_len} characters")
    return v.strip()


# ------------------------------------------------------------------------------- handlers

async def list_alerts(request: web.Request) -> web.Response:
    """GET /api/v1/alerts."""
    require_role(request, "viewer")
    q = request.query
    state = q.get("state") or None
    if state == "all":
        state = None
    if state not in (None, "firing", "resolved"):
        raise JsonError(400, f"parameter 'state': {state!r} is not one of firing, resolved, all")
    sev = None
    if q.get("severity"):
        try:
            sev = int(Severity.parse(q["severity"]))
        except KeyError:
            raise JsonError(400, f"parameter 'severity': {q['severity']!r} is not one of "
                              f"{', '.join(s.name.lower() for s in Severity)}") from None
    f = AlertFilter(state=state, min_severity=sev, zone=q.get("zone") or None, device=q.get("device") or None,
                    rule=q.get("rule") or None, key=q.get("key") or None,
                    before_id=query_int(request, "before", None, 1, 2**62),
                    limit=query_int(request, "limit", 100, 1, MAX_LIMIT) or 100)
    rows = await _store(request).list_alerts(f)
    now = utcnow()
    return web.json_response({"alerts": [alert_json(r, now) for r in rows]})


async def get_alert(request: web.Request) -> web.Response:
    """GET /api/v1/alerts/{id}."""
    require_role(request, "viewer")
    row = await _store(request).get(_alert_id(request))
    if row is None:
        raise JsonError(404, f"no alert with id {request.match_info['id']}")
    return web.json_response(alert_json(row, utcnow()))


async def ack(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/{id}/ack."""
    user = require_role(request, "operator")
    svc = _service(request)
    data = await json_object_body(request)
    row = await svc.acknowledge(_alert_id(request), user, _text(data, "comment"))
    if row is None:
        raise JsonError(404, f"no alert with id {request.match_info['id']}")
    return web.json_response(alert_json(row, svc.clock()))


async def shelve(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/{id}/shelve."""
    user = require_role(request, "operator")
    svc = _service(request)
    data = await json_object_body(request)
    reason = _text(data, "reason", required=True)
    now = svc.clock()
    if "until" in data and "duration_s" in data:
        raise JsonError(400, "give one of 'until' and 'duration_s', not both")
    if "until" in data:
        if not isinstance(data["until"], str):
            raise JsonError(400, "field 'until' must be an ISO 8601 time string")
        until = _time("until", data["until"])
        assert until is not None
    elif "duration_s" in data:
        d = data["duration_s"]
        if isinstance(d, bool) or not isinstance(d, (int, float)) or d <= 0:
            raise JsonError(400, "field 'duration_s' must be a positive number of seconds")
        if d > MAX_SHELVE.total_seconds():
            raise JsonError(400, f"field 'duration_s': at most {MAX_SHELVE.days} days")
        until = now + timedelta(seconds=float(d))
    else:
        raise JsonError(400, "field 'until' (ISO 8601) or 'duration_s' is required")
    if until <= now:
        raise JsonError(400, "field 'until' must be in the future")
    if until - now > MAX_SHELVE:
        raise JsonError(400, f"field 'until': at most {MAX_SHELVE.days} days ahead")
    row = await svc.shelve(_alert_id(request), user, reason, until)
    if row is None:
        raise JsonError(404, f"no alert with id {request.match_info['id']}")
    return web.json_response(alert_json(row, now))


async def unshelve(request: web.Request) -> web.Response:
    """POST /api/v1/alerts/{id}/unshelve."""
    user = require_role(request, "operator")
    svc = _service(request)
    alert_id = _alert_id(request)
    current = await svc.get(alert_id)
    if current is None:
        raise JsonError(404, f"no alert with id {alert_id}")
    if current.shelved_until is None:
        raise JsonError(409, f"alert {alert_id} is not shelved")
    row = await svc.unshelve(alert_id, user)
    assert row is not None
    return web.json_response(alert_json(row, svc.clock()))


async def deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/alerts/deliveries: per-receiver status and the newest outbox rows."""
    require_role(request, "viewer")
    svc = _service(request)
    status = request.query.get("status") or None
    if status not in (None, "pending", "delivered", "failed"):
        raise JsonError(400, f"parameter 'status': {status!r} is not one of pending, delivered, failed")
    out = await svc.deliveries(status=status, receiver=request.query.get("receiver") or None,
                               alert_id=query_int(request, "alert_id", None, 1, 2**62),
                               before_id=query_int(request, "before", None, 1, 2**62),
                               limit=query_int(request, "limit", 100, 1, MAX_LIMIT) or 100)
    return web.json_response(out, dumps=_dumps)


async def events(request: web.Request) -> web.Response:
    """GET /api/v1/events: the journal, newest first."""
    require_role(request, "viewer")
    q = request.query
    since, until = _time("from", q.get("from")), _time("to", q.get("to"))
    if since is not None and until is not None and until <= since:
        raise JsonError(400, "parameter 'to' must be after 'from'")
    f = EventFilter(kind=q.get("kind") or None, source=q.get("source") or None, actor=q.get("actor") or None,
                    since=since, until=until, text=q.get("q") or None,
                    before_id=query_int(request, "before", None, 1, 2**62),
                    limit=query_int(request, "limit", 100, 1, MAX_LIMIT) or 100)
    rows = await _store(request).list_events(f)
    return web.json_response({"events": rows}, dumps=_dumps)


# ------------------------------------------------------------------------------- metrics

class AlertingCollector(Collector):
    """Exports `AlertingStats` at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def describe(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        return families(AlertingStats())

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        svc = self.ctx.features.get("alerting")
        if not isinstance(svc, AlertingService):
            return
        yield from families(svc.stats)


def families(st: AlertingStats) -> list[CounterMetricFamily | GaugeMetricFamily]:
    """Metric families of `st` (names documented in docs/alerting.md)."""
    ns = "gridwatch_alerting"
    trans = CounterMetricFamily(f"{ns}_transitions", "Alert lifecycle steps by kind (fired, resolved, ...)",
                                labels=["kind"])
    for k, v in sorted(st.counters.items()):
        trans.add_metric([k], float(v))
    out: list[CounterMetricFamily | GaugeMetricFamily] = [trans]
    for name, doc, series in (
            ("notifications_delivered", "Notifications delivered, per receiver", st.delivered),
            ("notifications_failed", "Failed delivery attempts (notifications), per receiver", st.failed),
            ("notifications_dropped", "Notifications given up after max_attempts, per receiver", st.gave_up)):
        fam = CounterMetricFamily(f"{ns}_{name}", doc, labels=["receiver"])
        for r, v in sorted(series.items()):
            fam.add_metric([r], float(v))
        out.append(fam)
    pending = GaugeMetricFamily(f"{ns}_outbox_pending", "Notifications waiting in the outbox", labels=["receiver"])
    oldest = GaugeMetricFamily(f"{ns}_outbox_oldest_age_seconds", "Age of the oldest waiting notification",
                               labels=["receiver"])
    for r, v in sorted(st.pending.items()):
        pending.add_metric([r], float(v))
        oldest.add_metric([r], st.oldest_pending_age_s.get(r, 0.0))
    backlog = GaugeMetricFamily(f"{ns}_backlog", "Alerts held in memory while the database is unavailable")
    backlog.add_metric([], float(st.backlog))
    out += [pending, oldest, backlog]
    return out


def setup(app: web.Application, ctx: ApiContext) -> None:
    """Add the alert and event routes, and the alerting metrics to `ctx.registry`."""
    app.router.add_get("/api/v1/alerts", list_alerts)
    app.router.add_get("/api/v1/alerts/deliveries", deliveries)
    app.router.add_get(r"/api/v1/alerts/{id:\d+}", get_alert)
    app.router.add_post(r"/api/v1/alerts/{id}/ack", ack)
    app.router.add_post(r"/api/v1/alerts/{id}/shelve", shelve)
    app.router.add_post(r"/api/v1/alerts/{id}/unshelve", unshelve)
    app.router.add_get("/api/v1/events", events)
    try:
        ctx.registry.register(AlertingCollector(ctx))
    except ValueError:  # already registered in this registry (the app was built twice)
        pass
