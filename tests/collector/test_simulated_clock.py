"""`[clock]` reaches the daemon: readings of a run in simulated time carry simulated times."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from collector.daemon import serve
from core.clock import AcceleratedClock, SystemClock, clock_from_config
from core.errors import ConfigError
from simulators.modbus import run_simulator
from tests.collector.helpers import load, modbus_daemon_config, rows_once_migrated, until
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_clock_from_config() -> None:
    assert isinstance(clock_from_config(None, 1.0), SystemClock)
    c = clock_from_config(datetime(2026, 3, 2, tzinfo=UTC), 3600.0)
    assert isinstance(c, AcceleratedClock) and c.speed == 3600.0
    assert datetime(2026, 3, 2, tzinfo=UTC) <= c() < datetime(2026, 3, 3, tzinfo=UTC)


def test_naive_clock_start_is_a_config_error(tmp_path: Path) -> None:
    p = tmp_path / "gw.toml"
    p.write_text('[clock]\nstart = "2026-03-02T00:00:00"\nspeed = 60\n')
    with pytest.raises(ConfigError) as ei:
        load(p)
    assert any(i.path == "clock.start" and "UTC offset" in i.reason for i in ei.value.issues), ei.value.issues


@pytest.mark.integration
async def test_daemon_runs_in_simulated_time(tmp_path: Path, pg_dsn: str) -> None:
    port = free_port()
    cfg = modbus_daemon_config(tmp_path, pg_dsn, port, count=1, interval_s=60,
                               head='[clock]\nstart = "2026-03-02T10:00:00Z"\nspeed = 60')
    stop = asyncio.Event()
    sim = {"kind": "modbus", "host": "127.0.0.1", "templates": [f"{ROOT}/configs/templates/*.toml"],
           "groups": [{"name": "sdm-{n:02d}", "template": "sdm630", "count": 1, "port": port}]}
    sim_task = asyncio.create_task(run_simulator(sim, SystemClock(), stop))
    daemon = asyncio.create_task(serve(cfg, stop, api=False))

    def stamps() -> list[datetime]:
        rows = rows_once_migrated(pg_dsn, "SELECT DISTINCT r.ts FROM readings r JOIN points p ON p.id = r.point_id "
                                          "WHERE p.name = 'sdm-01.voltage_l1' ORDER BY 1")
        return [r[0] for r in rows]

    try:
        await until(lambda: len(stamps()) >= 2, timeout=90, what="two simulated reading cycles")
    finally:
        stop.set()
        await asyncio.wait_for(daemon, 60)
        await asyncio.wait_for(sim_task, 30)
    ts = stamps()
    assert all(datetime(2026, 3, 2, 10, tzinfo=UTC) <= t < datetime(2026, 3, 3, tzinfo=UTC) for t in ts), ts
