"""GridWatch's end-to-end ingest rate against the raw binary-COPY ceiling of the same database.

`gridwatch bench ingest --points N --seconds S [--dsn DSN]`:

1. ceiling: `storage.bench.copy_ceiling` (raw binary COPY of pre-encoded rows, server-bound);
2. end to end: an in-process streaming source of N points pushes one RawSample per point per
   round as fast as the daemon takes them, through the real Agent: normalize, filters, buffer,
   batches, forwarder, ReadingWriter (binary COPY) into `readings`; rate = rows stored / wall
   time including the final flush;
3. memory: RSS after warm-up and at the end (growth), peak.

Without --dsn an embedded PostgreSQL in a temporary directory is started and removed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict

from collector import store
from collector.agent import Agent
from collector.config import register_kind
from core.config import GridWatchConfig, ResolvedSource, SourceKind, parse_config
from core.interfaces import DriverContext, SampleBatch
from core.records import RawSample
from storage.db import Database
from storage.embedded import dsn_or_embedded

log = logging.getLogger(__name__)


class BenchOptions(BaseModel):
    """Options of the in-process bench source."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    start_epoch: float = 0.0


class BenchDriver:
    """Streams one sample per point per round, device time one second apart per round."""

    def __init__(self, source: ResolvedSource, ctx: DriverContext) -> None:
        self.source = source
        self.ctx = ctx
        self.keys = [p.key for p in source.points]
        self.t0 = datetime.fromtimestamp(source.options.start_epoch, UTC)
        self.rounds = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        return None

    async def samples(self) -> AsyncIterator[SampleBatch]:
        name = self.source.name
        while True:
            now = self.ctx.clock()
            ts = self.t0 + timedelta(seconds=self.rounds)
            self.rounds += 1
            yield SampleBatch([RawSample(name, k, float(self.rounds % 1000), now, ts) for k in self.keys])


def create_driver(source: ResolvedSource, ctx: DriverContext) -> BenchDriver:
    """The bench source's driver."""
    return BenchDriver(source, ctx)


register_kind("bench", SourceKind(options=BenchOptions), create_driver)


def rss_mb() -> float:
    """Resident set size of this process in MB (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `gridwatch bench ingest`."""
    p.add_argument("--points", type=int, default=2000, help="points of the synthetic source (default 2000)")
    p.add_argument("--seconds", type=float, default=30.0, help="duration of the end-to-end run (default 30)")
    p.add_argument("--dsn", help="database to use (default: a temporary embedded PostgreSQL)")
    p.add_argument("--ceiling-rows", type=int, default=1_000_000, help="rows of the COPY ceiling run")
    p.add_argument("--batch-rows", type=int, default=5000, help="storage.batch_max_rows")
    p.add_argument("--writers", type=int, default=2, help="concurrent batch writers (default 2)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def bench_config(points: int, spool_dir: Path, dsn: str, batch_rows: int) -> GridWatchConfig:
    """A configuration with one bench source of `points` points."""
    start = (datetime.now(UTC) - timedelta(days=1)).timestamp()
    raw = {
        "storage": {"dsn": dsn, "batch_max_rows": batch_rows, "batch_max_age_ms": 200},
        "spool": {"dir": str(spool_dir)},
        "api": {"enabled": False},
        "sources": [{"name": "bench", "kind": "bench", "options": {"start_epoch": start},
                     "points": [{"name": f"bench.p{i:06d}"} for i in range(points)]}],
    }
    return parse_config(raw, Path("<bench>"), {"bench": SourceKind(options=BenchOptions)}, {})


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-"))
    try:
        async with dsn_or_embedded(args.dsn, tmp / "pg") as dsn:
            db = await Database.open(dsn, pool_size=4)
            try:
                await store.migrate(db)
                copy_ceiling = store.find("copy_ceiling")
                ceiling = float(await copy_ceiling(db, args.points, args.ceiling_rows))
                cfg = bench_config(args.points, tmp / "spool", dsn, args.batch_rows)
                agent = Agent(cfg, db, maintenance_interval_s=3600, writers=args.writers)
                task = asyncio.create_task(agent.run())
                await asyncio.wait_for(agent.started.wait(), 120)
                fw = agent.forwarder
                assert fw is not None
                await asyncio.sleep(min(2.0, args.seconds / 5))  # warm-up
                rss0 = rss_mb()
                stored0 = fw.stored
                t0 = time.perf_counter()
                peak = rss0
                end = t0 + args.seconds
                while time.perf_counter() < end:
                    await asyncio.sleep(0.5)
                    peak = max(peak, rss_mb())
                agent.stop()
                await asyncio.wait_for(task, 300)
                elapsed = time.perf_counter() - t0
                rss1 = rss_mb()
                stored = fw.stored - stored0
                rate = stored / elapsed
                return {
                    "points": args.points, "seconds": round(elapsed, 2), "backend": db.backend,
                    "copy_ceiling_rows_per_s": round(ceiling), "end_to_end_rows_per_s": round(rate),
                    "ratio": round(rate / ceiling, 3) if ceiling else None, "rows_stored": stored,
                    "spooled": fw.spooled, "rss_start_mb": round(rss0, 1), "rss_end_mb": round(rss1, 1),
                    "rss_peak_mb": round(peak, 1), "rss_growth_mb": round(rss1 - rss0, 1),
                }
            finally:
                await db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the figures (exit 0; 1 if a target is missed)."""
    logging.basicConfig(level=logging.WARNING)
    res = asyncio.run(_run(args))
    if args.json:
        print(json.dumps(res))
    else:
        print(f"points {res['points']}, {res['seconds']} s, backend {res['backend']}, pid {os.getpid()}")
        print(f"raw binary COPY ceiling : {res['copy_ceiling_rows_per_s']:>10,} rows/s")
        print(f"GridWatch end to end    : {res['end_to_end_rows_per_s']:>10,} rows/s "
              f"({res['rows_stored']:,} rows stored, {res['spooled']:,} spooled)")
        print(f"ratio                   : {res['ratio']}")
        print(f"RSS                     : {res['rss_start_mb']} MB -> {res['rss_end_mb']} MB "
              f"(growth {res['rss_growth_mb']} MB, peak {res['rss_peak_mb']} MB)")
    ok = res["end_to_end_rows_per_s"] >= 100_000 and (res["ratio"] or 0) >= 0.5 and res["rss_growth_mb"] < 50
    print("targets (>=100k rows/s, ratio >=0.5, RSS growth <50 MB):", "met" if ok else "NOT met")
    return 0
