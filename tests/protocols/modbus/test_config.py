"""Point, device and source options; shipped templates and sample.toml validate."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from core.config import load_config, parse_config
from core.errors import ConfigError
from protocols.modbus import SOURCE_KIND, PointOptions

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        ({"address": 1, "table": "coil", "type": "float32"}, "single bit"),
        ({"address": 1, "type": "bool"}, "only for coil"),
        ({"address": 1, "type": "bitfield"}, "needs 'bit'"),
        ({"address": 1, "type": "uint16", "bit": 3}, "only for type 'bitfield'"),
        ({"address": 1, "type": "string"}, "needs 'length'"),
        ({"address": 1, "type": "int8"}, "Input should be"),
        ({"address": 70000}, "less than or equal"),
        ({"address": 1, "byte_order": "ACBD"}, "Input should be"),
        ({"address": 1, "colour": "red"}, "Extra inputs"),
    ],
)
def test_bad_point_options(opts: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PointOptions.model_validate(opts)


def test_words() -> None:
    assert PointOptions.model_validate({"address": 0, "type": "string", "length": 9}).words == 5
    assert PointOptions.model_validate({"address": 0, "type": "float64"}).words == 4
    assert PointOptions.model_validate({"address": 0, "table": "discrete", "type": "bool"}).words == 1


def test_shipped_templates_expand_for_many_devices() -> None:
    raw = {
        "include": ["templates/*.toml"],
        "sources": [{
            "name": "meters", "kind": "modbus", "options": {"host": "127.0.0.1"},
            "devices": [{"name": f"{t}-{{n:03d}}", "count": 50, "template": t,
                         "options": {"unit_id": "{n}", "port": 1502}}
                        for t in ("sdm630", "iem3255", "gw-tariff")],
        }],
    }
    cfg = parse_config(raw, ROOT / "configs" / "x.toml", {"modbus": SOURCE_KIND}, {})
    src = cfg.sources[0]
    assert len(src.devices) == 150
    names = {p.name for p in src.points}
    assert "sdm630-007.voltage_l1" in names and "gw-tariff-050.energy_import_active_t3" in names
    for tmpl in ("sdm630", "iem3255", "gw-tariff"):
        pts = {p.name for p in cfg.templates[tmpl].points}
        for needed in ("voltage_l1", "voltage_l2", "voltage_l3", "current_l1", "active_power_l1",
                       "reactive_power_l1", "frequency", "energy_import_active", "energy_export_active",
                       "energy_import_reactive", "energy_export_reactive"):
            assert needed in pts, (tmpl, needed)
    assert {"energy_import_active_t1", "energy_import_active_t4"} <= {p.name for p in cfg.templates["iem3255"].points}
    assert src.devices[3].options.unit_id == 4


def test_bad_template_point_is_reported_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "gw.toml"
    f.write_text(
        '[[templates]]\nname = "t"\nkind = "modbus"\n'
        '[[templates.points]]\nname = "v"\noptions = { address = 1, type = "float32", byte_order = "XYZW" }\n'
        '[[sources]]\nname = "mb"\nkind = "modbus"\noptions = { host = "127.0.0.1" }\n'
        '[[sources.devices]]\nname = "d1"\ntemplate = "t"\n'
    )
    with pytest.raises(ConfigError) as ei:
        load_config(f, {"modbus": SOURCE_KIND})
    assert "templates[0].points[0].options.byte_order" in str(ei.value)


def test_sample_toml_loads() -> None:
    cfg = load_config(ROOT / "protocols" / "modbus" / "sample.toml", {"modbus": SOURCE_KIND})
    assert cfg.sources and cfg.sources[0].kind == "modbus"
