"""`gridwatch simulate -c FILE`: simulated time, replay until a time, errors as exit codes."""

from __future__ import annotations

import argparse
import asyncio
import io
from pathlib import Path

import pytest

from collector.commands.simulate import SimulateSection, load_plan, register, run, simulate
from core.clock import SystemClock
from core.records import Quality
from protocols.modbus import create_driver
from tests.conftest import free_port
from tests.protocols.modbus.helpers import TEMPLATES, by_key, make_ctx, make_source, until

pytestmark = pytest.mark.integration


def _write(tmp_path: Path, port: int, simulate_table: str) -> Path:
    f = tmp_path / "sim.toml"
    f.write_text(
        f"{simulate_table}\n"
        '[[simulators]]\nkind = "modbus"\n'
        f'templates = ["{TEMPLATES}"]\n'
        f'[[simulators.groups]]\nname = "m{{n}}"\ntemplate = "sdm630"\ncount = 3\nport = {port}\n'
    )
    return f


def _args(path: Path, *extra: str) -> argparse.Namespace:
    # only this command's parser: the full CLI would import every other command's dependencies
    parser = argparse.ArgumentParser(prog="gridwatch")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["simulate", "-c", str(path), *extra])


async def test_replays_a_range_and_serves_meters_meanwhile(tmp_path: Path) -> None:
    port = free_port()
    f = _write(tmp_path, port, '[simulate]\nstart = "2026-03-02T00:00:00Z"\nuntil = "2026-03-02T06:00:00Z"\nspeed = 7200\n')
    section, tables = load_plan(f, _args(f))
    out = io.StringIO()
    stop = asyncio.Event()
    task = asyncio.create_task(simulate(section, tables, stop=stop, out=out))
    src = make_source([{"name": "m{n}", "count": 3, "template": "sdm630", "options": {"port": port, "unit_id": "{n}"}}])
    ctx, _ = make_ctx(SystemClock())
    got: dict[str, object] = {}

    async def read() -> bool:
        try:
            async with create_driver(src, ctx) as drv:
                got.update(by_key(await drv.read_all()))
        except Exception:
            return False
        return all(getattr(s, "quality", None) == Quality.GOOD for s in got.values()) and bool(got)

    try:
        await until(read, 30, "the farm to answer")
        assert await asyncio.wait_for(task, 60) == 0  # six simulated hours take ~3 s
    finally:
        stop.set()
        if not task.done():
            await asyncio.wait_for(task, 30)
    assert "reached 2026-03-02T06:00:00+00:00" in out.getvalue()


def test_bad_files_exit_with_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "bad.toml"
    f.write_text('[simulate]\nspeed = -1\n[[simulators]]\nkind = "modbus"\n')
    assert run(_args(f)) == 2
    assert "simulate.speed" in capsys.readouterr().err
    f.write_text('[[simulators]]\nkind = "dnp3"\n')
    assert run(_args(f)) == 2
    assert "unknown simulator 'dnp3'" in capsys.readouterr().err
    f.write_text('[simulate]\nstart = "2026-03-02T00:00:00"\n[[simulators]]\nkind = "modbus"\n')
    assert run(_args(f, "--duration", "1")) == 2
    assert "no time zone" in capsys.readouterr().err
    assert run(_args(tmp_path / "missing.toml")) == 2


def test_a_bad_simulator_table_fails_with_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "sim.toml"
    f.write_text('[[simulators]]\nkind = "modbus"\ncolour = "red"\n[[simulators.groups]]\ntemplate = "x"\nport = 1\n')
    assert run(_args(f, "--duration", "5")) == 1
    err = capsys.readouterr().err
    assert "modbus[0] failed" in err and "colour" in err


def test_command_line_overrides_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path, 1502, '[simulate]\nspeed = 10\nseed = 4\n')
    section, tables = load_plan(f, _args(f, "--speed", "60", "--start", "2026-01-01T00:00:00Z"))
    assert section == SimulateSection(start="2026-01-01T00:00:00Z", speed=60.0, seed=4)
    assert tables[0]["seed"] == 4 and tables[0]["config_dir"] == str(tmp_path.resolve())


def test_sample_readings_writes_what_a_collector_would_read_and_the_labels(tmp_path: Path) -> None:
    from detectors.evaluate import evaluate_faults, read_labels, read_readings

    f = tmp_path / "sim.toml"
    f.write_text(
        '[simulate]\nstart = "2026-03-02T00:00:00Z"\nuntil = "2026-03-03T00:00:00Z"\nseed = 3\n'
        '[[simulators]]\nkind = "modbus"\n'
        f'templates = ["{TEMPLATES}"]\nlabels = "labels.jsonl"\n'
        '[simulators.faults]\nrate_per_day = 0\npoints = ["voltage_l1"]\n'
        '[[simulators.faults.items]]\npoint = "m1.voltage_l1"\nkind = "sag"\n'
        'start = "2026-03-02T18:00:00Z"\nduration_s = 900\nmagnitude = 0.85\n'
        '[[simulators.faults.items]]\npoint = "m2"\nkind = "offline"\n'
        'start = "2026-03-02T20:00:00Z"\nend = "2026-03-02T21:00:00Z"\n'
        '[[simulators.groups]]\nname = "m{n}"\ntemplate = "sdm630"\ncount = 3\nport = 15999\n'
    )
    dest = tmp_path / "out" / "readings.csv"
    assert run(_args(f, "--sample-readings", str(dest), "--sample-every", "300")) == 0
    readings = read_readings(dest)
    assert sorted(readings) == ["m1.voltage_l1", "m2.voltage_l1", "m3.voltage_l1"]  # only the faulted point
    ts1, v1 = readings["m1.voltage_l1"]
    assert len(ts1) == 288 and ts1[0].isoformat() == "2026-03-02T00:00:00+00:00"  # [start, until)
    assert len(readings["m2.voltage_l1"][0]) == 288 - 12  # an hour offline: no rows
    sag = [v for t, v in zip(ts1, v1, strict=True) if t.hour == 18 and t.minute < 15]
    normal = [v for t, v in zip(ts1, v1, strict=True) if t.hour == 17]
    assert len(sag) == 3 and max(sag) < 0.9 * min(normal)
    labels = read_labels(tmp_path / "labels.jsonl")
    assert sorted(lab.kind for lab in labels) == ["offline", "sag"]
    rep = evaluate_faults(labels, readings)
    assert rep.kinds["sag"].detected == 1 and rep.kinds["sag"].delays_intervals == [0.0]
    assert rep.kinds["offline"].detected == 1


def test_sample_readings_needs_a_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _write(tmp_path, 15998, '[simulate]\nstart = "2026-03-02T00:00:00Z"\n')
    assert run(_args(f, "--sample-readings", str(tmp_path / "r.csv"))) == 2
    assert "simulate.start and simulate.until: both are needed with --sample-readings" in capsys.readouterr().err
