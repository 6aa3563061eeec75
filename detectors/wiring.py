"""Hook for `collector.daemon.FEATURE_WIRING`: builds the detection service.

`wire(cfg, db, journal, features)` returns the `DetectionService` as a batch observer and a
background service and puts it in `features["detectors"]`. Point ids and the alert sink are
looked up when needed, not at wiring time: point ids come from `features["agent"].point_ids`
(known once the agent registered its points), alerts go to `features["alert_sink"]` when the
alerting feature provides one, else to the journal as `Event(kind="alert")`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.config import GridWatchConfig, ResolvedPoint
from core.interfaces import BackgroundService, BatchObserver, Journal
from core.records import Alert, Event
from storage.db import Database

from .config import DetectorsConfig
from .service import DetectionService, alert_event


class FeatureAlertSink:
    """An AlertSink that forwards to `features["alert_sink"]` or journals when there is none.

    `to_event` turns an alert into its journal entry when no alerting feature is wired.
    """

    def __init__(self, features: dict[str, Any], journal: Journal,
                 to_event: Callable[[Alert], Event] = alert_event) -> None:
        self.features = features
        self.journal = journal
        self.to_event = to_event

    async def submit(self, alerts: Sequence[Alert]) -> None:
        sink = self.features.get("alert_sink")
        if sink is not None:
            await sink.submit(alerts)
            return
        for a in alerts:
            await self.journal.record(self.to_event(a))


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


def detectors_config(cfg: GridWatchConfig) -> DetectorsConfig:
    """The `[detectors]` section (defaults when absent)."""
    sec = cfg.sections.get("detectors")
    if isinstance(sec, DetectorsConfig):
        return sec
    return DetectorsConfig.model_validate(sec if isinstance(sec, dict) else {})


def wire(cfg: GridWatchConfig, db: Database, journal: Journal,
         features: dict[str, Any]) -> tuple[list[BatchObserver], list[BackgroundService]]:
    """Build the detection service (nothing when `[detectors] enabled = false`)."""
    dcfg = detectors_config(cfg)
    if not dcfg.enabled:
        return [], []
    by_name = {p.name: p for p in cfg.points}

    def points() -> Mapping[int, ResolvedPoint]:
        agent = features.get("agent")
        ids: Mapping[str, int] = getattr(agent, "point_ids", {}) or {}
        return {pid: by_name[name] for name, pid in ids.items() if name in by_name}

    svc = DetectionService(dcfg, {}, db=db, alert_sink=FeatureAlertSink(features, journal), journal=journal,
                           clock=AgentClock(features), stale_after_intervals=cfg.filters.stale_after_intervals,
                           frozen_after=cfg.filters.frozen_after, points_provider=points,
                           retention_days=float(cfg.storage.retention_days))
    features["detectors"] = svc
    return [svc], [svc]
