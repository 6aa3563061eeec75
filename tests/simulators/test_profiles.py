"""Load profiles and meters: deterministic per seed, energy consistent with power."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from simulators.profiles import (
    METER_KEYS,
    PROFILE_KINDS,
    TARIFFS,
    Meter,
    Profile,
    hourly_energy_kwh,
    system_frequency,
    tariff_at,
)

T0 = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


def _series(p: Profile, n: int = 200, step_s: int = 137) -> list[float]:
    return [p.power_kw(T0 + timedelta(seconds=i * step_s)) for i in range(n)]


@pytest.mark.parametrize("kind", PROFILE_KINDS)
def test_same_seed_same_values_other_seed_other_values(kind: str) -> None:
    a = Profile.create(kind, seed=42, peak_kw=50.0)
    b = Profile.create(kind, seed=42, peak_kw=50.0)
    c = Profile.create(kind, seed=43, peak_kw=50.0)
    assert _series(a) == _series(b)
    assert _series(a) != _series(c)


def test_meter_samples_are_deterministic_and_independent_of_sampling_pattern() -> None:
    p = Profile.create("industrial", seed=5, peak_kw=800.0)
    fine, coarse = Meter(p), Meter(p)
    fine.sample(T0)
    coarse.sample(T0)
    end = T0 + timedelta(hours=5, seconds=17)
    t = T0
    while t < end:
        t = min(end, t + timedelta(seconds=53))
        fine.sample(t)
    a, b = fine.sample(end), coarse.sample(end)
    assert a.keys() == set(METER_KEYS)
    for k in METER_KEYS:
        assert a[k] == pytest.approx(b[k], rel=1e-9, abs=1e-9), k


@pytest.mark.parametrize("kind", PROFILE_KINDS)
def test_energy_counters_integrate_power(kind: str) -> None:
    p = Profile.create(kind, seed=9, peak_kw=120.0)
    m = Meter(p)
    start = T0 + timedelta(days=120)  # early July: solar produces
    s0 = m.sample(start)
    prev = s0
    # Riemann sum of the instantaneous power the meter reports, every 10 s
    net = 0.0
    t = start
    end = start + timedelta(hours=24)
    step = timedelta(seconds=10)
    while t < end:
        net += (p.power_kw(t) + p.power_kw(t + step)) / 2 * step.total_seconds() / 3600
        t += step
        if t.minute == 0 and t.second == 0:
            cur = m.sample(t)
            for k in METER_KEYS:
                if k.startswith("energy_"):
                    assert cur[k] >= prev[k], f"{k} went backwards"
            prev = cur
    s1 = m.sample(end)
    d_imp = s1["energy_import_active"] - s0["energy_import_active"]
    d_exp = s1["energy_export_active"] - s0["energy_export_active"]
    assert d_imp - d_exp == pytest.approx(net, rel=1e-6, abs=1e-6)
    assert d_imp - d_exp == pytest.approx(p.energy_kwh(start, end), rel=1e-9, abs=1e-9)
    # the tariff registers add up to the totals
    for direction in ("import", "export"):
        by_tariff = sum(s1[f"energy_{direction}_active_t{t}"] - s0[f"energy_{direction}_active_t{t}"]
                        for t in TARIFFS)
        total = s1[f"energy_{direction}_active"] - s0[f"energy_{direction}_active"]
        assert by_tariff == pytest.approx(total, rel=1e-9, abs=1e-9)
    if kind == "solar":
        assert d_exp > 0.5 * 120.0  # a summer day exports several full-load hours
    else:
        assert d_exp == 0.0
        assert d_imp > 0.05 * 120.0 * 24


def test_counters_never_go_back() -> None:
    m = Meter(Profile.create("residential", seed=1, peak_kw=10.0))
    later = m.sample(T0 + timedelta(hours=2))
    earlier = m.sample(T0 + timedelta(hours=1))
    assert earlier["energy_import_active"] == later["energy_import_active"]


def test_mining_never_exceeds_hourly_quota() -> None:
    p = Profile.create("mining", seed=77, peak_kw=5000.0)
    for day in range(3):
        d = T0 + timedelta(days=day)
        energies = hourly_energy_kwh(p, d)
        for h, e in enumerate(energies):
            quota = p.quota_kw(d + timedelta(hours=h, minutes=30))
            assert e <= quota + 1e-9
            if quota > 0:
                assert e >= 0.9 * quota  # flat and high: miners use what they bought
    # and the instantaneous power also stays under the quota of its hour
    for i in range(0, 3 * 86400, 59):
        t = T0 + timedelta(seconds=i)
        assert p.power_kw(t) <= p.quota_kw(t) + 1e-9


def test_shapes_look_like_their_kind() -> None:
    day = T0  # Monday
    res = Profile.create("residential", seed=2, peak_kw=10.0)
    com = Profile.create("commercial", seed=2, peak_kw=100.0)
    sol = Profile.create("solar", seed=2, peak_kw=100.0)
    # local (UTC+5) evening 20:00 vs 04:00 for households; noon vs midnight for offices
    assert res.power_kw(day + timedelta(hours=15)) > 1.5 * res.power_kw(day + timedelta(hours=23))
    assert com.power_kw(day + timedelta(hours=7)) > 2.5 * com.power_kw(day + timedelta(hours=19))
    saturday = day + timedelta(days=5)
    assert com.power_kw(saturday + timedelta(hours=7)) < 0.6 * com.power_kw(day + timedelta(hours=7))
    assert sol.power_kw(day + timedelta(hours=7)) < 0  # generating at local noon
    assert sol.power_kw(day + timedelta(hours=20)) > 0  # own consumption at night


def test_meter_electrical_values_are_plausible() -> None:
    m = Meter(Profile.create("commercial", seed=3, peak_kw=60.0), nominal_v=230.0)
    for i in range(0, 7 * 86400, 3001):
        s = m.sample(T0 + timedelta(seconds=i))
        for ph in ("l1", "l2", "l3"):
            assert 0.9 * 230 <= s[f"voltage_{ph}"] <= 1.1 * 230
            p, q, v = s[f"active_power_{ph}"], s[f"reactive_power_{ph}"], s[f"voltage_{ph}"]
            assert s[f"current_{ph}"] == pytest.approx(math.hypot(p, q) * 1000 / v)
        assert 0.8 < s["power_factor"] <= 1.0
        assert 49.8 <= s["frequency"] <= 50.2
        assert s["active_power_total"] == pytest.approx(sum(s[f"active_power_{ph}"] for ph in ("l1", "l2", "l3")))


def test_frequency_is_shared_and_tariffs_cover_the_day() -> None:
    t = T0 + timedelta(minutes=7)
    a = Meter(Profile.create("residential", seed=1, peak_kw=5.0)).sample(t)["frequency"]
    b = Meter(Profile.create("industrial", seed=2, peak_kw=5.0)).sample(t)["frequency"]
    assert a == b == system_frequency(t)
    zones = {tariff_at(T0 + timedelta(hours=h)) for h in range(24)}
    assert zones == set(TARIFFS)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown profile kind"):
        Profile.create("bakery", seed=1, peak_kw=1.0)
    with pytest.raises(ValueError):
        Profile.create("solar", seed=1, peak_kw=0.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        Profile.create("solar", seed=1, peak_kw=1.0).power_kw(datetime(2026, 1, 1))
