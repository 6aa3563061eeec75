"""MQTT ingest: the driver's QoS 1 drain rate against a bare aiomqtt subscriber, and batches.

`gridwatch bench mqtt [--messages N] [--batch-messages M --batch-size B] [--rounds R]`

Starts its own mosquitto on a free port (needs Debian's `mosquitto`). Each measurement is a
drain: a persistent session (fixed client id, MQTT 5, session expiry) is subscribed and left,
messages are published at QoS 1 while it is away, then the subscriber reconnects and the time
from connecting to its last message is measured — so the publisher's speed does not limit it.

1. bare: `aiomqtt.Client` + `async for m in client.messages` (paho acknowledges automatically);
2. driver, single-reading messages: `MqttDriver.samples()` with JSON decoding into RawSamples
   and manual acknowledgements sent when the consumer calls `SampleBatch.ack`;
3. driver, batched messages: B readings per message; readings/s.

Targets (issue 4): (2) >= 0.7 x (1), and (3) >= 50,000 readings/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from core.config import ResolvedSource
from core.interfaces import DriverContext, SourceHealth
from core.records import utcnow
from protocols.mqtt.config import SourceOptions
from protocols.mqtt.driver import MqttDriver

_QUIET = logging.getLogger("gridwatch.bench.mqtt")
_QUIET.setLevel(logging.ERROR)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `gridwatch bench mqtt`."""
    p.add_argument("--messages", type=int, default=30_000, help="single-reading messages per drain (30000)")
    p.add_argument("--batch-messages", type=int, default=200, help="batched messages per drain (200)")
    p.add_argument("--batch-size", type=int, default=500, help="readings per batched message (500)")
    p.add_argument("--rounds", type=int, default=2, help="repetitions; the best of each is reported (2)")
    p.add_argument("--storage", action="store_true",
                   help="also measure batched readings through the collector (Agent) into PostgreSQL")
    p.add_argument("--dsn", help="database for --storage (default: a temporary embedded PostgreSQL)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


class _Mosquitto:
    def __init__(self) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise SystemExit("gridwatch bench mqtt: mosquitto is not installed (Debian package mosquitto)")
        self.dir = Path(tempfile.mkdtemp(prefix="gw-bench-mqtt-"))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        conf = self.dir / "mosquitto.conf"
        conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                        "max_queued_messages 0\nmax_queued_bytes 0\nmax_inflight_messages 1000\nlog_dest none\n")
        self.proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise SystemExit("gridwatch bench mqtt: mosquitto did not start") from None
                time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _session_props() -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = 3600
    return props


def _bare_client(port: int, cid: str) -> aiomqtt.Client:
    c = aiomqtt.Client("127.0.0.1", port, identifier=cid, protocol=aiomqtt.ProtocolVersion.V5, clean_start=False,
                       properties=_session_props(), logger=_QUIET)
    c.pending_calls_threshold = 1_000_000
    return c


async def _publish(port: int, msgs: list[tuple[str, bytes]]) -> float:
    """Publish at QoS 1, pipelined; returns messages/s."""
    t0 = time.perf_counter()
    async with _bare_client(port, "gw-bench-pub") as c:
        window = 500
        for i in range(0, len(msgs), window):
            await asyncio.gather(*(c.publish(t, p, qos=1) for t, p in msgs[i:i + window]))
    return len(msgs) / (time.perf_counter() - t0)


async def _bare_drain(port: int, topic: str, n: int) -> float:
    """messages/s from connecting until the n-th message."""
    t0 = time.perf_counter()
    async with _bare_client(port, "gw-bench-bare") as c:
        await c.subscribe(topic, qos=1)
        count = 0
        async for _ in c.messages:
            count += 1
            if count == n:
                break
        return n / (time.perf_counter() - t0)


def _driver(port: int, topics: list[dict[str, Any]], cid: str) -> MqttDriver:
    opts = SourceOptions.model_validate({"host": "127.0.0.1", "port": port, "client_id": cid, "topics": topics,
                                         "qos": 1})
    src = ResolvedSource(name="bench", kind="mqtt", options=opts, devices=(), points=())
    return MqttDriver(src, DriverContext(clock=utcnow, health=SourceHealth("bench")))


async def _driver_drain(drv: MqttDriver, readings: int) -> float:
    """readings/s from connecting until the last reading, acknowledging every batch."""
    count = 0
    t0 = time.perf_counter()
    async with drv:
        async for batch in drv.samples():
            count += len(batch.samples)
            if batch.ack is not None:
                batch.ack()
            if count >= readings:
                break
    return count / (time.perf_counter() - t0)


SINGLE = [{"pattern": "bench/single/+meter", "json": {"timestamp": "ts", "fields": {"p": {}}}}]
BATCH = [{"pattern": "bench/batch/+he", "json": {"readings": "readings", "timestamp": "$.ts", "ids": {"meter": "m"},
                                                 "fields": {"p": {}}}}]


async def _prime(port: int, topic: str, cids: list[str]) -> None:
    """Create the persistent sessions (subscribed to `topic`, as the driver will be), then leave."""
    for cid in cids:
        async with _bare_client(port, cid) as c:
            await c.subscribe(topic, qos=1)


async def _run(args: argparse.Namespace) -> dict[str, Any]:
    broker = _Mosquitto()
    port = broker.port
    out: dict[str, Any] = {"messages": args.messages, "batch_messages": args.batch_messages,
                           "batch_size": args.batch_size, "rounds": []}
    try:
        await _prime(port, "bench/single/+", ["gw-bench-bare", "gw-bench-drv"])
        await _prime(port, "bench/batch/+", ["gw-bench-drv-batch"])
        ts = "2026-01-01T00:00:00Z"
        single = [(f"bench/single/m{i % 10000:05d}",
                   json.dumps({"ts": ts, "p": round(i * 0.001, 3)}, separators=(",", ":")).encode())
                  for i in range(args.messages)]
        batch = [(f"bench/batch/h{i % 10}", json.dumps(
            {"ts": ts, "readings": [{"m": f"m{j:05d}", "p": round(j * 0.01, 2)} for j in range(args.batch_size)]},
            separators=(",", ":")).encode()) for i in range(args.batch_messages)]
        for _ in range(args.rounds):
            r: dict[str, float] = {}
            r["publish_msgs_s"] = await _publish(port, single)
            r["bare_msgs_s"] = await _bare_drain(port, "bench/single/+", args.messages)
            r["driver_msgs_s"] = await _driver_drain(_driver(port, SINGLE, "gw-bench-drv"), args.messages)
            await _publish(port, batch)
            rate = await _driver_drain(_driver(port, BATCH, "gw-bench-drv-batch"),
                                       args.batch_messages * args.batch_size)
            r["driver_batch_readings_s"] = rate
            r["driver_batch_msgs_s"] = rate / args.batch_size
            out["rounds"].append(r)
        if args.storage:
            out["storage"] = await _storage_stage(port, args)
    finally:
        broker.stop()
    best = {k: max(r[k] for r in out["rounds"]) for k in out["rounds"][0]}
    best["driver_over_bare"] = max(r["driver_msgs_s"] / r["bare_msgs_s"] for r in out["rounds"])
    out["best"] = best
    out["median_ratio"] = statistics.median(r["driver_msgs_s"] / r["bare_msgs_s"] for r in out["rounds"])
    return out


async def _storage_stage(port: int, args: argparse.Namespace) -> dict[str, Any]:
    """Batched messages through the real collector Agent (normalize, buffer, COPY) into storage.

    Live, not a drain: the agent's MQTT source is connected; messages are published pipelined
    (each message has its own timestamp); the rate is rows stored / time from the first
    publish until the last row is stored.
    """
    from datetime import UTC, datetime, timedelta

    from collector import store
    from collector.agent import Agent
    from core.config import parse_config
    from protocols.mqtt import SOURCE_KIND
    from storage.db import Database
    from storage.embedded import dsn_or_embedded

    tmp = Path(tempfile.mkdtemp(prefix="gw-bench-mqtt-pg-"))
    try:
        async with dsn_or_embedded(args.dsn, tmp / "pg") as dsn:
            raw = {
                "storage": {"dsn": dsn, "batch_max_rows": 5000, "batch_max_age_ms": 200},
                "spool": {"dir": str(tmp / "spool")},
                "api": {"enabled": False},
                "sources": [{"name": "amr", "kind": "mqtt",
                             "options": {"host": "127.0.0.1", "port": port, "client_id": "gw-bench-agent",
                                         "topics": [{**BATCH[0], "pattern": "bench/batch/+"}], "max_batch": 5000},
                             "devices": [{"name": "m{n:05d}", "count": args.batch_size, "start": 0,
                                          "points": [{"name": "p", "unit": "kW"}]}]}],
            }
            cfg = parse_config(raw, Path("<bench mqtt>"), {"mqtt": SOURCE_KIND}, {})
            db = await Database.open(dsn, pool_size=4)
            try:
                await store.migrate(db)
                agent = Agent(cfg, db, maintenance_interval_s=3600)
                task = asyncio.create_task(agent.run())
                try:
                    await asyncio.wait_for(agent.started.wait(), 120)
                    health = agent.healths["amr"]
                    deadline = time.monotonic() + 60
                    while health.links.get("broker") != "up":
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"the agent's MQTT source did not connect: {health.last_error}")
                        await asyncio.sleep(0.05)
                    fw = agent.forwarder
                    assert fw is not None
                    base = datetime.now(UTC) - timedelta(days=1)
                    msgs = [(f"bench/batch/h{i % 10}", json.dumps(
                        {"ts": (base + timedelta(seconds=i)).isoformat().replace("+00:00", "Z"),
                         "readings": [{"m": f"m{j:05d}", "p": round(j * 0.01, 2)} for j in range(args.batch_size)]},
                        separators=(",", ":")).encode()) for i in range(args.batch_messages)]
                    total = args.batch_messages * args.batch_size
                    stored0 = fw.stored
                    t0 = time.perf_counter()
                    await _publish(port, msgs)
                    deadline = time.monotonic() + 300
                    while fw.stored - stored0 < total:
                        if time.monotonic() > deadline or health.counters["unmapped"] >= total:
                            break
                        await asyncio.sleep(0.02)
                    dt = time.perf_counter() - t0
                    stored = fw.stored - stored0
                    return {"storage_rows": stored, "storage_expected": total, "storage_rows_s": stored / dt,
                            "storage_backend": db.backend, "unmapped": health.counters["unmapped"]}
                finally:
                    agent.stop()
                    await asyncio.wait_for(task, 120)
            finally:
                await db.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; exit status 1 when a target is missed."""
    res = asyncio.run(_run(args))
    b = res["best"]
    ok = b["driver_over_bare"] >= 0.7 and b["driver_batch_readings_s"] >= 50_000
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        print(f"QoS 1 drain, {args.messages} single-reading messages, best of {args.rounds}:")
        print(f"  publisher (aiomqtt, pipelined)   {b['publish_msgs_s']:>10,.0f} msg/s")
        print(f"  bare aiomqtt subscriber          {b['bare_msgs_s']:>10,.0f} msg/s")
        print(f"  GridWatch driver (JSON, acks)    {b['driver_msgs_s']:>10,.0f} msg/s "
              f"= {b['driver_over_bare']:.2f} x bare (target >= 0.70)")
        print(f"QoS 1 drain, {args.batch_messages} messages x {args.batch_size} readings:")
        print(f"  GridWatch driver                 {b['driver_batch_readings_s']:>10,.0f} readings/s "
              f"({b['driver_batch_msgs_s']:,.0f} msg/s; target >= 50,000 readings/s)")
        st = res.get("storage")
        if st:
            print(f"Batched, live, through the collector into {st['storage_backend']}:")
            print(f"  stored                           {st['storage_rows_s']:>10,.0f} readings/s "
                  f"({st['storage_rows']:,} of {st['storage_expected']:,} rows, {st['unmapped']} unmapped)")
        print("PASS" if ok else "BELOW TARGET")
    return 0 if ok else 1
