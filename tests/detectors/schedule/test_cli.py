"""`gridwatch schedule ...` end to end on a real database."""

from __future__ import annotations

from pathlib import Path

import pytest

from collector.cli import main

pytestmark = [pytest.mark.integration]

CONFIG = """
[storage]
dsn = "{dsn}"
backend = "postgres"

[schedule]
timezone = "Asia/Almaty"
[[schedule.subjects]]
name = "GEN-N"
zone = "North"
kind = "generator"
points = [{{ point = "gen.ea_export", sign = 1, unit = "kWh" }}]
"""


def test_import_results_template(pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(CONFIG.format(dsn=pg_dsn))
    plan = tmp_path / "plan.csv"
    plan.write_text("day,subject,hour,value\n" + "".join(f"2026-12-02,GEN-N,{h},{h}.5\n" for h in range(1, 25)))
    assert main(["schedule", "import", str(plan), "-c", str(cfg), "--actor", "op1"]) == 0
    assert "stored GEN-N 2026-12-02 version 1" in capsys.readouterr().out

    bad = tmp_path / "bad.csv"
    bad.write_text("day,subject,hour,value\n" + "".join(f"2026-12-02,GEN-N,{h},{h}\n" for h in range(1, 24))
                   + "2026-12-02,GEN-N,24,-3\n")
    assert main(["schedule", "import", str(bad), "-c", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}: line 25, column value: negative value -3.0 not allowed for subject 'GEN-N'" in err
    assert "rejected, nothing stored" in err
    assert main(["schedule", "import", str(plan), "-c", str(cfg), "--dry-run"]) == 0
    assert main(["schedule", "template", "-c", str(cfg), "--day", "2026-12-02"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == "2026-12-02,GEN-N,24,,MWh" and len(out) == 26  # dry-run line + header + 24
    assert main(["schedule", "results", "-c", str(cfg), "--day", "2026-12-02"]) == 0
