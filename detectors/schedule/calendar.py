"""Operating days and their hours in the operator's local time zone.

An operating day runs from local midnight to the next local midnight; its hours are counted
in elapsed time from there, so a day has 23 or 25 hours when the zone changes its offset
(DST) and 24 otherwise. Hour numbers are 1-based as in dispatch schedules (hour 1 is the
first hour after midnight). Every datetime returned is aware UTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

HOUR = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class OperatingHour:
    """One hour of an operating day: `[start, end)` in UTC, `number` from 1."""

    day: date
    number: int
    start: datetime
    end: datetime


def day_bounds(day: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    """UTC start and end of the operating day `day` in `tz`."""
    start = datetime.combine(day, time(0), tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return start, end


def hours_in_day(day: date, tz: ZoneInfo) -> int:
    """23, 24 or 25: how many hours the operating day has."""
    start, end = day_bounds(day, tz)
    return round((end - start) / HOUR)


def day_hours(day: date, tz: ZoneInfo) -> list[OperatingHour]:
    """Every hour of the operating day, in order."""
    start, end = day_bounds(day, tz)
    out: list[OperatingHour] = []
    t = start
    n = 1
    while t < end:
        nxt = min(t + HOUR, end)
        out.append(OperatingHour(day, n, t, nxt))
        t = nxt
        n += 1
    return out


def operating_day(ts: datetime, tz: ZoneInfo) -> date:
    """The operating day that `ts` (aware) falls in."""
    if ts.tzinfo is None:
        raise ValueError("naive datetime: timestamps must be timezone-aware")
    return ts.astimezone(tz).date()


def hour_of(ts: datetime, tz: ZoneInfo) -> OperatingHour:
    """The operating hour containing `ts` (start <= ts < end)."""
    day = operating_day(ts, tz)
    start, _ = day_bounds(day, tz)
    n = int((ts.astimezone(UTC) - start) // HOUR)
    s = start + n * HOUR
    _, day_end = day_bounds(day, tz)
    return OperatingHour(day, n + 1, s, min(s + HOUR, day_end))


def hour_by_number(day: date, number: int, tz: ZoneInfo) -> OperatingHour:
    """Hour `number` (1-based) of `day`; ValueError when the day has fewer hours."""
    hours = day_hours(day, tz)
    if not 1 <= number <= len(hours):
        raise ValueError(f"operating day {day} has {len(hours)} hours, not hour {number}")
    return hours[number - 1]
