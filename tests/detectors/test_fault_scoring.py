"""Fault scoring: a corrupt register must not blind the per-point detector to later faults."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np

from detectors.evaluate import FaultDetector, FaultLabel, evaluate_faults

T0 = datetime(2026, 3, 2, tzinfo=UTC)
STEP = timedelta(seconds=300)


def _series(n: int, seed: int = 1) -> tuple[list[datetime], np.ndarray]:
    rng = np.random.default_rng(seed)
    return [T0 + i * STEP for i in range(n)], 230.0 + rng.normal(0.0, 1.0, n)


def test_gross_error_does_not_poison_later_detection() -> None:
    ts, v = _series(2000)
    v[500] = 1.5e11       # random registers decoded as float32
    v[900] = -2.9e-28     # ... or as a tiny number
    v[1500] = 400.0       # a spike much later
    v[1700] = 0.85 * 230  # a sag
    flags = FaultDetector().flags(ts, v)
    assert flags[500] and flags[900]
    assert flags[1500] and flags[1700]
    assert not flags[1400:1500].any()


def test_gross_guard_follows_a_level_shift() -> None:
    _ts, v = _series(600)
    v[300:] += 5000.0  # a load switched on: flagged for a while, then normal again
    flags = FaultDetector().gross(v)
    assert flags[300]
    assert not flags[340:].any()


def test_corrupt_label_then_spike_label_both_detected() -> None:
    ts, v = _series(2000)
    v[500] = 3.1e35
    v[1500] *= 8.0
    labels = [FaultLabel("m1.voltage_l1", ts[500], ts[501], "corrupt"),
              FaultLabel("m1.voltage_l1", ts[1500], ts[1501], "spike")]
    rep = evaluate_faults(labels, {"m1.voltage_l1": (ts, v)})
    assert rep.kinds["corrupt"].detected == 1
    assert rep.kinds["spike"].detected == 1
    assert rep.kinds["spike"].delays_intervals == [0.0]
