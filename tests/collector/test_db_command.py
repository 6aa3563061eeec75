"""`gridwatch db migrate` / `db status` against a real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main
from tests.collector.helpers import write_config

pytestmark = pytest.mark.integration


def test_migrate_then_status(tmp_path: Path, pg_dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write_config(tmp_path, pg_dsn, "")
    assert main(["db", "status", "-c", str(cfg)]) == 0
    before = capsys.readouterr().out
    assert main(["db", "migrate", "-c", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("applied ") and "060_dead_letters.sql" in out
    assert main(["db", "migrate", "-c", str(cfg)]) == 0
    assert capsys.readouterr().out.strip() == "applied 0 migration(s)"
    assert main(["db", "status", "-c", str(cfg)]) == 0
    after = capsys.readouterr().out
    assert after != before and "060" in after
