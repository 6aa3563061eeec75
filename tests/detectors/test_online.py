"""Components of the default `ensemble` NAB detector."""

from __future__ import annotations

import numpy as np

from detectors.evaluate import run_stream
from detectors.online import NabParams, RecordContextEnsemble


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
