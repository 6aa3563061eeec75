"""Schedule control: time to compute the current hour and close hours for N subjects.

    gridwatch bench schedule --subjects 200 [--power-share 0.25] [--dsn DSN]

Registers N subjects (each one metering point: energy counters, a share of them power points
sampled every minute), writes one operating day of readings, imports plans, then ticks the
service every 15 simulated minutes over the day and reports the tick durations. Without --dsn
an embedded PostgreSQL is started in a temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

from core.records import Quality, Reading
from detectors.schedule.calendar import day_hours
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanDay, PlanImport
from detectors.schedule.service import build
from storage.db import Database
from storage.migrate import migrate
from storage.writer import ReadingWriter


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Bench options."""
    p.add_argument("--subjects", type=int, default=200, help="number of subjects (one point each)")
    p.add_argument("--power-share", type=float, default=0.25, help="share of subjects metered by power only")
    p.add_argument("--dsn", help="PostgreSQL DSN (default: a temporary embedded server)")


def run(args: argparse.Namespace) -> int:
    """Run the bench and print figures."""
    return asyncio.run(_main(args))


async def _main(args: argparse.Namespace) -> int:
    embedded = None
    tmp = None
    dsn = args.dsn
    if dsn is None:
        from storage.embedded import EmbeddedPostgres

        tmp = Path(tempfile.mkdtemp(prefix="gw-bench-schedule-"))
        embedded = EmbeddedPostgres(tmp / "data")
        dsn = await asyncio.to_thread(embedded.start)
    try:
        db = await Database.open(dsn)
        try:
            return await _bench(db, args)
        finally:
            await db.close()
    finally:
        if embedded is not None:
            await asyncio.to_thread(embedded.stop)
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


async def _bench(db: Database, args: argparse.Namespace) -> int:
    await migrate(db)
    n = args.subjects
    n_power = int(n * args.power_share)
    subjects = []
    for i in range(n):
        power = i < n_power
        subjects.append({"name": f"S{i:04d}", "zone": ("North", "South", "West")[i % 3],
                         "kind": ("generator", "consumer", "miner")[i % 3],
                         "points": [{"point": f"bench.s{i:04d}", "sign": 1 if i % 3 == 0 else -1,
                                     "kind": "power" if power else "energy", "unit": "kW" if power else "kWh"}]})
    cfg = ScheduleConfig.model_validate({"subjects": subjects})
    day = date(2026, 12, 2)
    hours = day_hours(day, cfg.tz)
    async with db.connection() as conn:
        cur = conn.cursor()
        await cur.executemany("INSERT INTO points (name, kind) VALUES (%s, %s) ON CONFLICT (name) DO NOTHING",
                              [(s["points"][0]["point"], "analog" if i < n_power else "counter")  # type: ignore[index]
                               for i, s in enumerate(subjects)])
        c2 = await conn.execute("SELECT name, id FROM points WHERE name LIKE 'bench.%%'")
        ids = {str(r[0]): int(r[1]) for r in await c2.fetchall()}  # type: ignore[call-overload]
    writer = ReadingWriter(db)
    start, end = hours[0].start, hours[-1].end
    batch: list[Reading] = []
    t0 = time.perf_counter()
    rows = 0
    for i in range(n):
        pid = ids[f"bench.s{i:04d}"]
        step = timedelta(minutes=1) if i < n_power else timedelta(minutes=15)
        t, k = start, 0
        while t <= end:
            v = 500.0 + i if i < n_power else 1000.0 + (125.0 + i) * k
            batch.append(Reading(pid, t, v, Quality.GOOD, t))
            t += step
            k += 1
            if len(batch) >= 20_000:
                await writer.write(batch)
                rows += len(batch)
                batch = []
    if batch:
        await writer.write(batch)
        rows += len(batch)
    print(f"wrote {rows} readings for {n} subjects ({n_power} power-metered) in {time.perf_counter() - t0:.1f} s")
    svc = build(cfg, db, None, None, lambda: start)
    plans = tuple(PlanDay(day, f"S{i:04d}", "MWh", tuple(0.5 for _ in hours)) for i in range(n))
    await svc.import_plans(PlanImport(plans, "bench"), "bench")
    durations: list[float] = []
    t = start + timedelta(minutes=1)
    while t <= end + timedelta(minutes=20):
        a = time.perf_counter()
        await svc.tick(now=t)
        durations.append(time.perf_counter() - a)
        t += timedelta(minutes=15)
    durations.sort()
    print(f"ticks: {len(durations)}, median {statistics.median(durations) * 1000:.0f} ms, "
          f"p95 {durations[int(len(durations) * 0.95) - 1] * 1000:.0f} ms, max {durations[-1] * 1000:.0f} ms "
          f"(a tick computes the current hour; every 4th also closes the previous one)")
    return 0
