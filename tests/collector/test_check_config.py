"""`gridwatch check-config`: every broken configuration gets its exact `file: key.path: reason`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from collector import config as gwconfig
from collector.cli import main
from tests.collector import fakes

fakes.install()
ROOT = Path(__file__).resolve().parents[2]

GOOD = """
[storage]
dsn = "postgresql://localhost/gw"
[[templates]]
name = "meter"
points = [{ name = "p", unit = "kW" }]
[[sources]]
name = "s"
kind = "fake"
points = [{ name = "x" }]
[[sources.devices]]
name = "m{n}"
count = 3
template = "meter"
"""


def check(tmp_path: Path, text: str | None, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    path = tmp_path / "c.toml"
    if text is not None:
        path.write_text(text)
    rc = main(["check-config", str(path)])
    cap = capsys.readouterr()
    prefix = f"{path}: "
    lines = [ln.removeprefix(prefix) for ln in cap.err.splitlines()]
    return rc, lines, cap.out


def test_good_config_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, out = check(tmp_path, GOOD, capsys)
    assert rc == 0 and err == []
    assert "  fake: 1 source(s), 3 device(s), 4 point(s)" in out.splitlines()
    assert "  total: 1 source(s), 4 point(s)" in out.splitlines()


def known() -> str:
    return ", ".join(sorted(gwconfig.source_kinds()))


CASES: list[tuple[str, str, str]] = [
    ("unknown section", "[storag]\ndsn = 'x'\n", "storag: unknown section (not part of the schema)"),
    ("unknown key", "[storage]\nbatch_rows = 5\n", "storage.batch_rows: unknown key (not part of the schema)"),
    ("value out of bounds", "[storage]\nbatch_max_rows = 0\n",
     "storage.batch_max_rows: Input should be greater than or equal to 1"),
    ("wrong type", "[api]\nport = 'eighty'\n",
     "api.port: Input should be a valid integer, unable to parse string as an integer"),
    ("missing source name", "[[sources]]\nkind = 'fake'\n", "sources[0].name: required key is missing"),
    ("unknown kind", "[[sources]]\nname = 's'\nkind = 'bogus'\n",
     "sources[0].kind: unknown source kind 'bogus' (known: {known})"),
    ("duplicate source", "[[sources]]\nname = 's'\nkind = 'fake'\n[[sources]]\nname = 's'\nkind = 'fake'\n",
     "sources[1].name: duplicate source name 's'"),
    ("unknown template", "[[sources]]\nname = 's'\nkind = 'fake'\n[[sources.devices]]\nname = 'd'\ntemplate = 'nope'\n",
     "sources[0].devices[0].template: unknown template 'nope'"),
    ("count without {n}", "[[sources]]\nname = 's'\nkind = 'fake'\n[[sources.devices]]\nname = 'd'\ncount = 2\n",
     "sources[0].devices[0].name: a device with count needs {n} in its name"),
    ("duplicate point",
     "[[sources]]\nname = 'a'\nkind = 'fake'\npoints = [{name = 'x'}]\n"
     "[[sources]]\nname = 'b'\nkind = 'fake'\npoints = [{name = 'x'}]\n",
     "sources[1].points[0]: duplicate point name 'x' (also at {file}: sources[0])"),
    ("inverted range", "[[sources]]\nname = 's'\nkind = 'fake'\npoints = [{name = 'x', range = [10, 0]}]\n",
     "sources[0].points[0].range: Value error, range must be [min, max] with min < max"),
    ("token and token_env", "[api]\ntokens = [{name = 'ops', role = 'admin', token = 'a', token_env = 'B'}]\n",
     "api.tokens[0]: Value error, give exactly one of token or token_env"),
    ("bad role", "[api]\ntokens = [{name = 'ops', role = 'root', token = 'a'}]\n",
     "api.tokens[0].role: Input should be 'viewer', 'operator' or 'admin'"),
    ("protocol option invalid", "[[sources]]\nname = 's'\nkind = 'fake'\noptions = {mode = 'push'}\n",
     "sources[0].options.mode: String should match pattern '^(stream|poll)$'"),
    ("unknown protocol option", "[[sources]]\nname = 's'\nkind = 'fake'\noptions = {modus = 'poll'}\n",
     "sources[0].options.modus: unknown key (not part of the schema)"),
    ("include matches nothing", "include = ['templates/*.toml']\n",
     "include: pattern 'templates/*.toml' matches no file"),
    ("bad point name", "[[sources]]\nname = 's'\nkind = 'fake'\npoints = [{name = 'a b'}]\n",
     "sources[0].points[0].name: String should match pattern '^[A-Za-z0-9_][A-Za-z0-9_.:\\-/]*$'"),
    ("limits unordered",
     "[[sources]]\nname = 's'\nkind = 'fake'\npoints = [{name = 'v', limits = {lo = 10, hi = 5}}]\n",
     "sources[0].points[0].limits: Value error, limits must be ordered lolo <= lo <= hi <= hihi"),
]


@pytest.mark.parametrize(("text", "expected"), [(c[1], c[2]) for c in CASES], ids=[c[0] for c in CASES])
def test_broken_config_exact_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str,
                                     expected: str) -> None:
    rc, err, out = check(tmp_path, text, capsys)
    want = expected.replace("{known}", known()).replace("{file}", str(tmp_path / "c.toml"))
    assert rc == 2
    assert err == [want]
    assert out == ""


def test_every_error_is_reported_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, _ = check(tmp_path, "[storag]\n[storage]\nbatch_rows = 1\n[[sources]]\nkind = 'fake'\n", capsys)
    assert rc == 2
    assert err == ["storag: unknown section (not part of the schema)",
                   "storage.batch_rows: unknown key (not part of the schema)",
                   "sources[0].name: required key is missing"]


def test_missing_file_and_bad_toml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err, _ = check(tmp_path, None, capsys)
    assert (rc, err) == (2, ["<root>: file not found"])
    rc, err, _ = check(tmp_path, "[storage\n", capsys)
    assert rc == 2 and len(err) == 1 and err[0].startswith("<root>: not valid TOML: ")


def test_cli_subprocess_exit_codes(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[storage]\nbatch_rows = 5\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    p = subprocess.run([sys.executable, "-m", "tests.collector.run_fake", "check-config", str(bad)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip() == f"{bad}: storage.batch_rows: unknown key (not part of the schema)"
    good = tmp_path / "good.toml"
    good.write_text(GOOD)
    p = subprocess.run([sys.executable, "-m", "tests.collector.run_fake", "check-config", str(good)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert p.returncode == 0, p.stderr
    assert f"{good}: OK" in p.stdout
