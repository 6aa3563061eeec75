"""Hook for `collector.daemon.FEATURE_WIRING`: builds the detection service.

`wire(cfg, db, journal, features)` returns the `DetectionService` as a batch observer and a
background service and puts it in `features["detectors"]`. Point ids and the alert sink are
looked up when needed, not at wiring time: point ids come from `features["agent"].point_ids`
(known once the agent registered its points), alerts go to `features["alert_sink"]` when the
alerting feature provides one, else to the journal as `Event(kind="alert")`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from core.config import GridWatchConfig, ResolvedPoint
from core.interfaces import BackgroundService, BatchObserver, Journal
from core.records import Alert
from storage.db import Database

from .config import DetectorsConfig
from .service import DetectionService, alert_event


class FeatureAlertSink:
    """An AlertSink that forwards to `features["alert_sink"]` or journals when there is none."""

    def __init__(self, features: dict[str, Any], journal: Journal) -> None:
        self.features = features
        self.journal = journal

    async def submit(self, alerts: Sequence[Alert]) -> None:
        sink = self.features.get("alert_sink")
        if sink is not None:
            await sink.submit(alerts)
            return
        for a in alerts:
            await self.journal.record(alert_event(a))


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

    def clock() -> datetime:
        agent = features.get("agent")
        if agent is not None:
            now: datetime = agent.clock()
            return now
        return datetime.now(UTC)

    svc = DetectionService(dcfg, {}, db=db, alert_sink=FeatureAlertSink(features, journal), journal=journal,
                           clock=clock, stale_after_intervals=cfg.filters.stale_after_intervals,
                           frozen_after=cfg.filters.frozen_after, points_provider=points,
                           retention_days=float(cfg.storage.retention_days))
    features["detectors"] = svc
    return [svc], [svc]
