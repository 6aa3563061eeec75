"""Alerting throughput: submit (new, deduplicated, resolved) and delivery to a local webhook.

`gridwatch bench alerting --alerts 2000 [--dsn DSN]` (no DSN: a temporary embedded PostgreSQL).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import tempfile
import time
from pathlib import Path

from aiohttp import web

from alerting.config import AlertingConfig
from alerting.service import AlertingService
from core.records import Alert, Severity, utcnow
from storage.alerts import AlertStore
from storage.db import Database
from storage.migrate import migrate


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `gridwatch bench alerting`."""
    parser.add_argument("--alerts", type=int, default=2000, help="distinct alert keys (default 2000)")
    parser.add_argument("--devices", type=int, default=200, help="devices the keys spread over (groups)")
    parser.add_argument("--dsn", default=None, help="PostgreSQL DSN of an EMPTY scratch database "
                                                    "(default: a temporary embedded server)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _bench(dsn: str, n: int, devices: int) -> None:
    received = 0
    done = asyncio.Event()

    async def hook(request: web.Request) -> web.Response:
        nonlocal received
        doc = await request.json()
        received += len(doc["notifications"])
        if received >= 2 * n:
            done.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    runner = web.AppRunner(app)
    await runner.setup()
    port = _free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    db = await Database.open(dsn, backend="postgres")
    try:
        await migrate(db)
        cfg = AlertingConfig.model_validate({
            "receivers": [{"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{port}/hook",
                           "secret": "bench"}], "batch_size": 1000, "poll_interval_s": 0.05})
        svc = AlertingService(cfg, AlertStore(db))

        def alerts(firing: bool) -> list[Alert]:
            return [Alert(key=f"stale:m{i:06d}", rule="stale", severity=Severity.MINOR, firing=firing, ts=utcnow(),
                          summary="no reading for 3 intervals", device=f"m{i % devices:05d}", zone="north")
                    for i in range(n)]

        rates = []
        for label, batch in (("new firing", alerts(True)), ("deduplicated", alerts(True)),
                             ("resolved", alerts(False))):
            t = time.perf_counter()
            await svc.submit(batch)
            dt = time.perf_counter() - t
            rates.append(f"{label}: {n / dt:,.0f} alerts/s ({dt:.2f} s)")
        t = time.perf_counter()
        task = asyncio.create_task(svc.run())
        try:
            await asyncio.wait_for(done.wait(), timeout=600)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        dt = time.perf_counter() - t
        print(f"alerting bench: {n} keys over {devices} devices")
        for r in rates:
            print(f"  submit {r}")
        print(f"  delivery to a local webhook: {2 * n / dt:,.0f} notifications/s "
              f"({2 * n} in {dt:.2f} s, {svc.stats.delivered['hook']} delivered)")
    finally:
        await db.close()
        await runner.cleanup()


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; prints the rates."""
    if args.dsn:
        asyncio.run(_bench(args.dsn, args.alerts, args.devices))
        return 0
    from storage.embedded import EmbeddedPostgres

    base = Path(tempfile.mkdtemp(prefix="gw-bench-alerting-"))
    server = EmbeddedPostgres(base / "data")
    try:
        asyncio.run(_bench(server.start(), args.alerts, args.devices))
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0
