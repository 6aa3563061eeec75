"""QoS 1 JSON messages from a real mosquitto through the real MQTT driver into PostgreSQL,
published while the daemon is up and while it is down (the persistent session keeps them)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest

from collector import store
from collector.agent import Agent
from storage.db import Database
from tests.collector.helpers import load, until

pytestmark = pytest.mark.integration


def publish(port: int, meter: str, lines: list[str]) -> None:
    exe = shutil.which("mosquitto_pub")
    assert exe is not None
    subprocess.run([exe, "-h", "127.0.0.1", "-p", str(port), "-q", "1", "-t", f"amr/{meter}/readings", "-l"],
                   input="\n".join(lines) + "\n", text=True, check=True, timeout=60)


def message(meter: str, minute: int) -> str:
    return (f'{{"meter": "{meter}", "ts": "2026-12-01T10:{minute:02d}:00Z", '
            f'"voltage_l1": {230 + minute / 10}, "frequency": 50.0}}')


async def test_mqtt_qos1_to_database(tmp_path: Path, pg_dsn: str, mqtt_broker) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("protocols.mqtt")
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub not installed (Debian package mosquitto-clients)")
    cfg_path = tmp_path / "gw.toml"
    cfg_path.write_text(f"""
[storage]
dsn = "{pg_dsn}"
batch_max_age_ms = 100
[spool]
dir = "{tmp_path / 'spool'}"
[api]
enabled = false
[filters]
late_after_s = 100000000
[[templates]]
name = "meter"
kind = "mqtt"
points = [{{ name = "voltage_l1", unit = "V" }}, {{ name = "frequency", unit = "Hz" }}]
[[sources]]
name = "amr"
kind = "mqtt"
[sources.options]
host = "127.0.0.1"
port = {mqtt_broker.port}
client_id = "gw-test-{tmp_path.name[-12:]}"
qos = 1
persistent_session = true
[[sources.options.topics]]
pattern = "amr/+meter/readings"
format = "json"
json = {{ timestamp = "ts", timestamp_format = "iso8601" }}
[[sources.devices]]
name = "m{{n}}"
count = 3
template = "meter"
""")
    cfg = load(cfg_path)
    db = await Database.open(pg_dsn)
    await store.migrate(db)

    def stored() -> int:
        with psycopg.connect(pg_dsn) as conn:
            row = conn.execute("SELECT count(*) FROM readings").fetchone()
            return int(row[0]) if row else 0

    async def run_until(expected: int) -> None:
        agent = Agent(cfg, db)
        task = asyncio.create_task(agent.run())
        try:
            await until(lambda: agent.healths["amr"].links and all(
                v == "up" for v in agent.healths["amr"].links.values()), what="subscribed")
            if expected == 30:
                for m in ("m1", "m2", "m3"):
                    await asyncio.to_thread(publish, mqtt_broker.port, m, [message(m, k) for k in range(5)])
            await until(lambda: stored() == expected, what=f"{expected} readings stored")
        finally:
            agent.stop()
            await asyncio.wait_for(task, 60)

    try:
        await run_until(30)
        # daemon down: the broker keeps QoS 1 messages for our persistent session
        for m in ("m1", "m2"):
            await asyncio.to_thread(publish, mqtt_broker.port, m, [message(m, k) for k in range(5, 8)])
        await run_until(42)
    finally:
        await db.close()
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT r.value, r.ts FROM readings r JOIN points p ON p.id = r.point_id "
                           "WHERE p.name = 'm2.voltage_l1' ORDER BY r.ts DESC LIMIT 1").fetchone()
    assert row is not None and row[0] == pytest.approx(230.7)
    assert row[1].isoformat() == "2026-12-01T10:07:00+00:00"
