"""Plan against actual for one operating hour: pure arithmetic, no I/O.

Inputs are per-point measurements of one hour (`PointEnergy`: energy in the point's unit and
the seconds of the hour the data covers) and the plans; outputs are `HourResult` rows for
every subject, zone, the joint North-South zone and the miners of each zone.

Conventions (see docs/schedule.md):
- A point contributes `sign * energy * (1 - loss_factor)` MWh to its subject's net
  generation; a subject's *actual* is in its own direction (generation for generators,
  consumption for consumers and miners), so plans and actuals are positive numbers.
- Zones are balances: generation minus consumption (plans likewise).
- While the hour is open, the projection extrapolates the energy so far at its mean rate over
  the covered time; deviation = projection - plan. At close, deviation = actual - plan.
- Verdicts: ok, deviation (outside the band), above_quota (miners), incomplete (less data
  than `min_completeness` at close; never a false deviation), no_plan, pending (open hour
  with too little data to project).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from detectors.schedule.calendar import OperatingHour
from detectors.schedule.config import JOINT_ZONE, TO_MWH, ZONES, ScheduleConfig, SubjectConfig

VERDICTS = ("ok", "deviation", "above_quota", "incomplete", "no_plan", "pending")


@dataclass(frozen=True, slots=True)
class PointEnergy:
    """What one point measured in one hour: energy in its own unit (kWh, or the integral
    of power in kW*h), and how many seconds of the hour the data covers."""

    energy: float
    covered_s: float


@dataclass(frozen=True, slots=True)
class HourResult:
    """Plan against actual of one entity (subject, zone or a zone's miners) in one hour."""

    entity: str
    entity_kind: str  # subject | zone | miners
    zone: str
    hour: OperatingHour
    plan_mwh: float | None
    actual_mwh: float
    projected_mwh: float | None
    deviation_mwh: float | None
    deviation_pct: float | None
    band_mwh: float | None
    completeness: float
    verdict: str
    final: bool
    plan_version: int | None = None

    def same_numbers(self, other: HourResult, eps: float = 1e-6) -> bool:
        """True when `other` has the same plan, actual, completeness and verdict."""
        def close(a: float | None, b: float | None) -> bool:
            if a is None or b is None:
                return a is b
            return abs(a - b) <= eps * max(1.0, abs(a), abs(b))
        return (close(self.plan_mwh, other.plan_mwh) and close(self.actual_mwh, other.actual_mwh)
                and close(self.completeness, other.completeness) and self.verdict == other.verdict
                and self.final == other.final)


def direction(subject: SubjectConfig) -> int:
    """+1 for generators, -1 for consumers and miners."""
    return 1 if subject.kind == "generator" else -1


def subject_actual(subject: SubjectConfig, energies: Mapping[str, PointEnergy | None]) -> tuple[float, float]:
    """(actual MWh in the subject's direction, covered fraction 0..1) from its points' data.

    `energies` maps point name to its measurement, None when the point has no data at all.
    """
    net = 0.0
    cover = 1.0 if subject.points else 0.0
    for mp in subject.points:
        e = energies.get(mp.point)
        if e is None:
            cover = 0.0
            continue
        net += mp.sign * e.energy * TO_MWH[mp.unit] * (1.0 - mp.loss_factor)
        cover = min(cover, max(0.0, min(1.0, e.covered_s / 3600.0)))
    return direction(subject) * net, cover


def plan_fraction(covered: float, prev: float | None, cur: float, nxt: float | None) -> float:
    """Share of the hour's planned energy expected in its first `covered` fraction.

    The plan's power is taken as a curve through the hourly values at the hours' midpoints
    (previous, this, next hour), so ramps in the plan shape the expectation; a flat plan (or
    one that cannot be shaped) gives `covered` itself.
    """
    if covered <= 0:
        return 0.0
    if covered >= 1:
        return 1.0
    p0 = cur if prev is None else prev
    p2 = cur if nxt is None else nxt

    def p(x: float) -> float:
        return p0 + (cur - p0) * (x + 0.5) if x < 0.5 else cur + (p2 - cur) * (x - 0.5)

    n = 120
    total = sum(p((k + 0.5) / n) for k in range(n)) / n
    m = max(1, round(covered * n))
    part = sum(p((k + 0.5) / n) for k in range(m)) / n * (covered * n / m)
    if total <= 1e-9 or part <= 1e-9 or min(p0, cur, p2) < 0:
        return covered
    return min(1.0, part / total)


def _judge(plan: float | None, actual: float, completeness: float, band: float | None, *, final: bool,
           elapsed_ok: bool, config: ScheduleConfig, quota: bool, expected_fraction: float | None = None,
           projected_override: float | None = None) -> tuple[float | None, float | None, float | None, str]:
    """(projected, deviation, deviation %, verdict)."""
    if final:
        projected: float | None = actual
    elif projected_override is not None:
        projected = projected_override
    elif completeness > 0:
        projected = actual / (expected_fraction or completeness)
    else:
        projected = None
    if final and completeness < config.min_completeness:
        verdict = "incomplete"
    elif not final and (not elapsed_ok or projected is None):
        verdict = "pending"
    elif plan is None:
        verdict = "no_plan"
    else:
        verdict = "ok"
    if plan is None or projected is None:
        return projected, None, None, verdict
    dev = projected - plan
    pct = dev / abs(plan) * 100.0 if abs(plan) > 1e-9 else None
    if verdict == "ok":
        if quota and projected > plan + (config.quota_tolerance_mwh if final else (band or 0.0)):
            verdict = "above_quota"
        elif band is not None and abs(dev) > band + 1e-9:
            verdict = "deviation"
    return projected, dev, pct, verdict


def compute_hour(config: ScheduleConfig, hour: OperatingHour, now: datetime,
                 energies: Mapping[str, PointEnergy | None],
                 plans: Mapping[str, tuple[float, int]], *, final: bool,
                 prev_plans: Mapping[str, tuple[float, int]] | None = None,
                 next_plans: Mapping[str, tuple[float, int]] | None = None) -> list[HourResult]:
    """Results of every subject and zone for `hour`.

    `energies` maps point name to its measurement; `plans` maps subject name to
    (planned MWh, plan version); `prev_plans` / `next_plans` (the neighbouring hours) shape
    the projection of an open hour. `now` decides how much of an open hour has elapsed.
    """
    elapsed_s = max(0.0, min((now - hour.start).total_seconds(), (hour.end - hour.start).total_seconds()))
    span_s = (hour.end - hour.start).total_seconds()
    ew = config.early_warning
    out: list[HourResult] = []
    zone_acc: dict[str, dict[str, float]] = {}
    zone_plan_missing: dict[str, bool] = {}
    for s in config.subjects:
        actual, cover = subject_actual(s, energies)
        # A shortened hour (not possible with whole-hour offsets) would still compare fairly.
        completeness = min(1.0, cover * 3600.0 / span_s) if span_s > 0 else 0.0
        plan_t = plans.get(s.name)
        plan = plan_t[0] if plan_t else None
        band = config.band(plan, s) if plan is not None else None
        elapsed_ok = completeness * span_s >= ew.min_elapsed_min * 60.0 - 1e-6 and elapsed_s > 0
        frac = None
        if plan is not None and not final:
            pv, nv = (prev_plans or {}).get(s.name), (next_plans or {}).get(s.name)
            frac = plan_fraction(completeness, pv[0] if pv else None, plan, nv[0] if nv else None)
        projected, dev, pct, verdict = _judge(plan, actual, completeness, band, final=final,
                                              elapsed_ok=elapsed_ok, config=config, quota=s.kind == "miner",
                                              expected_fraction=frac)
        out.append(HourResult(s.name, "subject", s.zone, hour, plan, actual, projected, dev, pct, band,
                              completeness, verdict, final, plan_t[1] if plan_t else None))
        d = direction(s)
        for zname in (s.zone, JOINT_ZONE) if s.zone in ("North", "South") else (s.zone,):
            acc = zone_acc.setdefault(zname, {"actual": 0.0, "projected": 0.0, "plan": 0.0, "band": 0.0,
                                              "cover": 1.0, "n": 0.0})
            acc["actual"] += d * actual
            acc["projected"] += d * (projected if projected is not None else 0.0)
            acc["plan"] += d * (plan or 0.0)
            acc["band"] += band or 0.0
            acc["cover"] = min(acc["cover"], completeness)
            acc["n"] += 1
            if plan is None:
                zone_plan_missing[zname] = True
        if s.kind == "miner":
            macc = zone_acc.setdefault(f"miners:{s.zone}", {"actual": 0.0, "projected": 0.0, "plan": 0.0,
                                                             "band": 0.0, "cover": 1.0, "n": 0.0})
            macc["actual"] += actual
            macc["projected"] += projected if projected is not None else 0.0
            macc["plan"] += plan or 0.0
            macc["band"] += band or 0.0
            macc["cover"] = min(macc["cover"], completeness)
            macc["n"] += 1
    for zname in (*ZONES, JOINT_ZONE):
        zacc = zone_acc.get(zname)
        if zacc is None:
            continue
        plan_z: float | None = None if zone_plan_missing.get(zname) else zacc["plan"]
        completeness = zacc["cover"]
        elapsed_ok = completeness * span_s >= ew.min_elapsed_min * 60.0 - 1e-6 and elapsed_s > 0
        projected_z, dev, pct, verdict = _judge(plan_z, zacc["actual"], completeness, zacc["band"], final=final,
                                                elapsed_ok=elapsed_ok, config=config, quota=False,
                                                projected_override=zacc["projected"] if completeness > 0 else None)
        zone = zname if zname in ZONES else JOINT_ZONE
        out.append(HourResult(zname, "zone", zone, hour, plan_z, zacc["actual"], projected_z, dev, pct,
                              zacc["band"], completeness, verdict, final))
    for zname in ZONES:
        mz = zone_acc.get(f"miners:{zname}")
        if mz is None:
            continue
        quota = config.zone_miner_quota_mwh.get(zname, mz["plan"])
        completeness = mz["cover"]
        elapsed_ok = completeness * span_s >= ew.min_elapsed_min * 60.0 - 1e-6 and elapsed_s > 0
        projected_m, dev, pct, verdict = _judge(quota, mz["actual"], completeness, mz["band"], final=final,
                                                elapsed_ok=elapsed_ok, config=config, quota=True,
                                                projected_override=mz["projected"] if completeness > 0 else None)
        out.append(HourResult(f"miners:{zname}", "miners", zname, hour, quota, mz["actual"], projected_m, dev,
                              pct, mz["band"], completeness, verdict, final))
    return out


def integrate_power(samples: Sequence[tuple[float, float]], start_s: float, end_s: float,
                    max_gap_s: float) -> PointEnergy:
    """Trapezoidal integral of (epoch seconds, power) samples over [start, end] in unit*h.

    Pairs of samples further apart than `max_gap_s` are a gap: not integrated, not covered.
    Samples must be sorted by time; the integral is clipped to the window.
    """
    energy = 0.0
    covered = 0.0
    for (t0, v0), (t1, v1) in itertools.pairwise(samples):
        if t1 <= t0 or t1 - t0 > max_gap_s:
            continue
        a, b = max(t0, start_s), min(t1, end_s)
        if b <= a:
            continue
        va = v0 + (v1 - v0) * (a - t0) / (t1 - t0)
        vb = v0 + (v1 - v0) * (b - t0) / (t1 - t0)
        energy += (va + vb) / 2.0 * (b - a) / 3600.0
        covered += b - a
    return PointEnergy(energy, covered)
