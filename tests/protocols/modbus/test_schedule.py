"""Aligned, staggered due times (pure)."""

from __future__ import annotations

from protocols.modbus.schedule import catch_up, default_stagger, next_due, stagger_offset


def test_next_due_is_aligned_and_strictly_later() -> None:
    assert next_due(1000.0, 900.0, 0.0) == 1800.0
    assert next_due(1800.0, 900.0, 0.0) == 2700.0
    assert next_due(1799.9, 900.0, 12.5) == 1812.5
    assert next_due(1812.5, 900.0, 12.5) == 2712.5


def test_stagger_is_stable_and_spread() -> None:
    window = default_stagger(900.0)
    assert window == 30.0 and default_stagger(5.0) == 0.5
    offs = [stagger_offset(f"m{i:05d}", window) for i in range(10_000)]
    assert offs == [stagger_offset(f"m{i:05d}", window) for i in range(10_000)]
    assert all(0 <= o < window for o in offs)
    buckets = [0] * 30
    for o in offs:
        buckets[int(o)] += 1
    assert min(buckets) > 250 and max(buckets) < 420  # ~333 per second, no thundering herd
    assert stagger_offset("x", 0.0) == 0.0


def test_catch_up_skips_missed_slots() -> None:
    assert catch_up(900.0, 950.0, 900.0) == (1800.0, 0)
    assert catch_up(900.0, 4000.0, 900.0) == (4500.0, 3)
