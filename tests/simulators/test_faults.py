"""Fault injection: labels match exactly what was injected."""

from __future__ import annotations

import io
import json
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.faults import FAULT_KINDS, Fault, FaultPlan, read_labels
from simulators.profiles import Meter, Profile

T0 = datetime(2026, 5, 4, tzinfo=UTC)
STEP = timedelta(minutes=15)


def _altered(clean: float, applied_value: float | None, applied_ts: datetime, ts: datetime) -> bool:
    if applied_value is None or applied_ts != ts:
        return True
    if math.isnan(applied_value):
        return True
    return applied_value != clean


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_plan_labels_match_injected_alterations(seed: int, tmp_path: Path) -> None:
    devices = [f"m{i}" for i in range(4)]
    names = ["voltage_l1", "active_power_total", "energy_import_active", "frequency"]
    points = [f"{d}.{n}" for d in devices for n in names]
    days = 3
    plan = FaultPlan.random(points, start=T0, end=T0 + timedelta(days=days), seed=seed,
                            interval_s=STEP.total_seconds(), rate_per_day=3.0, devices=devices)
    assert len(plan) > 10
    labels_file = tmp_path / "labels.jsonl"
    plan.write_labels(labels_file)
    labels = read_labels(labels_file)
    assert [(f.point, f.kind, f.start, f.end) for f in labels] == [(f.point, f.kind, f.start, f.end) for f in plan.faults]
    assert {f.kind for f in labels} >= {"spike", "dropout", "frozen", "offline"}

    meters = {d: Meter(Profile.create("commercial", seed=i, peak_kw=50.0)) for i, d in enumerate(devices)}
    altered: set[tuple[str, datetime]] = set()
    # the samplers read with an arbitrary phase inside each interval
    phase = timedelta(seconds=137 * seed)
    t = T0 + phase
    while t < T0 + timedelta(days=days):
        for d, m in meters.items():
            values = m.sample(t)
            for n in names:
                p = f"{d}.{n}"
                out = plan.apply(p, t, values[n])
                if _altered(values[n], out.value, out.ts, t):
                    altered.add((p, t))
        t += STEP

    def covering(p: str, ts: datetime) -> list[Fault]:
        return [f for f in labels if (f.point == p or p.startswith(f.point + ".")) and f.start <= ts < f.end]

    # every altered sample lies inside a label of its point or device ...
    for p, ts in altered:
        assert covering(p, ts), f"{p} altered at {ts} without a label"
    # ... and every label altered at least one sample of what it names
    for f in labels:
        hit = any((p == f.point or p.startswith(f.point + ".")) and f.start <= ts < f.end for p, ts in altered)
        assert hit, f"label {f.label()} altered nothing"


def test_each_kind_does_what_it_says() -> None:
    t1 = T0 + timedelta(hours=1)
    faults = [Fault("d.v", k, T0, t1) for k in FAULT_KINDS if k != "offline"]
    for f in faults:
        plan = FaultPlan((f,))
        before = plan.apply("d.v", T0 - STEP, 100.0)
        assert before.value == 100.0 and before.kinds == ()
        out = plan.apply("d.v", T0 + timedelta(minutes=1), 110.0)
        assert out.kinds == (f.kind,)
        after = plan.apply("d.v", t1, 120.0)
        assert after.value == 120.0 and after.ts == t1
        match f.kind:
            case "spike":
                assert out.value == 880.0
            case "dropout":
                assert out.value is None
            case "frozen":
                assert out.value == 100.0
            case "drift":
                assert out.value is not None and out.value > 110.0
            case "sag":
                assert out.value == pytest.approx(110.0 * 0.85)
            case "swell":
                assert out.value == pytest.approx(110.0 * 1.12)
            case "overconsumption":
                assert out.value == pytest.approx(110.0 * 1.6)
            case "clock_skew":
                assert out.value == 110.0 and out.ts == T0 + timedelta(minutes=1, seconds=300)
            case "corrupt":
                assert out.corrupt and out.value != 110.0
    off = FaultPlan((Fault("d", "offline", T0, t1),))
    assert off.offline("d", T0) and not off.offline("d", t1)
    assert off.apply("d.v", T0, 1.0).value is None
    assert off.apply("dx.v", T0, 1.0).value == 1.0  # another device with a common prefix


def test_from_config_and_errors() -> None:
    plan = FaultPlan.from_config([
        {"point": "m1.voltage_l1", "kind": "sag", "start": "2026-05-04T10:00:00Z", "duration_s": 600, "magnitude": 0.8},
        {"point": "m2", "kind": "offline", "start": "2026-05-04T11:00:00+00:00", "end": "2026-05-04T12:00:00Z"},
    ])
    buf = io.StringIO()
    plan.write_labels(buf)
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert lines == [
        {"point": "m1.voltage_l1", "start": "2026-05-04T10:00:00Z", "end": "2026-05-04T10:10:00Z", "kind": "sag"},
        {"point": "m2", "start": "2026-05-04T11:00:00Z", "end": "2026-05-04T12:00:00Z", "kind": "offline"},
    ]
    assert plan.apply("m1.voltage_l1", datetime(2026, 5, 4, 10, 5, tzinfo=UTC), 230.0).value == pytest.approx(184.0)
    with pytest.raises(ValueError, match=r"faults\[0\].*unknown kind"):
        FaultPlan.from_config([{"point": "p", "kind": "gremlin", "start": "2026-01-01T00:00:00Z", "duration_s": 1}])
    with pytest.raises(ValueError, match="no timezone"):
        FaultPlan.from_config([{"point": "p", "kind": "spike", "start": "2026-01-01T00:00:00", "duration_s": 1}])
    with pytest.raises(ValueError, match="end or duration_s"):
        FaultPlan.from_config([{"point": "p", "kind": "spike", "start": "2026-01-01T00:00:00Z"}])


def test_random_plan_is_deterministic_per_seed() -> None:
    pts = [f"m{i}.voltage_l1" for i in range(20)]
    a = FaultPlan.random(pts, start=T0, end=T0 + timedelta(days=2), seed=5, interval_s=900)
    b = FaultPlan.random(pts, start=T0, end=T0 + timedelta(days=2), seed=5, interval_s=900)
    c = FaultPlan.random(pts, start=T0, end=T0 + timedelta(days=2), seed=6, interval_s=900)
    assert a.labels() == b.labels() != c.labels()
