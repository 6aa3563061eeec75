"""`gridwatch bench modbus` with tiny parameters (the benchmark itself is not a test)."""

from __future__ import annotations

import argparse
import json

import pytest

from protocols.modbus import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_tiny_bench_passes_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    args = parser.parse_args(["--meters", "60", "--units-per-port", "20", "--latency-ms", "20", "--silent", "0.1",
                              "--timeout", "1", "--stagger", "2", "--deadline", "60", "--json"])
    assert bench.run(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pass"] is True
    assert result["healthy_read"] == result["healthy"] == 60 - result["silent"]
    assert result["silent_reported_comm_fail"] == result["silent"]
    assert result["farm"]["requests"] == result["requests"]
