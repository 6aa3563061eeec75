"""Fault scoring: a corrupt register must not blind the per-point detector to later faults."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from collector.cli import main
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


def test_outage_is_timed_when_the_gap_passes_its_limit() -> None:
    ts, v = _series(400)
    keep = [i for i in range(400) if not 200 <= i < 210]  # a device offline for 10 intervals
    ts2, v2 = [ts[i] for i in keep], v[keep]
    labels = [FaultLabel("m1", ts[200], ts[210], "offline")]
    rep = evaluate_faults(labels, {"m1.voltage_l1": (ts2, v2)})
    # last row at interval 199, limit 2.5 intervals -> raised at 201.5, i.e. 1.5 intervals in
    assert rep.kinds["offline"].detected == 1
    assert rep.kinds["offline"].delays_intervals == [1.5]


def test_probation_leaves_early_faults_and_detections_unscored() -> None:
    ts, v = _series(2000)
    v[100] *= 8.0
    v[1500] *= 8.0
    labels = [FaultLabel("m1.voltage_l1", ts[100], ts[101], "spike"),
              FaultLabel("m1.voltage_l1", ts[1500], ts[1501], "spike")]
    full = evaluate_faults(labels, {"m1.voltage_l1": (ts, v)})
    late = evaluate_faults(labels, {"m1.voltage_l1": (ts, v)}, probation_s=1000 * 300.0)
    assert full.kinds["spike"].faults == 2
    assert late.kinds["spike"].faults == 1 and late.kinds["spike"].detected == 1
    assert late.detections < full.detections
    assert late.precision == 1.0


def test_cli_probation_days(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ts, v = _series(2000)
    v[100] *= 8.0
    v[1500] *= 8.0
    readings = tmp_path / "readings.csv"
    readings.write_text("point,ts,value\n" + "".join(f"m1.voltage_l1,{t.isoformat()},{float(x)!r}\n"
                                                     for t, x in zip(ts, v, strict=True)))
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join(json.dumps({"point": "m1.voltage_l1", "start": ts[i].isoformat(),
                                          "end": ts[i + 1].isoformat(), "kind": "spike"}) + "\n"
                              for i in (100, 1500)))
    args = ["detectors", "evaluate", "--labels", str(labels), "--readings", str(readings), "--json"]
    assert main([*args, "--probation-days", "4"]) == 0  # 4 days = 1152 rows of 5 minutes
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"]["spike"]["faults"] == 1
    assert out["kinds"]["spike"]["max_delay_intervals"] == 0.0


def test_frozen_only_on_points_that_normally_change() -> None:
    ts, v = _series(300)
    const = np.full(300, 12345678.0)  # a serial number: constant by nature, never "frozen"
    assert not FaultDetector().flags(ts, const).any()
    v[200:206] = v[199]  # a voltage stuck for 6 samples
    flags = FaultDetector().flags(ts, v)
    assert flags[202] and not flags[199]
