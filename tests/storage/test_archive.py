"""The archive on a real PostgreSQL: series, CSV, 80020, point status, four-eyes corrections."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from core.records import Quality, Reading
from storage.archive import (
    ArchiveError,
    CorrectionError,
    FourEyesError,
    decide_correction,
    export_80020,
    list_corrections,
    point_status,
    points_by_name,
    propose_correction,
    rows_to_csv,
    series,
)
from storage.db import Database
from storage.maintenance import refresh_rollups
from storage.migrate import migrate
from storage.writer import ReadingWriter

pytestmark = [pytest.mark.integration]

TZ = ZoneInfo("Asia/Almaty")
DAY = date(2026, 12, 2)
T0 = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # local midnight of DAY
KWH_PER_15M = 250.0


@pytest.fixture
async def db(any_backend_dsn: str) -> AsyncIterator[Database]:
    database = await Database.open(any_backend_dsn)
    try:
        await migrate(database)
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO points (name, kind, unit, device, subject, zone, meta) VALUES"
                " ('m1.ea_import', 'counter', 'kWh', 'm1', 'LOAD-S', 'South', '{\"code\": \"471234567890101\"}'),"
                " ('m2.p', 'analog', 'kW', 'm2', 'LOAD-S', 'South', '{}'),"
                " ('m3.silent', 'counter', 'kWh', 'm3', 'GEN-N', 'North', '{}')")
        refs = await points_by_name(database, ["m1.ea_import", "m2.p"])
        readings = []
        for k in range(4 * 24 + 1):
            t = T0 + timedelta(minutes=15 * k)
            readings.append(Reading(refs[0].id, t, 10_000.0 + KWH_PER_15M * k, Quality.GOOD, t))
            readings.append(Reading(refs[1].id, t, 1000.0 + k, Quality.GOOD, t))
        await ReadingWriter(database).write(readings)
        await refresh_rollups(database, T0 - timedelta(hours=1))
        yield database
    finally:
        await database.close()


async def test_series_csv_and_status(db: Database) -> None:
    m1, m2 = await points_by_name(db, ["m1.ea_import", "m2.p"])
    raw = await series(db, [m1.id, m2.id], T0, T0 + timedelta(hours=1), "raw")
    assert len(raw) == 8 and {r.step for r in raw} == {"raw"}
    hourly = await series(db, [m2.id], T0, T0 + timedelta(days=1), "1h")
    assert len(hourly) == 24 and hourly[0].value == pytest.approx(1001.5) and hourly[0].count == 4
    text = rows_to_csv(raw, {m1.id: m1.name, m2.id: m2.name})
    lines = text.strip().split("\r\n")
    assert lines[0] == "point,ts,step,value,min,max,count,increase,quality,manual"
    assert lines[1].startswith("m1.ea_import,2026-12-01T19:00:00+00:00,raw,10000.0,")
    with pytest.raises(ArchiveError, match="unknown point 'nope'"):
        await points_by_name(db, ["nope"])
    with pytest.raises(ArchiveError, match="empty"):
        await series(db, [m1.id], T0, T0)
    now = T0 + timedelta(days=1, minutes=10)
    st = {s.name: s for s in await point_status(db, now, timedelta(minutes=30))}
    assert st["m1.ea_import"].state == "active" and st["m1.ea_import"].last_mode == "automatic"
    assert st["m1.ea_import"].last_ts == T0 + timedelta(days=1)
    assert st["m3.silent"].state == "never" and st["m3.silent"].last_ts is None
    later = {s.name: s.state for s in await point_status(db, now + timedelta(hours=2), timedelta(minutes=30))}
    assert later["m1.ea_import"] == "inactive"
    south = await point_status(db, now, timedelta(minutes=30), zone="South")
    assert {s.name for s in south} == {"m1.ea_import", "m2.p"}


async def test_80020_export(db: Database) -> None:
    (m1,) = await points_by_name(db, ["m1.ea_import"])
    data = await export_80020(db, [m1], DAY, TZ, sender_name="GridWatch ДЦ", sender_inn="123456789012",
                              area_name="South", area_inn="123456789012", number=7,
                              created=T0 + timedelta(days=1, hours=2))
    assert data.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')
    root = ET.fromstring(data)
    assert root.tag == "message" and root.get("class") == "80020" and root.get("version") == "2"
    assert root.findtext("datetime/day") == "20261202"
    assert root.findtext("sender/name") == "GridWatch ДЦ"
    mp = root.find("area/measuringpoint")
    assert mp is not None and mp.get("code") == "471234567890101"
    periods = mp.findall("measuringchannel/period")
    assert len(periods) == 48
    assert (periods[0].get("start"), periods[0].get("end")) == ("0000", "0030")
    assert periods[-1].get("end") == "2400"
    assert {p.findtext("value") for p in periods} == {str(int(2 * KWH_PER_15M))}
    (m2,) = await points_by_name(db, ["m2.p"])
    with pytest.raises(ArchiveError, match="energy counters"):
        await export_80020(db, [m2], DAY, TZ, sender_name="x", sender_inn="1", area_name="a", area_inn="1",
                           number=1, created=T0)


async def test_four_eyes_correction(db: Database) -> None:
    (m2,) = await points_by_name(db, ["m2.p"])
    ts = T0 + timedelta(minutes=30)
    now = T0 + timedelta(days=1)
    c = await propose_correction(db, m2.id, ts, 5000.0, "CT ratio was wrong", actor="op1", now=now)
    assert c.state == "proposed" and c.original_value == 1002.0 and c.original_existed
    with pytest.raises(CorrectionError, match="already has an open proposal"):
        await propose_correction(db, m2.id, ts, 1.0, "again", actor="op2", now=now)
    with pytest.raises(FourEyesError, match="second user"):
        await decide_correction(db, c.id, actor="op1", approve=True, now=now)
    # still untouched
    raw = await series(db, [m2.id], ts, ts + timedelta(seconds=1), "raw")
    assert raw[0].value == 1002.0 and raw[0].quality == 0
    done = await decide_correction(db, c.id, actor="op2", approve=True, comment="checked", now=now)
    assert (done.state, done.decided_by, done.original_value, done.new_value) == ("applied", "op2", 1002.0, 5000.0)
    raw = await series(db, [m2.id], ts, ts + timedelta(seconds=1), "raw")
    assert raw[0].value == 5000.0 and raw[0].quality == int(Quality.MANUAL)
    # the rollups were refreshed: the 15-minute bucket holds the corrected value
    b15 = await series(db, [m2.id], ts, ts + timedelta(minutes=15), "15m")
    assert b15[0].value == pytest.approx(5000.0)
    with pytest.raises(CorrectionError, match="already applied"):
        await decide_correction(db, c.id, actor="op3", approve=True, now=now)
    st = {s.name: s for s in await point_status(db, now, timedelta(hours=1))}
    assert st["m2.p"].last_manual_at == now

    # a missing reading can be entered by hand, also with confirmation
    gap = T0 + timedelta(minutes=7)
    c2 = await propose_correction(db, m2.id, gap, 1000.5, "manual reading", actor="op2", now=now)
    assert not c2.original_existed and c2.original_value is None
    await decide_correction(db, c2.id, actor="op1", approve=True, now=now)
    assert [r.value for r in await series(db, [m2.id], gap, gap + timedelta(seconds=1), "raw")] == [1000.5]

    # reject keeps the reading; a stale proposal is refused
    ts3 = T0 + timedelta(minutes=45)
    c3 = await propose_correction(db, m2.id, ts3, 1.0, "typo", actor="op1", now=now)
    rej = await decide_correction(db, c3.id, actor="op2", approve=False, comment="not needed", now=now)
    assert rej.state == "rejected"
    assert (await series(db, [m2.id], ts3, ts3 + timedelta(seconds=1), "raw"))[0].value == 1003.0
    c4 = await propose_correction(db, m2.id, ts3, 2.0, "x", actor="op1", now=now)
    c5 = await propose_correction(db, m2.id, T0 + timedelta(minutes=60), 3.0, "y", actor="op1", now=now)
    await decide_correction(db, c5.id, actor="op2", approve=True, now=now)
    async with db.connection() as conn:
        await conn.execute("UPDATE readings SET value = 7 WHERE point_id = %s AND ts = %s", (m2.id, ts3))
    with pytest.raises(CorrectionError, match="changed since the proposal"):
        await decide_correction(db, c4.id, actor="op2", approve=True, now=now)
    assert [x.id for x in await list_corrections(db, state="proposed")] == [c4.id]
    with pytest.raises(CorrectionError, match="reason is required"):
        await propose_correction(db, m2.id, ts3, 2.0, " ", actor="op1", now=now)


class _Journal:
    def __init__(self) -> None:
        self.events: list[Any] = []

    async def record(self, event: Any) -> None:
        self.events.append(event)


class _Schedule:
    def __init__(self) -> None:
        self.dirty: list[datetime] = []

    def mark_dirty(self, ts: datetime) -> None:
        self.dirty.append(ts)


async def test_archive_api_four_eyes_and_exports(db: Database) -> None:
    from aiohttp.test_utils import TestClient, TestServer
    from prometheus_client import CollectorRegistry

    from collector.api.context import ApiContext
    from collector.api.server import build_app
    from core.config import parse_config

    journal, sched = _Journal(), _Schedule()
    ctx = ApiContext(config=parse_config({}, Path("t.toml"), {}, {}), db=db, registry=CollectorRegistry(),
                     journal=journal, tokens={"a": ("op1", "operator"), "b": ("op2", "operator"),
                                              "v": ("viewer1", "viewer")})
    ctx.features["schedule"] = sched
    tc: TestClient[Any, Any] = TestClient(TestServer(build_app(ctx, ("collector.api.archive",)), host="127.0.0.1"))
    await tc.start_server()
    op1, op2, view = ({"Authorization": f"Bearer {k}"} for k in ("a", "b", "v"))
    try:
        ts = (T0 + timedelta(minutes=15)).isoformat()
        body = {"point": "m2.p", "ts": ts, "value": 42.0, "reason": "meter swap"}
        assert (await tc.post("/api/v1/archive/corrections", json=body, headers=view)).status == 403
        r = await tc.post("/api/v1/archive/corrections", json=body, headers=op1)
        assert r.status == 201, await r.text()
        cid = (await r.json())["id"]
        r = await tc.post(f"/api/v1/archive/corrections/{cid}/confirm", json={}, headers=op1)
        assert r.status == 403 and "second user" in (await r.json())["error"]
        r = await tc.post(f"/api/v1/archive/corrections/{cid}/confirm", json={"comment": "ok"}, headers=op2)
        assert r.status == 200
        c = await r.json()
        assert (c["state"], c["original_value"], c["new_value"], c["decided_by"]) == ("applied", 1001.0, 42.0, "op2")
        assert [e.actor for e in journal.events] == ["op1", "op2"]
        assert all(e.kind == "correction" for e in journal.events)
        assert sched.dirty == [T0 + timedelta(minutes=15)]
        r = await tc.post("/api/v1/archive/corrections/999/confirm", json={}, headers=op2)
        assert r.status == 404
        bad = await tc.post("/api/v1/archive/corrections", json={**body, "value": "x"}, headers=op1)
        assert bad.status == 400 and "'value'" in (await bad.json())["error"]

        q = {"points": "m1.ea_import,m2.p", "from": T0.isoformat(), "to": (T0 + timedelta(hours=1)).isoformat(),
             "step": "raw"}
        r = await tc.get("/api/v1/archive/series", params=q, headers=view)
        data = await r.json()
        assert r.status == 200 and len(data["series"]["m2.p"]) == 4
        assert data["series"]["m2.p"][1]["value"] == 42.0 and data["series"]["m2.p"][1]["quality"] == int(Quality.MANUAL)
        r = await tc.get("/api/v1/archive/export.csv", params=q, headers=view)
        assert r.status == 200 and r.content_type == "text/csv"
        assert (await r.text()).count("\r\n") == 9
        r = await tc.get("/api/v1/archive/series", params={**q, "points": "ghost"}, headers=view)
        assert r.status == 404 and "ghost" in (await r.json())["error"]
        r = await tc.get("/api/v1/archive/export/80020", params={"points": "m1.ea_import", "day": DAY.isoformat()},
                         headers=view)
        assert r.status == 200 and ET.fromstring(await r.read()).get("class") == "80020"
        r = await tc.get("/api/v1/archive/status", params={"inactive_after_s": "60"}, headers=view)
        st = await r.json()
        assert st["counts"]["never"] == 1 and len(st["points"]) == 3
        r = await tc.get("/api/v1/archive/corrections", params={"state": "applied"}, headers=view)
        assert [x["id"] for x in (await r.json())["corrections"]] == [cid]
    finally:
        await tc.close()
