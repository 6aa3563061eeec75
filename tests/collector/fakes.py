"""Test-only source kind `fake`: a streaming driver emitting a deterministic sequence of values
for every point of its source, and a polled variant. Used for daemon wiring tests (ingest path,
spool, SIGTERM) independently of the protocol drivers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from collector.config import register_kind
from core.config import ResolvedSource, SourceKind
from core.errors import ConnectError
from core.interfaces import DriverContext, SampleBatch
from core.records import RawSample

BASE = datetime(2026, 1, 1, tzinfo=UTC)


class FakeOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: str = Field("stream", pattern="^(stream|poll)$")
    rounds: int = 0  # 0 = forever
    per_round_s: float = 0.0  # sleep between rounds
    interval_s: float = 1.0  # poll tick
    fail_first: int = 0  # connect errors before working
    extra_keys: list[str] = Field(default_factory=list)  # unknown keys to emit once
    auto_register: bool = False
    start_index: int = 0
    gate_at: int = 0  # after this many rounds wait for GATES[source] (tests sequence outages)


GATES: dict[str, asyncio.Event] = {}


_failures: dict[str, int] = {}


class FakeDriver:
    """Emits, per round k, for every point i: value = k + i/1000 at ts = BASE + k seconds."""

    def __init__(self, source: ResolvedSource, ctx: DriverContext) -> None:
        self.source = source
        self.ctx = ctx
        self.opts: FakeOptions = source.options
        self.round = self.opts.start_index

    async def __aenter__(self) -> Self:
        n = _failures.get(self.source.name, 0)
        if n < self.opts.fail_first:
            _failures[self.source.name] = n + 1
            self.ctx.health.links["fake"] = "down"
            raise ConnectError(self.source.name, f"refused (attempt {n + 1})")
        self.ctx.health.links["fake"] = "up"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.ctx.health.links["fake"] = "down"

    def _round(self) -> list[RawSample]:
        k = self.round
        self.round += 1
        now = self.ctx.clock()
        ts = BASE + timedelta(seconds=k)
        out = [RawSample(self.source.name, p.key, k + i / 1000.0, now, ts) for i, p in enumerate(self.source.points)]
        if k == self.opts.start_index:
            out.extend(RawSample(self.source.name, key, 1.0, now, ts) for key in self.opts.extra_keys)
        self.ctx.health.last_message_at = now
        self.ctx.health.count("messages", len(out))
        return out

    def done(self) -> bool:
        return bool(self.opts.rounds) and self.round >= self.opts.start_index + self.opts.rounds

    async def samples(self) -> AsyncIterator[SampleBatch]:
        while not self.done():
            if self.opts.gate_at and self.round == self.opts.start_index + self.opts.gate_at:
                await GATES.setdefault(self.source.name, asyncio.Event()).wait()
            yield SampleBatch(self._round())
            await asyncio.sleep(self.opts.per_round_s)
        await asyncio.Event().wait()  # finished: stay connected, silent

    async def poll(self) -> list[RawSample]:
        if self.done():
            return []
        return self._round()


class FakePolled:
    """The same values through the PolledDriver contract."""

    def __init__(self, inner: FakeDriver) -> None:
        self.inner = inner

    async def __aenter__(self) -> Self:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *a: Any) -> None:
        await self.inner.__aexit__(*a)

    async def poll(self) -> list[RawSample]:
        return await self.inner.poll()


def create_driver(source: ResolvedSource, ctx: DriverContext) -> Any:
    d = FakeDriver(source, ctx)
    return FakePolled(d) if source.options.mode == "poll" else d


KIND = SourceKind(options=FakeOptions)


def install() -> None:
    register_kind("fake", KIND, create_driver)


install()


def expected_value(k: int, i: int) -> float:
    return k + i / 1000.0
