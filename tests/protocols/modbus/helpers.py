"""Shared helpers for the Modbus driver and farm tests: farms on free ports, sources, waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config import ResolvedSource, parse_config
from core.interfaces import Clock, DriverContext, SourceHealth
from core.records import Event, RawSample
from protocols.modbus import SOURCE_KIND
from simulators.modbus import MeterFarm, farm_from_dict

ROOT = Path(__file__).resolve().parents[3]
TEMPLATES = str(ROOT / "configs" / "templates" / "*.toml")


@dataclass
class ListJournal:
    """Collects journal events (the collector's journal writes them to the database)."""

    events: list[Event] = field(default_factory=list)

    async def record(self, event: Event) -> None:
        self.events.append(event)


def make_source(devices: list[dict[str, Any]], *, options: dict[str, Any] | None = None,
                extra_templates: Sequence[str] = (), name: str = "mb") -> ResolvedSource:
    """A validated modbus source with the shipped templates (and extra template files)."""
    raw = {
        "include": [TEMPLATES, *extra_templates],
        "sources": [{"name": name, "kind": "modbus", "options": {"host": "127.0.0.1", **(options or {})},
                     "devices": devices}],
    }
    cfg = parse_config(raw, ROOT / "configs" / "test.toml", {"modbus": SOURCE_KIND}, {})
    return cfg.sources[0]


def make_ctx(clock: Clock, source: str = "mb") -> tuple[DriverContext, ListJournal]:
    journal = ListJournal()
    return DriverContext(clock=clock, health=SourceHealth(source), journal=journal), journal


def make_farm(groups: list[dict[str, Any]], clock: Clock, templates: Sequence[str] = (TEMPLATES,),
              **extra: Any) -> MeterFarm:
    farm, _ = farm_from_dict({"templates": list(templates), "groups": groups, **extra}, clock)
    return farm


def by_key(samples: Sequence[RawSample]) -> dict[str, RawSample]:
    return {s.key: s for s in samples}


async def until(cond: Callable[[], bool | Awaitable[bool]], timeout: float = 60.0, what: str = "") -> None:
    """Poll `cond` until true; fail after `timeout` real seconds."""
    deadline = time.monotonic() + timeout
    while True:
        r = cond()
        if not isinstance(r, bool):
            r = await r
        if r:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await asyncio.sleep(0.05)
