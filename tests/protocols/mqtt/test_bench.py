"""`gridwatch bench mqtt` runs end to end with tiny parameters (figures are not asserted)."""

from __future__ import annotations

import argparse

import pytest

from protocols.mqtt import bench
from tests.conftest import mosquitto_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


async def test_bench_runs_with_tiny_parameters() -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed")
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--messages", "200", "--batch-messages", "4", "--batch-size", "25", "--rounds", "1"])
    res = await bench._run(args)
    (r,) = res["rounds"]
    assert set(r) == {"publish_msgs_s", "bare_msgs_s", "driver_msgs_s", "driver_batch_readings_s",
                      "driver_batch_msgs_s"}
    assert all(v > 0 for v in r.values())
    assert res["best"]["driver_over_bare"] > 0
