"""Scoring of labelled simulator faults (precision, recall, delay per kind) and the bench command."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from collector.cli import main
from detectors.evaluate import evaluate_faults, read_labels, read_readings


def _write(tmp: Path) -> tuple[Path, Path]:
    t0 = datetime(2026, 3, 2, tzinfo=UTC)
    rng = np.random.default_rng(0)
    lines = ["point,ts,value"]
    n = 1500
    v = 230 + 2 * np.sin(np.arange(n) * 2 * np.pi / 96) + rng.normal(0, 0.3, n)
    v[1000:1010] = v[999]  # frozen
    v[1200] += 40  # spike
    for i in range(n):
        if 1300 <= i < 1310:
            continue  # stale: no readings
        lines.append(f"m1.u,{(t0 + timedelta(minutes=15 * i)).isoformat()},{v[i]:.3f}")
    readings = tmp / "readings.csv"
    readings.write_text("\n".join(lines) + "\n")

    def ts(i: int) -> str:
        return (t0 + timedelta(minutes=15 * i)).isoformat()

    labels = tmp / "labels.jsonl"
    labels.write_text("\n".join(json.dumps(x) for x in [
        {"point": "m1.u", "start": ts(1000), "end": ts(1009), "kind": "frozen"},
        {"point": "m1.u", "start": ts(1200), "end": ts(1200), "kind": "spike"},
        {"point": "m1.u", "start": ts(1300), "end": ts(1309), "kind": "stale"},
        {"point": "m2.u", "start": ts(10), "end": ts(20), "kind": "spike"},  # never read: a miss
        {"point": "m1", "start": ts(1300), "end": ts(1310), "kind": "offline"},  # a device label
    ]) + "\n")
    return labels, readings


def test_fault_scoring_per_kind(tmp_path: Path) -> None:
    labels, readings = _write(tmp_path)
    rep = evaluate_faults(read_labels(labels), read_readings(readings))
    assert rep.kinds["frozen"].detected == 1 and rep.kinds["frozen"].delays_intervals[0] <= 3
    assert rep.kinds["spike"].faults == 2 and rep.kinds["spike"].detected == 1
    assert rep.kinds["spike"].delays_s == [0.0]
    assert rep.kinds["stale"].detected == 1
    assert rep.kinds["offline"].detected == 1  # covers m1.u through its device name
    assert 0 < rep.precision <= 1
    assert "recall" in rep.as_text()


def test_fault_inputs_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "l.jsonl"
    bad.write_text('{"point": "a", "start": "2026-01-01T00:00:00Z"}\n')
    with pytest.raises(ValueError, match=r"l.jsonl:1: field 'end'"):
        read_labels(bad)
    csvf = tmp_path / "r.csv"
    csvf.write_text("point,ts,value\nx,2026-01-01T00:00:00Z,abc\n")
    with pytest.raises(ValueError, match=r"r.csv:2"):
        read_readings(csvf)


def test_cli_faults_and_bench(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels, readings = _write(tmp_path)
    assert main(["detectors", "evaluate", "--labels", str(labels), "--readings", str(readings), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"]["frozen"]["recall"] == 1.0
    assert main(["detectors", "evaluate", "--labels", str(labels)]) == 2
    assert main(["bench", "detectors", "--points", "20", "--days", "2", "--batch", "200", "--batches", "5"]) == 0
    assert "readings/s" in capsys.readouterr().out


def test_scores_faults_injected_by_the_simulators_fault_plan(tmp_path: Path) -> None:
    from simulators.faults import FaultPlan

    t0 = datetime(2026, 3, 2, tzinfo=UTC)

    def at(i: int) -> str:
        return (t0 + timedelta(minutes=15 * i)).isoformat()

    plan = FaultPlan.from_config([
        {"point": "s1.u_l1", "kind": "spike", "start": at(900), "end": at(901)},
        {"point": "s1.u_l1", "kind": "frozen", "start": at(1000), "end": at(1012)},
        {"point": "s1.u_l1", "kind": "dropout", "start": at(1100), "end": at(1108)},
        {"point": "s1", "kind": "offline", "start": at(1200), "end": at(1210)},
        {"point": "s1.u_l1", "kind": "corrupt", "start": at(1300), "end": at(1301)},
    ])
    labels = tmp_path / "labels.jsonl"
    plan.write_labels(labels)
    rng = np.random.default_rng(4)
    lines = ["point,ts,value"]
    for i in range(1400):
        ts = t0 + timedelta(minutes=15 * i)
        v = 230 + 3 * np.sin(2 * np.pi * i / 96) + rng.normal(0, 0.3)
        out = plan.apply("s1.u_l1", ts, float(v))
        if out.value is not None:
            lines.append(f"s1.u_l1,{out.ts.isoformat()},{out.value!r}")
    readings = tmp_path / "readings.csv"
    readings.write_text("\n".join(lines) + "\n")
    rep = evaluate_faults(read_labels(labels), read_readings(readings))
    for kind in ("spike", "frozen", "dropout", "offline", "corrupt"):
        assert rep.kinds[kind].detected == 1, (kind, rep.as_text())
        assert rep.kinds[kind].delays_intervals[0] <= 11, (kind, rep.as_text())
    assert rep.kinds["spike"].delays_s == [0.0] and rep.kinds["corrupt"].delays_s == [0.0]
    assert rep.precision > 0.5, rep.as_text()
