"""The Modbus meter farm: exceptions, latency, silence, energy, scale, faults, and tshark."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import AcceleratedClock, SystemClock
from core.records import Quality
from protocols.modbus import codec, create_driver
from protocols.modbus.client import Connection, ExceptionAnswer, RequestTimeout
from simulators.modbus import run_simulator
from simulators.profiles import Profile
from tests.conftest import free_port, wait_capture_live
from tests.protocols.modbus.helpers import TEMPLATES, by_key, make_ctx, make_farm, make_source, until

pytestmark = pytest.mark.integration


class ManualClock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


@contextlib.asynccontextmanager
async def connected(port: int):  # type: ignore[no-untyped-def]
    conn = Connection("test", "127.0.0.1", port, connect_timeout_s=5)
    await conn.open()
    try:
        yield conn
    finally:
        conn.close()


async def test_exception_answers_latency_and_silence() -> None:
    port = free_port()
    farm = make_farm([
        {"name": "a{n}", "template": "sdm630", "count": 2, "port": port, "bad_addresses": [60]},
        {"name": "slow", "template": "sdm630", "port": port, "unit_start": 5, "latency_ms": 300},
        {"name": "mute", "template": "sdm630", "port": port, "unit_start": 6, "silent": 1.0},
        {"name": "strict", "template": "sdm630", "port": port, "unit_start": 7, "gaps": "exception"},
    ], SystemClock())
    async with farm, connected(port) as c:
        assert len(await c.read("input", 0, 6, 1, 5)) == 6
        assert len(await c.read("input", 0, 60, 2, 5)) == 60  # gaps inside the map (36..51) answer zeros
        with pytest.raises(ExceptionAnswer) as e:
            await c.read("input", 58, 4, 1, 5)  # 60 is a bad address of this meter
        assert e.value.code == 2
        with pytest.raises(ExceptionAnswer) as e:
            await c.read("input", 400, 2, 1, 5)  # beyond the template
        assert e.value.code == 2
        with pytest.raises(ExceptionAnswer) as e:
            await c.read("coil", 0, 1, 1, 5)  # the SDM630 has no coils
        assert e.value.code == 2
        with pytest.raises(ExceptionAnswer) as e:
            await c.read("input", 0, 80, 7, 5)  # strict gaps: 36..51 hold nothing
        assert e.value.code == 2
        assert len(await c.read("input", 0, 18, 7, 5)) == 18
        with pytest.raises(ExceptionAnswer) as e:
            await c.read("input", 0, 2, 99, 5)  # no such unit behind this gateway
        assert e.value.code == 11
        t0 = time.monotonic()
        await c.read("input", 0, 2, 5, 10)
        assert time.monotonic() - t0 >= 0.29
        with pytest.raises(RequestTimeout):
            await c.read("input", 0, 2, 6, 0.5)
    assert farm.stats.silent == 1 and farm.stats.exceptions == 5


async def test_energy_registers_integrate_power() -> None:
    port = free_port()
    clock = ManualClock(datetime(2026, 7, 1, 6, tzinfo=UTC))
    farm = make_farm([{"name": "pv", "template": "sdm630", "port": port, "profile": "solar", "peak_kw": 100}], clock)
    dev = farm.devices[0]

    async def energy() -> tuple[float, float]:
        regs = await farm.handle(port, 1, 4, 72, 4)
        assert isinstance(regs, list)
        return (codec.decode([int(x) for x in regs[0:2]], "float32"), codec.decode([int(x) for x in regs[2:4]], "float32"))

    imp0, exp0 = await energy()
    t0 = clock.t
    clock.t = t0 + timedelta(hours=8)
    imp1, exp1 = await energy()
    exported = exp1 - exp0
    assert exported > 100  # a July morning on 100 kW of panels
    expected = -Profile.create("solar", seed=dev.seed, peak_kw=dev.profile.peak_kw).energy_kwh(t0, clock.t)
    assert (exported - (imp1 - imp0)) == pytest.approx(expected, rel=1e-3)  # float32 registers


@pytest.mark.slow
async def test_ten_thousand_meters_in_one_process() -> None:
    # 100 gateways x 100 meters, each gateway on its own free port
    ports = [free_port() for _ in range(100)]
    if len(set(ports)) < 100:
        ports = list(dict.fromkeys(ports))
        while len(ports) < 100:
            p = free_port()
            if p not in ports:
                ports.append(p)
    clock = SystemClock()
    groups = [{"name": "m{n:05d}", "template": "sdm630", "count": 100, "start": 1 + 100 * k, "port": port,
               "units_per_port": 100, "profile": {"residential": 0.8, "commercial": 0.2}}
              for k, port in enumerate(ports)]
    farm = make_farm(groups, clock)
    assert len(farm.devices) == 10_000 and len(farm.ports) == 100
    pick = random.Random(4).sample(farm.devices, 20)
    src = make_source([{"name": d.name, "template": "sdm630", "options": {"port": d.port, "unit_id": d.unit}}
                       for d in pick])
    ctx, _ = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        samples = by_key(await drv.read_all())
    for d in pick:
        assert samples[f"{d.name}.serial_number"].value == d.serial
        assert samples[f"{d.name}.voltage_l1"].quality == Quality.GOOD


async def test_run_simulator_writes_labels_and_applies_faults(tmp_path: Path) -> None:
    port = free_port()
    start = datetime(2026, 3, 2, tzinfo=UTC)
    clock = AcceleratedClock(start, speed=1.0)
    cfg = {
        "kind": "modbus", "config_dir": str(tmp_path), "templates": [TEMPLATES], "labels": "labels.jsonl",
        "groups": [{"name": "m{n}", "template": "sdm630", "count": 3, "port": port}],
        "faults": {"rate_per_day": 0, "items": [
            {"point": "m2", "kind": "offline", "start": "2026-03-01T00:00:00Z", "duration_s": 10 * 86400},
            {"point": "m3.voltage_l1", "kind": "sag", "start": "2026-03-01T00:00:00Z", "duration_s": 10 * 86400,
             "magnitude": 0.5},
        ]},
    }
    stop = asyncio.Event()
    task = asyncio.create_task(run_simulator(cfg, clock, stop))
    try:
        await until(lambda: (tmp_path / "labels.jsonl").exists(), 30, "labels file")
        labels = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
        assert labels == [
            {"point": "m2", "start": "2026-03-01T00:00:00Z", "end": "2026-03-11T00:00:00Z", "kind": "offline"},
            {"point": "m3.voltage_l1", "start": "2026-03-01T00:00:00Z", "end": "2026-03-11T00:00:00Z", "kind": "sag"},
        ]
        src = make_source([{"name": "m{n}", "count": 3, "template": "sdm630", "options": {"port": port, "unit_id": "{n}"}}],
                          options={"timeout_s": 1.0})
        ctx, _ = make_ctx(clock)

        async def up() -> bool:
            try:
                async with connected(port):
                    return True
            except Exception:
                return False

        await until(up, 30, "the farm to listen")
        async with create_driver(src, ctx) as drv:
            s = by_key(await drv.read_all())
        assert s["m1.voltage_l1"].quality == Quality.GOOD
        assert s["m2.voltage_l1"].quality == Quality.COMM_FAIL
        assert 100 < s["m3.voltage_l1"].value < 130  # sagged to half
        assert 200 < s["m3.voltage_l2"].value < 260
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


@pytest.mark.slow
async def test_tshark_decodes_the_farm_traffic_without_malformed_packets(tmp_path: Path) -> None:
    tshark, dumpcap = shutil.which("tshark"), shutil.which("dumpcap")
    if tshark is None or dumpcap is None:
        pytest.skip("tshark not installed (Debian package tshark)")
    port = free_port()
    pcap = tmp_path / "farm.pcapng"
    cap = await asyncio.create_subprocess_exec(dumpcap, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap),
                                               stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        live = await asyncio.to_thread(wait_capture_live, pcap, port, lambda: cap.returncode is None)
        if not live:
            if cap.returncode is None:
                cap.terminate()
            err = (await cap.stderr.read()).decode() if cap.stderr else ""
            pytest.skip(f"cannot capture on lo (needs root or CAP_NET_RAW): {err.strip()[:200]}")
        clock = SystemClock()
        farm = make_farm([
            {"name": "s{n}", "template": "sdm630", "count": 3, "port": port, "bad_addresses": [2]},
            {"name": "i{n}", "template": "iem3255", "count": 2, "port": port, "unit_start": 10},
            {"name": "g{n}", "template": "gw-tariff", "count": 2, "port": port, "unit_start": 20},
        ], clock)
        src = make_source([
            {"name": "s{n}", "count": 3, "template": "sdm630", "options": {"port": port, "unit_id": "{n}"}},
            {"name": "i{n}", "count": 2, "template": "iem3255", "options": {"port": port, "unit_id": "{n+9}"}},
            {"name": "g{n}", "count": 2, "template": "gw-tariff", "options": {"port": port, "unit_id": "{n+19}"}},
        ])
        ctx, _ = make_ctx(clock)
        async with farm, create_driver(src, ctx) as drv:
            await drv.read_all()
            await drv.read_all()
        await asyncio.sleep(1.0)
    finally:
        if cap.returncode is None:
            cap.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(cap.wait(), 20)
            except TimeoutError:
                cap.kill()
                await cap.wait()
    requests = ctx.health.counters["requests"]

    def count(display_filter: str) -> int:
        out = subprocess.run([tshark, "-r", str(pcap), "-d", f"tcp.port=={port},mbtcp", "-Y", display_filter],
                             capture_output=True, text=True, timeout=120, env={**os.environ, "LC_ALL": "C"})
        assert out.returncode == 0, out.stderr
        return len([line for line in out.stdout.splitlines() if line.strip()])

    queries = count(f"mbtcp && tcp.dstport == {port}")
    answers = count(f"mbtcp && tcp.srcport == {port}")
    assert queries >= requests > 0 and answers >= requests
    assert count("_ws.malformed") == 0
    assert count("modbus.exception_code == 2") >= 3  # the bad register of each SDM630, while splitting


async def test_a_late_answer_never_carries_the_next_requests_ids() -> None:
    # two slow meters behind one gateway; the first request times out and the second is sent
    # while the first's answer is still pending: that answer must not pass for the second's
    port = free_port()
    farm = make_farm([{"name": "slow{n}", "template": "sdm630", "count": 2, "port": port, "latency_ms": 800}],
                     SystemClock())
    async with farm, connected(port) as c:
        with pytest.raises(RequestTimeout):
            await c.read("holding", 64512, 2, 1, 0.2)
        regs = await c.read("holding", 64512, 2, 2, 10)
        assert codec.decode(regs, "uint32") == farm.by_name["slow2"].serial != farm.by_name["slow1"].serial
