"""Store-and-forward under real failures: the database stopped mid-ingest, SIGTERM, kill -9."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from collector import store
from collector.agent import Agent
from collector.spool import Spool
from storage.db import Database
from storage.embedded import EmbeddedPostgres
from tests.collector import fakes
from tests.collector.fakes import BASE
from tests.collector.helpers import (
    expected_sum,
    fake_source,
    load,
    readings_stats,
    until,
    until_sync,
    write_config,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NEW_START = 10_000_000  # seconds after fakes.BASE: timestamps the first run never produced
NEW_TS = BASE + timedelta(seconds=NEW_START)
ROOT = Path(__file__).resolve().parents[2]


class OwnPostgres:
    """A PostgreSQL this test may stop and start (same data directory, same DSN)."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="gw-outage-pg-"))
        self.server: EmbeddedPostgres | None = None
        self.dsn = ""

    def start(self) -> str:
        self.server = EmbeddedPostgres(self.base / "data")
        self.dsn = self.server.start()
        return self.dsn

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def own_pg() -> Iterator[OwnPostgres]:
    pg = OwnPostgres()
    pg.start()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.base, ignore_errors=True)


async def test_database_stopped_mid_ingest_no_loss_no_duplicates(tmp_path: Path, own_pg: OwnPostgres) -> None:
    n_points, rounds, gate = 10, 400, 100
    fakes.GATES["s"] = asyncio.Event()  # the source pauses after `gate` rounds until the DB is down
    db = await Database.open(own_pg.dsn, timeout=10)
    await store.migrate(db)
    cfg = load(write_config(tmp_path, own_pg.dsn, fake_source("s", n_points, rounds=rounds, per_round_s=0.005,
                                                              gate_at=gate),
                            batch_rows=200, write_timeout_s=2.0))
    agent = Agent(cfg, db)
    task = asyncio.create_task(agent.run())
    try:
        await until(lambda: readings_stats(own_pg.dsn)[0] == n_points * gate, what="first readings stored")
        await asyncio.to_thread(own_pg.stop)
        fakes.GATES["s"].set()
        await until(lambda: agent.spool.depth >= 3, what="batches spooled while the database is down")
        await asyncio.to_thread(own_pg.start)
        await until(lambda: readings_stats(own_pg.dsn)[0] == n_points * rounds and agent.spool.empty(),
                    timeout=120, what="everything stored after the database came back")
        assert agent.forwarder is not None and agent.forwarder.spooled > 0 and agent.forwarder.replayed > 0
    finally:
        fakes.GATES.pop("s", None)
        agent.stop()
        await asyncio.wait_for(task, 60)
        await db.close()
    n, distinct, total = readings_stats(own_pg.dsn)
    assert n == distinct == n_points * rounds
    assert total == pytest.approx(expected_sum(n_points, rounds))


def gridwatch(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "tests.collector.run_fake", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def finish(proc: subprocess.Popen[bytes], timeout: float = 60) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError("gridwatch did not exit:\n" + out.decode(errors="replace")[-3000:]) from None
    return proc.returncode, out.decode(errors="replace")


def test_sigterm_flushes_everything_and_exits_0(tmp_path: Path, pg_dsn: str) -> None:
    n_points = 7
    cfg = write_config(tmp_path, pg_dsn, fake_source("s", n_points, per_round_s=0.005), batch_rows=100000)
    proc = gridwatch("run", "-c", str(cfg), "--no-api")
    try:
        until_sync(lambda: readings_stats(pg_dsn)[0] > 0 if _has_readings(pg_dsn) else False,
                   what="daemon stored readings")
        proc.send_signal(signal.SIGTERM)
        rc, out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, out[-3000:]
    n, distinct, total = readings_stats(pg_dsn)
    rounds = n // n_points
    # Every round produced before SIGTERM reached the database: no gap, nothing partial.
    assert n == distinct == rounds * n_points and rounds > 1
    assert total == pytest.approx(expected_sum(n_points, rounds))
    assert Spool(tmp_path / "spool").open().empty()


def _has_readings(dsn: str) -> bool:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT to_regclass('readings') IS NOT NULL").fetchone()
        return bool(row and row[0])


def test_kill_9_acknowledged_spooled_data_replays_on_restart(tmp_path: Path, own_pg: OwnPostgres) -> None:
    n_points = 5
    cfg = write_config(tmp_path, own_pg.dsn, fake_source("s", n_points, per_round_s=0.01), batch_rows=50,
                       write_timeout_s=2.0)
    proc = gridwatch("run", "-c", str(cfg), "--no-api")
    spool_dir = tmp_path / "spool"
    try:
        until_sync(lambda: _has_readings(own_pg.dsn) and readings_stats(own_pg.dsn)[0] > 50,
                   what="daemon stored readings")
        own_pg.stop()
        until_sync(lambda: sum(p.stat().st_size for p in spool_dir.glob("seg-*.spool")) > 20_000,
                   what="daemon spooled while the database is down")
        proc.kill()
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    spooled = [r for batch in Spool(spool_dir).open().pending() for r in batch]
    assert len(spooled) >= 100
    own_pg.start()
    want = {(r.point_id, r.ts) for r in spooled}

    def replayed() -> bool:
        with psycopg.connect(own_pg.dsn) as conn:
            have = {(int(r[0]), r[1]) for r in conn.execute("SELECT point_id, ts FROM readings")}
        return want <= have and len({k for k in have if k[1] >= NEW_TS}) == n_points

    # Restart with a source that produces other timestamps: what appears is the spool's replay.
    cfg2 = write_config(tmp_path, own_pg.dsn, fake_source("s", n_points, rounds=1, start_index=NEW_START),
                        batch_rows=50)
    proc = gridwatch("run", "-c", str(cfg2), "--no-api")
    try:
        try:
            until_sync(replayed, what="spooled readings replayed after restart")
        except AssertionError:
            proc.kill()
            with psycopg.connect(own_pg.dsn) as conn:
                have = {(int(r[0]), r[1]) for r in conn.execute("SELECT point_id, ts FROM readings")}
            raise AssertionError(f"{len(want - have)} of {len(want)} spooled readings missing, "
                                 f"{len({k for k in have if k[1] >= NEW_TS})} new; "
                                 + finish(proc)[1][-4000:]) from None
        proc.send_signal(signal.SIGTERM)
        rc, out = finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, out[-3000:]
    with psycopg.connect(own_pg.dsn) as conn:
        stored = {(int(r[0]), r[1], float(r[2])) for r in conn.execute("SELECT point_id, ts, value FROM readings")}
    assert all((r.point_id, r.ts, r.value) in stored for r in spooled)
    n, distinct, _ = readings_stats(own_pg.dsn)
    assert n == distinct
    assert Spool(spool_dir).open().empty()
