"""The daemon's own Prometheus rules: promtool check + unit tests, and metric names that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from tests.conftest import ROOT

RULES = ROOT / "configs" / "prometheus" / "gridwatch-rules.yml"
RULE_TESTS = ROOT / "configs" / "prometheus" / "tests" / "gridwatch-rules.test.yml"

# Metrics the rules use that no GridWatch code exports yet (listed in docs/alerting.md).
ASSUMED = {"gridwatch_storage_job_failed"}


def _promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    return binary


def test_promtool_check_rules() -> None:
    out = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_promtool_unit_tests() -> None:
    out = subprocess.run([_promtool(), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True,
                         timeout=120, cwd=RULE_TESTS.parent)
    assert out.returncode == 0, out.stdout + out.stderr


def _exported_names() -> set[str]:
    from collector.api.alerts import families
    from collector.metrics import Metrics
    from core.interfaces import SourceHealth

    registry = CollectorRegistry()
    m = Metrics(registry)
    h = SourceHealth("s", links={"l": "up"}, last_message_at=datetime.now(UTC))
    h.count("messages")
    m.watch_health({"s": h}, lambda: datetime.now(UTC))
    names: set[str] = set()
    fams = list(registry.collect())
    from alerting.service import AlertingStats
    one: Counter[str] = Counter(r=1)
    fams += families(AlertingStats(counters=one, delivered=one, failed=one, gave_up=one, pending={"r": 0}))
    for fam in fams:
        names.add(fam.name)
        for s in fam.samples:
            names.add(s.name)
    for c in m.readings_in, m.readings_spooled, m.readings_rejected:
        c.labels(source="x")
    for fam in registry.collect():
        for s in fam.samples:
            names.add(s.name)
    return names


def test_rules_use_metrics_the_daemon_exports() -> None:
    pytest.importorskip("collector.metrics")
    used = set(re.findall(r"\bgridwatch_[a-z0-9_]+", "\n".join(
        line for line in RULES.read_text().splitlines() if "expr:" in line)))
    exported = _exported_names()
    missing = sorted(used - exported - ASSUMED)
    assert not missing, f"rules use metrics nobody exports: {missing}"
    docs = (ROOT / "docs" / "alerting.md").read_text()
    for name in sorted(used):
        base = re.sub(r"_(bucket|total)$", "", name)
        assert base in docs, f"{name} is not listed in docs/alerting.md"


def test_rule_files_are_shipped() -> None:
    assert RULES.exists() and RULE_TESTS.exists()
    assert Path(RULES).read_text().count("- alert:") >= 10


def test_example_alertmanager_config_is_valid() -> None:
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.skip("amtool not installed (Debian package prometheus-alertmanager)")
    path = ROOT / "configs" / "prometheus" / "alertmanager.example.yml"
    out = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
