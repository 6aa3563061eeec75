"""The agent end to end against a real PostgreSQL with the test-only fake source kind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import psycopg
import pytest

from collector import store
from collector.agent import Agent
from core.records import Quality, Reading
from storage.db import Database
from tests.collector.helpers import expected_sum, fake_source, load, readings_stats, until, write_config

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    d = await Database.open(pg_dsn)
    await store.migrate(d)
    try:
        yield d
    finally:
        await d.close()


async def run_agent(agent: Agent) -> asyncio.Task[None]:
    task = asyncio.create_task(agent.run())
    await asyncio.wait_for(agent.started.wait(), 60)
    return task


async def stop_agent(agent: Agent, task: asyncio.Task[None]) -> None:
    agent.stop()
    await asyncio.wait_for(task, 60)


async def test_streaming_and_polled_sources_are_stored(tmp_path: Path, pg_dsn: str, db: Database) -> None:
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("s", 20, rounds=30)
                            + fake_source("p", 5, mode="poll", rounds=3, interval_s=0.2)))
    agent = Agent(cfg, db)
    task = await run_agent(agent)
    try:
        await until(lambda: readings_stats(pg_dsn)[0] == 20 * 30 + 5 * 3, what="all readings stored")
    finally:
        await stop_agent(agent, task)
    n, distinct, total = readings_stats(pg_dsn)
    assert n == distinct == 615
    assert total == pytest.approx(expected_sum(20, 30) + expected_sum(5, 3))
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT r.value, r.quality, r.ts FROM readings r JOIN points p ON p.id = r.point_id "
                           "WHERE p.name = 's.p7' ORDER BY ts DESC LIMIT 1").fetchone()
    assert row is not None and row[0] == pytest.approx(29.007)
    assert row[1] == Quality.LATE  # fake device time is 2026-01-01: older than late_after_s
    assert row[2].isoformat() == "2026-01-01T00:00:29+00:00"
    text = agent.registry.get_sample_value("gridwatch_readings_stored_total", {"source": "s"})
    assert text == 600


async def test_failing_source_retried_and_others_unaffected(tmp_path: Path, pg_dsn: str, db: Database) -> None:
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("bad", 2, rounds=5, fail_first=3)
                            + fake_source("good", 3, rounds=5)))
    agent = Agent(cfg, db)
    task = await run_agent(agent)
    try:
        await until(lambda: readings_stats(pg_dsn)[0] == 25, what="both sources stored")
    finally:
        await stop_agent(agent, task)
    assert agent.healths["bad"].counters["restarts"] == 3
    assert "refused (attempt 3)" in agent.healths["bad"].last_error
    assert agent.registry.get_sample_value("gridwatch_source_restarts_total", {"source": "bad"}) == 3


async def test_unknown_keys_dead_lettered_and_auto_registered(tmp_path: Path, pg_dsn: str, db: Database) -> None:
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("a", 1, rounds=1, extra_keys=["x1", "x2"])
                            + fake_source("r", 1, rounds=1, extra_keys=["1/2001"], auto_register=True)))
    agent = Agent(cfg, db)
    task = await run_agent(agent)

    def dead_letters() -> int:
        with psycopg.connect(pg_dsn) as conn:
            return int(conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])  # type: ignore[index]

    try:
        await until(lambda: readings_stats(pg_dsn)[0] == 3 and dead_letters() == 2, what="stored + dead letters")
    finally:
        await stop_agent(agent, task)
    with psycopg.connect(pg_dsn) as conn:
        reasons = sorted(r[0] for r in conn.execute("SELECT reason FROM dead_letters WHERE source = 'a'"))
        assert reasons == ["unknown point key 'x1'", "unknown point key 'x2'"]
        row = conn.execute("SELECT r.value FROM readings r JOIN points p ON p.id = r.point_id "
                           "WHERE p.name = 'r.1/2001'").fetchone()
        assert row is not None and row[0] == 1.0
    assert agent.registry.get_sample_value("gridwatch_samples_unmapped_total", {"source": "a"}) == 2


class Recorder:
    def __init__(self) -> None:
        self.rows = 0

    async def on_batch(self, batch: Sequence[Reading]) -> None:
        self.rows += len(batch)


class Broken:
    async def on_batch(self, batch: Sequence[Reading]) -> None:
        raise RuntimeError("observer bug")


async def test_observers_see_stored_batches_and_errors_are_contained(tmp_path: Path, pg_dsn: str,
                                                                     db: Database) -> None:
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("s", 10, rounds=20)))
    rec = Recorder()
    agent = Agent(cfg, db, observers=[Broken(), rec])
    task = await run_agent(agent)
    try:
        await until(lambda: rec.rows == 200, what="observer saw every reading")
    finally:
        await stop_agent(agent, task)
    assert readings_stats(pg_dsn)[0] == 200
    assert agent.registry.get_sample_value("gridwatch_observer_errors_total", {"observer": "Broken"}) >= 1


async def test_duplicates_from_a_restarted_source_are_flagged_not_duplicated(tmp_path: Path, pg_dsn: str,
                                                                             db: Database) -> None:
    cfg = load(write_config(tmp_path, pg_dsn, fake_source("s", 4, rounds=10)))
    agent = Agent(cfg, db)
    task = await run_agent(agent)
    try:
        await until(lambda: readings_stats(pg_dsn)[0] == 40)
        # The same samples again (a replaying device): flagged DUPLICATE, stored once.
        from datetime import timedelta

        from core.records import RawSample
        from tests.collector.fakes import BASE
        now = agent.clock()
        await agent.ingest("s", [RawSample("s", "s.p0", 0.0, now, BASE + timedelta(seconds=0))])
    finally:
        await stop_agent(agent, task)
    n, distinct, _ = readings_stats(pg_dsn)
    assert n == distinct == 40
    assert agent.normalizers["s"]._map["s.p0"].filter.last_ts is not None
    _ = Quality.DUPLICATE
