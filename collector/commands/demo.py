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
import signal
import subprocess
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
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


async def modbus_farm(cfg: GridWatchConfig, stop: asyncio.Event) -> None:
    """The Modbus meter farm serving every `modbus` source's devices of configs/demo.toml."""
    from simulators.modbus import run_simulator

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
        await stop.wait()
        return
    sim = {"kind": "modbus", "host": "127.0.0.1", "templates": ["templates/*.toml"],
           "config_dir": str(Path(cfg.file).parent), "groups": groups}
    await run_simulator(sim, SystemClock(), stop)


CHILDREN: list[Child] = [Child("modbus meter farm", modbus_farm)]
"""What the demo starts before the daemon; the lead appends the other simulators here."""


def register(sub: Any) -> None:
    """Add the `demo` command."""
    p: argparse.ArgumentParser = sub.add_parser("demo", help="run the demo: embedded DB, simulators, daemon, API")
    p.add_argument("-c", "--config", default=str(DEFAULT_CONFIG), help="configuration (default configs/demo.toml)")
    p.add_argument("--seconds", type=float, default=0.0, help="stop after this many seconds (0 = until Ctrl-C)")
    p.add_argument("--log-level", default="WARNING")
    p.set_defaults(handler=run)


def banner(cfg: GridWatchConfig, port: int) -> str:
    """What runs and where to look."""
    base = f"http://{cfg.api.host}:{port}"
    first = cfg.points[0].name if cfg.points else "<point>"
    lines = [
        "GridWatch demo is running.",
        f"  database : embedded PostgreSQL in {cfg.storage.embedded_dir}" if cfg.storage.dsn is None
        else "  database : configured DSN",
        f"  sources  : {', '.join(f'{s.name} ({s.kind}, {len(s.points)} points)' for s in cfg.sources) or 'none'}",
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
