"""DetectionService: rules and ML on batches, delivery to the alert sink or the journal, stale
ticks, training from in-memory history, and `build()` from a configuration."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from core.config import (
    ApiConfig,
    BufferConfig,
    ClockConfig,
    CollectorConfig,
    FilterConfig,
    GridWatchConfig,
    SpoolConfig,
    StorageConfig,
)
from core.records import Alert, Quality, Reading
from detectors.config import DetectorsConfig
from detectors.service import DetectionService, build

from .helpers import T0, Journal, Sink, point, r


def _config(detectors: DetectorsConfig | None = None) -> GridWatchConfig:
    def v(m: type) -> object:
        return m.model_validate({})  # type: ignore[attr-defined]

    return GridWatchConfig(file=Path("x.toml"), storage=v(StorageConfig), spool=v(SpoolConfig),  # type: ignore[arg-type]
                           buffer=v(BufferConfig), api=v(ApiConfig), filters=v(FilterConfig),  # type: ignore[arg-type]
                           collector=v(CollectorConfig), clock=v(ClockConfig), sources=(), templates={},  # type: ignore[arg-type]
                           sections={"detectors": detectors} if detectors else {})


POINTS = {
    1: point(1, "sub1.u_a", unit="kV", nominal=110, interval_s=60, limits={"hi": 130}),
    2: point(2, "miner1.energy", unit="kWh", interval_s=900),
}


async def test_service_raises_resolves_and_journals_without_sink() -> None:
    cfg = DetectorsConfig.model_validate({"consumption": [{"points": ["miner*"], "norm_per_interval": 10}]})
    journal = Journal()
    svc = build(_config(cfg), None, None, journal, POINTS, lambda: T0)
    await svc.on_batch([r(1, 0, 110), r(1, 60, 118), r(2, 900, 12)])
    await svc.on_batch([r(1, 120, 110), r(2, 1800, 5)])
    kinds = [(e.details["key"], e.details["firing"]) for e in journal.events]
    assert kinds == [("voltage:1", True), ("consumption_interval:2", True), ("voltage:1", False),
                     ("consumption_interval:2", False)]
    assert all(e.kind == "alert" and e.source == "detectors" for e in journal.events)
    assert journal.events[0].details["evidence"]["expected"] == 110


async def test_service_stale_tick_goes_to_sink() -> None:
    now = [T0]
    sink = Sink()
    svc = build(_config(), None, sink, None, POINTS, lambda: now[0])
    await svc.on_batch([r(1, 0, 110)])
    await svc.tick()
    now[0] = T0 + timedelta(seconds=60 * 3 + 1)
    alerts = await svc.tick()
    assert [a.key for a in alerts] == ["stale:1"] and sink.alerts == alerts
    await svc.on_batch([r(1, 200, 110)])
    assert sink.alerts[-1].key == "stale:1" and not sink.alerts[-1].firing


async def test_service_trains_from_history_and_scores() -> None:
    cfg = DetectorsConfig.model_validate({"ml": {"min_history": 50, "iforest_trees": 20, "store_scores": False}})
    sink = Sink()
    points = {3: point(3, "feeder.p", unit="MW")}
    svc = DetectionService(cfg, points, db=None, alert_sink=sink, journal=None, clock=lambda: T0)
    rng = np.random.default_rng(1)
    batch = [Reading(3, T0 + timedelta(minutes=15 * i),
                     float(50 + 10 * np.sin(2 * np.pi * (i % 96) / 96) + rng.normal(0, 0.5)),
                     Quality.GOOD, T0) for i in range(96 * 7)]
    await svc.on_batch(batch)
    assert svc._training_due()
    model = await svc.retrain()
    assert model is not None and svc.scorer is not None and svc.stats.trainings == 1
    t = T0 + timedelta(days=7)
    await svc.on_batch([Reading(3, t, 50.0, Quality.GOOD, t), Reading(3, t + timedelta(minutes=15), 95.0,
                                                                      Quality.GOOD, t)])
    ml = [a for a in sink.alerts if a.rule == "ml"]
    assert len(ml) == 1 and ml[0].firing and ml[0].key == "ml:3" and ml[0].evidence["score"] > 0.999
    await svc.on_batch([Reading(3, t + timedelta(minutes=30), 52.0, Quality.GOOD, t)])
    assert sink.alerts[-1].key == "ml:3" and not sink.alerts[-1].firing


async def test_delivery_errors_are_counted_not_raised() -> None:
    class Broken:
        async def submit(self, alerts: Sequence[Alert]) -> None:
            raise RuntimeError("down")

    svc = build(_config(), None, Broken(), None, POINTS, lambda: datetime.now(UTC))
    await svc.on_batch([r(1, 0, 150)])
    assert svc.stats.delivery_errors == 1 and svc.stats.alerts >= 1


async def test_wiring_resolves_points_and_sink_lazily() -> None:
    from dataclasses import replace

    from core.config import ResolvedSource
    from detectors.wiring import wire

    pt = point(1, "sub1.u_a", unit="kV", nominal=110, limits={"hi": 130})
    cfg = replace(_config(), sources=(ResolvedSource(name="test", kind="fake", options=None, devices=(),
                                                     points=(pt,)),))
    journal = Journal()
    features: dict[str, object] = {}
    observers, services = wire(cfg, None, journal, features)  # type: ignore[arg-type]
    svc = features["detectors"]
    assert observers == [svc] and services == [svc]

    class FakeAgent:
        point_ids = {"sub1.u_a": 42}

        def clock(self) -> datetime:
            return T0

    features["agent"] = FakeAgent()
    await svc.on_batch([r(42, 0, 140)])  # type: ignore[attr-defined]
    assert [e.details["key"] for e in journal.events] == ["limit:42", "voltage:42"]
    sink = Sink()
    features["alert_sink"] = sink
    await svc.on_batch([r(42, 1, 110)])  # type: ignore[attr-defined]
    assert sorted((a.key, a.firing) for a in sink.alerts) == [("limit:42", False), ("voltage:42", False)]
