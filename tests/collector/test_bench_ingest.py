"""`gridwatch bench ingest` with tiny parameters: the command runs and reports both rates."""

from __future__ import annotations

import json

import pytest

from collector.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_bench_ingest_tiny(pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["bench", "ingest", "--points", "20", "--seconds", "1", "--ceiling-rows", "2000", "--dsn", pg_dsn,
               "--json"])
    assert rc == 0
    out = capsys.readouterr().out.splitlines()
    res = json.loads(out[0])
    assert res["copy_ceiling_rows_per_s"] > 0 and res["end_to_end_rows_per_s"] > 0
    assert res["rows_stored"] > 0 and res["spooled"] == 0
    assert res["ratio"] == pytest.approx(res["end_to_end_rows_per_s"] / res["copy_ceiling_rows_per_s"], abs=0.002)
    assert out[1].startswith("targets (>=100k rows/s, ratio >=0.5, RSS growth <50 MB):")
