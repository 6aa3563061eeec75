"""The sample configuration loads and its points are the keys the driver derives."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.config import load_config, parse_config
from core.errors import ConfigError
from core.interfaces import DriverContext, SourceHealth
from core.records import utcnow
from protocols.mqtt import SOURCE_KIND, SourceOptions, create_driver
from protocols.mqtt.driver import derived_keys

ROOT = Path(__file__).resolve().parents[3]


def test_sample_loads_and_maps_points() -> None:
    cfg = load_config(ROOT / "protocols" / "mqtt" / "sample.toml", {"mqtt": SOURCE_KIND})
    (src,) = cfg.sources
    assert isinstance(src.options, SourceOptions)
    assert len(src.devices) == 100
    keys = derived_keys(src)
    assert keys["m00001/voltage_l1"] == ("m00001.voltage_l1", "V")
    assert keys["amr/headend1/m00001/frequency"] == ("amr/headend1/m00001/frequency", "Hz")
    drv = create_driver(src, DriverContext(clock=utcnow, health=SourceHealth(src.name)))
    out: list = []
    drv._decode("amr/m00002/readings", b'{"ts": "2026-01-01T00:00:00Z", "voltage_l1": 231.5}', out)
    drv._decode("amr/headend/7/batch", b'{"ts": "2026-01-01T00:00:00Z", "readings": [{"meter": "m00003", '
                                       b'"frequency": 50.01}]}', out)
    assert [(s.key, s.value) for s in out] == [("m00002.voltage_l1", 231.5), ("m00003.frequency", 50.01)]


def test_device_id_option_and_unit_conversion() -> None:
    raw = {"sources": [{"name": "s", "kind": "mqtt", "options": {
        "client_id": "c", "topics": [{"pattern": "amr/+meter/readings",
                                      "json": {"fields": {"p": {"unit": "W"}}}}]},
        "devices": [{"name": "meter-a", "options": {"id": "A17"}, "points": [{"name": "p", "unit": "kW"}]}]}]}
    cfg = parse_config(raw, Path("<t>"), {"mqtt": SOURCE_KIND}, {})
    drv = create_driver(cfg.sources[0], DriverContext(clock=utcnow, health=SourceHealth("s")))
    out: list = []
    drv._decode("amr/A17/readings", b'{"p": 2500}', out)
    drv._decode("amr/B1/readings", b'{"p": 7}', out)
    assert [(s.key, s.value) for s in out] == [("meter-a.p", 2.5), ("B1/p", 7.0)]


def test_bad_options_are_explained() -> None:
    raw = {"sources": [{"name": "s", "kind": "mqtt", "options": {"topics": [{"pattern": "a/+x+"}], "qos": 2}}]}
    with pytest.raises(ConfigError) as e:
        parse_config(raw, Path("<t>"), {"mqtt": SOURCE_KIND}, {})
    text = str(e.value)
    assert "sources[0].options.topics[0].pattern" in text and "capture name must be an identifier" in text
    assert "sources[0].options.qos" in text
