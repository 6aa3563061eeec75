"""Schedule store queries on a real PostgreSQL: counter spans, power integration in SQL (checked
against the Python trapezoid), result bookkeeping, restart catch-up and correction recompute."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from core.records import Event, Quality, Reading
from detectors.schedule.calendar import hour_of
from detectors.schedule.compute import integrate_power
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import build
from storage.archive import decide_correction, propose_correction
from storage.db import Database
from storage.migrate import migrate
from storage.schedule import ScheduleStore
from storage.writer import ReadingWriter

pytestmark = [pytest.mark.integration]

T0 = datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # 00:00 in Almaty
CFG = ScheduleConfig.model_validate({"subjects": [
    {"name": "GEN", "zone": "West", "kind": "generator", "points": [{"point": "g.ea", "unit": "kWh"}]}]})


class Journal:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
async def db(any_backend_dsn: str) -> AsyncIterator[Database]:
    database = await Database.open(any_backend_dsn)
    try:
        await migrate(database)
        async with database.connection() as conn:
            await conn.execute("INSERT INTO points (id, name, kind) VALUES (1, 'g.ea', 'counter'), (2, 'p.kw', 'analog')")
        yield database
    finally:
        await database.close()


def r(pid: int, t: datetime, v: float, q: Quality = Quality.GOOD) -> Reading:
    return Reading(pid, t, v, q, t)


async def test_power_integral_in_sql_matches_python(db: Database) -> None:
    samples = []
    t = T0 - timedelta(minutes=3)
    k = 0
    while t < T0 + timedelta(minutes=65):
        if not (T0 + timedelta(minutes=20) < t < T0 + timedelta(minutes=31)):  # an 11-minute gap
            samples.append((t, 1000.0 + 37.0 * math.sin(k / 5.0)))
        t += timedelta(seconds=47)
        k += 1
    rows = [r(2, ts, v) for ts, v in samples]
    rows.append(r(2, T0 + timedelta(minutes=40, seconds=5), 1e9, Quality.INVALID))  # ignored
    rows.append(r(2, T0 + timedelta(minutes=50, seconds=5), math.nan))  # ignored
    await ReadingWriter(db).write(rows)
    store = ScheduleStore(db)
    got = await store.power_energy([2], T0, T0 + timedelta(hours=1), 300.0)
    ref = integrate_power([(ts.timestamp(), v) for ts, v in samples], T0.timestamp(),
                          (T0 + timedelta(hours=1)).timestamp(), 300.0)
    assert got[2][0] == pytest.approx(ref.energy, rel=1e-9)
    assert got[2][1] == pytest.approx(ref.covered_s, rel=1e-9)
    assert 2800 < ref.covered_s < 3000  # the gap is not covered
    assert await store.power_energy([], T0, T0, 1.0) == {}


async def test_counter_spans(db: Database) -> None:
    rows = [r(1, T0 - timedelta(seconds=30), 100.0), r(1, T0 + timedelta(minutes=15), 110.0),
            r(1, T0 + timedelta(minutes=30), 1e6, Quality.COMM_FAIL), r(1, T0 + timedelta(minutes=45), 130.0),
            r(1, T0 + timedelta(hours=1, minutes=15), 150.0), r(1, T0 + timedelta(hours=1, minutes=30), 155.0)]
    await ReadingWriter(db).write(rows)
    store = ScheduleStore(db)
    tol = timedelta(minutes=2)
    sp = (await store.counter_spans([1], T0, T0 + timedelta(hours=1), tol))[1]
    assert (sp.base_ts, sp.base_value) == (T0 - timedelta(seconds=30), 100.0)
    assert (sp.last_ts, sp.last_value) == (T0 + timedelta(minutes=45), 130.0)  # the bad reading is skipped
    # no reading at the start of the next hour: the baseline falls back to the first inside it
    sp2 = (await store.counter_spans([1], T0 + timedelta(hours=1), T0 + timedelta(hours=2), tol))[1]
    assert (sp2.base_value, sp2.last_value) == (150.0, 155.0)
    sp3 = (await store.counter_spans([1], T0 + timedelta(hours=5), T0 + timedelta(hours=6), tol))[1]
    assert sp3.base_ts is None and sp3.last_ts is None


async def test_restart_catch_up_and_correction_recompute(db: Database) -> None:
    rows = [r(1, T0 + timedelta(minutes=15 * k), 1000.0 + 250.0 * k) for k in range(4 * 6 + 1)]
    await ReadingWriter(db).write(rows)
    journal = Journal()
    now = [T0 + timedelta(minutes=1)]
    svc = build(CFG, db, None, journal, lambda: now[0])
    await svc.tick()
    store = ScheduleStore(db)
    assert await store.last_final_end() is None
    # the service is down for 4 hours; a new instance closes the hours it missed
    now[0] = T0 + timedelta(hours=4, minutes=5)
    svc2 = build(CFG, db, None, journal, lambda: now[0])
    await svc2.tick()
    day = hour_of(T0, CFG.tz).day
    res = {x["hour"]: x for x in await store.results(day, "GEN")}
    assert [h for h in sorted(res) if res[h]["final"]] == [1, 2, 3, 4]
    assert all(res[h]["actual_mwh"] == pytest.approx(1.0) for h in (1, 2, 3, 4))  # 4 x 250 kWh
    assert not res[5]["final"]
    assert await store.last_final_end() == T0 + timedelta(hours=4)

    # a confirmed correction of the reading at 01:00 changes hours 1 and 2; the service journals it
    ts = T0 + timedelta(hours=1)
    c = await propose_correction(db, 1, ts, 2100.0, "register misread", actor="op1", now=now[0])
    await decide_correction(db, c.id, actor="op2", approve=True, now=now[0])
    svc2.mark_dirty(ts)
    n = len(journal.events)
    await svc2.tick()
    res = {x["hour"]: x for x in await store.results(day, "GEN")}
    assert res[1]["actual_mwh"] == pytest.approx(1.1) and res[2]["actual_mwh"] == pytest.approx(0.9)
    recomputed = [e for e in journal.events[n:] if "recomputed" in e.message]
    assert len(recomputed) == 2
    assert recomputed[0].details["changes"][0]["actual_before"] == pytest.approx(1.0)
