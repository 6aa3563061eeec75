"""Threshold detectors: limits, rate of change, stale, frozen, voltage band, consumption norm.

Every detector is pure (no I/O): `observe(batch) -> list[Alert]` and, for stale, `tick(now)`.
An alert's key is stable per rule and point (`"<rule>:<point_id>"`): it is emitted with
`firing=True` when the condition is raised (again, with a higher severity, when it escalates)
and once with `firing=False` when it clears. Raising needs the condition to hold for the rule's
minimum duration (by reading timestamps); clearing needs the value back inside the limit by the
deadband (hysteresis). Readings with unusable quality (`not quality.is_good`) are skipped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from core.config import LimitSpec, ResolvedPoint
from core.records import Alert, Quality, Reading, Severity

from .config import (
    ConsumptionRule,
    FrozenRule,
    RateRule,
    StaleRule,
    VoltageRule,
)


@dataclass
class _Latch:
    """Raise/clear state of one rule on one point."""

    firing: Severity | None = None
    pending_since: datetime | None = None


def _advance(st: _Latch, ts: datetime, want: Severity | None, holds: bool,
             min_duration_s: float) -> tuple[bool, Severity] | None:
    """Step the latch; return (firing, severity) when an alert must be emitted.

    `want` is the severity the raw condition asks for now (None: not violated); `holds` says
    whether an active alert is still outside its limit once the deadband is applied.
    """
    if st.firing is not None:
        if not holds and want is None:
            sev = st.firing
            st.firing = None
            st.pending_since = None
            return (False, sev)
        if want is not None and want > st.firing:
            st.firing = want
            return (True, want)
        return None
    if want is None:
        st.pending_since = None
        return None
    if st.pending_since is None:
        st.pending_since = ts
    if (ts - st.pending_since).total_seconds() >= min_duration_s:
        st.firing = want
        st.pending_since = None
        return (True, want)
    return None


def _alert(point: ResolvedPoint | None, point_id: int, rule: str, firing: bool, sev: Severity,
           ts: datetime, summary: str, evidence: dict[str, Any], recommendation: str = "") -> Alert:
    return Alert(
        key=f"{rule}:{point_id}", rule=rule, severity=sev, firing=firing, ts=ts,
        summary=summary, point_id=point_id,
        device=point.device if point else "", zone=point.zone if point else "",
        subject=point.subject if point else "", evidence=evidence, recommendation=recommendation,
    )


def _name(point: ResolvedPoint | None, point_id: int) -> str:
    return point.name if point else f"point {point_id}"


class LimitDetector:
    """hi/lo and hihi/lolo limits per point, with deadband (hysteresis) and minimum duration."""

    rule = "limit"

    def __init__(self, limits: Mapping[int, LimitSpec], points: Mapping[int, ResolvedPoint] | None = None,
                 severity_hi: Severity = Severity.WARNING, severity_hihi: Severity = Severity.CRITICAL) -> None:
        self.limits = dict(limits)
        self.points = points or {}
        self.sev_hi = severity_hi
        self.sev_hihi = severity_hihi
        self.state: dict[int, _Latch] = {}
        self.side: dict[int, str] = {}

    def _classify(self, lim: LimitSpec, v: float) -> tuple[Severity | None, str, float | None]:
        if lim.hihi is not None and v >= lim.hihi:
            return self.sev_hihi, "hihi", lim.hihi
        if lim.lolo is not None and v <= lim.lolo:
            return self.sev_hihi, "lolo", lim.lolo
        if lim.hi is not None and v >= lim.hi:
            return self.sev_hi, "hi", lim.hi
        if lim.lo is not None and v <= lim.lo:
            return self.sev_hi, "lo", lim.lo
        return None, "", None

    def _holds(self, lim: LimitSpec, v: float, side: str) -> bool:
        db = lim.deadband
        if side in ("hi", "hihi"):
            edge = lim.hi if lim.hi is not None else lim.hihi
            return edge is not None and v > edge - db
        edge = lim.lo if lim.lo is not None else lim.lolo
        return edge is not None and v < edge + db

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            lim = self.limits.get(r.point_id)
            if lim is None or not r.quality.is_good:
                continue
            st = self.state.setdefault(r.point_id, _Latch())
            want, side, limit = self._classify(lim, r.value)
            cur_side = self.side.get(r.point_id, side)
            holds = st.firing is not None and self._holds(lim, r.value, cur_side)
            step = _advance(st, r.ts, want, holds, lim.min_duration_s)
            if step is None:
                continue
            firing, sev = step
            if firing:
                self.side[r.point_id] = side
            pt = self.points.get(r.point_id)
            name = _name(pt, r.point_id)
            unit = pt.spec.unit if pt else ""
            if firing:
                summary = f"{name} = {r.value:g} {unit} beyond {side} limit {limit:g}".replace("  ", " ")
            else:
                summary = f"{name} back within limits ({r.value:g} {unit})".replace("  ", " ")
            ev = {"value": r.value, "expected": limit if firing else None, "limit": side if firing else cur_side,
                  "params": lim.model_dump()}
            out.append(_alert(pt, r.point_id, self.rule, firing, sev, r.ts, summary, ev))
        return out


class RateDetector:
    """Rate of change |Δv/Δt| above a maximum, with deadband and minimum duration."""

    rule = "rate"

    def __init__(self, rules: Mapping[int, RateRule], points: Mapping[int, ResolvedPoint] | None = None) -> None:
        self.rules = dict(rules)
        self.points = points or {}
        self.prev: dict[int, tuple[datetime, float]] = {}
        self.state: dict[int, _Latch] = {}

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            rule = self.rules.get(r.point_id)
            if rule is None or not r.quality.is_good:
                continue
            prev = self.prev.get(r.point_id)
            self.prev[r.point_id] = (r.ts, r.value)
            if prev is None:
                continue
            dt = (r.ts - prev[0]).total_seconds()
            if dt <= 0:
                continue
            rate = (r.value - prev[1]) / dt
            st = self.state.setdefault(r.point_id, _Latch())
            sev = Severity.parse(rule.severity)
            want = sev if abs(rate) > rule.max_per_s else None
            holds = abs(rate) > rule.max_per_s * (1 - rule.deadband_pct / 100)
            step = _advance(st, r.ts, want, holds, rule.min_duration_s)
            if step is None:
                continue
            firing, s = step
            pt = self.points.get(r.point_id)
            summary = (f"{_name(pt, r.point_id)} changes at {rate:+.3g}/s (max {rule.max_per_s:g}/s)" if firing
                       else f"{_name(pt, r.point_id)} rate of change back to normal")
            out.append(_alert(pt, r.point_id, self.rule, firing, s, r.ts, summary,
                              {"value": r.value, "rate_per_s": rate, "expected": rule.max_per_s,
                               "params": rule.model_dump()}))
        return out


class FrozenDetector:
    """Value unchanged (within tolerance) for N consecutive samples."""

    rule = "frozen"

    def __init__(self, rules: Mapping[int, FrozenRule], points: Mapping[int, ResolvedPoint] | None = None) -> None:
        self.rules = dict(rules)
        self.points = points or {}
        self.ref: dict[int, float] = {}
        self.count: dict[int, int] = {}
        self.since: dict[int, datetime] = {}
        self.firing: set[int] = set()

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            rule = self.rules.get(r.point_id)
            if rule is None or not r.quality.is_good:
                continue
            pid = r.point_id
            ref = self.ref.get(pid)
            pt = self.points.get(pid)
            if ref is not None and abs(r.value - ref) <= rule.tolerance:
                self.count[pid] += 1
                if self.count[pid] >= rule.samples and pid not in self.firing:
                    self.firing.add(pid)
                    out.append(_alert(pt, pid, self.rule, True, Severity.parse(rule.severity), r.ts,
                                      f"{_name(pt, pid)} frozen at {ref:g} for {self.count[pid]} samples",
                                      {"value": r.value, "expected": "changing value", "samples": self.count[pid],
                                       "since": self.since[pid].isoformat(), "params": rule.model_dump()},
                                      "check the meter/RTU and its communication path"))
                continue
            if pid in self.firing:
                self.firing.discard(pid)
                out.append(_alert(pt, pid, self.rule, False, Severity.parse(rule.severity), r.ts,
                                  f"{_name(pt, pid)} is changing again", {"value": r.value,
                                                                          "params": rule.model_dump()}))
            self.ref[pid] = r.value
            self.count[pid] = 1
            self.since[pid] = r.ts
        return out


_NO_VALUE = Quality.COMM_FAIL | Quality.INVALID


class StaleDetector:
    """No update for `after_intervals` intervals; needs `tick(now)` from a clock.

    A reading without a value (non-finite, or COMM_FAIL / INVALID: the device did not answer or
    said its value is not valid) is no update: a dead meter whose driver stores a failed read
    every interval goes stale like one that sends nothing. Out-of-range, spike and other
    flagged values still count (their own rules report them).
    """

    rule = "stale"

    def __init__(self, rules: Mapping[int, tuple[StaleRule, float]],
                 points: Mapping[int, ResolvedPoint] | None = None) -> None:
        """`rules` maps point id to (rule, interval_s)."""
        self.rules = dict(rules)
        self.points = points or {}
        self.last: dict[int, datetime] = {}
        self.firing: set[int] = set()

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            if r.point_id not in self.rules or r.quality & _NO_VALUE or not math.isfinite(r.value):
                continue
            prev = self.last.get(r.point_id)
            if prev is None or r.ts > prev:
                self.last[r.point_id] = r.ts
            if r.point_id in self.firing:
                self.firing.discard(r.point_id)
                rule, interval = self.rules[r.point_id]
                pt = self.points.get(r.point_id)
                out.append(_alert(pt, r.point_id, self.rule, False, Severity.parse(rule.severity), r.ts,
                                  f"{_name(pt, r.point_id)} updates again", {"value": r.value,
                                                                             "interval_s": interval}))
        return out

    def tick(self, now: datetime) -> list[Alert]:
        out: list[Alert] = []
        for pid, (rule, interval) in self.rules.items():
            last = self.last.get(pid)
            if last is None:
                self.last[pid] = now  # start counting from the first tick
                continue
            limit = timedelta(seconds=rule.after_intervals * interval)
            if pid not in self.firing and now - last > limit:
                self.firing.add(pid)
                pt = self.points.get(pid)
                age = (now - last).total_seconds()
                out.append(_alert(pt, pid, self.rule, True, Severity.parse(rule.severity), now,
                                  f"{_name(pt, pid)}: no update for {age:.0f} s ({age / interval:.1f} intervals)",
                                  {"last_update": last.isoformat(), "age_s": age, "expected": interval,
                                   "params": {**rule.model_dump(), "interval_s": interval}},
                                  "check the link to the device (reserve channel, RTU power)"))
        return out


class VoltageBandDetector:
    """Deviation from nominal voltage: outside the normal band warns, outside the maximum is major."""

    rule = "voltage"

    def __init__(self, rules: Mapping[int, tuple[VoltageRule, float]],
                 points: Mapping[int, ResolvedPoint] | None = None) -> None:
        """`rules` maps point id to (rule, nominal)."""
        self.rules = dict(rules)
        self.points = points or {}
        self.state: dict[int, _Latch] = {}
        self.band: dict[int, float] = {}

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            rn = self.rules.get(r.point_id)
            if rn is None or not r.quality.is_good:
                continue
            rule, nominal = rn
            dev = (r.value - nominal) / nominal * 100.0
            a = abs(dev)
            want: Severity | None = None
            band = 0.0
            if a > rule.max_pct:
                want, band = Severity.parse(rule.severity_max), rule.max_pct
            elif a > rule.normal_pct:
                want, band = Severity.parse(rule.severity_normal), rule.normal_pct
            st = self.state.setdefault(r.point_id, _Latch())
            holds = a > rule.normal_pct - rule.deadband_pct
            step = _advance(st, r.ts, want, holds, rule.min_duration_s)
            if step is None:
                continue
            firing, sev = step
            pt = self.points.get(r.point_id)
            if firing:
                self.band[r.point_id] = band
                summary = (f"{_name(pt, r.point_id)} = {r.value:g} deviates {dev:+.1f} % from nominal "
                           f"{nominal:g} (band ±{band:g} %)")
                rec = ("raise voltage: check transformer tap changer / reactive power" if dev < 0
                       else "lower voltage: check transformer tap changer / switch in reactors")
            else:
                summary = f"{_name(pt, r.point_id)} back within ±{rule.normal_pct:g} % of nominal"
                rec = ""
            out.append(_alert(pt, r.point_id, self.rule, firing, sev, r.ts, summary,
                              {"value": r.value, "expected": nominal, "deviation_pct": dev,
                               "params": rule.model_dump()}, rec))
        return out


class ConsumptionNormDetector:
    """Consumption above the contractual norm per interval and per clock hour.

    Two keys per point: `consumption_interval:<id>` (raised by an interval above the norm,
    resolved by the next one within it) and `consumption_hour:<id>` (raised as soon as the
    hour's running sum exceeds the norm, resolved when the next hour starts). During peak
    hours the alert carries a correction recommendation.
    """

    rule = "consumption"

    def __init__(self, rules: Mapping[int, ConsumptionRule], points: Mapping[int, ResolvedPoint] | None = None) -> None:
        self.rules = dict(rules)
        self.points = points or {}
        self.prev_counter: dict[int, float] = {}
        self.hour: dict[int, datetime] = {}
        self.hour_sum: dict[int, float] = {}
        self.firing: set[str] = set()

    def observe(self, batch: Sequence[Reading]) -> list[Alert]:
        out: list[Alert] = []
        for r in batch:
            rule = self.rules.get(r.point_id)
            if rule is None or not r.quality.is_good:
                continue
            pid = r.point_id
            pt = self.points.get(pid)
            sev = Severity.parse(rule.severity)
            if rule.mode == "counter":
                prev = self.prev_counter.get(pid)
                self.prev_counter[pid] = r.value
                if prev is None:
                    continue
                energy = r.value - prev
                if energy < 0:  # counter reset or rollover: skip this interval
                    continue
            else:
                energy = r.value
            # Interval energy is attributed to the hour its interval started in (reading ts is
            # the end of the interval).
            hour = (r.ts - timedelta(microseconds=1)).replace(minute=0, second=0, microsecond=0)
            key_h = f"consumption_hour:{pid}"
            if self.hour.get(pid) != hour:
                if key_h in self.firing:
                    self.firing.discard(key_h)
                    out.append(self._mk(pt, pid, "consumption_hour", False, sev, r.ts,
                                        f"{_name(pt, pid)}: new hour, hourly norm check restarts",
                                        {"value": energy}, ""))
                self.hour[pid] = hour
                self.hour_sum[pid] = 0.0
            self.hour_sum[pid] += energy
            peak = hour.hour in rule.peak_hours
            if rule.norm_per_interval is not None:
                key_i = f"consumption_interval:{pid}"
                over = energy - rule.norm_per_interval
                if over > 0 and key_i not in self.firing:
                    self.firing.add(key_i)
                    rec = (f"peak hour: reduce consumption by {over:.3g} {rule.unit} per interval "
                           "(shift flexible load out of the peak)") if peak else \
                        f"reduce consumption by {over:.3g} {rule.unit} per interval to meet the contract"
                    out.append(self._mk(pt, pid, "consumption_interval", True, sev, r.ts,
                                        f"{_name(pt, pid)}: {energy:g} {rule.unit} in the interval, "
                                        f"norm {rule.norm_per_interval:g}",
                                        {"value": energy, "expected": rule.norm_per_interval, "excess": over,
                                         "peak_hour": peak, "params": rule.model_dump()}, rec))
                elif over <= 0 and key_i in self.firing:
                    self.firing.discard(key_i)
                    out.append(self._mk(pt, pid, "consumption_interval", False, sev, r.ts,
                                        f"{_name(pt, pid)}: interval consumption within the norm",
                                        {"value": energy, "expected": rule.norm_per_interval}, ""))
            if rule.norm_per_hour is not None and key_h not in self.firing:
                total = self.hour_sum[pid]
                over = total - rule.norm_per_hour
                if over > 0:
                    self.firing.add(key_h)
                    end = hour + timedelta(hours=1)
                    left_min = max(0.0, (end - r.ts).total_seconds() / 60)
                    rec = (f"peak hour: {total:g} {rule.unit} already exceeds the hourly norm by {over:.3g}; "
                           f"cut load now for the remaining {left_min:.0f} min and shift it out of the peak"
                           if peak else
                           f"hourly norm exceeded by {over:.3g} {rule.unit}; reduce load for the rest of the hour")
                    out.append(self._mk(pt, pid, "consumption_hour", True, sev, r.ts,
                                        f"{_name(pt, pid)}: {total:g} {rule.unit} this hour, "
                                        f"norm {rule.norm_per_hour:g}",
                                        {"value": total, "expected": rule.norm_per_hour, "excess": over,
                                         "hour": hour.isoformat(), "peak_hour": peak,
                                         "params": rule.model_dump()}, rec))
        return out

    def _mk(self, pt: ResolvedPoint | None, pid: int, rule: str, firing: bool, sev: Severity, ts: datetime,
            summary: str, ev: dict[str, Any], rec: str) -> Alert:
        return _alert(pt, pid, rule, firing, sev, ts, summary, ev, rec)
