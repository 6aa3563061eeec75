"""Modbus polling benchmark: one 15-minute cycle over a farm of slow and dead meters.

`gridwatch bench modbus` starts the meter farm (simulators.modbus) in a child process -
by default 10,000 SDM630 meters behind 100 gateways (100 unit ids each), every answer
delayed 100 ms, 2 % never answering - then runs the real driver on a simulated clock that
reaches a quarter-hour boundary a few seconds later, and measures when each healthy meter's
read completes after the boundary. It passes when every healthy meter is read within
`--deadline` seconds (60 by default) and exits 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import multiprocessing as mp
import os
import resource
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection as Pipe
from pathlib import Path
from typing import Any

from core.config import parse_config
from core.interfaces import DriverContext, SourceHealth
from core.records import Quality

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = str(ROOT / "configs" / "templates" / "*.toml")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Options of `gridwatch bench modbus`."""
    p.add_argument("--meters", type=int, default=10_000, help="simulated meters (default 10000)")
    p.add_argument("--units-per-port", type=int, default=100, help="meters behind each gateway port (default 100)")
    p.add_argument("--latency-ms", type=float, default=100.0, help="answer delay of every request (default 100)")
    p.add_argument("--jitter-ms", type=float, default=0.0, help="+- random extra delay (default 0)")
    p.add_argument("--silent", type=float, default=0.02, help="share of meters that never answer (default 0.02)")
    p.add_argument("--template", default="sdm630", help="meter template (default sdm630)")
    p.add_argument("--timeout", type=float, default=2.0, help="request timeout, s (default 2)")
    p.add_argument("--connections", type=int, default=1, help="connections per gateway (default 1)")
    p.add_argument("--stagger", type=float, default=30.0, help="stagger window after the boundary, s (default 30)")
    p.add_argument("--interval", type=float, default=900.0, help="polling interval, s (default 900)")
    p.add_argument("--deadline", type=float, default=60.0, help="pass when all healthy meters are read within (60)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")


def _consecutive_ports(n: int) -> int:
    """The first of n consecutive ports free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        start = int(s.getsockname()[1])
    for base in list(range(max(1024, start - 20_000), 60_000 - n, 97)):
        socks = []
        try:
            for p in range(base, base + n):
                sk = socket.socket()
                sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sk.bind(("127.0.0.1", p))
                socks.append(sk)
            return base
        except OSError:
            continue
        finally:
            for sk in socks:
                sk.close()
    raise RuntimeError(f"no {n} consecutive free ports")


def _serve_farm(cfg: dict[str, Any], pipe: Pipe) -> None:
    """Child process: run the farm until the parent closes the pipe."""
    from core.clock import SystemClock
    from simulators.modbus import farm_from_dict

    async def main() -> None:
        farm, _ = farm_from_dict(cfg, SystemClock())
        silent = [d.name for d in farm.devices if d.silent]
        lag = _LagMonitor()
        lag_task = asyncio.create_task(lag.run())
        async with farm:
            pipe.send({"ready": True, "silent": silent, "ports": len(farm.ports)})
            loop = asyncio.get_running_loop()
            done = asyncio.Event()
            loop.add_reader(pipe.fileno(), done.set)
            await done.wait()
            pipe.send({"requests": farm.stats.requests, "answered": farm.stats.answered,
                       "silent_requests": farm.stats.silent, "exceptions": farm.stats.exceptions,
                       "cpu_s": _cpu_s(), "loop_max_lag_s": round(lag.max_lag, 3),
                       "loop_lags_over_500ms": lag.over_500ms})
        lag_task.cancel()

    try:
        asyncio.run(main())
    except Exception as e:  # report to the parent instead of dying silently
        pipe.send({"error": repr(e)})


class _StartLater:
    """A clock at `start` that stands still until `begin()`, then runs in real time."""

    speed = 1.0

    def __init__(self, start: datetime) -> None:
        self.start = start
        self.t0: float | None = None

    def begin(self) -> None:
        self.t0 = time.monotonic()

    def __call__(self) -> datetime:
        if self.t0 is None:
            return self.start
        return self.start + timedelta(seconds=time.monotonic() - self.t0)


class _LagMonitor:
    """Largest delay of a 50 ms timer: how long the event loop was busy or starved."""

    def __init__(self) -> None:
        self.max_lag = 0.0
        self.over_500ms = 0

    async def run(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            lag = time.monotonic() - t - 0.05
            self.max_lag = max(self.max_lag, lag)
            if lag > 0.5:
                self.over_500ms += 1


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return float(r.ru_utime + r.ru_stime)


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    v = sorted(values)
    return v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))]


async def _measure(args: argparse.Namespace, base_port: int, silent: set[str]) -> dict[str, Any]:
    from protocols.modbus import SOURCE_KIND, create_driver

    n, per = args.meters, args.units_per_port
    devices = []
    for k, start in enumerate(range(1, n + 1, per)):
        count = min(per, n - start + 1)
        devices.append({"name": "m{n:05d}", "count": count, "start": start, "template": args.template,
                        "options": {"port": base_port + k, "unit_id": "{i+1}"}})
    raw = {"include": [TEMPLATES], "sources": [{
        "name": "bench", "kind": "modbus",
        "options": {"host": "127.0.0.1", "interval_s": args.interval, "stagger_s": args.stagger,
                    "timeout_s": args.timeout, "max_connections_per_endpoint": args.connections,
                    "max_connections_per_host": 100_000, "max_connections": 100_000, "idle_close_s": 120},
        "devices": devices}]}
    t_cfg = time.monotonic()
    source = parse_config(raw, ROOT / "bench.toml", {"modbus": SOURCE_KIND}, {}).sources[0]
    config_s = time.monotonic() - t_cfg
    lead = 3.0
    now = datetime.now(UTC)
    boundary = datetime.fromtimestamp((now.timestamp() // args.interval + 1) * args.interval, UTC)
    clock = _StartLater(boundary - timedelta(seconds=lead))
    health = SourceHealth("bench")
    ctx = DriverContext(clock=clock, health=health)
    healthy = {d.name for d in source.devices} - silent
    done_at: dict[str, float] = {}
    failed: set[str] = set()
    cpu0 = _cpu_s()
    async with create_driver(source, ctx) as drv:
        # time starts `lead` seconds before the boundary once the driver is built (building
        # 10,000 devices takes a few seconds; meters whose slot passed would wait a cycle)
        gc.freeze()  # 10,000 devices: keep the long-lived heap out of full GC passes (see README)
        clock.begin()
        queue: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for b in drv.samples():
                queue.put_nowait(b)

        pump_task = asyncio.create_task(pump())
        lag = _LagMonitor()
        lag_task = asyncio.create_task(lag.run())
        t_boundary = time.monotonic() + lead
        deadline = t_boundary + max(args.deadline * 2, args.stagger + 30)
        # until every healthy meter was read, then until the dead ones were reported
        while time.monotonic() < deadline and (len(done_at) < len(healthy) or len(failed) < len(silent)):
            if len(done_at) == len(healthy):
                deadline = min(deadline, time.monotonic() + args.timeout * 2 + 1)
            try:
                batch = await asyncio.wait_for(queue.get(), max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            dev = batch.samples[0].key.split(".", 1)[0]
            if all(s.quality == Quality.GOOD for s in batch.samples):
                done_at.setdefault(dev, time.monotonic() - t_boundary)
            else:
                failed.add(dev)
        pump_task.cancel()
        lag_task.cancel()
        try:
            await pump_task
        except asyncio.CancelledError:
            pass
    cpu = _cpu_s() - cpu0
    times = list(done_at.values())
    missing = sorted(healthy - set(done_at))
    return {
        "meters": n, "gateways": math.ceil(n / per), "healthy": len(healthy), "silent": len(silent),
        "latency_ms": args.latency_ms, "timeout_s": args.timeout, "stagger_s": args.stagger,
        "connections_per_gateway": args.connections, "template": args.template,
        "healthy_read": len(done_at), "missing": len(missing), "missing_sample": missing[:5],
        "silent_reported_comm_fail": len(failed & silent),
        "all_healthy_read_s": max(times) if times and not missing else math.inf,
        "p50_s": _pct(times, 0.5), "p95_s": _pct(times, 0.95),
        "requests": health.counters["requests"], "timeouts": health.counters["timeouts"],
        "connects": health.counters["connects"], "counters": dict(health.counters),
        "failed_healthy": sorted(failed - silent)[:5], "last_error": health.last_error,
        "driver_cpu_s": round(cpu, 2), "config_s": round(config_s, 2),
        "driver_loop_max_lag_s": round(lag.max_lag, 3), "driver_loop_lags_over_500ms": lag.over_500ms,
    }


def run(args: argparse.Namespace) -> int:
    """Entry point of `gridwatch bench modbus`."""
    n, per = args.meters, args.units_per_port
    if n < 1 or not 1 <= per <= 247:
        print("bench modbus: --meters must be >= 1 and --units-per-port within 1..247", file=sys.stderr)
        return 2
    gateways = math.ceil(n / per)
    base = _consecutive_ports(gateways)
    farm_cfg = {
        "templates": [TEMPLATES], "seed": 1,
        "groups": [{"name": "m{n:05d}", "template": args.template, "count": n, "port": base, "units_per_port": per,
                    "latency_ms": args.latency_ms, "jitter_ms": args.jitter_ms, "silent": args.silent,
                    "profile": {"residential": 0.7, "commercial": 0.2, "industrial": 0.1}}],
    }
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_serve_farm, args=(farm_cfg, child), name="gridwatch-bench-farm", daemon=True)
    t0 = time.monotonic()
    proc.start()
    try:
        if not parent.poll(300):
            print("bench modbus: the farm did not start within 300 s", file=sys.stderr)
            return 1
        hello = parent.recv()
        if "error" in hello:
            print(f"bench modbus: the farm failed: {hello['error']}", file=sys.stderr)
            return 1
        farm_start_s = time.monotonic() - t0
        result = asyncio.run(_measure(args, base, set(hello["silent"])))
        parent.send({"stop": True})
        farm_stats = parent.recv() if parent.poll(60) else {}
    finally:
        parent.close()
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(10)
    result["farm_start_s"] = round(farm_start_s, 1)
    result["farm"] = farm_stats
    result["cpus"] = os.cpu_count()
    ok = result["all_healthy_read_s"] <= args.deadline
    result["pass"] = ok
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print(f"modbus bench: {result['meters']} meters behind {result['gateways']} gateways, "
              f"{args.latency_ms:g} ms latency, {result['silent']} never answering, timeout {args.timeout:g} s, "
              f"{args.connections} connection(s) per gateway, stagger {args.stagger:g} s")
        print(f"  healthy meters read: {result['healthy_read']}/{result['healthy']} "
              f"(all within {result['all_healthy_read_s']:.1f} s of the boundary; p50 {result['p50_s']:.1f} s, "
              f"p95 {result['p95_s']:.1f} s) - deadline {args.deadline:g} s: {'PASS' if ok else 'FAIL'}")
        print(f"  requests {result['requests']}, timeouts {result['timeouts']}, connections {result['connects']}, "
              f"dead meters reported COMM_FAIL: {result['silent_reported_comm_fail']}/{result['silent']}")
        print(f"  driver CPU {result['driver_cpu_s']} s; farm CPU {farm_stats.get('cpu_s', float('nan')):.1f} s; "
              f"farm start {result['farm_start_s']} s; config expansion {result['config_s']} s")
        print(f"  event-loop lag max: driver {result['driver_loop_max_lag_s']} s, "
              f"farm {farm_stats.get('loop_max_lag_s', float('nan'))} s")
        if result["missing"]:
            print(f"  not read: {result['missing']} e.g. {', '.join(result['missing_sample'])}")
    return 0 if ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="bench-modbus")
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
