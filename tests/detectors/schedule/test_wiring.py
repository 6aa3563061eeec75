from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.clock import AcceleratedClock
from core.config import parse_config
from core.records import Alert, Event, Severity
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import ScheduleService
from detectors.schedule.wiring import AgentClock, FeatureAlertSink, wire
from tests.detectors.schedule.helpers import make_config

T = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)


class Journal:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def record(self, event: Event) -> None:
        self.events.append(event)


class Sink:
    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def submit(self, alerts: Any) -> None:
        self.alerts.extend(alerts)


def _cfg(section: dict[str, Any] | None) -> Any:
    raw = {} if section is None else {"schedule": section}
    return parse_config(raw, Path("t.toml"), {}, {"schedule": ScheduleConfig})


def test_wire_builds_the_service_only_when_configured() -> None:
    features: dict[str, Any] = {}
    obs, svcs = wire(_cfg(make_config().model_dump()), None, Journal(), features)  # type: ignore[arg-type]
    assert isinstance(features["schedule"], ScheduleService) and obs == svcs == [features["schedule"]]
    for section in (None, {**make_config().model_dump(), "enabled": False}, {"subjects": []}):
        f2: dict[str, Any] = {}
        assert wire(_cfg(section), None, Journal(), f2) == ([], []) and not f2  # type: ignore[arg-type]


async def test_agent_clock_and_alert_sink() -> None:
    features: dict[str, Any] = {}
    clock = AgentClock(features)
    assert clock.speed == 1.0 and clock().tzinfo is not None

    class Agent:
        def __init__(self) -> None:
            self.clock = AcceleratedClock(start=T, speed=60.0)

    features["agent"] = Agent()
    assert clock.speed == 60.0 and clock() >= T
    journal = Journal()
    sink = FeatureAlertSink(features, journal)
    alert = Alert(key="schedule:X", rule="schedule.early_warning", severity=Severity.WARNING, firing=True, ts=T,
                  summary="X out of band", evidence={"hour": 3})
    await sink.submit([alert])
    assert journal.events[0].kind == "alert" and journal.events[0].details["hour"] == 3
    features["alert_sink"] = real = Sink()
    await sink.submit([alert])
    assert real.alerts == [alert] and len(journal.events) == 1
