"""Aligned, staggered polling times (pure functions of device name and time).

A device with interval I reads at epoch seconds k*I + offset, where the offset is a stable
hash of the device name spread over the stagger window: 10,000 meters on a 15-minute cycle
all read within the window after each quarter hour, never all in the same millisecond, and
each meter at the same second of every cycle (restarts do not move it).
"""

from __future__ import annotations

import math
import zlib


def default_stagger(interval_s: float) -> float:
    """The stagger window when none is configured: 10 % of the interval, at most 30 s."""
    return min(interval_s * 0.1, 30.0)


def stagger_offset(name: str, window_s: float) -> float:
    """A stable offset in [0, window_s) for `name` (crc32, identical across runs and hosts)."""
    if window_s <= 0:
        return 0.0
    return (zlib.crc32(name.encode()) / 2**32) * window_s


def next_due(now_s: float, interval_s: float, offset_s: float) -> float:
    """The first time k * interval_s + offset_s strictly after `now_s` (epoch seconds)."""
    k = math.floor((now_s - offset_s) / interval_s) + 1
    due = k * interval_s + offset_s
    if due <= now_s:  # float rounding at the boundary
        due += interval_s
    return due


def catch_up(due_s: float, now_s: float, interval_s: float) -> tuple[float, int]:
    """(next due time after a slot at `due_s` ran at `now_s`, slots skipped on the way)."""
    nxt = due_s + interval_s
    if nxt > now_s:
        return nxt, 0
    missed = math.floor((now_s - nxt) / interval_s) + 1
    return nxt + missed * interval_s, missed
