"""Fixtures: a c104 outstation (simulators.iec104) on free ports and a running driver."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from core.config import ResolvedSource, parse_config
from core.errors import ConnectError
from core.interfaces import DriverContext, SourceHealth
from core.records import Event, RawSample
from protocols.iec104 import SOURCE_KIND
from protocols.iec104.driver import Iec104Driver
from simulators.iec104 import Outstation, PointDef
from tests.conftest import free_port

DEADLINE = 45.0


class Journal:
    """Collects journal events."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)


def resolve(ports: Sequence[int], cas: Sequence[int], points: Sequence[PointDef] = (), **options: Any) -> ResolvedSource:
    """A ResolvedSource through the real config schema (points mapped by "<ca>/<ioa>")."""
    raw = {
        "sources": [{
            "name": "rtu",
            "kind": "iec104",
            "options": {"endpoints": [{"host": "127.0.0.1", "port": p, "name": f"ep{i}"} for i, p in enumerate(ports)],
                        "common_addresses": list(cas), "switch_back": False, **options},
            "points": [{"name": f"p{p.ca}_{p.ioa}", "key": f"{p.ca}/{p.ioa}", "options": {"type": p.type},
                        "kind": "counter" if p.type.startswith("M_IT") else "analog"} for p in points],
        }]
    }
    cfg = parse_config(raw, Path("test.toml"), {"iec104": SOURCE_KIND}, {})
    return cfg.sources[0]


class Harness:
    """Runs a driver and collects its samples; `wait()` polls a predicate with a deadline."""

    def __init__(self, source: ResolvedSource) -> None:
        self.health = SourceHealth(source.name)
        self.journal = Journal()
        self.ctx = DriverContext(clock=lambda: datetime.now(UTC), health=self.health, journal=self.journal)
        self.driver = Iec104Driver(source, self.ctx)
        self.samples: list[RawSample] = []
        self.batches = 0
        self.error: BaseException | None = None
        self.consume_delay = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        try:
            async with self.driver:
                async for batch in self.driver.samples():
                    self.batches += 1
                    self.samples.extend(batch.samples)
                    if self.consume_delay:
                        await asyncio.sleep(self.consume_delay)
        except ConnectError as e:
            self.error = e

    def start(self) -> None:
        self.task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self.task is not None:
            while not self.task.done():  # re-cancel: Python 3.11 can lose a cancellation
                self.task.cancel()
                await asyncio.wait({self.task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self.driver.close()

    async def wait(self, pred: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            if self.task is not None and self.task.done() and self.error is None:
                self.task.result()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; counters={dict(self.health.counters)} "
                                     f"links={self.health.links} samples={len(self.samples)}")
            await asyncio.sleep(0.05)

    def by_key(self, key: str) -> list[RawSample]:
        return [s for s in self.samples if s.key == key]

    async def ready(self, rtu: int = 0) -> None:
        """Wait until the start-up GI of every CA completed."""
        n = len(self.driver.rtus[rtu].cas)
        await self.wait(lambda: len(self.driver.gi_results) >= n, "start-up GI")


@pytest.fixture
def ports() -> list[int]:
    return [free_port(), free_port()]


@pytest.fixture
def outstation_factory() -> Iterator[Callable[..., Outstation]]:
    made: list[Outstation] = []

    def make(points: Sequence[PointDef], ports: Sequence[int], **kw: Any) -> Outstation:
        o = Outstation(points, ports=ports, **kw)
        o.start()
        made.append(o)
        return o

    yield make
    for o in made:
        o.stop()


@pytest.fixture
async def harness_factory() -> AsyncIterator[Callable[[ResolvedSource], Harness]]:
    made: list[Harness] = []

    def make(source: ResolvedSource) -> Harness:
        h = Harness(source)
        h.start()
        made.append(h)
        return h

    yield make
    for h in made:
        await h.stop()
