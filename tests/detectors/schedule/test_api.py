"""Schedule routes through a real aiohttp server on a real database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from collector.api.context import ApiContext
from collector.api.server import build_app
from core.config import parse_config
from core.records import Event
from detectors.schedule.calendar import day_hours
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import build
from storage.db import Database
from storage.migrate import migrate
from tests.detectors.schedule.helpers import make_config

pytestmark = [pytest.mark.integration]

DAY = date(2026, 12, 2)
OP = {"Authorization": "Bearer t-op1"}
VIEW = {"Authorization": "Bearer t-view"}


class Journal:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
async def client(pg_dsn: str) -> AsyncIterator[tuple[TestClient[Any, Any], Journal, Database]]:
    db = await Database.open(pg_dsn, backend="postgres")
    await migrate(db)
    cfg = make_config()
    gw = parse_config({"schedule": cfg.model_dump()}, Path("test.toml"), {}, {"schedule": ScheduleConfig})
    journal = Journal()
    ctx = ApiContext(config=gw, db=db, registry=CollectorRegistry(), journal=journal,
                     tokens={"t-op1": ("op1", "operator"), "t-view": ("viewer1", "viewer")})
    hours = day_hours(DAY, cfg.tz)
    ctx.features["schedule"] = build(cfg, db, None, journal, lambda: hours[3].start)
    app = build_app(ctx, ("collector.api.schedule",))
    tc: TestClient[Any, Any] = TestClient(TestServer(app, host="127.0.0.1"))
    await tc.start_server()
    try:
        yield tc, journal, db
    finally:
        await tc.close()
        await db.close()


async def test_import_and_query(client: tuple[TestClient[Any, Any], Journal, Database]) -> None:
    tc, journal, _ = client
    doc = {"plans": [{"day": DAY.isoformat(), "subject": "GEN-N", "unit": "MWh", "values": [100.0] * 24}]}
    r = await tc.post("/api/v1/schedule/plans", json=doc, headers=VIEW)
    assert r.status == 403
    r = await tc.post("/api/v1/schedule/plans", json=doc)
    assert r.status == 401
    r = await tc.post("/api/v1/schedule/plans", json=doc, headers=OP)
    assert r.status == 201, await r.text()
    assert (await r.json())["stored"] == [{"day": "2026-12-02", "subject": "GEN-N", "version": 1}]
    assert any("op1 imported 1 plan(s)" in e.message and e.actor == "op1" for e in journal.events)

    bad = {"plans": [doc["plans"][0], {"day": DAY.isoformat(), "subject": "GHOST", "values": [1.0] * 24},
                     {"day": DAY.isoformat(), "subject": "LOAD-S", "values": [1.0] * 22}]}
    r = await tc.post("/api/v1/schedule/plans", json=bad, headers=OP)
    assert r.status == 400
    body = await r.json()
    assert body["error"] == "plan import rejected, nothing stored"
    assert {i["field"] for i in body["issues"]} == {"plans[1].subject", "plans[2].values"}
    r = await tc.get("/api/v1/schedule/plans", params={"day": DAY.isoformat()}, headers=VIEW)
    versions = (await r.json())["versions"]
    assert [(v["subject"], v["version"]) for v in versions] == [("GEN-N", 1)]  # the bad import stored nothing

    csv_body = "day,subject,hour,value\n" + "".join(f"{DAY},LOAD-S,{h},5\n" for h in range(1, 24))
    r = await tc.post("/api/v1/schedule/plans", data=csv_body, headers={**OP, "Content-Type": "text/csv"})
    assert r.status == 400
    assert (await r.json())["issues"][0] == {"line": 2, "field": "hour",
                                             "reason": "subject 'LOAD-S' on 2026-12-02: 23 of 24 hours given, "
                                                       "missing hour(s) 24"}
    r = await tc.post("/api/v1/schedule/plans", data=csv_body + f"{DAY},LOAD-S,24,5\n",
                      headers={**OP, "Content-Type": "text/csv"})
    assert r.status == 201 and (await r.json())["stored"][0]["subject"] == "LOAD-S"

    r = await tc.post("/api/v1/schedule/recompute", params={"day": DAY.isoformat()}, headers=OP)
    assert r.status == 200 and (await r.json())["hours"] == 3  # hours 1..3 have ended at the service's clock
    r = await tc.get("/api/v1/schedule/results", params={"day": DAY.isoformat(), "subject": "GEN-N"}, headers=VIEW)
    rows = (await r.json())["results"]
    assert [x["hour"] for x in rows] == [1, 2, 3]
    assert {x["verdict"] for x in rows} == {"incomplete"} and rows[0]["plan_mwh"] == 100.0
    r = await tc.get("/api/v1/schedule/results", params={"day": "2026-13-01"}, headers=VIEW)
    assert r.status == 400 and "'day'" in (await r.json())["error"]
    r = await tc.get("/api/v1/schedule/live", headers=VIEW)
    assert r.status == 200 and (await r.json())["results"] == []
    r = await tc.get("/metrics")
    text = await r.text()
    assert "gridwatch_schedule_ticks_total" in text and "gridwatch_schedule_last_tick_seconds" in text
