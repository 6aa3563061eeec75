"""Hook for `collector.daemon.FEATURE_WIRING`: builds the schedule control service.

`wire(cfg, db, journal, features)` returns the `ScheduleService` as a batch observer and a
background service and puts it in `features["schedule"]` (the schedule API routes and the
archive's corrections use it). Nothing is wired without a `[schedule]` section that is enabled
and names subjects. Time and alerts are looked up when needed: the clock is the agent's
(`features["agent"].clock`, accelerated in demos), alerts go to `features["alert_sink"]` when
alerting provides one, else to the journal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from core.config import GridWatchConfig
from core.interfaces import BackgroundService, BatchObserver, Journal
from core.records import Alert, Event
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import build
from storage.db import Database


class AgentClock:
    """The agent's clock once the agent exists (wall clock before); exposes its `speed`."""

    def __init__(self, features: dict[str, Any]) -> None:
        self.features = features

    def _clock(self) -> Any:
        agent = self.features.get("agent")
        return getattr(agent, "clock", None)

    @property
    def speed(self) -> float:
        """How much faster than real time the clock runs (1.0 for the wall clock)."""
        return float(getattr(self._clock(), "speed", 1.0) or 1.0)

    def __call__(self) -> datetime:
        clock = self._clock()
        if clock is not None:
            now: datetime = clock()
            return now
        return datetime.now(UTC)


class FeatureAlertSink:
    """Forwards to `features["alert_sink"]`, or journals the alert when there is none."""

    def __init__(self, features: dict[str, Any], journal: Journal) -> None:
        self.features = features
        self.journal = journal

    async def submit(self, alerts: Sequence[Alert]) -> None:
        sink = self.features.get("alert_sink")
        if sink is not None:
            await sink.submit(alerts)
            return
        for a in alerts:
            await self.journal.record(Event(kind="alert", source="schedule", message=a.summary, ts=a.ts,
                                            details={"key": a.key, "rule": a.rule, "firing": a.firing,
                                                     "severity": a.severity.name.lower(), **a.evidence}))


def schedule_config(cfg: GridWatchConfig) -> ScheduleConfig | None:
    """The `[schedule]` section, or None when absent."""
    sec = cfg.sections.get("schedule")
    return sec if isinstance(sec, ScheduleConfig) else None


def wire(cfg: GridWatchConfig, db: Database, journal: Journal,
         features: dict[str, Any]) -> tuple[list[BatchObserver], list[BackgroundService]]:
    """Build the schedule service (nothing when disabled or without subjects)."""
    scfg = schedule_config(cfg)
    if scfg is None or not scfg.enabled or not scfg.subjects:
        return [], []
    svc = build(scfg, db, FeatureAlertSink(features, journal), journal, AgentClock(features))
    features["schedule"] = svc
    return [svc], [svc]
