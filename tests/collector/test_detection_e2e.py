"""From a simulator's injected faults, through the whole daemon, to alerts and journal events.

1. The Modbus meter farm sags one meter's L1 voltage to 85 % of nominal (a labelled fault); the
   daemon (collector, storage, detectors, alerting wired exactly as `gridwatch run` does) must
   store the readings, raise a voltage-band alert for that point only, journal it, and the
   farm's labels file must name the same point and kind.
2. In simulated time (farm and daemon on one clock, 60 s read interval at x30): a sag, a swell,
   a spike, a frozen register and a meter going offline must each raise their rule's alert for
   the faulted point only, within 2 read intervals of the fault's start (the issue's target for
   threshold faults), measured on the alerts' own detector times; the offline meter's stale
   alert must still be firing four intervals into the outage.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from collector.daemon import serve
from core.clock import AcceleratedClock, SystemClock
from tests.collector.helpers import modbus_daemon_config, rows_once_migrated, until
from tests.conftest import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def point_alerts(dsn: str) -> list[tuple[str, str, str, datetime]]:
    """(rule, state, point name, started_at) of every point alert, oldest first."""
    rows = rows_once_migrated(dsn, "SELECT a.rule, a.state, p.name, a.started_at FROM alerts a "
                                   "JOIN points p ON p.id = a.point_id ORDER BY a.started_at")
    return [(str(r[0]), str(r[1]), str(r[2]), r[3]) for r in rows]


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
        return [(rule, state, name) for rule, state, name, _ in point_alerts(pg_dsn)]

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


async def test_threshold_faults_raise_their_alerts_within_two_intervals(tmp_path: Path, pg_dsn: str) -> None:
    from simulators.modbus import run_simulator

    t0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    interval = 60.0  # simulated seconds between reads; x30: one read every 2 real seconds
    speed = 30.0  # slow enough that a 1 s stall of a loaded machine stays far inside 2 intervals
    port = free_port()
    at = {k: t0 + timedelta(minutes=m) for k, m in
          (("sag", 4), ("swell", 5), ("spike", 6), ("frozen", 7), ("offline", 8))}
    faults = [  # point, kind, start, duration (simulated), magnitude; the rule that must fire
        ("sdm-01.voltage_l1", "sag", at["sag"], 600, 0.85, "voltage"),
        ("sdm-02.voltage_l2", "swell", at["swell"], 600, 1.12, "voltage"),
        ("sdm-03.active_power_total", "spike", at["spike"], 60, 20.0, "limit"),
        ("sdm-01.voltage_l3", "frozen", at["frozen"], 600, None, "frozen"),
        ("sdm-04", "offline", at["offline"], 600, None, "stale"),
    ]
    items = [{"point": p, "kind": k, "start": s.isoformat(), "duration_s": d, **({"magnitude": m} if m else {})}
             for p, k, s, d, m, _ in faults]
    sections = f"""
[detectors]
enabled = true
tick_s = 0.25
[detectors.ml]
enabled = false
[[detectors.limits]]
points = ["*.active_power_total"]
limits = {{ hi = 150.0 }}
[[detectors.frozen]]
points = ["*.voltage_l3"]
samples = 3
[[detectors.stale]]
points = ["*.voltage_l1"]
after_intervals = 2
interval_s = {interval}
[alerting]
enabled = true
"""
    cfg = modbus_daemon_config(tmp_path, pg_dsn, port, count=4, interval_s=interval, sections=sections,
                               head=f'[clock]\nstart = "{t0.isoformat()}"\nspeed = {speed}')
    # The farm reads the daemon's own clock once it runs (the same simulated instant on both
    # sides); until then a clock started alongside it.
    shared: dict[str, Any] = {"clock": AcceleratedClock(t0, speed)}

    async def on_ready(agent: Any, _api: Any) -> None:
        shared["clock"] = agent.clock

    stop = asyncio.Event()
    sim = {"kind": "modbus", "host": "127.0.0.1", "templates": [f"{ROOT}/configs/templates/*.toml"],
           "faults": {"rate_per_day": 0, "items": items},
           "groups": [{"name": "sdm-{n:02d}", "template": "sdm630", "count": 4, "port": port,
                       "profile": {"commercial": 1.0}, "peak_kw": 12.0}]}
    sim_task = asyncio.create_task(run_simulator(sim, lambda: shared["clock"](), stop))
    daemon = asyncio.create_task(serve(cfg, stop, api=False, on_ready=on_ready))

    def alerts() -> list[tuple[str, str, datetime]]:
        return [(rule, name, started) for rule, _, name, started in point_alerts(pg_dsn)]

    def raised(rule: str, point: str) -> bool:
        return any(r == rule and (n == point or n.startswith(point + ".")) for r, n, _ in alerts())

    def state(rule: str, point: str) -> str | None:
        return next((st for r, st, name, _ in point_alerts(pg_dsn) if r == rule and name == point), None)

    try:
        await until(lambda: all(raised(rule, p) for p, *_, rule in faults), timeout=150,
                    what="an alert for every injected fault")
        # The dead meter stays stale while it is offline: the driver's failed reads (NaN,
        # COMM_FAIL, one per interval) must not count as updates and resolve the alert.
        await until(lambda: shared["clock"]() >= at["offline"] + timedelta(seconds=4 * interval), timeout=60,
                    what="four intervals of the outage")
        assert state("stale", "sdm-04.voltage_l1") == "firing"
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 60)
        await asyncio.wait_for(sim_task, 30)

    found = alerts()
    for point, kind, start, _d, _m, rule in faults:
        hits = [(n, ts) for r, n, ts in found if r == rule and (n == point or n.startswith(point + "."))]
        delay = (min(ts for _, ts in hits) - start).total_seconds()
        assert 0 <= delay <= 2 * interval, (kind, point, delay, hits)
    # only the faulted points raise these rules (stale: the offline meter's voltage_l1 only)
    assert {n for r, n, _ in found if r == "voltage"} == {"sdm-01.voltage_l1", "sdm-02.voltage_l2"}, found
    assert {n for r, n, _ in found if r == "limit"} == {"sdm-03.active_power_total"}, found
    assert {n for r, n, _ in found if r == "frozen"} == {"sdm-01.voltage_l3"}, found
    assert {n for r, n, _ in found if r == "stale"} == {"sdm-04.voltage_l1"}, found
