"""The alert, delivery and event routes on a real database, with role enforcement."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, generate_latest

from alerting.config import AlertingConfig
from alerting.service import AlertingService
from collector.api.alerts import setup
from collector.api.context import CTX_KEY, ApiContext
from core.config import parse_config
from core.records import Alert, Severity, utcnow
from storage.alerts import AlertFilter, AlertStore
from storage.db import Database
from storage.migrate import migrate

pytestmark = pytest.mark.integration

VIEWER, OPERATOR = "viewer-token-1", "operator-token-2"
HOOK_SECRET = "hook-secret-never-shown"


class _Journal:
    async def record(self, event: Any) -> None:
        pass


@pytest.fixture
async def api(pg_dsn: str) -> AsyncIterator[tuple[TestClient[Any, Any], AlertingService, CollectorRegistry]]:
    db = await Database.open(pg_dsn, pool_size=3, backend="postgres")
    try:
        await migrate(db)
        cfg = parse_config({"api": {"tokens": [{"name": "vera", "role": "viewer", "token": VIEWER},
                                               {"name": "olga", "role": "operator", "token": OPERATOR}]}},
                           Path("test.toml"), {}, {})
        acfg = AlertingConfig.model_validate({"receivers": [
            {"kind": "webhook", "name": "hook", "url": "http://user:pw@127.0.0.1:9/h?token=abc",
             "secret": HOOK_SECRET}]})
        svc = AlertingService(acfg, AlertStore(db))
        registry = CollectorRegistry()
        ctx = ApiContext(config=cfg, db=db, registry=registry, journal=_Journal(),
                         tokens={VIEWER: ("vera", "viewer"), OPERATOR: ("olga", "operator")},
                         features={"alerting": svc})
        app = _app(ctx)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield client, svc, registry
        finally:
            await client.close()
            await svc.close()
    finally:
        await db.close()


def _app(ctx: ApiContext) -> Any:
    """The daemon's own application when the collector's server exists, else just our routes."""
    from aiohttp import web

    try:
        from collector.api.server import build_app
    except ModuleNotFoundError:
        app = web.Application()
        app[CTX_KEY] = ctx
        setup(app, ctx)
        return app
    return build_app(ctx, feature_modules=("collector.api.alerts",))


def auth(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def _alert_id(svc: AlertingService, key: str = "hi:p1") -> int:
    await svc.submit([Alert(key=key, rule="hi", severity=Severity.CRITICAL, firing=True, ts=utcnow(),
                            summary="voltage 253 kV above 250", device="ps-north", zone="north")])
    rows = await svc.store.list_alerts(AlertFilter())
    return next(r.id for r in rows if r.key == key)


MUTATIONS = [("ack", {"comment": "on it"}), ("shelve", {"reason": "maintenance", "duration_s": 600}),
             ("unshelve", None)]


@pytest.mark.parametrize("action, body", MUTATIONS)
async def test_mutations_need_operator(api: Any, action: str, body: dict[str, Any] | None) -> None:
    client, svc, _ = api
    aid = await _alert_id(svc)
    if action == "unshelve":
        await svc.shelve(aid, "setup", "prepare", utcnow() + timedelta(hours=1))
    url = f"/api/v1/alerts/{aid}/{action}"
    r = await client.post(url, json=body)
    assert r.status == 401
    r = await client.post(url, json=body, headers=auth("wrong-token"))
    assert r.status == 401
    r = await client.post(url, json=body, headers=auth(VIEWER))
    assert r.status == 403
    text = await r.text()
    assert VIEWER not in text
    r = await client.post(url, json=body, headers=auth(OPERATOR))
    assert r.status == 200, await r.text()
    doc = await r.json()
    if action == "ack":
        assert doc["acknowledged"]["by"] == "olga" and doc["acknowledged"]["comment"] == "on it"
    elif action == "shelve":
        assert doc["shelved"]["by"] == "olga" and doc["shelved"]["reason"] == "maintenance"
    else:
        assert doc["shelved"] is None
    r = await client.get("/api/v1/events", params={"kind": "operator", "actor": "olga"}, headers=auth(VIEWER))
    events = (await r.json())["events"]
    assert len(events) == 1 and events[0]["details"]["alert_id"] == aid


async def test_reads_need_viewer_and_filter(api: Any) -> None:
    client, svc, _ = api
    aid = await _alert_id(svc)
    await _alert_id(svc, "lo:p2")
    for url in ("/api/v1/alerts", f"/api/v1/alerts/{aid}", "/api/v1/events", "/api/v1/alerts/deliveries"):
        assert (await client.get(url)).status == 401, url
        r = await client.get(url, headers=auth(VIEWER))
        assert r.status == 200, url
    r = await client.get("/api/v1/alerts", params={"state": "firing", "severity": "critical"}, headers=auth(VIEWER))
    alerts = (await r.json())["alerts"]
    assert {a["key"] for a in alerts} == {"hi:p1", "lo:p2"}
    assert alerts[0]["severity"] == "critical" and alerts[0]["zone"] == "north"
    r = await client.get("/api/v1/alerts", params={"key": "lo:p2"}, headers=auth(VIEWER))
    assert [a["key"] for a in (await r.json())["alerts"]] == ["lo:p2"]
    r = await client.get("/api/v1/alerts", params={"state": "resolved"}, headers=auth(VIEWER))
    assert (await r.json())["alerts"] == []
    r = await client.get("/api/v1/events", params={"kind": "alert", "q": "hi:p1"}, headers=auth(VIEWER))
    events = (await r.json())["events"]
    assert len(events) == 1 and "firing" in events[0]["message"]
    r = await client.get("/api/v1/events", params={"from": "2000-01-01T00:00:00Z", "to": "2000-01-02T00:00:00Z"},
                         headers=auth(VIEWER))
    assert (await r.json())["events"] == []


BAD_QUERIES = [
    ("/api/v1/alerts", {"state": "burning"}, "state"), ("/api/v1/alerts", {"severity": "huge"}, "severity"),
    ("/api/v1/alerts", {"limit": "0"}, "limit"), ("/api/v1/alerts", {"limit": "x"}, "limit"),
    ("/api/v1/events", {"from": "yesterday"}, "from"),
    ("/api/v1/events", {"from": "2020-01-02T00:00:00Z", "to": "2020-01-01T00:00:00Z"}, "to"),
    ("/api/v1/alerts/deliveries", {"status": "lost"}, "status"),
]

BAD_SHELVES = [
    ({"duration_s": 60}, "reason"), ({"reason": "x"}, "until"), ({"reason": "x", "duration_s": -5}, "duration_s"),
    ({"reason": "x", "until": "2000-01-01T00:00:00Z"}, "future"), ({"reason": "x", "until": "tomorrow"}, "until"),
    ({"reason": "x", "duration_s": 10**9}, "days"), ({"reason": 5, "duration_s": 60}, "reason"),
]


async def test_bad_requests_name_the_parameter(api: Any) -> None:
    client, svc, _ = api
    for url, params, needle in BAD_QUERIES:
        r = await client.get(url, params=params, headers=auth(VIEWER))
        assert r.status == 400, (url, params)
        assert needle in (await r.json())["error"], (url, params)
    aid = await _alert_id(svc)
    for body, needle in BAD_SHELVES:
        r = await client.post(f"/api/v1/alerts/{aid}/shelve", json=body, headers=auth(OPERATOR))
        assert r.status == 400, body
        assert needle in (await r.json())["error"], body
    row = await svc.get(aid)
    assert row is not None and row.shelved_until is None


async def test_unknown_alert_and_not_shelved(api: Any) -> None:
    client, svc, _ = api
    aid = await _alert_id(svc)
    r = await client.post("/api/v1/alerts/987654/ack", json={}, headers=auth(OPERATOR))
    assert r.status == 404
    r = await client.post(f"/api/v1/alerts/{aid}/unshelve", headers=auth(OPERATOR))
    assert r.status == 409
    r = await client.post(f"/api/v1/alerts/{aid}/ack", data=b"not json", headers=auth(OPERATOR))
    assert r.status == 400


async def test_deliveries_and_metrics_never_show_secrets(api: Any) -> None:
    client, svc, registry = api
    await _alert_id(svc)
    for s in svc.senders:
        await svc.deliver(s)  # the receiver at 127.0.0.1:9 is down: the attempt fails
    await svc.refresh_stats()
    r = await client.get("/api/v1/alerts/deliveries", headers=auth(VIEWER))
    doc = await r.json()
    hook = doc["receivers"][0]
    assert hook["name"] == "hook" and hook["pending"] == 1 and hook["attempts_failed"] == 1
    assert "cannot reach http://127.0.0.1:9/h" in hook["last_error"]
    assert doc["deliveries"][0]["status"] == "pending" and doc["deliveries"][0]["alert_key"] == "hi:p1"
    text = json.dumps(doc) + generate_latest(registry).decode()
    for secret in (HOOK_SECRET, "user:pw", "token=abc"):
        assert secret not in text
    metrics = generate_latest(registry).decode()
    assert 'gridwatch_alerting_notifications_failed_total{receiver="hook"} 1.0' in metrics
    assert 'gridwatch_alerting_outbox_pending{receiver="hook"} 1.0' in metrics
    assert 'gridwatch_alerting_transitions_total{kind="fired"} 1.0' in metrics
