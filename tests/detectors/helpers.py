"""Builders shared by the detector tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from core.config import PointSpec, ResolvedPoint
from core.records import Alert, Event, Quality, Reading

T0 = datetime(2026, 3, 2, 0, 0, tzinfo=UTC)  # a Monday


def point(pid: int, name: str = "", **spec: Any) -> ResolvedPoint:
    name = name or f"p{pid}"
    return ResolvedPoint(spec=PointSpec.model_validate({"name": name, **spec}), name=name, key=name,
                         source="test", device=spec.get("device", "dev1"), subject="", zone="", options=None)


def r(pid: int, t_s: float, value: float, quality: Quality = Quality.GOOD) -> Reading:
    ts = T0 + timedelta(seconds=t_s)
    return Reading(point_id=pid, ts=ts, value=value, quality=quality, received_at=ts)


class Sink:
    """An alert sink that keeps what it is given."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def submit(self, alerts: Sequence[Alert]) -> None:
        self.alerts.extend(alerts)


class Journal:
    """A journal that keeps the events it records."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)
