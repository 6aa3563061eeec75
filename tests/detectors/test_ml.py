"""Seasonal baseline + IsolationForest: training, vectorised scoring, persistence round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from detectors.ml import MLModel, MLScorer, slot_index, train, z_to_score

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # Monday 00:00 UTC


def _history(days: int = 14, points: int = 3, seed: int = 0) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(days * 96) * 900.0
    tod = (ts % 86400) / 86400
    return {p: (ts, 100 + 40 * np.sin(2 * np.pi * tod) + rng.normal(0, 1, len(ts))) for p in range(1, points + 1)}


def test_slot_index_day_types() -> None:
    monday = T0
    assert slot_index(np.array([monday]), 15)[0] == 0
    assert slot_index(np.array([monday + 3600]), 15)[0] == 4
    saturday = T0 + 5 * 86400
    sunday = T0 + 6 * 86400 + 900
    assert slot_index(np.array([saturday, sunday]), 15).tolist() == [96, 193]


def test_z_to_score() -> None:
    s = z_to_score(np.array([0.0, 1.0, -3.0, 10.0]))
    assert abs(s[0]) < 1e-6 and abs(s[1] - 0.6827) < 1e-3 and abs(s[2] - 0.9973) < 1e-3 and s[3] > 0.999999


def test_baseline_flags_out_of_season_value_and_not_normal_ones() -> None:
    model = train(_history(), trees=50)
    sc = MLScorer(model)
    ts = T0 + 14 * 86400 + np.array([0, 900, 1800, 2700]) * 1.0
    tod = (ts % 86400) / 86400
    normal = 100 + 40 * np.sin(2 * np.pi * tod)
    vals = normal.copy()
    vals[2] += 25  # 25 sigma off the seasonal median, though inside the daily range
    s, expected = sc.score_arrays(np.array([1, 1, 1, 1]), ts, vals)
    assert s[2] > 0.999
    assert np.all(s[[0, 1, 3]] < 0.99)
    assert abs(expected[2] - normal[2]) < 2
    # unknown points score 0 and expect their own value
    s2, e2 = sc.score_arrays(np.array([99]), ts[:1], np.array([1e6]))
    assert s2[0] == 0 and e2[0] == 1e6


def test_cross_phase_feature_trains_and_scores() -> None:
    model = train(_history(points=3), trees=50, groups={1: 0, 2: 0, 3: 0})
    assert model.forest is not None
    sc = MLScorer(model, {1: 0, 2: 0, 3: 0})
    ts = np.full(3, T0 + 14 * 86400 + 6 * 3600)
    s, _ = sc.score_arrays(np.array([1, 2, 3]), ts, np.array([140.0, 140.0, 60.0]))
    assert s[2] > 0.999 and s[2] >= s[0]


def test_model_round_trip() -> None:
    model = train(_history(days=3), trees=20)
    again = MLModel.from_bytes(model.to_bytes())
    ts = T0 + np.arange(10) * 900.0
    v = np.linspace(50, 150, 10)
    a, _ = MLScorer(model).score_arrays(np.ones(10, dtype=np.int64), ts, v)
    b, _ = MLScorer(again).score_arrays(np.ones(10, dtype=np.int64), ts, v)
    np.testing.assert_array_equal(a, b)
