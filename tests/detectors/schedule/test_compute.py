from __future__ import annotations

from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest

from detectors.schedule.calendar import day_hours
from detectors.schedule.compute import PointEnergy, compute_hour, integrate_power
from detectors.schedule.config import ScheduleConfig
from tests.detectors.schedule.helpers import make_config

HOUR = day_hours(date(2026, 12, 2), ZoneInfo("Asia/Almaty"))[10]


def by(results: list, entity: str):  # type: ignore[no-untyped-def]
    return next(r for r in results if r.entity == entity)


def full(kwh: float) -> PointEnergy:
    return PointEnergy(kwh, 3600.0)


PLANS = {"GEN-N": (100.0, 1), "LOAD-S": (50.0, 1), "MINER-N": (20.0, 1), "PLANT-W": (10.0, 1)}


def test_final_hour_signs_losses_zones(config: ScheduleConfig) -> None:
    e = {"gen.ea_export": full(100_000.0), "load.ea_import": full(50_000.0), "miner.ea_import": full(21_000.0),
         "plantw.p": full(10_000.0)}
    res = compute_hour(config, HOUR, HOUR.end, e, PLANS, final=True)
    gen, load, miner = by(res, "GEN-N"), by(res, "LOAD-S"), by(res, "MINER-N")
    assert gen.actual_mwh == pytest.approx(100.0) and gen.verdict == "ok"
    assert load.actual_mwh == pytest.approx(49.0)  # 2 % losses
    assert load.verdict == "ok" and load.band_mwh == pytest.approx(2.5)
    assert miner.verdict == "above_quota" and miner.deviation_mwh == pytest.approx(1.0)
    north = by(res, "North")
    assert north.actual_mwh == pytest.approx(100.0 - 21.0) and north.plan_mwh == pytest.approx(80.0)
    joint = by(res, "North-South")
    assert joint.actual_mwh == pytest.approx(100.0 - 21.0 - 49.0) and joint.plan_mwh == pytest.approx(30.0)
    assert by(res, "miners:North").actual_mwh == pytest.approx(21.0)
    assert by(res, "West").actual_mwh == pytest.approx(10.0)


def test_missing_data_is_incomplete_not_a_deviation(config: ScheduleConfig) -> None:
    e = {"gen.ea_export": PointEnergy(40_000.0, 2700.0), "load.ea_import": None}
    res = compute_hour(config, HOUR, HOUR.end, e, PLANS, final=True)
    assert by(res, "GEN-N").verdict == "incomplete"
    assert by(res, "LOAD-S").verdict == "incomplete" and by(res, "LOAD-S").completeness == 0.0
    assert by(res, "North").verdict == "incomplete"


def test_open_hour_projection_and_pending(config: ScheduleConfig) -> None:
    now = HOUR.start + timedelta(minutes=30)
    e = {"gen.ea_export": PointEnergy(60_000.0, 1800.0)}
    res = compute_hour(config, HOUR, now, e, PLANS, final=False)
    gen = by(res, "GEN-N")
    assert gen.projected_mwh == pytest.approx(120.0) and gen.verdict == "deviation" and not gen.final
    early = compute_hour(config, HOUR, HOUR.start + timedelta(minutes=5), {"gen.ea_export": PointEnergy(9e3, 300.0)},
                         PLANS, final=False)
    assert by(early, "GEN-N").verdict == "pending"


def test_no_plan(config: ScheduleConfig) -> None:
    res = compute_hour(config, HOUR, HOUR.end, {"gen.ea_export": full(1.0)}, {}, final=True)
    assert by(res, "GEN-N").verdict == "no_plan" and by(res, "GEN-N").deviation_mwh is None


def test_band_is_max_of_pct_and_mwh() -> None:
    cfg = make_config(tolerance_pct=2.0, tolerance_mwh=1.0)
    assert cfg.band(10.0) == 1.0 and cfg.band(100.0) == 2.0


def test_integrate_power_trapezoid_gaps_and_clipping() -> None:
    s = [(0.0, 0.0), (1800.0, 3600.0), (3600.0, 3600.0)]
    e = integrate_power(s, 0.0, 3600.0, 3600.0)
    assert e.energy == pytest.approx(900.0 + 1800.0) and e.covered_s == 3600.0
    gap = integrate_power(s, 0.0, 3600.0, 1000.0)
    assert gap.energy == 0.0 and gap.covered_s == 0.0
    clipped = integrate_power([(0.0, 10.0), (7200.0, 10.0)], 3600.0, 5400.0, 1e9)
    assert clipped.energy == pytest.approx(5.0) and clipped.covered_s == 1800.0


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        make_config(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="duplicate subject"):
        make_config(subjects=[{"name": "A", "zone": "West", "kind": "consumer"}] * 2)
    with pytest.raises(ValueError, match="does not fit kind"):
        make_config(subjects=[{"name": "A", "zone": "West", "kind": "consumer",
                               "points": [{"point": "x", "kind": "power", "unit": "kWh"}]}])
    with pytest.raises(ValueError, match="Extra inputs"):
        make_config(bogus=1)
