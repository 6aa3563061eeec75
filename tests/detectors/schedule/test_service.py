"""A full operating day of simulated meters through the schedule service, in simulated time.

Readings for the whole day are written up front with storage's ReadingWriter (the service only
looks at readings up to its clock's `now`); the service is ticked with an explicit clock every
15 minutes. Results are checked against an independent computation from the raw readings.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta

import pytest

from core.clock import AcceleratedClock
from core.records import Quality, Reading
from detectors.schedule.calendar import day_hours
from detectors.schedule.compute import integrate_power
from detectors.schedule.plans import PlanImportError, parse_csv
from detectors.schedule.service import ScheduleService, build
from simulators.profiles import Profile
from storage.db import Database
from storage.migrate import migrate
from storage.schedule import PlanHourRow, PlanVersionRow, ScheduleStore
from storage.writer import ReadingWriter
from tests.detectors.helpers import Journal, Sink
from tests.detectors.schedule.helpers import make_config

pytestmark = [pytest.mark.integration]

DAY = date(2026, 12, 2)
# a band wide enough that ordinary within-hour ramps of the profiles (up to ~9 % of projection
# error at half an hour) never warn, narrow enough that the injected drifts always do
CFG = make_config(tolerance_pct=15.0, early_warning={"min_elapsed_min": 30.0})
HOURS = day_hours(DAY, CFG.tz)
DRIFT_HOUR = 13  # GEN-N's plan is 40 % below what it generates in this hour
MINER_HOUR = 9  # the miner bought 25 % less than it consumes in this hour
GEN_FACTOR = 0.6
MINER_FACTOR = 0.75
GAP_HOUR = 16  # the load's reading at the end of this hour arrives late


PROFILES = {
    "gen.ea_export": Profile.create("industrial", seed=1, peak_kw=80_000.0),
    "load.ea_import": Profile.create("commercial", seed=2, peak_kw=40_000.0),
    "miner.ea_import": Profile.create("industrial", seed=3, peak_kw=15_000.0),
    "plantw.p": Profile.create("industrial", seed=4, peak_kw=20_000.0),
}


def day_readings() -> tuple[list[Reading], list[Reading]]:
    """(readings written at once, the one late reading) for the whole day plus margins."""
    start, end = HOURS[0].start - timedelta(hours=1), HOURS[-1].end + timedelta(hours=1)
    rx = start
    out: list[Reading] = []
    late: list[Reading] = []
    for name, prof in PROFILES.items():
        pid = IDS[name]
        if name.endswith(".p"):
            t = start
            while t <= end:
                out.append(Reading(pid, t, prof.power_kw(t), Quality.GOOD, t))
                t += timedelta(seconds=60)
            continue
        t = start
        total = 1_000_000.0
        while t <= end:
            r = Reading(pid, t, total, Quality.GOOD, rx)
            if name == "load.ea_import" and t == HOURS[GAP_HOUR - 1].end:
                late.append(r)
            else:
                out.append(r)
            total += prof.energy_kwh(t, t + timedelta(minutes=15))
            t += timedelta(minutes=15)
    return out, late


IDS: dict[str, int] = {}


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    database = await Database.open(pg_dsn, backend="postgres")
    try:
        await migrate(database)
        async with database.connection() as conn:
            for name in PROFILES:
                cur = await conn.execute("INSERT INTO points (name, kind) VALUES (%s, %s) RETURNING id",
                                         (name, "analog" if name.endswith(".p") else "counter"))
                row = await cur.fetchone()
                assert row is not None
                IDS[name] = int(row[0])  # type: ignore[call-overload]
        yield database
    finally:
        await database.close()


def from_profile(subject: str, i: int) -> float:
    """A subject's hour energy from its profile (for hours whose readings are incomplete)."""
    s = CFG.subject(subject)
    assert s is not None
    mp = s.points[0]
    return PROFILES[mp.point].energy_kwh(HOURS[i].start, HOURS[i].end) / 1000.0 * (1 - mp.loss_factor)


def plan_csv(actual: dict[str, list[float]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["day", "subject", "hour", "value", "unit"])
    for subject, values in actual.items():
        for h, v in enumerate(values, start=1):
            if subject == "GEN-N" and h == DRIFT_HOUR:
                v *= GEN_FACTOR
            if subject == "MINER-N" and h == MINER_HOUR:
                v *= MINER_FACTOR
            w.writerow([DAY.isoformat(), subject, h, f"{v:.6f}", "MWh"])
    return buf.getvalue()


async def raw(db: Database) -> dict[int, dict[datetime, float]]:
    async with db.connection() as conn:
        cur = await conn.execute("SELECT point_id, ts, value FROM readings ORDER BY point_id, ts")
        out: dict[int, dict[datetime, float]] = {}
        for pid, ts, v in await cur.fetchall():
            out.setdefault(int(pid), {})[ts] = float(v)  # type: ignore[call-overload, arg-type]
        return out


def independent(rows: dict[int, dict[datetime, float]]) -> dict[str, list[float | None]]:
    """Subject actuals per hour straight from the raw readings (None: data missing)."""
    out: dict[str, list[float | None]] = {}
    for s in CFG.subjects:
        vals: list[float | None] = []
        for h in HOURS:
            total: float | None = 0.0
            for mp in s.points:
                series = rows[IDS[mp.point]]
                if mp.kind == "energy":
                    if h.start not in series or h.end not in series:
                        total = None
                        break
                    e = series[h.end] - series[h.start]
                else:
                    pts = sorted((ts.timestamp(), v) for ts, v in series.items())
                    e = integrate_power(pts, h.start.timestamp(), h.end.timestamp(), 300.0).energy
                assert total is not None
                total += mp.sign * e / 1000.0 * (1 - mp.loss_factor)
            vals.append(None if total is None else (total if s.kind == "generator" else -total))
        out[s.name] = vals
    return out


async def run_day(svc: ScheduleService, until: datetime) -> None:
    t = HOURS[0].start + timedelta(minutes=1)
    while t <= until:
        await svc.tick(now=t)
        t += timedelta(minutes=15)


async def test_full_day_plan_vs_actual_warning_and_late_data(db: Database) -> None:
    writer = ReadingWriter(db)
    readings, late = day_readings()
    for i in range(0, len(readings), 5000):
        await writer.write(readings[i:i + 5000])
    # plans: exact actuals (from an independent computation), GEN-N drifting in one hour
    exact = independent(await raw(db))
    filled = {k: [v if v is not None else from_profile(k, i) for i, v in enumerate(vals)] for k, vals in exact.items()}
    sink, journal = Sink(), Journal()
    clock_now = [HOURS[0].start]
    svc = build(CFG, db, sink, journal, lambda: clock_now[0])
    stored = await svc.import_plans(parse_csv(plan_csv(filled), CFG, "plans.csv"), "op1")
    assert {s.subject for s in stored} == {"GEN-N", "LOAD-S", "MINER-N", "PLANT-W"}

    await run_day(svc, HOURS[-1].end + timedelta(minutes=20))
    store = ScheduleStore(db)
    res = await store.results(DAY)
    by = {(r["entity"], r["hour"]): r for r in res}
    assert all(r["final"] for r in res), "every hour of the day is closed"

    # 1. plan against actual per hour equals the independent computation
    for subject, vals in exact.items():
        for h, v in enumerate(vals, start=1):
            row = by[(subject, h)]
            if v is None:
                assert row["verdict"] == "incomplete", (subject, h)
                continue
            assert row["actual_mwh"] == pytest.approx(v, rel=1e-9, abs=1e-9), (subject, h)
            assert row["plan_mwh"] == pytest.approx(filled[subject][h - 1] * (GEN_FACTOR if (subject, h) == ("GEN-N", DRIFT_HOUR)
                                                     else MINER_FACTOR if (subject, h) == ("MINER-N", MINER_HOUR) else 1.0),
                                                     rel=1e-6)
            expected = ("deviation" if (subject, h) == ("GEN-N", DRIFT_HOUR) else
                        "above_quota" if (subject, h) == ("MINER-N", MINER_HOUR) else "ok")
            assert row["verdict"] == expected, (subject, h, row)
    for h in range(1, len(HOURS) + 1):
        gen, load, miner = (exact[s][h - 1] for s in ("GEN-N", "LOAD-S", "MINER-N"))
        if None in (gen, load, miner):
            continue
        assert by[("North", h)]["actual_mwh"] == pytest.approx(gen - miner)  # type: ignore[operator]
        assert by[("North-South", h)]["actual_mwh"] == pytest.approx(gen - miner - load)  # type: ignore[operator]
        assert by[("miners:North", h)]["actual_mwh"] == pytest.approx(miner)
    # the missing reading makes both hours around it incomplete, never a false deviation
    assert by[("LOAD-S", GAP_HOUR)]["verdict"] == "incomplete"
    assert by[("LOAD-S", GAP_HOUR + 1)]["verdict"] == "incomplete"
    assert by[("South", GAP_HOUR)]["verdict"] == "incomplete"

    # 2. the early warning fired before the end of the drifting hour, and was resolved at close
    drift = HOURS[DRIFT_HOUR - 1]
    fired = [a for a in sink.alerts if a.key == "schedule:GEN-N" and a.firing]
    assert len(fired) == 1
    assert drift.start < fired[0].ts < drift.end and fired[0].evidence["hour"] == DRIFT_HOUR
    assert fired[0].evidence["projected_mwh"] > fired[0].evidence["plan_mwh"] + fired[0].evidence["band_mwh"]
    assert any(a.key == "schedule:GEN-N" and not a.firing and a.ts >= drift.end for a in sink.alerts)
    assert any(a.key == "schedule:MINER-N" and a.firing and a.evidence["verdict"] == "above_quota"
               and a.evidence["hour"] == MINER_HOUR for a in sink.alerts)
    # no false early warning for subjects that follow their plan
    assert {a.subject for a in sink.alerts if a.firing and a.subject} == {"GEN-N", "MINER-N"}

    # 3. a late batch recomputes its hours and journals the change
    n_events = len(journal.events)
    await writer.write(late)
    await svc.on_batch(late)
    await svc.tick(now=HOURS[-1].end + timedelta(minutes=40))
    res2 = {(r["entity"], r["hour"]): r for r in await store.results(DAY)}
    exact2 = independent(await raw(db))
    for h in (GAP_HOUR, GAP_HOUR + 1):
        row = res2[("LOAD-S", h)]
        assert row["verdict"] == "ok" and row["completeness"] == pytest.approx(1.0)
        assert row["actual_mwh"] == pytest.approx(exact2["LOAD-S"][h - 1], rel=1e-9)
    changes = [e for e in journal.events[n_events:] if "recomputed" in e.message]
    assert len(changes) == 2
    assert any(c["entity"] == "LOAD-S" and c["verdict_before"] == "incomplete" and c["verdict_after"] == "ok"
               for c in changes[0].details["changes"])


async def test_import_is_atomic_and_versioned(db: Database) -> None:
    store = ScheduleStore(db)
    hours = [PlanHourRow(h.number, h.start, 1.0) for h in HOURS]
    ok = PlanVersionRow(DAY, "GEN-N", "MWh", hours)
    broken = PlanVersionRow(DAY, "LOAD-S", "MWh", [*hours, hours[0]])  # hour 1 twice: refused by the key
    with pytest.raises(Exception, match="rejected"):
        await store.import_plans([ok, broken], actor="op1")
    assert await store.plan_history(DAY) == []
    assert [v.version for v in await store.import_plans([ok], actor="op1")] == [1]
    rev = PlanVersionRow(DAY, "GEN-N", "MWh", [PlanHourRow(h.hour, h.hour_start, 2.0) for h in hours])
    assert [v.version for v in await store.import_plans([rev], actor="op2", comment="revision")] == [2]
    assert await store.plans_at(HOURS[3].start) == {"GEN-N": (2.0, 2)}
    hist = await store.plan_history(DAY, "GEN-N")
    assert [(h["version"], h["imported_by"], h["values"][0]) for h in hist] == [(1, "op1", 1.0), (2, "op2", 2.0)]
    # a CSV with one bad line stores nothing at all
    svc = build(CFG, db, None, Journal(), lambda: HOURS[0].start)
    bad = "day,subject,hour,value\n" + "".join(f"{DAY},LOAD-S,{h},5\n" for h in range(1, 25)) + f"{DAY},X,1,1\n"
    with pytest.raises(PlanImportError, match="line 26, column subject: unknown subject 'X'"):
        await svc.import_plans(parse_csv(bad, CFG, "bad.csv"), "op1")
    assert [h["subject"] for h in await store.plan_history(DAY)] == ["GEN-N", "GEN-N"]


async def test_run_loop_with_accelerated_clock(db: Database) -> None:
    journal = Journal()
    clock = AcceleratedClock(start=HOURS[5].start, speed=600.0)
    svc = build(CFG, db, None, journal, clock)
    task = asyncio.create_task(svc.run())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while svc.ticks < 3 and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert svc.ticks >= 3
    rows = await ScheduleStore(db).results(DAY, "GEN-N")
    assert rows and rows[0]["verdict"] in ("pending", "incomplete", "no_plan")

