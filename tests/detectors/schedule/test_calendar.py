from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from detectors.schedule.calendar import day_bounds, day_hours, hour_by_number, hour_of, hours_in_day


def test_almaty_day_is_24_hours_and_starts_at_local_midnight() -> None:
    tz = ZoneInfo("Asia/Almaty")
    start, end = day_bounds(date(2026, 12, 2), tz)
    assert start == datetime(2026, 12, 1, 19, 0, tzinfo=UTC)  # UTC+5
    assert hours_in_day(date(2026, 12, 2), tz) == 24
    hours = day_hours(date(2026, 12, 2), tz)
    assert [h.number for h in hours] == list(range(1, 25))
    assert hours[-1].end == end


@pytest.mark.parametrize(("day", "n"), [(date(2026, 3, 29), 23), (date(2026, 10, 25), 25), (date(2026, 7, 1), 24)])
def test_dst_days_have_23_or_25_hours(day: date, n: int) -> None:
    tz = ZoneInfo("Europe/Berlin")
    hours = day_hours(day, tz)
    assert len(hours) == n == hours_in_day(day, tz)
    assert all((h.end - h.start).total_seconds() == 3600 for h in hours)


def test_hour_of_roundtrip_including_half_hour_zone() -> None:
    for tzname in ("Asia/Almaty", "Asia/Kolkata", "Europe/Berlin"):
        tz = ZoneInfo(tzname)
        for h in day_hours(date(2026, 10, 25), tz):
            got = hour_of(h.start, tz)
            assert (got.day, got.number, got.start) == (h.day, h.number, h.start)
            assert hour_by_number(h.day, h.number, tz) == h


def test_naive_and_nonexistent_hours_are_refused() -> None:
    tz = ZoneInfo("Europe/Berlin")
    with pytest.raises(ValueError, match="naive"):
        hour_of(datetime(2026, 1, 1, 12), tz)
    with pytest.raises(ValueError, match="23 hours"):
        hour_by_number(date(2026, 3, 29), 24, tz)
