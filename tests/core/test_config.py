"""Config loading: expansion of templates and counts, and errors that name file and key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict

from core.config import SourceKind, expand, load_config
from core.errors import ConfigError


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str = "127.0.0.1"
    port: int = 502


class DevOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unit_id: int


class PointOpts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: int


KINDS = {"fake": SourceKind(options=Opts, device=DevOpts, point=PointOpts)}

GOOD = """
[storage]
retention_days = 30

[[templates]]
name = "meter"
kind = "fake"
points = [
  { name = "p", unit = "kW", options = { address = 1 } },
  { name = "e", unit = "kWh", kind = "counter", options = { address = 3 } },
]

[[sources]]
name = "farm"
kind = "fake"
options = { port = 5020 }
devices = [{ name = "m{n:03d}", count = 3, template = "meter", zone = "North", options = { unit_id = "{n}" } }]
"""


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "gw.toml"
    p.write_text(text)
    return p


def test_expands_templates_and_counts(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, GOOD), KINDS)
    (src,) = cfg.sources
    assert [d.name for d in src.devices] == ["m001", "m002", "m003"]
    assert [d.options.unit_id for d in src.devices] == [1, 2, 3]
    assert [p.name for p in src.points] == ["m001.p", "m001.e", "m002.p", "m002.e", "m003.p", "m003.e"]
    assert {p.zone for p in src.points} == {"North"}
    assert cfg.storage.retention_days == 30


def test_expand_arithmetic() -> None:
    assert expand("{n+5000}", 3, 2) == 5003
    assert expand({"a": ["x{i}"]}, 1, 0) == {"a": ["x0"]}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[storage]\nretention_days = 0\n", "gw.toml: storage.retention_days: Input should be greater than or equal to 1"),
        ("[storage]\nretension_days = 3\n", "gw.toml: storage.retension_days: unknown key"),
        ("[bogus]\n", "gw.toml: bogus: unknown section"),
        ("[[sources]]\nname = 'a'\nkind = 'nope'\n", "gw.toml: sources[0].kind: unknown source kind 'nope'"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\noptions = { port = 'x' }\n", "gw.toml: sources[0].options.port:"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\n[[sources]]\nname = 'a'\nkind = 'fake'\n",
         "gw.toml: sources[1].name: duplicate source name 'a'"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\ndevices = [{ name = 'd', template = 'zz', options = { unit_id = 1 } }]\n",
         "gw.toml: sources[0].devices[0].template: unknown template 'zz'"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\ndevices = [{ name = 'd', count = 2, options = { unit_id = 1 } }]\n",
         "gw.toml: sources[0].devices[0].name: a device with count needs {n} in its name"),
        ("x = [\n", "gw.toml: <root>: not valid TOML"),
        ("[api]\ntokens = [{ name = 't', role = 'god', token = 'x' }]\n", "gw.toml: api.tokens[0].role:"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\npoints = [{ name = 'p', options = { address = 1 } },"
         " { name = 'p', options = { address = 2 } }]\n", "gw.toml: sources[0].points[1]: duplicate point name 'p'"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\npoints = [{ name = 'p', range = [5, 1], options = { address = 1 } }]\n",
         "gw.toml: sources[0].points[0].range:"),
        ("[[sources]]\nname = 'a'\nkind = 'fake'\npoints = [{ name = 'p', options = { addr = 1 } }]\n",
         "gw.toml: sources[0].points[0].options.addr: unknown key"),
    ],
)
def test_broken_configs_name_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as ei:
        load_config(write(tmp_path, text), KINDS)
    assert any(expected in str(i).replace(str(tmp_path) + "/", "") for i in ei.value.issues), ei.value.issues


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", KINDS)


def test_include_templates(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "m.toml").write_text(
        '[[templates]]\nname = "meter"\npoints = [{ name = "p", options = { address = 1 } }]\n')
    p = write(tmp_path, 'include = ["t/*.toml"]\n[[sources]]\nname = "s"\nkind = "fake"\n'
                        'devices = [{ name = "d", template = "meter", options = { unit_id = 1 } }]\n')
    cfg = load_config(p, KINDS)
    assert cfg.sources[0].points[0].name == "d.p"
