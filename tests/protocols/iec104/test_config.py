"""The sample configuration loads, and bad options are explained."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config
from core.errors import ConfigError
from protocols.iec104 import SOURCE_KIND
from protocols.iec104.config import RtuOptions, SourceOptions

SAMPLE = Path(__file__).resolve().parents[3] / "protocols" / "iec104" / "sample.toml"


def test_sample_loads() -> None:
    cfg = load_config(SAMPLE, {"iec104": SOURCE_KIND})
    (src,) = cfg.sources
    assert isinstance(src.options, SourceOptions)
    (dev,) = src.devices
    assert isinstance(dev.options, RtuOptions)
    assert [e.name for e in dev.options.endpoints] == ["main", "reserve"]
    assert {p.key for p in src.points} == {"1/1001", "1/1002", "1/2001", "2/3001", "2/4001"}


def test_driver_maps_sample_points() -> None:
    from datetime import UTC, datetime

    from core.interfaces import DriverContext, SourceHealth
    from protocols.iec104.driver import Iec104Driver

    cfg = load_config(SAMPLE, {"iec104": SOURCE_KIND})
    drv = Iec104Driver(cfg.sources[0], DriverContext(clock=lambda: datetime.now(UTC), health=SourceHealth("scada")))
    assert drv.keys[(2, 3001)] == "2/3001"
    assert drv.expected == {1: {1001, 1002, 2001}, 2: {3001}}  # counters answer counter interrogation


def test_bad_options_name_the_key(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text(
        '[[sources]]\nname = "s"\nkind = "iec104"\n'
        '[sources.options]\nk = 10\nw = 20\ncounter_mode = "sometimes"\n'
        'endpoints = [{ host = "127.0.0.1", port = 2404 }]\ncommon_addresses = [65535]\n'
    )
    with pytest.raises(ConfigError) as ei:
        load_config(f, {"iec104": SOURCE_KIND})
    text = str(ei.value)
    assert "counter_mode" in text
    assert "sources[0].options" in text


def test_unknown_type_rejected() -> None:
    from protocols.iec104.config import PointOptions

    with pytest.raises(ValueError, match="unknown monitoring type"):
        PointOptions(type="M_XX_NA_1")
