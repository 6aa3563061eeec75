"""The schedule execution control service: live plan-against-actual, hour by hour.

`build(config, db, alert_sink, journal, clock)` returns a `ScheduleService` that the collector
wires as a `BatchObserver` (every stored batch marks the hours it touches) and runs as a
`BackgroundService` (`run()` recomputes the current hour every `compute_every_s` of the
injected clock's time, closes hours with a final verdict, and recomputes closed hours that got
late or corrected data, journaling what changed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from typing import Any

from core.errors import GridWatchError
from core.interfaces import AlertSink, Clock, Journal
from core.records import Alert, Event, Reading, Severity
from detectors.schedule.calendar import OperatingHour, day_hours, hour_of
from detectors.schedule.compute import HourResult, PointEnergy, compute_hour
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanImport
from storage.db import Database
from storage.schedule import PlanHourRow, PlanVersionRow, ScheduleStore, StoredVersion

log = logging.getLogger("gridwatch.schedule")

ALERTING_VERDICTS = ("deviation", "above_quota")


def result_row(r: HourResult, computed_at: datetime) -> dict[str, Any]:
    """The `schedule_results` row of a result."""
    return {
        "entity": r.entity, "entity_kind": r.entity_kind, "zone": r.zone, "hour_start": r.hour.start,
        "hour_end": r.hour.end, "day": r.hour.day, "hour": r.hour.number, "plan_mwh": r.plan_mwh,
        "actual_mwh": r.actual_mwh, "projected_mwh": r.projected_mwh, "deviation_mwh": r.deviation_mwh,
        "deviation_pct": r.deviation_pct, "band_mwh": r.band_mwh, "completeness": r.completeness,
        "verdict": r.verdict, "final": r.final, "plan_version": r.plan_version, "computed_at": computed_at,
    }


def _close(a: Any, b: Any, eps: float = 1e-6) -> bool:
    if a is None or b is None:
        return a is b
    return abs(float(a) - float(b)) <= eps * max(1.0, abs(float(a)), abs(float(b)))


class ScheduleService:
    """Plan against actual for every subject and zone; see the module docstring."""

    def __init__(self, config: ScheduleConfig, store: ScheduleStore, alert_sink: AlertSink | None,
                 journal: Journal | None, clock: Clock) -> None:
        self.config = config
        self.store = store
        self.alert_sink = alert_sink
        self.journal = journal
        self.clock = clock
        self.tz = config.tz
        self._ids: dict[str, int] = {}
        self._watched: set[int] = set()
        self._dirty: set[datetime] = set()
        self._next_to_close: datetime | None = None
        self._warned: dict[str, datetime] = {}  # entity -> hour_start of its firing early warning
        self._lock = asyncio.Lock()
        self.last_results: list[HourResult] = []
        self.ticks = 0
        self.tick_errors = 0
        self.recomputed_hours = 0
        self.early_warnings = 0
        self.last_tick_seconds = 0.0
        self._point_names = [mp.point for s in config.subjects for mp in s.points]
        self._tol = timedelta(seconds=min(config.interval_s / 3.0, 300.0))

    # -- BatchObserver -------------------------------------------------------------------
    async def on_batch(self, batch: Sequence[Reading]) -> None:
        """Mark closed hours touched by `batch` (late or corrected data) for recomputation."""
        if not self._watched or self._next_to_close is None:
            return
        reach = timedelta(seconds=max(self._tol.total_seconds(), self.config.power_max_gap_s))
        for r in batch:
            if r.point_id not in self._watched or r.ts >= self._next_to_close:
                continue
            for t in (r.ts - reach, r.ts, r.ts + reach):
                h = hour_of(t, self.tz)
                if h.start < self._next_to_close:
                    self._dirty.add(h.start)

    def mark_dirty(self, ts: datetime) -> None:
        """Recompute the hour(s) around `ts` at the next tick (after a manual correction)."""
        reach = timedelta(seconds=max(self._tol.total_seconds(), self.config.power_max_gap_s))
        for t in (ts - reach, ts, ts + reach):
            self._dirty.add(hour_of(t, self.tz).start)

    # -- BackgroundService ---------------------------------------------------------------
    async def run(self) -> None:
        """Tick every `compute_every_s` of clock time until cancelled; errors are logged."""
        while True:
            speed = float(getattr(self.clock, "speed", 1.0) or 1.0)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except GridWatchError as e:  # database down: try again next tick
                self.tick_errors += 1
                log.warning("schedule tick failed: %s", e)
            except Exception:  # a bug must not end schedule control for good
                self.tick_errors += 1
                log.exception("schedule tick failed unexpectedly")
            await asyncio.sleep(max(0.05, self.config.compute_every_s / speed))

    # -- work ----------------------------------------------------------------------------
    async def refresh_points(self) -> None:
        """Look up the ids of the configured metering points (they register as sources start)."""
        if len(self._ids) < len(set(self._point_names)):
            self._ids = await self.store.point_ids(self._point_names)
            self._watched = set(self._ids.values())

    async def tick(self, now: datetime | None = None) -> list[HourResult]:
        """Close ended hours, recompute dirty ones, compute the current hour; return its results."""
        async with self._lock:
            t0 = time.perf_counter()
            try:
                return await self._tick(now or self.clock())
            finally:
                self.ticks += 1
                self.last_tick_seconds = time.perf_counter() - t0

    async def _tick(self, now: datetime) -> list[HourResult]:
        await self.refresh_points()
        cur = hour_of(now, self.tz)
        grace = timedelta(seconds=self.config.final_after_s)
        if self._next_to_close is None:
            # after a restart: close what was left open, and catch up on hours missed while
            # down (at most `recompute_days` back)
            for start in await self.store.open_hours_before(cur.start):
                await self._finalize(hour_of(start, self.tz), now, journal_changes=False)
            last = await self.store.last_final_end()
            floor = hour_of(now - timedelta(days=self.config.recompute_days), self.tz).start
            self._next_to_close = cur.start if last is None else max(min(last, cur.start), floor)
        # close every hour that ended (plus grace) since the last tick, in order
        while True:
            h = hour_of(self._next_to_close, self.tz)
            if h.end + grace > now or h.start >= cur.start:
                break
            await self._finalize(h, now, journal_changes=False)
            self._dirty.discard(h.start)
            self._next_to_close = h.end
        # late or corrected data in closed hours
        horizon = now - timedelta(days=self.config.recompute_days)
        for start in sorted(self._dirty):
            if start >= self._next_to_close:
                continue
            self._dirty.discard(start)
            h = hour_of(start, self.tz)
            if h.end < horizon:
                await self._journal("schedule", f"late data for hour {h.number} of {h.day} is older than "
                                    f"{self.config.recompute_days} days: not recomputed",
                                    {"hour_start": h.start.isoformat()}, now)
                continue
            await self._finalize(h, now, journal_changes=True)
        # the open hours (the current one, and the previous one during its grace period)
        results: list[HourResult] = []
        h = hour_of(self._next_to_close, self.tz)
        while h.start <= cur.start:
            results = await self.compute(h, now, final=False)
            await self.store.upsert_results([result_row(r, now) for r in results])
            if h.start == cur.start:
                await self._early_warnings(results, now)
            h = hour_of(h.end, self.tz)
        self.last_results = results
        return results

    async def compute(self, hour: OperatingHour, now: datetime, *, final: bool) -> list[HourResult]:
        """Results of every subject and zone for `hour` from the stored readings."""
        await self.refresh_points()
        end = hour.end if final else min(hour.end, now)
        counters: dict[str, int] = {}
        powers: dict[str, int] = {}
        for s in self.config.subjects:
            for mp in s.points:
                pid = self._ids.get(mp.point)
                if pid is not None:
                    (counters if mp.kind == "energy" else powers)[mp.point] = pid
        energies: dict[str, PointEnergy | None] = {}
        spans = await self.store.counter_spans(list(counters.values()), hour.start, end, self._tol)
        for name, pid in counters.items():
            sp = spans.get(pid)
            if (sp is None or sp.base_ts is None or sp.last_ts is None or sp.base_value is None
                    or sp.last_value is None or sp.last_ts <= sp.base_ts or sp.last_value < sp.base_value):
                energies[name] = None
                continue
            covered = (sp.last_ts - max(sp.base_ts, hour.start)).total_seconds()
            energies[name] = PointEnergy(sp.last_value - sp.base_value, covered)
        pe = await self.store.power_energy(list(powers.values()), hour.start, end, self.config.power_max_gap_s)
        for name, pid in powers.items():
            got = pe.get(pid)
            energies[name] = PointEnergy(got[0], got[1]) if got else None
        plans = await self.store.plans_at(hour.start)
        if final:
            return compute_hour(self.config, hour, now, energies, plans, final=True)
        prev = await self.store.plans_at(hour_of(hour.start - timedelta(microseconds=1), self.tz).start)
        nxt = await self.store.plans_at(hour.end)
        return compute_hour(self.config, hour, now, energies, plans, final=False, prev_plans=prev, next_plans=nxt)

    async def _finalize(self, hour: OperatingHour, now: datetime, *, journal_changes: bool) -> list[HourResult]:
        results = await self.compute(hour, now, final=True)
        before = await self.store.results_at(hour.start)
        await self.store.upsert_results([result_row(r, now) for r in results])
        changed = []
        for r in results:
            old = before.get(r.entity)
            if old is None or not old["final"]:
                # first close of the hour: resolve its early warning, journal a bad verdict
                await self._resolve(r.entity, now, r)
                if r.verdict in ALERTING_VERDICTS and r.entity_kind != "zone":
                    await self._journal("schedule", f"{r.entity} hour {hour.number} of {hour.day}: {r.verdict}, "
                                        f"plan {_fmt(r.plan_mwh)} MWh, actual {r.actual_mwh:.3f} MWh",
                                        {"entity": r.entity, "hour_start": hour.start.isoformat(),
                                         "verdict": r.verdict, "plan_mwh": r.plan_mwh, "actual_mwh": r.actual_mwh,
                                         "deviation_mwh": r.deviation_mwh}, now)
                continue
            if not (_close(old["actual_mwh"], r.actual_mwh) and _close(old["plan_mwh"], r.plan_mwh)
                    and _close(old["completeness"], r.completeness) and old["verdict"] == r.verdict):
                changed.append((old, r))
        if journal_changes and changed:
            self.recomputed_hours += 1
            details = [{"entity": r.entity, "actual_before": old["actual_mwh"], "actual_after": r.actual_mwh,
                        "verdict_before": old["verdict"], "verdict_after": r.verdict,
                        "completeness_before": old["completeness"], "completeness_after": r.completeness}
                       for old, r in changed]
            names = ", ".join(r.entity for _, r in changed[:5])
            await self._journal("schedule", f"hour {hour.number} of {hour.day} recomputed after late or corrected "
                                f"data: {len(changed)} result(s) changed ({names})",
                                {"hour_start": hour.start.isoformat(), "changes": details}, now)
        return results

    async def _early_warnings(self, results: Sequence[HourResult], now: datetime) -> None:
        if not self.config.early_warning.enabled:
            return
        sev = Severity.parse(self.config.early_warning.severity)
        alerts: list[Alert] = []
        for r in results:
            if r.final:
                continue
            warned = self._warned.get(r.entity)
            if r.verdict in ALERTING_VERDICTS:
                if warned == r.hour.start:
                    continue
                self._warned[r.entity] = r.hour.start
                self.early_warnings += 1
                alerts.append(self._alert(r, sev, True, now))
            elif warned == r.hour.start and r.verdict == "ok":
                del self._warned[r.entity]
                alerts.append(self._alert(r, sev, False, now))
        await self._emit(alerts, now)

    async def _resolve(self, entity: str, now: datetime, r: HourResult) -> None:
        if self._warned.get(entity) == r.hour.start:
            del self._warned[entity]
            await self._emit([self._alert(r, Severity.parse(self.config.early_warning.severity), False, now)], now)

    def _alert(self, r: HourResult, sev: Severity, firing: bool, now: datetime) -> Alert:
        what = "above its purchased volume" if r.verdict == "above_quota" else "out of its tolerance band"
        if firing:
            summary = (f"{r.entity}: hour {r.hour.number} projected {_fmt(r.projected_mwh)} MWh against plan "
                       f"{_fmt(r.plan_mwh)} MWh ({_fmt(r.deviation_pct, '.1f')} %), {what}")
        else:
            summary = f"{r.entity}: hour {r.hour.number} back within the schedule or closed"
        subject = self.config.subject(r.entity)
        rec = ""
        if firing and r.deviation_mwh is not None:
            if subject is not None and subject.kind == "generator":
                rec = "reduce generation" if r.deviation_mwh > 0 else "increase generation or declare a reserve"
            elif r.entity_kind == "zone":
                rec = "balance the zone with reserves or cross-zone exchange"
            else:
                rec = "reduce consumption in this hour" if r.deviation_mwh > 0 else "check the metering or the plan"
        return Alert(key=f"schedule:{r.entity}", rule="schedule.early_warning", severity=sev, firing=firing,
                     ts=now, summary=summary, zone=r.zone,
                     subject=r.entity if r.entity_kind == "subject" else "",
                     evidence={"hour_start": r.hour.start.isoformat(), "hour": r.hour.number,
                               "plan_mwh": r.plan_mwh, "actual_so_far_mwh": r.actual_mwh,
                               "projected_mwh": r.projected_mwh, "deviation_mwh": r.deviation_mwh,
                               "deviation_pct": r.deviation_pct, "band_mwh": r.band_mwh,
                               "completeness": r.completeness, "verdict": r.verdict},
                     recommendation=rec)

    async def _emit(self, alerts: Sequence[Alert], now: datetime) -> None:
        if not alerts:
            return
        if self.alert_sink is not None:
            await self.alert_sink.submit(alerts)
            return
        for a in alerts:
            await self._journal("schedule", a.summary, {"key": a.key, "firing": a.firing, **a.evidence}, now)

    async def _journal(self, kind: str, message: str, details: dict[str, Any], now: datetime,
                       actor: str = "system") -> None:
        if self.journal is None:
            log.info("%s", message)
            return
        await self.journal.record(Event(kind=kind, source="schedule", message=message, ts=now, actor=actor,
                                        details=details))

    # -- plans and recomputation -------------------------------------------------------
    async def import_plans(self, imp: PlanImport, actor: str) -> list[StoredVersion]:
        """Store a validated import (all or nothing), journal it, and recompute closed hours."""
        rows = []
        for p in imp.plans:
            hours = day_hours(p.day, self.tz)
            rows.append(PlanVersionRow(p.day, p.subject, p.unit, [
                PlanHourRow(h.number, h.start, v) for h, v in zip(hours, p.values_mwh, strict=True)]))
        stored = await self.store.import_plans(rows, actor=actor, source=imp.source, comment=imp.comment)
        now = self.clock()
        for p in imp.plans:
            for h in day_hours(p.day, self.tz):
                if self._next_to_close is not None and h.start < self._next_to_close:
                    self._dirty.add(h.start)
        await self._journal("schedule", f"{actor} imported {len(stored)} plan(s) from {imp.source}: "
                            + ", ".join(f"{s.subject} {s.day} v{s.version}" for s in stored[:10]),
                            {"plans": [{"subject": s.subject, "day": s.day.isoformat(), "version": s.version}
                                       for s in stored], "actor": actor}, now, actor=actor)
        return stored

    async def recompute_day(self, day: date) -> int:
        """Recompute and store every closed hour of `day` now; returns how many hours."""
        now = self.clock()
        n = 0
        for h in day_hours(day, self.tz):
            if h.end <= now:
                await self._finalize(h, now, journal_changes=True)
                n += 1
        return n


def _fmt(v: float | None, spec: str = ".3f") -> str:
    return "n/a" if v is None else format(v, spec)


def build(config: ScheduleConfig, db: Database, alert_sink: AlertSink | None, journal: Journal | None,
          clock: Clock) -> ScheduleService:
    """The schedule service on `db`; `alert_sink` None sends early warnings to the journal."""
    return ScheduleService(config, ScheduleStore(db), alert_sink, journal, clock)
