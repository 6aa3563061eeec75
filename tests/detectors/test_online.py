"""Components of the default `ensemble` NAB detector."""

from __future__ import annotations

import numpy as np

from detectors.evaluate import run_stream
from detectors.online import LeftDiscord, NabParams, RecordContextEnsemble


def test_joint_surprise_flags_a_spike_that_is_no_record_of_any_single_statistic() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.3, 800)
    x[20], x[30] = 8.0, -8.0  # records of the high, the low and the residual, during the warm-up
    x[600] = 6.0  # second-largest high and third-largest residual: no record alone
    with_joint = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0)), x)
    without = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0, joint=False)), x)
    assert np.all(with_joint >= without)  # the joint component only adds to the max
    assert without[600] < 0.8 <= with_joint[600]  # together they are a record: the spike scores >= 0.8


def test_joint_component_waits_for_the_statistics_to_warm_up() -> None:
    x = np.sin(np.arange(300) / 7.0)
    a = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0)), x)
    b = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0, joint=False)), x)
    p = NabParams()
    np.testing.assert_array_equal(a[:2 * p.rank_warm], b[:2 * p.rank_warm])


def _brute_left_discord(x: np.ndarray, m: int, history: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        last = i - m  # newest earlier window not overlapping x[i-m+1..i] ends here
        first = max(m - 1, last - history + 1)
        if i < m - 1 or last - first + 1 < m:  # ranked only once m earlier windows exist
            continue
        cur = x[i - m + 1:i + 1]
        out[i] = min(np.linalg.norm(cur - x[j - m + 1:j + 1]) for j in range(first, last + 1))
    return out


def test_left_discord_is_the_left_matrix_profile_with_a_bounded_history() -> None:
    rng = np.random.default_rng(11)
    x = 1e6 + np.cumsum(rng.normal(0, 1, 700))  # a large level: the offset keeps the squares small
    d = LeftDiscord(m=8, history=50)  # small history: the buffer is compacted several times
    got = np.array([np.nan if (v := d.update(float(a))) is None else v for a in x])
    assert np.isnan(got[:3 * 8 - 2]).all() and not np.isnan(got[3 * 8 - 2:]).any()
    np.testing.assert_allclose(got, _brute_left_discord(x, 8, 50), rtol=1e-6, atol=1e-6)


def test_discord_flags_a_misshapen_cycle_inside_the_normal_range() -> None:
    # One and a half cycles of a noisy oscillation stop (noise only, around the same mean): no
    # new high, low or residual record, but the stretch resembles no earlier one.
    rng = np.random.default_rng(4)
    x = np.sin(2 * np.pi * np.arange(3000) / 20.0) + rng.normal(0, 0.2, 3000)
    x[2400:2430] = rng.normal(0, 0.2, 30)
    with_discord = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0)), x)
    without = run_stream(lambda: RecordContextEnsemble(NabParams(cn_weight=0.0, discord_m=0)), x)
    assert np.all(with_discord >= without)  # the discord component only adds to the max
    assert without[2400:2460].max() < 0.8 <= with_discord[2400:2460].max()
    # Repeated noisy cycles are no discord: it adds no detection there (the noise's own records
    # of high, low and residual still score >= 0.8 now and then, with or without it).
    normal = slice(1000, 2400)
    np.testing.assert_array_equal(with_discord[normal] >= 0.8, without[normal] >= 0.8)


def test_discord_skips_values_whose_squares_overflow() -> None:
    x = np.random.default_rng(1).normal(size=500)
    x[300] = 1e200  # a corrupt register decoded as a huge float
    with np.errstate(all="raise"):  # no overflow warning escapes either
        s = run_stream(lambda: RecordContextEnsemble(), x)
    assert np.isfinite(s).all() and s[300] >= 0.8
