"""The IEC-104 outstation simulator against independent clients: tshark decodes its traffic,
and the GridWatch driver receives every object it claims to have sent."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from simulators.iec104 import Outstation, PointDef, Update, build_points, run_simulator
from simulators.iec104.outstation import SUPPORTED_TYPES, TAGGED_TWIN
from tests.conftest import free_port, wait_capture_live
from tests.protocols.iec104.conftest import Harness, resolve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_build_points_types_and_mixed_share() -> None:
    pts = build_points([1, 2], 160, mixed_share=0.5, seed=3)
    assert len(pts) == 320 and len({(p.ca, p.ioa) for p in pts}) == 320
    assert {p.type for p in pts} == set(SUPPORTED_TYPES)
    mixed = [p for p in pts if p.mixed]
    assert mixed and all(p.type in TAGGED_TWIN for p in mixed)
    with pytest.raises(ValueError, match="defined twice"):
        Outstation([PointDef(1, 1), PointDef(1, 1)], ports=[free_port()])


def _dumpcap() -> str:
    exe = shutil.which("dumpcap") or shutil.which("tshark")
    if exe is None or shutil.which("tshark") is None:
        pytest.skip("tshark not installed (Debian package tshark)")
    return exe


async def _traffic(port: int) -> None:
    """GI, counter interrogation and spontaneous values (with IV on some) between the
    simulator and the GridWatch driver."""
    pts = build_points([1, 2], 48, mixed_share=0.25, seed=5)
    sim = Outstation(pts, ports=[port])
    sim.start()
    h = Harness(resolve([port], [1, 2], pts, counter_mode="off"))
    h.start()
    try:
        await h.ready()
        for ca in (1, 2):
            await h.driver.counter_interrogation(ca, "read")
        ups = [Update(p.ca, p.ioa, p.value + 1, 0x80 if p.ioa % 7 == 0 and not p.type.startswith("M_IT") else 0)
               for p in pts]
        await asyncio.to_thread(sim.update_many, ups)
        n = len(pts)
        await h.wait(lambda: len(h.samples) >= n + n, "GI, counters and spontaneous values")
    finally:
        await h.stop()
        sim.stop()


def test_tshark_decodes_traffic_without_malformed_packets(tmp_path: Path) -> None:
    exe = _dumpcap()
    port = free_port()
    pcap = tmp_path / "iec104.pcapng"
    cap = subprocess.Popen([exe, "-q", "-i", "lo", "-f", f"tcp port {port}", "-w", str(pcap)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        if not wait_capture_live(pcap, port, lambda: cap.poll() is None):
            if cap.poll() is None:
                cap.terminate()
            err = cap.stderr.read().decode() if cap.stderr else ""
            pytest.skip(f"cannot capture on lo: {err.strip()[:200]}")
        asyncio.run(_traffic(port))
        time.sleep(1.0)
    finally:
        cap.terminate()
        cap.wait(10)
    base = ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},iec60870_104"]
    asdus = subprocess.run([*base, "-Y", "iec60870_asdu"], capture_output=True, text=True, timeout=60)
    assert asdus.returncode == 0, asdus.stderr
    assert len(asdus.stdout.splitlines()) > 10
    bad = subprocess.run([*base, "-Y", "_ws.malformed || _ws.expert.severity >= error"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.strip() == "", f"malformed packets:\n{bad.stdout[:2000]}"
    detail = subprocess.run([*base, "-O", "iec60870_asdu", "-Y", "iec60870_asdu.typeid == 36"],
                            capture_output=True, text=True, timeout=60).stdout
    assert "M_ME_TF_1" in detail  # tagged twins of mixed IOAs are on the wire


async def test_run_simulator_serves_and_stops() -> None:
    port = free_port()
    stop = asyncio.Event()
    cfg = {"ports": [port], "stations": [5], "points_per_station": 64, "rate": 200, "mixed_share": 0.2}
    task = asyncio.create_task(run_simulator(cfg, lambda: datetime.now(UTC), stop))
    h = Harness(resolve([port], [5], counter_mode="off"))
    try:
        await asyncio.sleep(0.5)
        h.start()
        await h.wait(lambda: len(h.samples) > 100, "samples from the running simulator")
        assert {s.key.split("/")[0] for s in h.samples} == {"5"}
    finally:
        await h.stop()
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_run_simulator_rejects_bad_config_naming_the_key() -> None:
    stop = asyncio.Event()
    with pytest.raises(ValueError, match="types"):
        await run_simulator({"types": ["M_XX_NA_1"]}, lambda: datetime.now(UTC), stop)
    with pytest.raises(ValueError, match="rate"):
        await run_simulator({"rate": 0}, lambda: datetime.now(UTC), stop)
    with pytest.raises(ValueError, match="colour"):
        await run_simulator({"colour": "red"}, lambda: datetime.now(UTC), stop)


async def test_background_scan_and_deadband() -> None:
    port = free_port()
    pts = [PointDef(9, i, "M_ME_NB_1", deadband=10.0, value=100.0) for i in range(1, 41)]
    sim = Outstation(pts, ports=[port])
    sim.start()
    h = Harness(resolve([port], [9], pts, counter_mode="off"))
    h.start()
    try:
        await h.ready()
        n0 = len(h.samples)
        assert await asyncio.to_thread(sim.update, 9, 1, 105.0) == 0  # within the deadband: not sent
        assert await asyncio.to_thread(sim.update, 9, 2, 111.0) == 1
        assert await asyncio.to_thread(sim.scan) == 40  # background scan: every point, multi-object ASDUs
        await h.wait(lambda: len(h.samples) >= n0 + 41, "spontaneous value and the scan")
        latest = {s.key: s.value for s in h.samples}
        assert latest["9/1"] == 105.0 and latest["9/2"] == 111.0
        assert sim.lost == 0
    finally:
        await h.stop()
        sim.stop()
