"""Hook for `collector.daemon.FEATURE_WIRING`: builds the alerting service.

`wire(cfg, db, journal, features)` puts the service in `features["alerting"]` (the API's alert
routes use it) and `features["alert_sink"]` (detectors and schedule control submit to it), and
returns it as a background service. It must run before wiring that needs the alert sink.
"""

from __future__ import annotations

from typing import Any

from alerting.service import alerting_config, build
from core.config import GridWatchConfig
from core.interfaces import BackgroundService, BatchObserver, Journal
from storage.db import Database


def wire(cfg: GridWatchConfig, db: Database, journal: Journal,
         features: dict[str, Any]) -> tuple[list[BatchObserver], list[BackgroundService]]:
    """Build the alerting service (nothing when `[alerting] enabled = false`)."""
    if not alerting_config(cfg).enabled:
        return [], []
    svc = build(cfg, db, journal)
    features["alerting"] = svc
    features["alert_sink"] = svc
    return [], [svc]
