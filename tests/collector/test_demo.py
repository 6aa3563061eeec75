"""`gridwatch demo` as a user runs it: embedded PostgreSQL, mosquitto, all three simulators,
the daemon and the API; readings of every protocol must appear through the API, schedule
control must report the demo subjects, and SIGTERM must end it cleanly.

The test copies configs/demo.toml with free ports into a temporary directory (the demo keeps
its data under ./var of its working directory).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, mosquitto_binary

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def test_demo_end_to_end(tmp_path: Path) -> None:
    if mosquitto_binary() is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; `make demo` installs it as root)")
    text = (ROOT / "configs" / "demo.toml").read_text()
    ports = {8080: free_port(), 15020: free_port(), 24040: free_port(), 24041: free_port(), 18830: free_port()}
    for old, new in ports.items():
        text, n = re.subn(rf"\b{old}\b", str(new), text)
        assert n >= 1, f"port {old} not found in configs/demo.toml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "demo.toml").write_text(text)
    shutil.copytree(ROOT / "configs" / "templates", tmp_path / "configs" / "templates")
    api = f"http://127.0.0.1:{ports[8080]}"
    log = (tmp_path / "demo.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "collector.cli", "demo", "-c", "configs/demo.toml"],
                            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 150
        seen: dict[str, bool] = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                for source in ("demo-modbus", "demo-amr", "demo-scada"):  # IEC-104 points auto-register
                    if not seen.get(source):
                        pts = get(f"{api}/api/v1/points?source={source}&limit=5")
                        pts = pts.get("points", pts) if isinstance(pts, dict) else pts
                        if pts:
                            d = get(f"{api}/api/v1/readings?point={pts[0]['id']}&from=now-1h")
                            seen[source] = bool(d["series"] and d["series"][0]["data"])
            except (OSError, KeyError, ValueError):
                pass
            if len(seen) == 3 and all(seen.values()):
                break
            time.sleep(1)
        assert len(seen) == 3 and all(seen.values()), (seen, (tmp_path / "demo.log").read_text()[-3000:])
        out = (tmp_path / "demo.log").read_text()
        assert "GridWatch demo is running." in out and f"{api}/api/v1/readings" in out
        assert "Grafana:" in out and "GRIDWATCH_PG_" in out  # how to point a Grafana at the demo database
        ready = get(f"{api}/readyz")
        assert ready["ready"] and set(ready["sources"]) == {"demo-modbus", "demo-scada", "demo-amr"}
        live: dict[str, Any] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = get(f"{api}/api/v1/schedule/live")
            if {"city-grid", "amr-district"} <= {r["entity"] for r in live.get("results", [])}:
                break
            time.sleep(1)
        assert {"city-grid", "amr-district"} <= {r["entity"] for r in live["results"]}, live
        assert "imported 4 demo plans" in (tmp_path / "demo.log").read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
        log.close()
    assert rc == 0, (tmp_path / "demo.log").read_text()[-3000:]
