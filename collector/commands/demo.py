"""`gridwatch demo`: the whole chain on embedded defaults, with simulators, and where to look.

Starts the embedded PostgreSQL (var/pgdata), the simulators in `CHILDREN`, and the daemon on
`configs/demo.toml` with its API; prints the URLs and a sample query; runs until Ctrl-C
(or `--seconds`). To add a simulator or helper process, append a `Child` to `CHILDREN`: an
async function `(cfg, stop) -> None` that runs until `stop` is set (use
`run_process([...], stop)` for an external program).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from collector.runtime import load_or_report, setup_logging
from core.clock import SystemClock
from core.config import GridWatchConfig

log = logging.getLogger(__name__)

DEFAULT_CONFIG = Path("configs/demo.toml")


@dataclass(frozen=True)
class Child:
    """A task the demo runs next to the daemon (a simulator, a helper process)."""

    name: str
    run: Callable[[GridWatchConfig, asyncio.Event], Awaitable[None]]
    optional: bool = True  # a failing optional child is logged, the demo goes on


async def run_process(argv: Sequence[str], stop: asyncio.Event, *, cwd: str | Path | None = None) -> None:
    """Run an external program until `stop`, then terminate it (kill after 10 s)."""
    proc = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdout=subprocess.DEVNULL,
                                                stderr=subprocess.DEVNULL)
    try:
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if proc.returncode is not None and not stop.is_set():
            raise RuntimeError(f"{argv[0]} exited with {proc.returncode}")
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def _modbus_sim_cfg(cfg: GridWatchConfig) -> dict[str, Any] | None:
    """The meter farm serving every `modbus` source's devices of the demo configuration."""
    groups: list[dict[str, Any]] = []
    for src in cfg.sources:
        if src.kind != "modbus":
            continue
        port = int(getattr(src.options, "port", 15020))
        templates = sorted({d.template for d in src.devices if d.template})
        for tmpl in templates:
            devs = [d for d in src.devices if d.template == tmpl]
            groups.append({"name": "demo-{n:04d}" if len(templates) > 1 else "sdm-{n:02d}", "template": tmpl,
                           "count": len(devs), "port": port, "units_per_port": 247,
                           "profile": {"residential": 0.7, "commercial": 0.3}})
            break  # one gateway port per source in the demo
    if not groups:
        return None
    return {"kind": "modbus", "host": "127.0.0.1", "templates": ["templates/*.toml"],
            "config_dir": str(Path(cfg.file).parent), "groups": groups}


async def modbus_farm(cfg: GridWatchConfig, stop: asyncio.Event) -> None:
    """The Modbus meter farm serving every `modbus` source's devices of configs/demo.toml."""
    from simulators.modbus import run_simulator

    sim = _modbus_sim_cfg(cfg)
    if sim is None:
        await stop.wait()
        return
    await run_simulator(sim, SystemClock(), stop)


def _iec104_sim_cfgs(cfg: GridWatchConfig) -> list[dict[str, Any]]:
    """One outstation per RTU of every `iec104` source, on the RTU's endpoints' ports."""
    out = []
    for src in cfg.sources:
        if src.kind != "iec104":
            continue
        for dev in src.devices:
            ports = [int(e.port) for e in dev.options.endpoints]
            out.append({"host": "127.0.0.1", "ports": ports, "stations": list(dev.options.common_addresses),
                        "points_per_station": 24, "types": ["M_ME_NC_1", "M_ME_TF_1", "M_DP_TB_1", "M_IT_TB_1"],
                        "mixed_share": 0.2, "rate": 20.0, "scan_s": 60.0, "seed": 3})
    return out


async def iec104_outstations(cfg: GridWatchConfig, stop: asyncio.Event) -> None:
    """IEC-104 outstations (c104 servers) for the RTUs of configs/demo.toml."""
    from simulators.iec104 import run_simulator

    sims = _iec104_sim_cfgs(cfg)
    if not sims:
        await stop.wait()
        return
    await asyncio.gather(*(run_simulator(s, SystemClock(), stop) for s in sims))


def _mqtt_sources(cfg: GridWatchConfig) -> list[Any]:
    return [s for s in cfg.sources if s.kind == "mqtt"]


def _mosquitto_setup(port: int) -> tuple[str, Path]:
    """The mosquitto binary and a config for it under var/mqtt (persistent, loopback only)."""
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
    if binary is None:
        raise RuntimeError("mosquitto is not installed (Debian package mosquitto): the MQTT source will retry")
    work = Path("var/mqtt").resolve()
    work.mkdir(parents=True, exist_ok=True)
    work.chmod(0o777)  # mosquitto drops to its own user when started as root
    conf = work / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                    f"persistence_location {work}/\nmax_queued_messages 1000000\n"
                    "max_inflight_messages 0\nlog_dest none\n")
    return binary, conf


async def mosquitto(cfg: GridWatchConfig, stop: asyncio.Event) -> None:
    """A local mosquitto on the port of the demo's MQTT source (data under var/mqtt)."""
    srcs = _mqtt_sources(cfg)
    if not srcs:
        await stop.wait()
        return
    binary, conf = _mosquitto_setup(int(srcs[0].options.port))
    await run_process([binary, "-c", str(conf)], stop)


def _headend_cfg(cfg: GridWatchConfig) -> dict[str, Any] | None:
    srcs = _mqtt_sources(cfg)
    if not srcs:
        return None
    src = srcs[0]
    return {"host": "127.0.0.1", "port": int(src.options.port), "client_id": "gridwatch-demo-headend",
            "meters": len(src.devices), "name": "m{n:05d}", "interval_s": 10.0, "formats": ["json"],
            "mode": "batch", "batch_size": 50, "qos": 1, "seed": 7,
            "faults": {"duplicate": 0.01, "out_of_order": 0.01, "corrupt": 0.005},
            "labels": str(Path("var/labels/mqtt.jsonl").resolve())}


async def mqtt_headend(cfg: GridWatchConfig, stop: asyncio.Event) -> None:
    """An AMR head-end publishing JSON batches for the MQTT source's meters every 10 s."""
    from simulators.mqtt import run_simulator

    hc = _headend_cfg(cfg)
    if hc is None:
        await stop.wait()
        return
    Path(hc["labels"]).parent.mkdir(parents=True, exist_ok=True)
    await run_simulator(hc, SystemClock(), stop)


CHILDREN: list[Child] = [
    Child("mosquitto", mosquitto),
    Child("modbus meter farm", modbus_farm),
    Child("iec104 outstation", iec104_outstations),
    Child("mqtt head-end", mqtt_headend),
]
"""What the demo starts beside the daemon."""


def demo_plans(cfg: GridWatchConfig, days: Sequence[Any]) -> list[Any]:
    """Plans for the demo's subjects, from the simulators' own load profiles.

    Each subject's hourly plan is the energy its meters' profiles will consume in that hour;
    `city-grid` is planned 10 % below it so that the live control shows deviation warnings.
    """
    from detectors.schedule.calendar import day_hours
    from detectors.schedule.plans import PlanDay
    from simulators.modbus.farm import farm_from_dict
    from simulators.mqtt.headend import HeadEnd, HeadEndConfig
    from simulators.profiles import Meter

    sched = cfg.sections.get("schedule")
    if sched is None or not getattr(sched, "subjects", None):
        return []
    meters: dict[str, Any] = {}
    sim = _modbus_sim_cfg(cfg)
    if sim is not None:
        farm, _ = farm_from_dict(sim, SystemClock())
        for d in farm.devices:
            meters[d.name] = Meter(d.profile, seed=d.seed, nominal_v=d.nominal_v)
    hc = _headend_cfg(cfg)
    if hc is not None:
        he = HeadEnd(HeadEndConfig.from_dict({k: v for k, v in hc.items() if k != "labels"}))
        for name, m in zip(he.meter_names, he.meters, strict=True):
            meters[name] = Meter(m.profile, seed=m.seed if hasattr(m, "seed") else None)
    plans = []
    for day in days:
        for subj in sched.subjects:
            devs = {p.point.split(".")[0] for p in subj.points}
            if not devs or not devs <= set(meters):
                continue
            values = []
            for h in day_hours(day, sched.tz):
                kwh = 0.0
                for dev in devs:
                    m = meters[dev]
                    a = m.sample(h.start)["energy_import_active"]
                    b = m.sample(h.start + (h.end - h.start))["energy_import_active"]
                    kwh += b - a
                values.append(round(kwh / 1000.0 * (0.9 if subj.name == "city-grid" else 1.0), 6))
            plans.append(PlanDay(day=day, subject=subj.name, unit="MWh", values_mwh=tuple(values)))
    return plans


async def import_demo_plans(cfg: GridWatchConfig, features: dict[str, Any]) -> int:
    """Import today's and tomorrow's demo plans through the schedule service."""
    svc = features.get("schedule")
    if svc is None:
        return 0
    from detectors.schedule.calendar import operating_day
    from detectors.schedule.plans import PlanImport

    today = operating_day(svc.clock(), svc.tz)
    plans = await asyncio.to_thread(demo_plans, cfg, [today, today + timedelta(days=1)])
    if plans:
        await svc.import_plans(PlanImport(plans=tuple(plans), source="gridwatch demo",
                                          comment="plan from the simulators' load profiles"), actor="demo")
    return len(plans)


def register(sub: Any) -> None:
    """Add the `demo` command."""
    p: argparse.ArgumentParser = sub.add_parser("demo", help="run the demo: embedded DB, simulators, daemon, API")
    p.add_argument("-c", "--config", default=str(DEFAULT_CONFIG), help="configuration (default configs/demo.toml)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(handler=run)


def _source_line(src: Any) -> str:
    if not src.points and getattr(src.options, "auto_register", False):
        return f"{src.name} ({src.kind}, points registered on first sight)"
    return f"{src.name} ({src.kind}, {len(src.points)} points)"


def banner(cfg: GridWatchConfig, port: int) -> str:
    """What runs and where to look."""
    base = f"http://{cfg.api.host}:{port}"
    first = cfg.points[0].name if cfg.points else "<point>"
    lines = [
        "GridWatch demo is running.",
        f"  database : embedded PostgreSQL in {cfg.storage.embedded_dir}" if cfg.storage.dsn is None
        else "  database : configured DSN",
        f"  sources  : {', '.join(_source_line(s) for s in cfg.sources) or 'none'}",
        f"  children : {', '.join(c.name for c in CHILDREN) or 'none'}",
        f"  health   : {base}/healthz   readiness: {base}/readyz   metrics: {base}/metrics",
        f"  points   : {base}/api/v1/points",
        f"  readings : {base}/api/v1/readings?point={first}&from=now-15m",
        "  try      : curl -s "
        f"'{base}/api/v1/readings?point={first}&from=now-15m&format=csv' | head",
        "Stop with Ctrl-C.",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run the demo until Ctrl-C / SIGTERM / --seconds."""
    setup_logging(args.log_level)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    from collector.daemon import serve

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if args.seconds:
            loop.call_later(args.seconds, stop.set)

        async def child(c: Child) -> None:
            try:
                await c.run(cfg, stop)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if not c.optional:
                    raise
                log.warning("demo child %s failed: %s", c.name, e)

        async def on_ready(agent: Any, api: Any) -> None:
            port = api.bound_port if api is not None else cfg.api.port
            print(banner(cfg, port), flush=True)
            try:
                from dashboards.grafana import instructions

                # the health dashboard's Prometheus (default :9090) scrapes this daemon's /metrics
                print(instructions(agent.db.dsn, timescaledb=agent.db.backend == "timescaledb"), flush=True)
            except Exception as e:  # the demo goes on without Grafana hints
                log.warning("no Grafana instructions: %s", e)
            if api is not None:
                try:
                    n = await import_demo_plans(cfg, api.ctx.features)
                    if n:
                        print(f"  schedule : imported {n} demo plans (today and tomorrow); results at "
                              f"http://{cfg.api.host}:{port}/api/v1/schedule/results", flush=True)
                except Exception as e:  # the demo goes on without plans
                    log.warning("demo plans not imported: %s", e)

        tasks = [asyncio.create_task(child(c), name=f"demo:{c.name}") for c in CHILDREN]
        try:
            await serve(cfg, stop, on_ready=on_ready)
        finally:
            stop.set()
            for t in tasks:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(t), 15)
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())
    return 0
