"""IEC-104 ingest benchmark: simulated outstation -> driver -> normalize -> storage.

The outstation (simulators.iec104, c104 server) runs in its own process with `--points`
points over `--stations` common addresses, all M_ME_TF_1 (time-tagged, so every update is a
distinct (point, ts) row). The bench measures: the GI of every point (first ActCon to last
ActTerm), then `--duration` seconds of spontaneous updates at `--rate` updates/s sent in
multi-object ASDUs, received by the GridWatch driver, normalized by the collector's
`Normalizer` and written by storage's `ReadingWriter` (binary COPY) into an embedded
PostgreSQL (or `--dsn`). It compares sent, received and stored counts: lost must be 0.

    gridwatch bench iec104 [--points 50000] [--rate 20000] [--duration 30] [--no-storage]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import shutil
import tempfile
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from core.config import FilterConfig, ResolvedSource, parse_config
from core.interfaces import DriverContext, SourceHealth
from core.records import Reading


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `gridwatch bench iec104`."""
    p.add_argument("--points", type=int, default=50_000, help="points in the outstation (default 50000)")
    p.add_argument("--stations", type=int, default=10, help="common addresses (default 10)")
    p.add_argument("--rate", type=float, default=20_000, help="spontaneous updates/s (default 20000)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of streaming (default 30)")
    p.add_argument("--dsn", default=None, help="PostgreSQL DSN (default: a temporary embedded PostgreSQL)")
    p.add_argument("--no-storage", action="store_true", help="stop after the driver (no normalize/storage)")
    p.add_argument("--outstations", type=int, default=2,
                   help="outstation processes (RTUs), stations split between them (default 2)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- outstation process
def _outstation(conn: Connection, port: int, cas: list[int], per_station: int) -> None:
    import sys

    from simulators.iec104 import Outstation, PointDef, Update

    # c104's server thread needs the GIL for every sent frame (pacing callback): hand it over
    # more often than every 5 ms while this thread builds updates.
    sys.setswitchinterval(0.0005)
    pts = [PointDef(ca, ioa, "M_ME_TF_1", value=0.0) for ca in cas for ioa in range(1, per_station + 1)]
    sim = Outstation(pts, ports=[port])
    sim.start()
    conn.send(("ready", len(pts)))
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        _, rate, duration = cmd
        keys = list(sim.points)
        tick = 0.05
        per_tick = max(1, int(rate * tick))
        pos = 0
        sent = 0
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < duration:
            now = datetime.now(UTC)
            ups = []
            for _ in range(per_tick):
                ca, ioa = keys[pos]
                pos = (pos + 1) % len(keys)
                ups.append(Update(ca, ioa, sim.points[(ca, ioa)].value + 1.0, 0, now))
            sent += sim.update_many(ups)
            k += 1
            delay = t0 + k * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        elapsed = time.monotonic() - t0
        # let the queue drain (pacing counts what left the server)
        ep = sim.endpoints[0]
        deadline = time.monotonic() + 30
        while ep.enqueued_objects > ep.sent_objects and time.monotonic() < deadline:
            time.sleep(0.05)
        conn.send(("done", sent, elapsed, sim.lost, ep.sent_objects))
    sim.stop()
    conn.send(("stopped",))


# ---------------------------------------------------------------------- bench
def _source(rtus: list[tuple[int, list[int]]], stations: int, per_station: int) -> ResolvedSource:
    raw = {"sources": [{
        "name": "bench", "kind": "iec104",
        "options": {"counter_mode": "off", "gi_interval_min": 0, "clock_sync_min": 0, "gi_timeout_s": 60},
        "devices": [{"name": f"rtu{i}", "options": {"endpoints": [{"host": "127.0.0.1", "port": port}],
                                                     "common_addresses": cas}}
                    for i, (port, cas) in enumerate(rtus)],
        "points": [{"name": f"b{ca}_{ioa}", "key": f"{ca}/{ioa}", "options": {"type": "M_ME_TF_1"}}
                   for ca in range(1, stations + 1) for ioa in range(1, per_station + 1)],
    }]}
    from protocols.iec104 import SOURCE_KIND

    return parse_config(raw, Path("bench.toml"), {"iec104": SOURCE_KIND}, {}).sources[0]


async def _bench(args: argparse.Namespace) -> dict[str, Any]:
    from protocols.iec104.driver import Iec104Driver

    stations = max(1, args.stations)
    per_station = max(1, args.points // stations)
    n_out = max(1, min(args.outstations, stations))
    rtus = [(_free_port(), [ca for ca in range(1, stations + 1) if (ca - 1) % n_out == i]) for i in range(n_out)]
    ctx_mp = mp.get_context("spawn")
    pipes = []
    procs = []
    t_setup = time.monotonic()
    for port, cas in rtus:
        parent, child = ctx_mp.Pipe()
        proc = ctx_mp.Process(target=_outstation, args=(child, port, cas, per_station), daemon=True)
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    result: dict[str, Any] = {"points": stations * per_station, "stations": stations, "outstations": n_out,
                              "rate": args.rate, "duration_s": args.duration}
    pg = None
    tmpdir: str | None = None
    db = None
    try:
        for parent in pipes:
            msg = await asyncio.to_thread(parent.recv)
            assert msg[0] == "ready"
        src = await asyncio.to_thread(_source, rtus, stations, per_station)
        writer = normalizer = None
        if not args.no_storage:
            from collector.normalize import Normalizer
            from storage.db import Database
            from storage.migrate import migrate
            from storage.points import register_points
            from storage.writer import ReadingWriter

            dsn = args.dsn
            if dsn is None:
                from storage.embedded import EmbeddedPostgres

                tmpdir = tempfile.mkdtemp(prefix="gw-bench-iec104-")
                pg = EmbeddedPostgres(Path(tmpdir) / "data")
                dsn = await asyncio.to_thread(pg.start)
            db = await Database.open(dsn)
            await migrate(db)
            ids = await register_points(db, list(src.points))
            normalizer = Normalizer(src, ids, FilterConfig.model_validate({}))
            writer = ReadingWriter(db)
        result["setup_s"] = round(time.monotonic() - t_setup, 1)

        health = SourceHealth("bench")
        drv = Iec104Driver(src, DriverContext(clock=lambda: datetime.now(UTC), health=health))
        received = 0
        gi_points = 0
        stored_q: list[Reading] = []
        stop_writer = asyncio.Event()

        async def write_loop() -> None:
            assert writer is not None
            while True:
                if not stored_q:
                    if stop_writer.is_set():
                        return
                    await asyncio.sleep(0.05)
                    continue
                batch = stored_q[:]
                del stored_q[:len(batch)]
                await writer.write(batch)

        wtask = asyncio.create_task(write_loop()) if writer is not None else None
        phase = "gi"
        stream_t0 = 0.0
        last_rx = 0.0

        async def consume() -> None:
            nonlocal received, gi_points, last_rx
            async for batch in drv.samples():
                n = len(batch.samples)
                if phase == "gi":
                    gi_points += n
                else:
                    received += n
                    last_rx = time.monotonic()
                if normalizer is not None:
                    stored_q.extend(normalizer.normalize(batch.samples))

        ctask = asyncio.create_task(consume())
        deadline = time.monotonic() + 120
        while len({ca for ca, _, _ in drv.gi_results}) < stations and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        first: dict[int, tuple[int, float]] = {}
        for ca, n, t in drv.gi_results:
            first.setdefault(ca, (n, t))
        # RTUs are interrogated in parallel, the CAs of one RTU one after the other
        per_rtu: dict[int, float] = {}
        for ca, (_, t) in first.items():
            r = next(i for i, (_, cas) in enumerate(rtus) if ca in cas)
            per_rtu[r] = per_rtu.get(r, 0.0) + t
        result["gi_s"] = round(max(per_rtu.values(), default=0.0), 3)
        result["gi_objects"] = sum(n for n, _ in first.values())
        result["gi_per_ca"] = " ".join(f"{ca}:{n}/{t:.2f}s" for ca, (n, t) in sorted(first.items()))
        result["gi_incomplete"] = health.counters["gi_incomplete"]
        result["gi_wait_s"] = round(time.monotonic() - deadline + 120, 2)
        result["gi_runs"] = len(drv.gi_results)
        await asyncio.sleep(0.5)
        phase = "stream"
        stream_t0 = time.monotonic()
        cpu0 = time.process_time()
        for parent in pipes:
            parent.send(("stream", args.rate / n_out, args.duration))
        sent = sim_lost = left_server = 0
        elapsed = 0.0
        for parent in pipes:
            _, s_, e_, l_, left_ = await asyncio.to_thread(parent.recv)
            sent += s_
            sim_lost += l_
            left_server += left_
            elapsed = max(elapsed, e_)
        deadline = time.monotonic() + 30
        while received < sent and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        rx_elapsed = (last_rx or time.monotonic()) - stream_t0
        if wtask is not None:  # include the storage writes of the streamed rows in the CPU figure
            while stored_q and time.monotonic() < deadline + 30:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        cpu = time.process_time() - cpu0
        result["collector_cpu_us_per_update"] = round(cpu / max(received, 1) * 1e6, 1)
        result.update(sent=sent, send_s=round(elapsed, 2), sent_rate=round(sent / elapsed),
                      received=received, received_rate=round(received / max(rx_elapsed, 1e-9)),
                      lost_in_outstation=sim_lost, left_outstation=left_server,
                      lost=sent - received, duplicates=health.counters["duplicates"],
                      backpressure_waits=health.counters["backpressure_waits"], pending_high=drv.pending_high)
        ctask.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await ctask
        await drv.close()
        if wtask is not None and writer is not None:
            stop_writer.set()
            await wtask
            result.update(stored=writer.stats.inserted, stored_duplicates=writer.stats.duplicates,
                          stored_expected=gi_points + received,
                          stored_lost=gi_points + received - writer.stats.inserted,
                          write_s=round(writer.stats.write_seconds, 2))
        else:
            result["storage"] = "skipped (--no-storage)"
        for parent in pipes:
            parent.send(("stop",))
            with contextlib.suppress(Exception):
                await asyncio.to_thread(parent.recv)
    finally:
        if db is not None:
            await db.close()
        if pg is not None:
            await asyncio.to_thread(pg.stop)
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    return result


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print its figures; exit 1 when anything was lost."""
    res = asyncio.run(_bench(args))
    width = max(len(k) for k in res)
    for k, v in res.items():
        print(f"{k:<{width}}  {v}")
    lost = res.get("lost", 0) or res.get("stored_lost", 0) or res.get("lost_in_outstation", 0)
    return 1 if lost else 0
