"""`gridwatch bench iec104` runs end to end with tiny parameters (not a speed test)."""

from __future__ import annotations

import argparse

import pytest

from protocols.iec104 import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(180)]


def test_bench_tiny_lossless(capsys: pytest.CaptureFixture[str]) -> None:
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--points", "400", "--stations", "4", "--rate", "400", "--duration", "1",
                         "--no-storage", "--outstations", "2"])
    assert bench.run(args) == 0
    out = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if line.strip())
    assert out["gi_objects"].strip() == "400"
    assert int(out["sent"]) > 0 and out["lost"].strip() == "0"
    assert int(out["received"]) == int(out["sent"])
