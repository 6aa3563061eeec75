"""Clocks: the real UTC clock and an accelerated one for simulated operating days."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any


class SystemClock:
    """Wall-clock UTC time."""

    speed: float = 1.0

    def now(self) -> datetime:
        """The current aware UTC time."""
        return datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now()


@dataclass
class AcceleratedClock:
    """Simulated time running `speed` times faster than real time from `start`.

    Simulators and the daemon share one so that a whole operating day can be replayed in
    minutes while aggregates and schedule hours still see consistent time.
    """

    start: datetime
    speed: float = 1.0
    _t0: float = field(default_factory=time.monotonic, repr=False)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError("AcceleratedClock.start must be timezone-aware")
        if self.speed <= 0:
            raise ValueError("AcceleratedClock.speed must be positive")
        self.start = self.start.astimezone(UTC)

    def now(self) -> datetime:
        """The current simulated aware UTC time."""
        return self.start + timedelta(seconds=(time.monotonic() - self._t0) * self.speed)

    def __call__(self) -> datetime:
        return self.now()

    def real_seconds(self, simulated: float) -> float:
        """How many real seconds `simulated` seconds take at this speed."""
        return simulated / self.speed


def clock_from_config(start: datetime | None, speed: float) -> SystemClock | AcceleratedClock:
    """The daemon's clock: real time, or simulated time from `start` (default now) at `speed`."""
    if start is None and speed == 1.0:
        return SystemClock()
    return AcceleratedClock(start=start or datetime.now(UTC), speed=speed)


def clock_speed(clock: Callable[[], datetime]) -> float:
    """The clock's speed (simulated seconds per real second); 1.0 when it has none.

    Reads `speed` of the clock object, or of the object a bound `now` method belongs to.
    """
    speed: Any = getattr(clock, "speed", None)
    if speed is None:
        speed = getattr(getattr(clock, "__self__", None), "speed", 1.0)
    try:
        s = float(speed)
    except (TypeError, ValueError):
        return 1.0
    return s if s > 0 else 1.0
