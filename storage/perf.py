"""Storage-level ingest figures: `python -m storage.perf [--dsn DSN] [--points N] [--rows N]`.

Prints, for the database given (default: an embedded PostgreSQL in a temporary directory):
the encoding rate of `copyfmt`, the raw binary-COPY ceiling (`copy_ceiling`), the
`ReadingWriter` fast path on fresh rows and its replay path (every row already stored),
all in rows/s, and with `--register N` the time to register N points. The collector's
`gridwatch bench ingest` measures the whole daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from core.config import PointSpec, ResolvedPoint
from storage.bench import copy_ceiling, synthetic_readings
from storage.copyfmt import encode_readings
from storage.db import Database
from storage.migrate import migrate
from storage.partitions import ensure_partitions
from storage.points import register_points
from storage.writer import ReadingWriter


async def _run(dsn: str, points: int, rows: int, batch: int, register: int) -> None:
    db = await Database.open(dsn)
    try:
        await migrate(db)
        print(f"backend: {db.backend}; {points} points, {rows} rows, batches of {batch}")
        data = synthetic_readings(points, rows, start=datetime(2031, 1, 1, tzinfo=UTC))
        t0 = time.perf_counter()
        for i in range(0, len(data), batch):
            encode_readings(data[i:i + batch])
        print(f"encode (struct):        {len(data) / (time.perf_counter() - t0):>12,.0f} rows/s")
        ceiling = await copy_ceiling(db, points, rows, batch_rows=batch)
        print(f"raw binary COPY ceiling: {ceiling:>12,.0f} rows/s")
        if db.backend == "postgres":
            async with db.connection() as conn:
                await ensure_partitions(conn, {r.ts.date() for r in (data[0], data[-1])})
        w = ReadingWriter(db)
        t0 = time.perf_counter()
        for i in range(0, len(data), batch):
            await w.write(data[i:i + batch])
        fresh = len(data) / (time.perf_counter() - t0)
        print(f"ReadingWriter, fresh:    {fresh:>12,.0f} rows/s  ({fresh / ceiling:.2f} of the ceiling)")
        t0 = time.perf_counter()
        for i in range(0, len(data), batch):
            await w.write(data[i:i + batch])
        replay = len(data) / (time.perf_counter() - t0)
        print(f"ReadingWriter, replay:   {replay:>12,.0f} rows/s  (staging + ON CONFLICT DO NOTHING)")
        async with db.connection() as conn:
            await conn.execute("DELETE FROM readings WHERE ts >= '2031-01-01' AND ts < '2031-02-01'")
        if register:
            spec = PointSpec.model_validate({"name": "ea_imp", "unit": "kWh", "kind": "counter",
                                             "options": {"register": 100}})
            pts = [ResolvedPoint(spec=spec, name=f"perf{n:06d}.ea_imp", key="ea_imp", source="perf",
                                 device=f"perf{n:06d}", subject="s", zone="north", options=None)
                   for n in range(register)]
            t0 = time.perf_counter()
            await register_points(db, pts)
            t1 = time.perf_counter()
            await register_points(db, pts)
            t2 = time.perf_counter()
            print(f"register_points({register:,}): {t1 - t0:.2f} s new, {t2 - t1:.2f} s unchanged")
    finally:
        await db.close()


def main() -> int:
    """Parse arguments, start an embedded server when no DSN is given, run."""
    p = argparse.ArgumentParser(prog="python -m storage.perf", description=__doc__)
    p.add_argument("--dsn", help="database to measure (default: a temporary embedded PostgreSQL)")
    p.add_argument("--points", type=int, default=2000)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--batch", type=int, default=5000)
    p.add_argument("--register", type=int, default=0, help="also time register_points for this many points")
    a = p.parse_args()
    tmp: Path | None = None
    server = None
    dsn = a.dsn
    if not dsn:
        from storage.embedded import EmbeddedPostgres

        tmp = Path(tempfile.mkdtemp(prefix="gw-perf-"))
        tmp.chmod(0o755)
        server = EmbeddedPostgres(tmp / "data")
        dsn = server.start()
    try:
        asyncio.run(_run(dsn, a.points, a.rows, a.batch, a.register))
    finally:
        if server is not None:
            server.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
