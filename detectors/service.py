"""The detection pipeline glue: rules + ML on every stored batch, stale ticks and retraining.

```
Agent --stored batch--> DetectionService.on_batch --thread--> rule detectors --+
                                                  +-thread--> MLScorer ---------+--> alerts --> AlertSink.submit
                                                               |                    (or Journal: Event kind="alert")
                                                               +--> anomaly_scores (storage.scores)
DetectionService.run(): every tick_s: StaleDetector.tick(now); retrain ML when due
                        (archive history → train in a thread → storage.scores.save_model)
```

`build(...)` is the only constructor the collector needs; the returned service satisfies
`core.interfaces.BatchObserver` and `core.interfaces.BackgroundService`.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from core.config import GridWatchConfig, LimitSpec, ResolvedPoint
from core.interfaces import AlertSink, Clock, Detector, Journal
from core.records import BAD_QUALITY, Alert, Event, Reading, Severity

from .config import (
    ConsumptionRule,
    DetectorsConfig,
    FrozenRule,
    MLConfig,
    RateRule,
    StaleRule,
    VoltageRule,
)
from .ml import MODEL_NAME, MLModel, MLScorer, train
from .rules import (
    ConsumptionNormDetector,
    FrozenDetector,
    LimitDetector,
    RateDetector,
    StaleDetector,
    VoltageBandDetector,
    _advance,
    _Latch,
)

log = logging.getLogger(__name__)

try:  # storage is optional for pure use (evaluation, tests of rules)
    from storage import scores as score_store
    from storage.db import Database
except ImportError:  # pragma: no cover
    score_store = None  # type: ignore[assignment]
    Database = Any  # type: ignore[misc,assignment]


@dataclass
class DetectionStats:
    """Counters of the detection service (exported by the collector as gridwatch_detectors_*)."""

    readings: int = 0
    batches: int = 0
    alerts: int = 0
    scores_stored: int = 0
    score_errors: int = 0
    delivery_errors: int = 0
    trainings: int = 0
    training_errors: int = 0
    last_training: datetime | None = None
    model_version: int = 0


def _first(rules: Sequence[Any], name: str) -> Any:
    for r in rules:
        if r.matches(name):
            return r
    return None


@dataclass
class RuleSet:
    """The rule detectors for a set of points, built from configuration."""

    limits: LimitDetector
    rate: RateDetector
    stale: StaleDetector
    frozen: FrozenDetector
    voltage: VoltageBandDetector
    consumption: ConsumptionNormDetector
    extra_limits: list[LimitDetector] = field(default_factory=list)

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        dets: list[Detector] = [self.limits, *self.extra_limits, self.rate, self.stale, self.frozen,
                                self.voltage, self.consumption]
        for d in dets:
            out.extend(d.observe(batch))
        return out


def build_rules(cfg: DetectorsConfig, points: Mapping[int, ResolvedPoint], *,
                stale_after_intervals: float = 3.0, frozen_after: int | None = None) -> RuleSet:
    """Resolve every point's rules (point spec defaults, then the first matching config rule)."""
    limits: dict[int, LimitSpec] = {}
    rule_limits: dict[tuple[str, str], dict[int, LimitSpec]] = {}
    rate: dict[int, RateRule] = {}
    stale: dict[int, tuple[StaleRule, float]] = {}
    frozen: dict[int, FrozenRule] = {}
    voltage: dict[int, tuple[VoltageRule, float]] = {}
    consumption: dict[int, ConsumptionRule] = {}
    for pid, pt in points.items():
        spec, name = pt.spec, pt.name
        if spec.limits is not None:
            limits[pid] = spec.limits
        else:
            lr = _first(cfg.limits, name)
            if lr is not None:
                rule_limits.setdefault((lr.severity_hi, lr.severity_hihi), {})[pid] = lr.limits
        rr = _first(cfg.rate, name)
        if rr is not None:
            rate[pid] = rr
        sr = _first(cfg.stale, name)
        if sr is not None and (sr.interval_s or spec.interval_s):
            stale[pid] = (sr, float(sr.interval_s or spec.interval_s or 0))
        elif cfg.auto_stale and spec.interval_s:
            stale[pid] = (StaleRule.model_validate({"after_intervals": stale_after_intervals}), spec.interval_s)
        fr = _first(cfg.frozen, name)
        if fr is not None:
            frozen[pid] = fr
        elif (spec.frozen_after or frozen_after) and spec.kind == "analog":
            frozen[pid] = FrozenRule.model_validate({"samples": int(spec.frozen_after or frozen_after or 10)})
        vr = _first(cfg.voltage, name)
        if vr is not None and (vr.nominal or spec.nominal):
            voltage[pid] = (vr, float(vr.nominal or spec.nominal or 0))
        elif cfg.auto_voltage and spec.nominal and spec.unit in ("V", "kV"):
            voltage[pid] = (VoltageRule.model_validate({}), spec.nominal)
        cr = _first(cfg.consumption, name)
        if cr is not None:
            consumption[pid] = cr
    extra = [LimitDetector(lims, points, Severity.parse(hi), Severity.parse(hihi))
             for (hi, hihi), lims in rule_limits.items()]
    return RuleSet(LimitDetector(limits, points), RateDetector(rate, points), StaleDetector(stale, points),
                   FrozenDetector(frozen, points), VoltageBandDetector(voltage, points),
                   ConsumptionNormDetector(consumption, points), extra)


class MLAlerter:
    """Turns per-reading ML scores into alerts (`ml:<point_id>`), with a clear hysteresis."""

    rule = "ml"

    def __init__(self, cfg: MLConfig, points: Mapping[int, ResolvedPoint]) -> None:
        self.cfg = cfg
        self.points = points
        self.state: dict[int, _Latch] = {}
        self.clear_below = 1.0 - (1.0 - cfg.score_threshold) * 10.0
        self.sev = Severity.parse(cfg.severity)

    def observe(self, batch: Sequence[Reading], score: np.ndarray, expected: np.ndarray) -> list[Alert]:
        out: list[Alert] = []
        firing = {p for p, st in self.state.items() if st.firing is not None or st.pending_since is not None}
        cand = np.flatnonzero(score >= self.clear_below)
        idx = set(cand.tolist())
        if firing:
            idx.update(i for i, r in enumerate(batch) if r.point_id in firing)
        for i in sorted(idx):
            r = batch[i]
            s = float(score[i])
            st = self.state.setdefault(r.point_id, _Latch())
            want = self.sev if s >= self.cfg.score_threshold else None
            step = _advance(st, r.ts, want, s >= self.clear_below, self.cfg.min_duration_s)
            if step is None:
                continue
            is_firing, sev = step
            pt = self.points.get(r.point_id)
            name = pt.name if pt else f"point {r.point_id}"
            exp = float(expected[i])
            summary = (f"{name} = {r.value:g} is unlike its usual behaviour (expected ≈ {exp:.4g}, "
                       f"anomaly score {s:.4f})" if is_firing else f"{name} behaves normally again")
            out.append(Alert(key=f"ml:{r.point_id}", rule=self.rule, severity=sev, firing=is_firing, ts=r.ts,
                             summary=summary, point_id=r.point_id, device=pt.device if pt else "",
                             zone=pt.zone if pt else "", subject=pt.subject if pt else "",
                             evidence={"value": r.value, "expected": exp, "score": s,
                                       "params": {"score_threshold": self.cfg.score_threshold,
                                                  "model": MODEL_NAME}}))
        return out


class DetectionService:
    """Runs rule detectors and ML scoring on stored batches; delivers alerts; retrains models."""

    def __init__(self, cfg: DetectorsConfig, points: Mapping[int, ResolvedPoint], *, db: Database | None,
                 alert_sink: AlertSink | None, journal: Journal | None, clock: Clock,
                 stale_after_intervals: float = 3.0, frozen_after: int | None = None,
                 points_provider: Callable[[], Mapping[int, ResolvedPoint]] | None = None,
                 retention_days: float | None = None) -> None:
        """`points_provider`, when given, is asked for the current {point_id: point} before each
        batch and tick (the daemon learns point ids only after registering them); the rules are
        rebuilt when the set of ids changes."""
        self.cfg = cfg
        self.db = db
        self.alert_sink = alert_sink
        self.journal = journal
        self.clock = clock
        self._stale_after = stale_after_intervals
        self._frozen_after = frozen_after
        self._points_provider = points_provider
        self.scorer: MLScorer | None = None
        self.stats = DetectionStats()
        self._lock = threading.Lock()
        self._history: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._history_rows = 0
        self._last_train: datetime | None = None
        self._retention_days = retention_days
        self._last_retention: datetime | None = None
        self.set_points(points)

    def set_points(self, points: Mapping[int, ResolvedPoint]) -> None:
        """(Re)build the rule detectors for `points` (their rule state starts afresh)."""
        cfg = self.cfg
        with self._lock:
            self.points = dict(points)
            self.rules = build_rules(cfg, self.points, stale_after_intervals=self._stale_after,
                                     frozen_after=self._frozen_after)
            self.ml_points = {pid for pid, pt in self.points.items()
                              if cfg.ml.enabled and any(_match(pt.name, p) for p in cfg.ml.points)}
            self.groups = _device_groups(self.points)
            self.ml_alerter = MLAlerter(cfg.ml, self.points)
            if self.scorer is not None:
                self.scorer = MLScorer(self.scorer.model, self.groups)

    def _refresh_points(self) -> None:
        if self._points_provider is None:
            return
        current = self._points_provider()
        if current.keys() != self.points.keys():
            self.set_points(current)

    # -- BatchObserver ------------------------------------------------------------------
    async def on_batch(self, batch: Sequence[Reading]) -> None:
        """Observe a stored batch: rules and ML scoring in a thread, then deliver and store."""
        if not self.cfg.enabled or not batch:
            return
        self._refresh_points()
        alerts, scores = await asyncio.to_thread(self.process, batch)
        if scores is not None and self.db is not None and self.cfg.ml.store_scores and score_store is not None:
            pids, ts_s, sc = scores
            try:
                self.stats.scores_stored += await score_store.write_scores(self.db, pids, ts_s, sc, MODEL_NAME)
            except Exception as e:  # storage errors are already translated; never break ingest
                self.stats.score_errors += 1
                log.warning("detectors: storing %d anomaly scores failed: %s", len(pids), e)
        await self.deliver(alerts)

    def process(self, batch: Sequence[Reading]) -> tuple[list[Alert], tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
        """Synchronous core of `on_batch` (thread-safe): alerts and (point ids, ts, score)."""
        with self._lock:
            self.stats.batches += 1
            self.stats.readings += len(batch)
            alerts = self.rules.observe(batch)
            scores = None
            ml_batch = [r for r in batch if r.point_id in self.ml_points and not (r.quality & BAD_QUALITY)]
            if ml_batch:
                pids = np.fromiter((r.point_id for r in ml_batch), dtype=np.int64, count=len(ml_batch))
                ts_s = np.fromiter((r.ts.timestamp() for r in ml_batch), dtype=np.float64, count=len(ml_batch))
                vals = np.fromiter((r.value for r in ml_batch), dtype=np.float64, count=len(ml_batch))
                self._remember(pids, ts_s, vals)
                if self.scorer is not None:
                    sc, expected = self.scorer.score_arrays(pids, ts_s, vals)
                    known = np.isin(pids, self.scorer.model.point_ids)
                    alerts.extend(self.ml_alerter.observe(ml_batch, sc, expected))
                    if np.any(known):
                        scores = (pids[known], ts_s[known], sc[known])
            return alerts, scores

    def _remember(self, pids: np.ndarray, ts_s: np.ndarray, vals: np.ndarray) -> None:
        self._history.append((pids, ts_s, vals))
        self._history_rows += len(pids)
        cap = self.cfg.ml.max_history_per_point * max(1, len(self.ml_points))
        while self._history_rows > cap and len(self._history) > 1:
            old = self._history.pop(0)
            self._history_rows -= len(old[0])

    # -- BackgroundService --------------------------------------------------------------
    async def run(self) -> None:
        """Stale ticks every `tick_s`; load the stored model once, then retrain when due."""
        if not self.cfg.enabled:
            await asyncio.Event().wait()
        await self.load_model()
        while True:
            await self.tick()
            if self.cfg.ml.enabled and self._training_due():
                await self.retrain()
            await self.apply_retention()
            await asyncio.sleep(self.cfg.tick_s)

    async def apply_retention(self) -> int:
        """Hourly: delete anomaly scores older than the storage retention; rows deleted."""
        if self.db is None or score_store is None or self._retention_days is None:
            return 0
        now = self.clock()
        if self._last_retention is not None and (now - self._last_retention).total_seconds() < 3600:
            return 0
        self._last_retention = now
        try:
            return await score_store.delete_scores_before(self.db, now - timedelta(days=self._retention_days))
        except Exception as e:
            log.warning("detectors: anomaly score retention failed: %s", e)
            return 0

    async def tick(self) -> list[Alert]:
        """One stale check at the clock's now; delivers and returns the alerts."""
        self._refresh_points()
        now = self.clock()
        with self._lock:
            alerts = self.rules.stale.tick(now)
        await self.deliver(alerts)
        return alerts

    def _training_due(self) -> bool:
        now = self.clock()
        if self._last_train is None:
            return self.scorer is None and self._history_rows >= self.cfg.ml.min_history
        return (now - self._last_train).total_seconds() >= self.cfg.ml.retrain_every_s

    async def load_model(self) -> bool:
        """Load the newest stored model (if any); True when one was loaded."""
        if self.db is None or score_store is None or not self.cfg.ml.enabled:
            return False
        try:
            stored = await score_store.load_model(self.db, MODEL_NAME)
        except Exception as e:
            log.warning("detectors: loading the stored model failed: %s", e)
            return False
        if stored is None:
            return False
        try:
            model = MLModel.from_bytes(stored.blob)
        except Exception as e:
            log.warning("detectors: stored model version %d is unreadable: %s", stored.version, e)
            return False
        with self._lock:
            self.scorer = MLScorer(model, self.groups)
        self._last_train = stored.trained_at
        self.stats.model_version = stored.version
        return True

    async def retrain(self) -> MLModel | None:
        """Train from the archive (or the in-memory history) and persist; None if too little data."""
        now = self.clock()
        self._last_train = now
        history = None
        if self.db is not None and score_store is not None:
            try:
                since = now - timedelta(days=self.cfg.ml.history_days)
                pids, ts_s, vals = await score_store.readings_history(
                    self.db, sorted(self.ml_points), since, now + timedelta(days=1), int(BAD_QUALITY))
                if len(pids):
                    history = (pids, ts_s, vals)
            except Exception as e:
                log.warning("detectors: reading training history from the archive failed: %s", e)
        if history is None:
            with self._lock:
                if not self._history:
                    return None
                history = tuple(np.concatenate([h[k] for h in self._history]) for k in range(3))  # type: ignore[assignment]
        assert history is not None
        try:
            model = await asyncio.to_thread(self._train, history, now)
        except Exception as e:
            self.stats.training_errors += 1
            log.warning("detectors: training failed: %s", e)
            return None
        if model is None:
            return None
        if self.db is not None and score_store is not None:
            try:
                model.version = await score_store.save_model(
                    self.db, MODEL_NAME, model.to_bytes(), trained_at=now, points=len(model.point_ids),
                    rows=len(history[0]), params=self.cfg.ml.model_dump())
            except Exception as e:
                log.warning("detectors: saving the model failed: %s", e)
        with self._lock:
            old_prev = self.scorer.prev if self.scorer is not None else None
            old_ids = self.scorer.model.point_ids if self.scorer is not None else []
            self.scorer = MLScorer(model, self.groups)
            if old_prev is not None:
                pos = {p: i for i, p in enumerate(old_ids)}
                for i, p in enumerate(model.point_ids):
                    if p in pos:
                        self.scorer.prev[i] = old_prev[pos[p]]
        self.stats.trainings += 1
        self.stats.last_training = now
        self.stats.model_version = model.version
        return model

    def _train(self, history: tuple[np.ndarray, np.ndarray, np.ndarray], now: datetime) -> MLModel | None:
        pids, ts_s, vals = history
        order = np.lexsort((ts_s, pids))
        pids, ts_s, vals = pids[order], ts_s[order], vals[order]
        cap = self.cfg.ml.max_history_per_point
        per_point: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        bounds = np.flatnonzero(np.diff(pids)) + 1
        for p_ts, p_v, p_id in zip(np.split(ts_s, bounds), np.split(vals, bounds),
                                   np.split(pids, bounds), strict=True):
            if len(p_v) >= self.cfg.ml.min_history:
                per_point[int(p_id[0])] = (p_ts[-cap:], p_v[-cap:])
        if not per_point:
            return None
        return train(per_point, slot_minutes=self.cfg.ml.slot_minutes, trees=self.cfg.ml.iforest_trees,
                     sample=self.cfg.ml.iforest_sample, seed=self.cfg.ml.seed, groups=self.groups, trained_at=now)

    # -- delivery -----------------------------------------------------------------------
    async def deliver(self, alerts: Sequence[Alert]) -> None:
        """Send alerts to the alert sink, or journal them as `Event(kind="alert")`."""
        if not alerts:
            return
        self.stats.alerts += len(alerts)
        try:
            if self.alert_sink is not None:
                await self.alert_sink.submit(list(alerts))
            elif self.journal is not None:
                for a in alerts:
                    await self.journal.record(alert_event(a))
        except Exception as e:
            self.stats.delivery_errors += 1
            log.error("detectors: delivering %d alerts failed: %s", len(alerts), e)


def alert_event(a: Alert) -> Event:
    """The journal entry of an alert (used when no alert sink is configured)."""
    state = "firing" if a.firing else "resolved"
    return Event(kind="alert", source="detectors", message=f"[{a.severity.name} {state}] {a.summary}", ts=a.ts,
                 details={"key": a.key, "rule": a.rule, "severity": a.severity.name, "firing": a.firing,
                          "point_id": a.point_id, "device": a.device, "zone": a.zone, "subject": a.subject,
                          "evidence": a.evidence, "recommendation": a.recommendation})


def _match(name: str, pattern: str) -> bool:
    from fnmatch import fnmatchcase

    return fnmatchcase(name, pattern)


def _device_groups(points: Mapping[int, ResolvedPoint]) -> dict[int, int]:
    """Group points of one device with the same unit (sister phases) for the cross feature."""
    keys: dict[tuple[str, str], int] = {}
    out: dict[int, int] = {}
    for pid, pt in points.items():
        if not pt.device:
            continue
        k = (pt.device, pt.spec.unit)
        out[pid] = keys.setdefault(k, len(keys))
    return out


def build(config: GridWatchConfig, db: Database | None, alert_sink: AlertSink | None, journal: Journal | None,
          points: Mapping[int, ResolvedPoint], clock: Clock) -> DetectionService:
    """The detection service for a configuration (`config.sections["detectors"]`, else defaults)."""
    cfg = config.sections.get("detectors")
    if not isinstance(cfg, DetectorsConfig):
        cfg = DetectorsConfig.model_validate(cfg or {}) if isinstance(cfg, dict) else DetectorsConfig.model_validate({})
    return DetectionService(cfg, points, db=db, alert_sink=alert_sink, journal=journal, clock=clock,
                            stale_after_intervals=config.filters.stale_after_intervals,
                            frozen_after=config.filters.frozen_after,
                            retention_days=float(config.storage.retention_days))
