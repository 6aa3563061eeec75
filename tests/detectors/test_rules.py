"""Rule detectors: limits with hysteresis and minimum duration, rate, stale, frozen, voltage band,
consumption norm; keys stable per rule and point; firing then resolved."""

from __future__ import annotations

from datetime import timedelta

from core.config import LimitSpec
from core.records import Quality, Severity
from detectors.config import ConsumptionRule, FrozenRule, RateRule, StaleRule, VoltageRule
from detectors.rules import (
    ConsumptionNormDetector,
    FrozenDetector,
    LimitDetector,
    RateDetector,
    StaleDetector,
    VoltageBandDetector,
)

from .helpers import T0, point, r


def lim(**kw: float) -> LimitSpec:
    return LimitSpec.model_validate(kw)


def test_limit_raises_then_clears_only_past_deadband() -> None:
    d = LimitDetector({1: lim(hi=100, deadband=5)}, {1: point(1, unit="kW")})
    assert d.observe([r(1, 0, 99)]) == []
    a = d.observe([r(1, 1, 101)])
    assert len(a) == 1 and a[0].firing and a[0].key == "limit:1" and a[0].severity == Severity.WARNING
    assert a[0].evidence["value"] == 101 and a[0].evidence["expected"] == 100
    # inside the deadband: still firing, nothing emitted
    assert d.observe([r(1, 2, 97), r(1, 3, 95.5)]) == []
    out = d.observe([r(1, 4, 94.9)])
    assert len(out) == 1 and not out[0].firing and out[0].key == "limit:1"
    # re-raise works after clearing
    assert d.observe([r(1, 5, 100)])[0].firing


def test_limit_escalates_to_hihi_with_same_key() -> None:
    d = LimitDetector({1: lim(hi=100, hihi=120)})
    a = d.observe([r(1, 0, 105), r(1, 1, 125)])
    assert [(x.firing, x.severity) for x in a] == [(True, Severity.WARNING), (True, Severity.CRITICAL)]
    assert {x.key for x in a} == {"limit:1"}
    c = d.observe([r(1, 2, 50)])
    assert len(c) == 1 and not c[0].firing


def test_limit_low_side_and_lolo() -> None:
    d = LimitDetector({1: lim(lolo=0, lo=10, deadband=1)})
    a = d.observe([r(1, 0, 9), r(1, 1, -1), r(1, 2, 10.5), r(1, 3, 11.5)])
    assert [(x.firing, x.severity) for x in a] == [(True, Severity.WARNING), (True, Severity.CRITICAL),
                                                   (False, Severity.CRITICAL)]


def test_limit_minimum_duration() -> None:
    d = LimitDetector({1: lim(hi=100, min_duration_s=60)})
    assert d.observe([r(1, 0, 150), r(1, 30, 150)]) == []
    # a dip below resets the timer
    assert d.observe([r(1, 40, 90), r(1, 50, 150), r(1, 100, 150)]) == []
    a = d.observe([r(1, 110, 150)])
    assert len(a) == 1 and a[0].firing and a[0].ts == T0 + timedelta(seconds=110)


def test_limit_ignores_bad_quality_and_unknown_points() -> None:
    d = LimitDetector({1: lim(hi=100)})
    assert d.observe([r(1, 0, 500, Quality.INVALID), r(2, 0, 500)]) == []


def test_rate_of_change() -> None:
    rule = RateRule.model_validate({"max_per_s": 1.0, "deadband_pct": 20})
    d = RateDetector({1: rule})
    assert d.observe([r(1, 0, 0), r(1, 10, 5)]) == []  # 0.5/s
    a = d.observe([r(1, 20, 25)])  # 2/s
    assert len(a) == 1 and a[0].firing and a[0].key == "rate:1"
    assert abs(a[0].evidence["rate_per_s"] - 2.0) < 1e-9
    assert d.observe([r(1, 30, 34)]) == []  # 0.9/s is inside the 20 % deadband
    c = d.observe([r(1, 40, 35)])  # 0.1/s
    assert len(c) == 1 and not c[0].firing


def test_stale_needs_ticks_and_resolves_on_update() -> None:
    rule = StaleRule.model_validate({"after_intervals": 3})
    d = StaleDetector({1: (rule, 60.0)})
    d.observe([r(1, 0, 1.0)])
    assert d.tick(T0 + timedelta(seconds=170)) == []
    a = d.tick(T0 + timedelta(seconds=181))
    assert len(a) == 1 and a[0].firing and a[0].key == "stale:1" and a[0].evidence["age_s"] == 181
    assert d.tick(T0 + timedelta(seconds=300)) == []  # no duplicate while firing
    c = d.observe([r(1, 310, 2.0)])
    assert len(c) == 1 and not c[0].firing


def test_stale_point_never_seen_fires_after_n_intervals_from_first_tick() -> None:
    d = StaleDetector({7: (StaleRule.model_validate({"after_intervals": 2}), 10.0)})
    assert d.tick(T0) == []
    assert d.tick(T0 + timedelta(seconds=15)) == []
    assert len(d.tick(T0 + timedelta(seconds=21))) == 1


def test_frozen_after_n_equal_samples() -> None:
    d = FrozenDetector({1: FrozenRule.model_validate({"samples": 4, "tolerance": 0.01})})
    assert d.observe([r(1, i, 5.0 + (0.001 * i)) for i in range(3)]) == []
    a = d.observe([r(1, 3, 5.0)])
    assert len(a) == 1 and a[0].firing and a[0].key == "frozen:1" and a[0].evidence["samples"] == 4
    assert d.observe([r(1, 4, 5.0)]) == []
    c = d.observe([r(1, 5, 6.0)])
    assert len(c) == 1 and not c[0].firing


def test_voltage_band_normal_and_max() -> None:
    rule = VoltageRule.model_validate({"normal_pct": 5, "max_pct": 10, "deadband_pct": 1})
    d = VoltageBandDetector({1: (rule, 110.0)})
    assert d.observe([r(1, 0, 110), r(1, 1, 115)]) == []  # +4.5 %
    a = d.observe([r(1, 2, 116)])  # +5.45 %
    assert len(a) == 1 and a[0].firing and a[0].severity == Severity.WARNING and a[0].key == "voltage:1"
    b = d.observe([r(1, 3, 98)])  # -10.9 %
    assert len(b) == 1 and b[0].severity == Severity.MAJOR and "raise voltage" in b[0].recommendation
    assert d.observe([r(1, 4, 104.0)]) == []  # -5.45 %: still outside normal band
    assert d.observe([r(1, 5, 105.0)]) == []  # -4.5 %: inside but within the 1 % deadband
    c = d.observe([r(1, 6, 106.0)])  # -3.6 %
    assert len(c) == 1 and not c[0].firing


def test_voltage_minimum_duration() -> None:
    rule = VoltageRule.model_validate({"min_duration_s": 10})
    d = VoltageBandDetector({1: (rule, 10.0)})
    assert d.observe([r(1, 0, 11), r(1, 5, 11)]) == []
    assert len(d.observe([r(1, 10, 11)])) == 1


def test_consumption_interval_norm_with_peak_recommendation() -> None:
    rule = ConsumptionRule.model_validate({"norm_per_interval": 100, "peak_hours": [8]})
    d = ConsumptionNormDetector({1: rule})
    a = d.observe([r(1, 8 * 3600 + 900, 150)])  # interval 08:00-08:15
    assert len(a) == 1 and a[0].firing and a[0].key == "consumption_interval:1"
    assert a[0].evidence["excess"] == 50 and "peak hour" in a[0].recommendation
    c = d.observe([r(1, 8 * 3600 + 1800, 80)])
    assert len(c) == 1 and not c[0].firing


def test_consumption_hourly_norm_raises_once_and_resolves_next_hour() -> None:
    rule = ConsumptionRule.model_validate({"norm_per_hour": 300, "peak_hours": []})
    d = ConsumptionNormDetector({1: rule})
    base = 10 * 3600
    assert d.observe([r(1, base + 900, 100), r(1, base + 1800, 100), r(1, base + 2700, 100)]) == []
    a = d.observe([r(1, base + 3600, 100)])  # the 10:45-11:00 interval still belongs to hour 10
    assert len(a) == 1 and a[0].firing and a[0].key == "consumption_hour:1" and a[0].evidence["value"] == 400
    assert "reduce load" in a[0].recommendation
    c = d.observe([r(1, base + 4500, 50)])  # first interval of hour 11
    assert len(c) == 1 and not c[0].firing


def test_consumption_counter_mode_uses_differences() -> None:
    rule = ConsumptionRule.model_validate({"mode": "counter", "norm_per_interval": 10})
    d = ConsumptionNormDetector({1: rule})
    assert d.observe([r(1, 900, 1000), r(1, 1800, 1005)]) == []
    a = d.observe([r(1, 2700, 1020)])
    assert len(a) == 1 and a[0].evidence["value"] == 15


def test_failed_reads_are_no_update_for_stale() -> None:
    # A dead meter: the driver stores a NaN COMM_FAIL reading every interval.
    d = StaleDetector({1: (StaleRule.model_validate({"after_intervals": 2}), 60.0)})
    d.observe([r(1, 0, 230.0)])
    d.observe([r(1, 60, float("nan"), Quality.COMM_FAIL), r(1, 120, float("nan"), Quality.COMM_FAIL)])
    assert d.observe([r(1, 125, 231.0, Quality.INVALID)]) == []
    a = d.tick(T0 + timedelta(seconds=121))
    assert len(a) == 1 and a[0].firing and a[0].evidence["last_update"] == T0.isoformat()
    # a flagged but present value (out of range) is an update: the stale alert resolves
    c = d.observe([r(1, 180, 999.0, Quality.OUT_OF_RANGE)])
    assert len(c) == 1 and not c[0].firing
