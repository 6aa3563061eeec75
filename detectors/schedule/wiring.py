"""Hook for `collector.daemon.FEATURE_WIRING`: builds the schedule control service.

`wire(cfg, db, journal, features)` returns the `ScheduleService` as a batch observer and a
background service and puts it in `features["schedule"]` (the schedule API routes and the
archive's corrections use it). Nothing is wired without a `[schedule]` section that is enabled
and names subjects. Time and alerts are looked up when needed: the clock is the agent's
(`features["agent"].clock`, accelerated in demos), alerts go to `features["alert_sink"]` when
alerting provides one, else to the journal.
"""

from __future__ import annotations

from typing import Any

from core.config import GridWatchConfig
from core.interfaces import BackgroundService, BatchObserver, Journal
from core.records import Alert, Event
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import build
from detectors.wiring import AgentClock
from detectors.wiring import FeatureAlertSink as BaseFeatureAlertSink
from storage.db import Database


def _schedule_event(a: Alert) -> Event:
    return Event(kind="alert", source="schedule", message=a.summary, ts=a.ts,
                 details={"key": a.key, "rule": a.rule, "firing": a.firing,
                          "severity": a.severity.name.lower(), **a.evidence})


class FeatureAlertSink(BaseFeatureAlertSink):
    """Forwards to `features["alert_sink"]`, or journals the alert (source "schedule")."""

    def __init__(self, features: dict[str, Any], journal: Journal) -> None:
        super().__init__(features, journal, to_event=_schedule_event)


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
