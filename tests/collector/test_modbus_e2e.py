"""Readings flow from a real Modbus TCP meter farm through the real driver into PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import psycopg
import pytest

from collector import store
from collector.agent import Agent
from core.clock import SystemClock
from storage.db import Database
from tests.collector.helpers import modbus_daemon_config, until
from tests.conftest import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


async def test_modbus_meters_to_database(tmp_path: Path, pg_dsn: str) -> None:
    sim_mod = pytest.importorskip("simulators.modbus")
    pytest.importorskip("protocols.modbus")
    port = free_port()
    cfg = modbus_daemon_config(tmp_path, pg_dsn, port, count=3)
    stop = asyncio.Event()
    sim = {"kind": "modbus", "host": "127.0.0.1", "templates": [f"{ROOT}/configs/templates/*.toml"],
           "groups": [{"name": "sdm-{n:02d}", "template": "sdm630", "count": 3, "port": port,
                       "values": {"frequency": 50.0}}]}
    sim_task = asyncio.create_task(sim_mod.run_simulator(sim, SystemClock(), stop))
    db = await Database.open(pg_dsn)
    await store.migrate(db)
    agent = Agent(cfg, db)
    task = asyncio.create_task(agent.run())

    def freq_rows() -> int:
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("SELECT count(DISTINCT p.device) FROM readings r JOIN points p ON p.id = r.point_id "
                               "WHERE p.name LIKE '%.frequency' AND r.value = 50.0").fetchone()
            return int(row[0]) if row else 0

    try:
        await until(lambda: freq_rows() == 3, what="every meter's frequency stored")
    finally:
        agent.stop()
        await asyncio.wait_for(task, 60)
        stop.set()
        await asyncio.wait_for(sim_task, 30)
        await db.close()
    assert agent.healths["mb"].links.get("sdm-01") in {"up", "down"}
    with psycopg.connect(pg_dsn) as conn:
        volts = [r[0] for r in conn.execute("SELECT r.value FROM readings r JOIN points p ON p.id = r.point_id "
                                            "WHERE p.name = 'sdm-02.voltage_l1'")]
    assert volts and all(150 < v < 300 for v in volts)
