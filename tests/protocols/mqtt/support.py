"""Helpers for the MQTT tests: building drivers, a collector-like consumer, polling waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

import aiomqtt

from core.config import ResolvedSource
from core.errors import ConnectError
from core.interfaces import DriverContext, SourceHealth
from core.records import Event, RawSample, utcnow
from protocols.mqtt import SourceOptions
from protocols.mqtt.driver import MqttDriver


async def wait_until(pred: Callable[[], bool], timeout: float = 45.0, what: str = "condition") -> None:
    """Poll `pred` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


class ListJournal:
    """A journal that keeps events in a list."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)


def make_driver(port: int, topics: list[dict[str, Any]], *, name: str = "amr", dead: list[tuple[str, str, bytes]]
                | None = None, journal: ListJournal | None = None, **options: Any) -> MqttDriver:
    """A driver for a source on 127.0.0.1:port (dead letters appended to `dead`)."""
    opts = SourceOptions.model_validate({"host": "127.0.0.1", "port": port, "client_id": f"gw-{name}",
                                         "topics": topics, **options})
    src = ResolvedSource(name=name, kind="mqtt", options=opts, devices=(), points=())
    sink = dead if dead is not None else []
    ctx = DriverContext(clock=utcnow, health=SourceHealth(name), journal=journal,
                        dead_letter=lambda s, r, p: sink.append((s, r, p)))
    return MqttDriver(src, ctx)  # fresh Sparkplug state (create_driver shares it per source name)


class Consumer:
    """Runs a driver the way the collector does: reconnect on ConnectError, ack per batch.

    With `auto_ack=False` acks are kept in `pending` until `ack_all()`.
    """

    def __init__(self, driver: MqttDriver, *, auto_ack: bool = True) -> None:
        self.driver = driver
        self.auto_ack = auto_ack
        self.samples: list[RawSample] = []
        self.pending: list[Callable[[], None]] = []
        self.errors: list[Exception] = []
        self.task: asyncio.Task[None] | None = None

    @property
    def health(self) -> SourceHealth:
        return self.driver.health

    def up(self) -> bool:
        return self.driver.health.links.get("broker") == "up"

    async def _run(self) -> None:
        async with self.driver:
            while True:
                try:
                    async for b in self.driver.samples():
                        self.samples.extend(b.samples)
                        if b.ack is not None:
                            if self.auto_ack:
                                b.ack()
                            else:
                                self.pending.append(b.ack)
                except ConnectError as e:
                    self.errors.append(e)
                    await asyncio.sleep(0.1)

    def ack_all(self) -> None:
        pending, self.pending = self.pending, []
        for a in pending:
            a()

    async def __aenter__(self) -> Consumer:
        self.task = asyncio.create_task(self._run())
        await wait_until(lambda: self.up() or (self.task is not None and self.task.done()), what="subscription")
        if self.task.done():
            self.task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


async def publish(port: int, msgs: list[tuple[str, bytes]], qos: int = 1) -> None:
    """Publish messages in order with a plain aiomqtt client."""
    async with aiomqtt.Client("127.0.0.1", port, identifier=None) as c:
        c.pending_calls_threshold = 1_000_000
        for t, p in msgs:
            await c.publish(t, p, qos=qos)
