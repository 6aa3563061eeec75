"""The small Protocols that every plugin kind satisfies.

Polled drivers (Modbus) are called by the collector's scheduler; streaming drivers (IEC-104,
MQTT) push samples and raise `ConnectError` when their link drops. Sinks write batches all or
nothing. Observers see every batch after it was stored (detectors, schedule control).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Protocol, Self, runtime_checkable

from core.records import Alert, Event, RawSample, Reading


@runtime_checkable
class PolledDriver(Protocol):
    """A driver the collector polls on a schedule: one `poll()` reads every point once."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    async def poll(self) -> Sequence[RawSample]: ...


@runtime_checkable
class StreamingDriver(Protocol):
    """A driver that pushes samples as they arrive.

    `samples()` yields batches (a list per hand-over, to keep per-sample overhead low) and
    raises `ConnectError` when the link is lost; it never ends quietly while running.
    """

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def samples(self) -> AsyncIterator[SampleBatch]: ...


@dataclass(frozen=True, slots=True)
class SampleBatch:
    """One hand-over from a streaming driver.

    `ack`, when set, is called by the collector once every reading derived from these
    samples is stored or spooled (MQTT QoS 1 acknowledges only then). Never called twice.
    """

    samples: Sequence[RawSample]
    ack: Callable[[], None] | None = None


@dataclass
class SourceHealth:
    """Mutable health of one source, updated by its driver, exported by the collector.

    `links` maps a link or device name to its state ("up", "down", "muted", "standby",
    "connecting"); `counters` are monotonically increasing (messages, errors, timeouts,
    decode_errors, unmapped, reconnects, switchovers, ...); `gauges` hold values such as
    `clock_skew_s:<rtu>`.
    """

    source: str
    links: dict[str, str] = field(default_factory=dict)
    counters: Counter[str] = field(default_factory=Counter)
    gauges: dict[str, float] = field(default_factory=dict)
    last_message_at: datetime | None = None
    last_error: str = ""

    def count(self, name: str, n: int = 1) -> None:
        """Add `n` to counter `name`."""
        self.counters[name] += n


DeadLetter = Callable[[str, str, bytes], None]
"""(source, reason naming the field, raw payload) -> None: keeps bad input for inspection."""


@dataclass
class DriverContext:
    """What the collector gives a driver: time, health to update, journal and dead letters."""

    clock: Callable[[], datetime]
    health: SourceHealth
    journal: Journal | None = None
    dead_letter: DeadLetter | None = None


class BackgroundService(Protocol):
    """A feature with its own loop (alert delivery, schedule control, model retraining).

    The collector runs `run()` in its task group until shutdown cancels it.
    """

    async def run(self) -> None: ...


class Sink(Protocol):
    """Writes a batch of readings all or nothing; idempotent per (point, ts)."""

    async def write(self, batch: Sequence[Reading]) -> None: ...


class BatchObserver(Protocol):
    """Sees every batch after it was stored: detectors and schedule control."""

    async def on_batch(self, batch: Sequence[Reading]) -> None: ...


class AlertSink(Protocol):
    """Receives alerts raised by detectors (the alerting package implements it)."""

    async def submit(self, alerts: Sequence[Alert]) -> None: ...


class Journal(Protocol):
    """Appends events to the append-only event journal."""

    async def record(self, event: Event) -> None: ...


class Detector(Protocol):
    """A pure detector: observes a batch and returns alerts; no I/O."""

    def observe(self, batch: Sequence[Reading]) -> list[Alert]: ...





Clock = Callable[[], datetime]
"""A function returning the current aware UTC time (real or accelerated)."""
