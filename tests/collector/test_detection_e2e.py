"""From a simulator's injected fault, through the whole daemon, to an alert and its journal event.

The Modbus meter farm sags one meter's L1 voltage to 85 % of nominal (a labelled fault); the
daemon (collector, storage, detectors, alerting wired exactly as `gridwatch run` does) must
store the readings, raise a voltage-band alert for that point only, journal it, and the farm's
labels file must name the same point and kind.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from collector.daemon import serve
from core.clock import SystemClock
from tests.collector.helpers import modbus_daemon_config, until
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


async def test_injected_sag_becomes_alert_and_event(tmp_path: Path, pg_dsn: str) -> None:
    from simulators.modbus import run_simulator

    port = free_port()
    labels = tmp_path / "labels.jsonl"
    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    cfg = modbus_daemon_config(tmp_path, pg_dsn, port, count=2, device='zone = "North"',
                               sections="[detectors]\nenabled = true\n[alerting]\nenabled = true")
    stop = asyncio.Event()
    sim = {"kind": "modbus", "host": "127.0.0.1", "templates": [f"{ROOT}/configs/templates/*.toml"],
           "labels": str(labels),
           "faults": {"rate_per_day": 0, "items": [
               {"point": "sdm-01.voltage_l1", "kind": "sag", "start": start, "duration_s": 3600}]},
           "groups": [{"name": "sdm-{n:02d}", "template": "sdm630", "count": 2, "port": port}]}
    sim_task = asyncio.create_task(run_simulator(sim, SystemClock(), stop))
    daemon = asyncio.create_task(serve(cfg, stop, api=False))

    def alerts() -> list[tuple[str, str, str]]:
        with psycopg.connect(pg_dsn) as conn:
            try:
                rows = conn.execute("SELECT a.rule, a.state, p.name FROM alerts a "
                                    "JOIN points p ON p.id = a.point_id").fetchall()
            except psycopg.errors.UndefinedTable:
                return []
            return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]

    try:
        await until(lambda: any(rule == "voltage" and name == "sdm-01.voltage_l1" for rule, _, name in alerts()),
                    timeout=90, what="a voltage-band alert for the sagging phase")
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 60)
        await asyncio.wait_for(sim_task, 30)

    found = alerts()
    voltage_points = {name for rule, _, name in found if rule == "voltage"}
    assert voltage_points == {"sdm-01.voltage_l1"}, found  # the healthy phases and meter raise nothing
    with psycopg.connect(pg_dsn) as conn:
        ev = conn.execute("SELECT count(*) FROM events WHERE kind = 'alert' AND message LIKE %s",
                          ("%sdm-01.voltage_l1%",)).fetchone()
        sagged = conn.execute("SELECT min(r.value), max(r.value) FROM readings r JOIN points p ON p.id = r.point_id "
                              "WHERE p.name = 'sdm-01.voltage_l1'").fetchone()
    assert ev is not None and ev[0] >= 1, "the alert transition is journaled"
    assert sagged is not None and sagged[1] < 230 * 0.9, sagged
    lines = [json.loads(x) for x in labels.read_text().splitlines() if x.strip()]
    assert any(x["point"] == "sdm-01.voltage_l1" and x["kind"] == "sag" for x in lines), lines
