"""The small Protocols that every plugin kind satisfies.

Polled drivers (Modbus) are called by the collector's scheduler; streaming drivers (IEC-104,
MQTT) push samples and raise `ConnectError` when their link drops. Sinks write batches all or
nothing. Observers see every batch after it was stored (detectors, schedule control).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
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

    def samples(self) -> AsyncIterator[Sequence[RawSample]]: ...


class Acknowledger(Protocol):
    """Called once the readings derived from a hand-over are stored or spooled.

    Streaming drivers with at-least-once transports (MQTT QoS 1) attach one so that the
    transport acknowledges only what is safe.
    """

    def __call__(self) -> None: ...


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
