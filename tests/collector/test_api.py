"""The HTTP API against a real PostgreSQL holding readings ingested by the agent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from collector import store
from collector.agent import Agent, LogJournal
from collector.api.context import ApiContext
from collector.api.server import build_app
from storage.db import Database
from tests.collector.helpers import fake_source, load, readings_stats, until, write_config

pytestmark = pytest.mark.integration
TOKENS = """
[[api.tokens]]
name = "ops"
role = "viewer"
token = "s3cret"
[[api.tokens]]
name = "env"
role = "admin"
token_env = "GW_TEST_ADMIN_TOKEN"
"""


async def _setup(tmp_path: Path, pg_dsn: str, extra: str = "") -> tuple[Database, Agent]:
    db = await Database.open(pg_dsn)
    await store.migrate(db)
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("s", 3, rounds=10, extra_keys=["zz"])
                            + fake_source("t", 2, rounds=1), extra=extra))
    agent = Agent(cfg, db)
    task = asyncio.create_task(agent.run())
    await until(lambda: readings_stats(pg_dsn)[0] == 32, what="readings stored")
    await asyncio.sleep(0)
    agent.stop()
    await asyncio.wait_for(task, 60)
    return db, agent


@pytest.fixture
async def client(tmp_path: Path, pg_dsn: str) -> AsyncIterator[TestClient[Any, Any]]:
    db, agent = await _setup(tmp_path, pg_dsn)
    ctx = ApiContext(config=agent.config, db=db, registry=agent.registry, journal=LogJournal(),
                     features={"agent": agent})
    async with TestClient(TestServer(build_app(ctx))) as c:
        yield c
    await db.close()


async def get(c: TestClient[Any, Any], url: str, status: int = 200, **kw: Any) -> Any:
    r = await c.get(url, **kw)
    body = await r.text()
    assert r.status == status, body
    return await r.json() if r.content_type == "application/json" else body


async def test_health_ready_metrics(client: TestClient[Any, Any]) -> None:
    assert await get(client, "/healthz") == {"status": "ok"}
    ready = await get(client, "/readyz")
    assert ready["ready"] is True and ready["database"]["reachable"] is True
    assert set(ready["sources"]) == {"s", "t"}
    text = await get(client, "/metrics")
    assert 'gridwatch_readings_stored_total{source="s"} 30.0' in text
    assert 'gridwatch_samples_unmapped_total{source="s"} 1.0' in text
    assert "gridwatch_batch_write_seconds_bucket" in text


async def test_points_filters_and_paging(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/api/v1/points?source=s")
    assert body["total"] == 3 and [p["name"] for p in body["points"]] == ["s.p0", "s.p1", "s.p2"]
    body = await get(client, "/api/v1/points?limit=2&offset=3")
    assert body["total"] == 5 and [p["name"] for p in body["points"]] == ["t.p0", "t.p1"]
    body = await get(client, "/api/v1/points?limit=0", 400)
    assert body == {"error": "parameter 'limit': 0 is outside 1..10000"}
    body = await get(client, "/api/v1/points?colour=red", 400)
    assert "parameter 'colour' is not known" in body["error"]


async def test_readings_raw_json_csv_and_errors(client: TestClient[Any, Any]) -> None:
    q = "from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z"
    body = await get(client, f"/api/v1/readings?point=s.p1&{q}&step=raw")
    assert body["step"] == "raw"
    [series] = body["series"]
    assert series["point"] == "s.p1" and len(series["data"]) == 10
    assert series["data"][3]["value"] == pytest.approx(3.001)
    assert series["data"][3]["ts"] == "2026-01-01T00:00:03+00:00"
    pid = series["point_id"]
    body = await get(client, f"/api/v1/readings?point={pid}&point=t.p0&{q}")
    assert [s["point"] for s in body["series"]] == ["s.p1", "t.p0"]
    assert [len(s["data"]) for s in body["series"]] == [10, 1]
    csv = await get(client, f"/api/v1/readings?point=s.p0&{q}&step=raw&format=csv")
    lines = csv.strip().splitlines()
    assert lines[0] == "point,point_id,ts,value,quality" and len(lines) == 11
    assert lines[1].startswith("s.p0,")
    agg = await get(client, f"/api/v1/readings?point=s.p0&{q}&step=1h")
    assert agg["step"] == "1h"
    # errors name the parameter
    assert (await get(client, "/api/v1/readings", 400))["error"].startswith("parameter 'point' is required")
    assert (await get(client, f"/api/v1/readings?point=nope&{q}", 404))["error"] == \
        "parameter 'point': no point named or numbered 'nope'"
    assert "parameter 'step'" in (await get(client, f"/api/v1/readings?point=s.p0&{q}&step=5m", 400))["error"]
    assert "parameter 'from'" in (await get(client, "/api/v1/readings?point=s.p0&from=yesterday", 400))["error"]
    assert "parameter 'format'" in (await get(client, f"/api/v1/readings?point=s.p0&{q}&format=xml", 400))["error"]
    body = await get(client, "/api/v1/readings?point=s.p0&from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", 400)
    assert body == {"error": "parameter 'from' must be before 'to'"}


async def test_dead_letters_route(client: TestClient[Any, Any]) -> None:
    body = await get(client, "/api/v1/dead-letters?source=s")
    assert body["total"] == 1
    [dl] = body["dead_letters"]
    assert dl["reason"] == "unknown point key 'zz'" and '"key": "zz"' in dl["payload"]


async def test_tokens_from_config_and_env(tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_ADMIN_TOKEN", "from-env")
    db, agent = await _setup(tmp_path, pg_dsn, extra=TOKENS)
    ctx = ApiContext(config=agent.config, db=db, registry=agent.registry, journal=LogJournal(),
                     features={"agent": agent})
    try:
        async with TestClient(TestServer(build_app(ctx))) as c:
            assert (await get(c, "/api/v1/points", 401))["error"] == "a bearer token is required"
            await get(c, "/api/v1/points", 401, headers={"Authorization": "Bearer wrong"})
            await get(c, "/api/v1/points", headers={"Authorization": "Bearer s3cret"})
            await get(c, "/api/v1/dead-letters", headers={"Authorization": "Bearer from-env"})
            await get(c, "/healthz")
    finally:
        await db.close()
    assert ctx.tokens == {"s3cret": ("ops", "viewer"), "from-env": ("env", "admin")}


async def test_readyz_503_when_database_is_down(tmp_path: Path) -> None:
    from tests.collector.test_outage import OwnPostgres

    pg = OwnPostgres()
    dsn = pg.start()
    db = await Database.open(dsn, timeout=5)
    try:
        cfg = load(write_config(tmp_path, dsn, ""))
        ctx = ApiContext(config=cfg, db=db, registry=__import__("prometheus_client").CollectorRegistry(),
                         journal=LogJournal())
        async with TestClient(TestServer(build_app(ctx))) as c:
            assert (await get(c, "/readyz"))["ready"] is True
            await asyncio.to_thread(pg.stop)
            body = await get(c, "/readyz", 503)
            assert body["ready"] is False and body["database"]["reachable"] is False
            assert body["database"]["error"]
            assert (await get(c, "/healthz")) == {"status": "ok"}
    finally:
        await db.close()
        pg.stop()
        import shutil

        shutil.rmtree(pg.base, ignore_errors=True)
