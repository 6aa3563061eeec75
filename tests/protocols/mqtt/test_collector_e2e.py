"""Head-end -> mosquitto -> MQTT driver -> collector Agent -> PostgreSQL, and the broker's view
afterwards: every QoS 1 message was acknowledged once stored (nothing is redelivered)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.config import parse_config
from protocols.mqtt import SOURCE_KIND
from simulators.mqtt import HeadEnd, HeadEndConfig
from tests.conftest import Broker
from tests.protocols.mqtt.support import Consumer, make_driver, publish, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]

FIELDS = ("voltage_l1", "active_power_total", "energy_import_active")


async def test_readings_stored_through_the_collector_then_acknowledged(mqtt_broker: Broker, pg_dsn: str,
                                                                       tmp_path: Path) -> None:
    from collector import store
    from collector.agent import Agent
    from storage.db import Database
    from storage.readings import latest_readings

    topics = [{"pattern": "amr/+meter/readings", "json": {"timestamp_format": "iso8601"}}]
    raw = {
        "storage": {"dsn": pg_dsn, "batch_max_rows": 1000, "batch_max_age_ms": 100},
        "spool": {"dir": str(tmp_path / "spool")},
        "api": {"enabled": False},
        "templates": [{"name": "mqtt-meter", "kind": "mqtt", "points": [{"name": f} for f in FIELDS]}],
        "sources": [{"name": "amr", "kind": "mqtt",
                     "options": {"port": mqtt_broker.port, "client_id": "gw-e2e", "topics": topics},
                     "devices": [{"name": "m{n:05d}", "count": 4, "template": "mqtt-meter"}]}],
    }
    cfg = parse_config(raw, Path("<e2e>"), {"mqtt": SOURCE_KIND}, {})
    db = await Database.open(pg_dsn, pool_size=2)
    try:
        await store.migrate(db)
        agent = Agent(cfg, db, maintenance_interval_s=3600)
        task = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.started.wait(), 60)
            health = agent.healths["amr"]
            await wait_until(lambda: health.links.get("broker") == "up", what="the agent's MQTT source")
            ts = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=15)
            async with HeadEnd(HeadEndConfig(port=mqtt_broker.port, meters=4, fields=FIELDS)) as h:
                sent = await h.cycle(ts)
            fw = agent.forwarder
            assert fw is not None
            await wait_until(lambda: fw.stored >= len(sent.readings), what="readings stored")
            ids = {f"{m}.{f}": agent.point_ids[f"{m}.{f}"] for m in h.meter_names for f in FIELDS}
            latest = await latest_readings(db, list(ids.values()))
            for name, pid in ids.items():
                value, when = sent.readings[name.replace(".", "/")]
                assert latest[pid].value == pytest.approx(value) and latest[pid].ts == when, name
            assert health.counters["unmapped"] == 0 and health.counters["decode_errors"] == 0
        finally:
            agent.stop()
            await asyncio.wait_for(task, 60)
    finally:
        await db.close()
    # the agent acknowledged what it stored: its session holds nothing to redeliver
    async with Consumer(make_driver(mqtt_broker.port, topics, name="amr", client_id="gw-e2e")) as c:
        await publish(mqtt_broker.port, [("amr/marker/readings", b'{"p": 1}')])
        await wait_until(lambda: any(s.key == "marker/p" for s in c.samples), what="marker")
        assert {s.key for s in c.samples} == {"marker/p"}
