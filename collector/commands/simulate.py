"""`gridwatch simulate -c FILE`: run the simulators a TOML file configures, on simulated time.

File layout::

    [simulate]
    start = "2026-03-02T00:00:00Z"   # simulated start (default: now)
    until = "2026-03-03T00:00:00Z"   # stop when simulated time reaches it (replay a date range)
    speed = 1440                     # simulated seconds per real second (1440: a day in a minute)
    seed = 1                         # default seed of every simulator

    [[simulators]]
    kind = "modbus"                  # a key of simulators.RUNNERS (modbus, iec104, mqtt)
    ...                              # the simulator's own options (see its package docstring)

`--sample-readings FILE` does not serve anything: it reads every Modbus farm of the file
in-process every `--sample-every` simulated seconds (default 300), from `start` up to (not
including) `until`, and writes `point,ts,value` rows (what a collector would store; offline
meters give no row) of the faulted points (`[simulators.faults] points`; every numeric point
of a farm without faults), plus the fault labels: a week of labelled readings in seconds, for
`gridwatch detectors evaluate --labels ... --readings FILE`.

`--start`, `--speed`, `--until` and `--duration` (real seconds) override the file. Each
simulator runs `run_simulator(cfg, clock, stop)` (contract in `simulators/__init__.py`) on
one shared `AcceleratedClock`; Ctrl-C or SIGTERM stops them all. Exit status: 0 after a clean
stop, 1 when a simulator failed, 2 for a bad file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import math
import signal
import sys
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.aio import wait_event
from core.clock import AcceleratedClock
from simulators import RUNNERS, load_runner


class SimulateSection(BaseModel):
    """The `[simulate]` table."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: str | None = None
    until: str | None = None
    speed: float = Field(1.0, gt=0)
    seed: int = 0


def register(sub: Any) -> None:
    """Add the `simulate` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser(
        "simulate", help="run the configured simulators (Modbus meter farm, IEC-104 outstation, MQTT head-end)")
    p.add_argument("-c", "--config", required=True, help="TOML file with [simulate] and [[simulators]]")
    p.add_argument("--start", help="simulated start time, ISO 8601 with a zone (default: file, else now)")
    p.add_argument("--until", help="stop when simulated time reaches this ISO 8601 time (replay a range)")
    p.add_argument("--speed", type=float, help="simulated seconds per real second (default: file, else 1)")
    p.add_argument("--duration", type=float, help="stop after this many real seconds")
    p.add_argument("--only", action="append", default=[], metavar="KIND", help="run only simulators of KIND")
    p.add_argument("--sample-readings", metavar="FILE",
                   help="do not serve: sample the Modbus farms in-process from start to until into a CSV")
    p.add_argument("--sample-every", type=float, default=300.0, metavar="SECONDS",
                   help="simulated seconds between samples with --sample-readings (default 300)")
    p.set_defaults(handler=run)


def _parse_time(text: str, what: str) -> datetime:
    if text == "now":
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as e:
        raise ValueError(f"{what}: not an ISO 8601 time: {text!r}") from e
    if ts.tzinfo is None:
        raise ValueError(f"{what}: {text!r} has no time zone (add Z or +05:00)")
    return ts.astimezone(UTC)


def load_plan(path: Path, args: argparse.Namespace) -> tuple[SimulateSection, list[dict[str, Any]]]:
    """The validated [simulate] section (with command-line overrides) and simulator tables."""
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError as e:
        raise ValueError(f"{path}: file not found") from e
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: not valid TOML: {e}") from e
    extra = set(doc) - {"simulate", "simulators"}
    if extra:
        raise ValueError(f"{path}: {sorted(extra)[0]}: unknown section (expected [simulate] and [[simulators]])")
    try:
        section = SimulateSection.model_validate(doc.get("simulate", {}))
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"{path}: simulate.{'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from e
    overrides = {k: getattr(args, k) for k in ("start", "until", "speed") if getattr(args, k, None) is not None}
    section = section.model_copy(update=overrides)
    tables = doc.get("simulators", [])
    if not isinstance(tables, list) or not tables:
        raise ValueError(f"{path}: simulators: give at least one [[simulators]] table")
    out = []
    for i, t in enumerate(tables):
        if not isinstance(t, dict) or "kind" not in t:
            raise ValueError(f"{path}: simulators[{i}].kind: required key is missing")
        if t["kind"] not in RUNNERS:
            raise ValueError(f"{path}: simulators[{i}].kind: unknown simulator {t['kind']!r} "
                             f"(known: {', '.join(sorted(RUNNERS))})")
        if args.only and t["kind"] not in args.only:
            continue
        cfg = dict(t)
        cfg.setdefault("seed", section.seed)
        cfg["config_dir"] = str(path.parent.resolve())
        out.append(cfg)
    return section, out


async def simulate(section: SimulateSection, tables: list[dict[str, Any]], duration: float | None = None,
                   stop: asyncio.Event | None = None, out: Any = None) -> int:
    """Run every simulator of `tables` until stopped, `until` or `duration`; 0 when clean."""
    out = out or sys.stdout
    start = _parse_time(section.start, "simulate.start") if section.start else datetime.now(UTC)
    until = _parse_time(section.until, "simulate.until") if section.until else None
    if until is not None and until <= start:
        raise ValueError("simulate.until must be after simulate.start")
    clock = AcceleratedClock(start, section.speed)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    runners = []
    for i, cfg in enumerate(tables):
        try:
            runners.append((f"{cfg['kind']}[{i}]", load_runner(cfg["kind"]), cfg))
        except LookupError as e:
            print(f"simulate: {e}", file=sys.stderr)
            return 1
    print(f"simulate: {len(runners)} simulator(s), simulated time from {start.isoformat()} at x{section.speed:g}"
          + (f" until {until.isoformat()}" if until else ""), file=out, flush=True)
    t0 = time.monotonic()
    failed = False

    async def run_one(name: str, runner: Any, cfg: dict[str, Any]) -> None:
        nonlocal failed
        try:
            await runner(cfg, clock, stop)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # one simulator failing stops the others, with its reason
            failed = True
            print(f"simulate: {name} failed: {e}", file=sys.stderr, flush=True)
            stop.set()
            return
        if not stop.is_set():
            failed = True
            print(f"simulate: {name} ended before it was stopped", file=sys.stderr, flush=True)
            stop.set()

    async def watch() -> None:
        while not stop.is_set():
            if until is not None and clock.now() >= until:
                print(f"simulate: reached {until.isoformat()}", file=out, flush=True)
                stop.set()
                return
            if duration is not None and time.monotonic() - t0 >= duration:
                stop.set()
                return
            await wait_event(stop, 0.2)

    async with asyncio.TaskGroup() as tg:
        tg.create_task(watch(), name="simulate:watch")
        for name, runner, cfg in runners:
            tg.create_task(run_one(name, runner, cfg), name=f"simulate:{name}")
    print(f"simulate: stopped at simulated {clock.now().isoformat()} after {time.monotonic() - t0:.1f} s",
          file=out, flush=True)
    return 1 if failed else 0


def sample_readings(section: SimulateSection, tables: list[dict[str, Any]], dest: Path, every_s: float,
                    out: Any = None) -> int:
    """Write `point,ts,value` rows of every Modbus farm sampled in-process (see the module doc)."""
    from simulators.modbus import farm_from_dict  # only this mode needs the farm itself

    out = out or sys.stdout
    if not section.start or not section.until:
        raise ValueError("simulate.start and simulate.until: both are needed with --sample-readings")
    if every_s <= 0:
        raise ValueError("--sample-every must be positive")
    start = _parse_time(section.start, "simulate.start")
    until = _parse_time(section.until, "simulate.until")
    if until <= start:
        raise ValueError("simulate.until must be after simulate.start")
    farms = []
    for i, cfg in enumerate(tables):
        if cfg["kind"] != "modbus":
            print(f"simulate: simulators[{i}] ({cfg['kind']}) is not sampled: only Modbus farms are", file=out)
            continue
        farm, plan = farm_from_dict(cfg, lambda: start)
        if plan is not None and farm.cfg.labels:
            labels = Path(farm.cfg.labels)
            plan.write_labels(labels if labels.is_absolute() else Path(farm.cfg.config_dir) / labels)
        # a farm with faults: its faulted points (what is scored); else every numeric point
        farms.append((farm, farm.cfg.faults.points if farm.cfg.faults is not None else None))
    if not farms:
        raise ValueError("--sample-readings: the file has no [[simulators]] of kind \"modbus\"")
    dest.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    steps = math.ceil((until - start).total_seconds() / every_s)  # [start, until)
    with dest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["point", "ts", "value"])
        for k in range(steps):
            ts = start + timedelta(seconds=k * every_s)
            stamp = ts.isoformat()
            for farm, points in farms:
                for name, value in farm.readings_at(ts, points):
                    w.writerow([name, stamp, repr(value)])
                    rows += 1
    print(f"simulate: {rows} readings from {start.isoformat()} to {until.isoformat()} every {every_s:g} s "
          f"written to {dest}", file=out)
    return 0


def run(args: argparse.Namespace) -> int:
    """Entry point of `gridwatch simulate`."""
    try:
        section, tables = load_plan(Path(args.config), args)
        if not tables:
            print("simulate: no simulator selected", file=sys.stderr)
            return 2
        if args.sample_readings:
            return sample_readings(section, tables, Path(args.sample_readings), args.sample_every)
        return asyncio.run(simulate(section, tables, duration=args.duration))
    except ValueError as e:
        print(f"simulate: {e}", file=sys.stderr)
        return 2
