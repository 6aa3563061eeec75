from datetime import UTC, datetime, timedelta

from collector.filters import PointFilter
from core.records import Quality

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def t(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def q(v: int) -> Quality:
    return Quality(v)


def test_clean_values_are_good() -> None:
    f = PointFilter(range=(0, 100), spike=10, frozen_after=3)
    assert [f.check(t(i), 50 + i, t(i)) for i in range(5)] == [0] * 5


def test_range_flags_out_of_range_on_both_sides() -> None:
    f = PointFilter(range=(0, 100))
    assert q(f.check(t(0), -0.1, t(0))) == Quality.OUT_OF_RANGE
    assert q(f.check(t(1), 100.1, t(1))) == Quality.OUT_OF_RANGE
    assert f.check(t(2), 100.0, t(2)) == 0


def test_spike_compares_with_previous_value() -> None:
    f = PointFilter(spike=5)
    assert f.check(t(0), 10, t(0)) == 0
    assert q(f.check(t(1), 16, t(1))) == Quality.SPIKE
    assert f.check(t(2), 19, t(2)) == 0


def test_frozen_after_n_identical_samples() -> None:
    f = PointFilter(frozen_after=3)
    flags = [q(f.check(t(i), 7.0, t(i))) for i in range(5)]
    assert flags == [Quality.GOOD, Quality.GOOD, Quality.FROZEN, Quality.FROZEN, Quality.FROZEN]
    assert f.check(t(5), 8.0, t(5)) == 0


def test_duplicate_timestamp_is_flagged_and_does_not_disturb_state() -> None:
    f = PointFilter(spike=5, frozen_after=2)
    assert f.check(t(0), 1.0, t(0)) == 0
    assert f.check(t(1), 2.0, t(1)) == 0
    assert q(f.check(t(1), 100.0, t(2))) == Quality.DUPLICATE
    assert q(f.check(t(0), 1.0, t(2))) == Quality.DUPLICATE  # older, remembered
    assert f.check(t(2), 3.0, t(2)) == 0  # compared with 2.0, not 100.0


def test_out_of_order_but_new_timestamp_is_not_duplicate() -> None:
    f = PointFilter()
    f.check(t(10), 1.0, t(10))
    assert f.check(t(5), 1.0, t(10)) == 0
    assert q(f.check(t(5), 1.0, t(10))) == Quality.DUPLICATE


def test_late_against_receive_time() -> None:
    f = PointFilter(late_after_s=60)
    assert f.check(t(0), 1.0, t(60)) == 0
    assert q(f.check(t(1), 1.0, t(62))) == Quality.LATE


def test_flags_combine() -> None:
    f = PointFilter(range=(0, 10), spike=1, late_after_s=5)
    f.check(t(0), 5, t(0))
    assert q(f.check(t(1), 50, t(100))) == Quality.OUT_OF_RANGE | Quality.SPIKE | Quality.LATE
