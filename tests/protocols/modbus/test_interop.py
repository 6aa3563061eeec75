"""Interoperability: Debian's mbpoll (libmodbus) and GridWatch read the same registers."""

from __future__ import annotations

import asyncio
import re
import shutil

import pytest

from core.clock import SystemClock
from protocols.modbus import create_driver
from tests.conftest import free_port
from tests.protocols.modbus.helpers import by_key, make_ctx, make_farm, make_source

pytestmark = pytest.mark.integration

LINE = re.compile(r"^\[(\d+)\]:\s+(-?[0-9.eE+-]+)", re.M)


async def _mbpoll(*args: str) -> dict[int, float]:
    exe = shutil.which("mbpoll")
    assert exe is not None
    proc = await asyncio.create_subprocess_exec(exe, "-m", "tcp", "-0", "-1", "-o", "5", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, (out.decode(), err.decode())
    return {int(a): float(v) for a, v in LINE.findall(out.decode())}


async def test_mbpoll_reads_what_gridwatch_reads() -> None:
    if shutil.which("mbpoll") is None:
        pytest.skip("mbpoll not installed (Debian package mbpoll; `make test` installs it as root)")
    p1, p2 = free_port(), free_port()
    clock = SystemClock()
    fixed_sdm = {"voltage_l1": 229.75, "voltage_l2": 231.5, "voltage_l3": 233.25, "frequency": 49.98,
                 "energy_import_active": 123456.5}
    fixed_gwt = {"energy_import_active": 987654.321, "frequency": 50.01, "voltage_l1": 228.4,
                 "status_battery_low": 1.0}
    farm = make_farm([
        {"name": "sdm{n}", "template": "sdm630", "count": 3, "port": p1, "values": fixed_sdm},
        {"name": "gwt{n}", "template": "gw-tariff", "count": 1, "port": p2, "values": fixed_gwt},
    ], clock)
    src = make_source([
        {"name": "sdm{n}", "count": 3, "template": "sdm630", "options": {"port": p1, "unit_id": "{n}"}},
        {"name": "gwt1", "template": "gw-tariff", "options": {"port": p2, "unit_id": 1}},
    ])
    ctx, _ = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        ours = by_key(await drv.read_all())
        # SDM630: input registers, float32 big-endian words (-B), unit 3
        volts = await _mbpoll("-p", str(p1), "-a", "3", "-t", "3:float", "-B", "-r", "0", "-c", "3", "127.0.0.1")
        freq = await _mbpoll("-p", str(p1), "-a", "3", "-t", "3:float", "-B", "-r", "70", "-c", "1", "127.0.0.1")
        # gw-tariff: holding registers, 32-bit integers low word first (mbpoll's default order)
        energy = await _mbpoll("-p", str(p2), "-a", "1", "-t", "4:int", "-r", "40", "-c", "1", "127.0.0.1")
        f16 = await _mbpoll("-p", str(p2), "-a", "1", "-t", "4", "-r", "29", "-c", "1", "127.0.0.1")
        status = await _mbpoll("-p", str(p2), "-a", "1", "-t", "4", "-r", "31", "-c", "1", "127.0.0.1")
        doors = await _mbpoll("-p", str(p2), "-a", "1", "-t", "1", "-r", "0", "-c", "2", "127.0.0.1")
    assert volts == {0: pytest.approx(ours["sdm3.voltage_l1"].value, abs=1e-4),
                     2: pytest.approx(ours["sdm3.voltage_l2"].value, abs=1e-4),
                     4: pytest.approx(ours["sdm3.voltage_l3"].value, abs=1e-4)}
    assert ours["sdm3.voltage_l2"].value == 231.5
    assert freq[70] == pytest.approx(ours["sdm3.frequency"].value, abs=1e-4)
    assert energy[40] == ours["gwt1.energy_import_active"].value == 987654321.0
    assert f16[29] == ours["gwt1.frequency"].value == 5001.0
    assert int(status[31]) & 1 == ours["gwt1.status_battery_low"].value == 1.0
    assert doors == {0: ours["gwt1.door_open"].value, 1: ours["gwt1.tamper"].value}
