"""Integration: the driver against a c104 outstation on 127.0.0.1 (real IEC-104 over TCP)."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.errors import ConnectError
from core.records import Quality
from simulators.iec104 import Outstation, PointDef, Update
from simulators.iec104.outstation import SUPPORTED_TYPES
from tests.conftest import free_port
from tests.protocols.iec104.conftest import Harness, resolve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ALL = [PointDef(ca, 100 + i, t) for ca in (1, 2) for i, t in enumerate(SUPPORTED_TYPES)]


def _close(a: datetime | None, b: datetime, tol: float = 5.0) -> bool:
    return a is not None and abs((a - b).total_seconds()) < tol


async def test_gi_every_type_clock_sync_and_completeness(
        ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    for i, p in enumerate(ALL):
        p.value = float(i % 2) if p.type.startswith(("M_SP", "M_DP")) else float(i)
    sim = outstation_factory(ALL, ports[:1])
    h = harness_factory(resolve(ports[:1], [1, 2], ALL))
    await h.ready()
    keys = {f"{p.ca}/{p.ioa}" for p in ALL if not p.type.startswith("M_IT")}
    await h.wait(lambda: keys <= {s.key for s in h.samples}, "every point from GI")
    assert h.health.counters["gi_incomplete"] == 0
    assert {ca for ca, _, _ in h.driver.gi_results} == {1, 2}
    assert all(n == len(SUPPORTED_TYPES) - 2 for _, n, _ in h.driver.gi_results)
    for ca in (1, 2):
        await h.driver.counter_interrogation(ca, "read")
    keys = {f"{p.ca}/{p.ioa}" for p in ALL}
    await h.wait(lambda: keys <= {s.key for s in h.samples}, "counters from counter interrogation")
    for p in ALL:
        s = h.by_key(f"{p.ca}/{p.ioa}")[0]
        expect = p.value / 32768 * 32768 if "ME_NA" not in p.type and "ME_TD" not in p.type else None
        if expect is not None:
            assert s.value == expect, p
    await h.wait(lambda: len(sim.clock_syncs) >= 2 and h.health.counters["clock_syncs"] >= 2, "clock sync per CA")
    assert h.health.links == {"rtu/ep0": "up"}
    assert h.health.counters["unmapped"] == 0
    assert any("up" in e.message for e in h.journal.events)


async def test_gi_incomplete_is_reported(ports: list[int], outstation_factory: Callable[..., Outstation],
                                         harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, i) for i in range(1, 6)]
    outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], [*pts, PointDef(1, 99)]))
    await h.wait(lambda: h.health.counters["gi_incomplete"] >= 1, "gi_incomplete")
    assert "1 of 6 expected points missing" in h.health.last_error


async def test_spontaneous_with_and_without_time_tag(
        ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1, "M_ME_NC_1"), PointDef(1, 2, "M_ME_TF_1"), PointDef(1, 3, "M_SP_TB_1"),
           PointDef(1, 4, "M_ME_NB_1", deadband=5.0)]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts))
    await h.ready()
    n0 = len(h.samples)
    t_dev = datetime.now(UTC).replace(microsecond=123000) - timedelta(seconds=30)
    await asyncio.to_thread(sim.update_many, [Update(1, 1, 42.25), Update(1, 2, -7.5, ts=t_dev),
                                              Update(1, 3, 1.0, ts=t_dev), Update(1, 4, 3.0)])
    await h.wait(lambda: len(h.by_key("1/2")) >= 2 and len(h.by_key("1/1")) >= 2, "spontaneous values")
    s1 = h.by_key("1/1")[-1]
    assert (s1.value, s1.device_ts) == (42.25, None)
    s2 = h.by_key("1/2")[-1]
    assert s2.value == -7.5 and s2.device_ts == t_dev and s2.device_ts.tzinfo is not None
    assert h.by_key("1/3")[-1].device_ts == t_dev
    # deadband 5: 3.0 was not sent (from 0.0), 9.0 is
    await asyncio.to_thread(sim.update, 1, 4, 9.0)
    await h.wait(lambda: any(s.key == "1/4" and s.value == 9.0 for s in h.samples), "value beyond deadband")
    assert not any(s.key == "1/4" and s.value == 3.0 for s in h.samples[n0:])
    assert "clock_skew_s:1" in h.health.gauges


async def test_every_quality_flag(ports: list[int], outstation_factory: Callable[..., Outstation],
                                  harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1, "M_ME_TF_1"), PointDef(1, 2, "M_SP_NA_1"), PointDef(1, 3, "M_IT_TB_1")]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts))
    await h.ready()
    qds = [Quality.OVERFLOW, Quality.BLOCKED, Quality.SUBSTITUTED, Quality.NOT_TOPICAL, Quality.INVALID]
    for i, q in enumerate(qds):
        await asyncio.to_thread(sim.update, 1, 1, float(i + 1), int(q))
        await asyncio.to_thread(sim.update, 1, 2, float((i + 1) % 2), int(q) & 0xF0)
    for i, bits in enumerate((0x20, 0x40, 0x80)):
        await asyncio.to_thread(sim.update, 1, 3, float(100 + i), bits)
    await h.wait(lambda: len(h.by_key("1/1")) >= 6 and len(h.by_key("1/2")) >= 6 and len(h.by_key("1/3")) >= 3, "quality updates")
    got = {s.value: s.quality for s in h.by_key("1/1")}
    for i, q in enumerate(qds):
        assert got[float(i + 1)] == q
    assert [s.quality for s in h.by_key("1/2")[-4:]] == [Quality.BLOCKED, Quality.SUBSTITUTED,
                                                          Quality.NOT_TOPICAL, Quality.INVALID]
    got = {s.value: s.quality for s in h.by_key("1/3")}
    assert (got[100.0], got[101.0], got[102.0]) == (Quality.CARRY, Quality.ADJUSTED, Quality.INVALID)


async def test_counter_interrogation_modes(ports: list[int], outstation_factory: Callable[..., Outstation],
                                           harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(3, 1, "M_IT_NA_1", value=1000.0), PointDef(3, 2, "M_IT_TB_1", value=2000.0),
           PointDef(3, 3, "M_ME_NC_1")]
    outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [3], pts, counter_mode="off"))
    await h.ready()
    n0 = len(h.samples)
    for mode in ("read", "freeze_read", "freeze_reset_read"):
        await h.driver.counter_interrogation(3, mode)
    await h.wait(lambda: any(s.key == "3/1" for s in h.samples[n0:]), "counter values")
    new = h.samples[n0:]
    assert {s.key for s in new} <= {"3/1", "3/2"}
    assert next(s.value for s in new if s.key == "3/1") == 1000.0


async def test_mixed_type_ioa(ports: list[int], outstation_factory: Callable[..., Outstation],
                              harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 10, "M_ME_NC_1", mixed=True, value=5.0), PointDef(1, 11, "M_ME_NC_1")]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts))
    await h.ready()
    first = h.by_key("1/10")[0]
    assert first.value == 5.0 and first.device_ts is None  # GI: M_ME_NC_1
    await asyncio.to_thread(sim.update, 1, 10, 6.5)
    await h.wait(lambda: any(s.key == "1/10" and s.value == 6.5 for s in h.samples), "tagged spontaneous")
    s = next(s for s in h.samples if s.key == "1/10" and s.value == 6.5)
    assert _close(s.device_ts, datetime.now(UTC))  # M_ME_TF_1 with CP56Time2a
    assert h.health.counters["mismatched_type"] == 1
    n = len(h.by_key("1/10"))
    assert await h.driver.interrogate(1)  # the outstation still answers GI untagged
    await h.wait(lambda: len(h.by_key("1/10")) > n, "GI answer handed over")
    assert h.by_key("1/10")[-1].device_ts is None


async def test_unmapped_counted_once(ports: list[int], outstation_factory: Callable[..., Outstation],
                                     harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1), PointDef(1, 2)]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts[:1]))
    await h.ready()
    await asyncio.to_thread(sim.update, 1, 2, 3.0)
    await h.wait(lambda: len(h.by_key("1/2")) >= 2, "unmapped point samples")
    assert h.health.counters["unmapped"] == 1


async def test_switch_over_no_gap_no_duplicates(
        ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1, "M_ME_TF_1"), PointDef(1, 2, "M_ME_NC_1")]
    sim = outstation_factory(pts, ports)
    h = harness_factory(resolve(ports, [1], pts, switch_back=True, switch_back_delay_s=0.5))
    await h.ready()
    await h.wait(lambda: h.health.links.get("rtu/ep0") == "up" and h.health.links.get("rtu/ep1") == "standby",
                 "main active, reserve on standby")
    before = h.health.counters["switchovers"]
    stop = threading.Event()

    def stream() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            sim.update_many([Update(1, 1, float(i)), Update(1, 2, float(i))])
            time.sleep(0.02)

    th = threading.Thread(target=stream, daemon=True)
    th.start()
    try:
        await h.wait(lambda: len(h.by_key("1/1")) >= 30, "stream on main")
        killed_at = datetime.now(UTC)
        await asyncio.to_thread(sim.kill, 0)
        await h.wait(lambda: h.health.counters["switchovers"] == before + 1, "switch-over")
        await h.wait(lambda: any(s.received_at > killed_at + timedelta(seconds=1) for s in h.by_key("1/1")),
                     "stream on reserve")
        n = len(h.by_key("1/1"))
        await h.wait(lambda: len(h.by_key("1/1")) >= n + 30, "more on reserve")
    finally:
        stop.set()
        th.join()
    assert h.health.links["rtu/ep1"] == "up"
    assert h.health.links["rtu/ep0"] == "down"
    tagged = h.by_key("1/1")
    stamps = [s.device_ts for s in tagged]
    assert all(t is not None for t in stamps)
    assert len(set(stamps)) == len(stamps), "duplicate time-tagged samples"
    assert stamps == sorted(stamps)  # type: ignore[type-var]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(stamps)]  # type: ignore[operator]
    # The switch itself takes ~0.1-0.5 s; allow generously for a loaded machine.
    assert max(gaps) < 10.0
    assert any(e.message.startswith("switch-over") for e in h.journal.events)


async def test_switch_back_to_main(ports: list[int], outstation_factory: Callable[..., Outstation],
                                   harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1)]
    sim = outstation_factory(pts, ports)
    h = harness_factory(resolve(ports, [1], pts, switch_back=True, switch_back_delay_s=1.0))
    await h.ready()
    await h.wait(lambda: h.health.links.get("rtu/ep0") == "up" and h.health.links.get("rtu/ep1") == "standby",
                 "main active, reserve on standby")
    before = h.health.counters["switchovers"]
    await asyncio.to_thread(sim.kill, 0)
    await h.wait(lambda: h.health.links.get("rtu/ep1") == "up", "reserve active")
    await asyncio.to_thread(sim.restart, 0)
    await h.wait(lambda: h.health.links.get("rtu/ep0") == "up" and h.health.links.get("rtu/ep1") == "standby",
                 "main active again, reserve on standby")
    assert h.health.counters["switchovers"] - before == 2


async def test_reconnect_after_outstation_restart(
        ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1)]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts, down_grace_s=60))
    await h.ready()
    await asyncio.to_thread(sim.kill, 0)
    await h.wait(lambda: h.health.links.get("rtu/ep0") == "down", "link down")
    sim.points[(1, 1)].value = 77.0
    await asyncio.to_thread(sim.restart, 0)
    await h.wait(lambda: h.health.counters["reconnects"] >= 1, "reconnect")
    await h.wait(lambda: any(s.value == 77.0 for s in h.by_key("1/1")), "GI after reconnect")
    assert h.error is None


async def test_stuck_open_muted_is_unmuted(ports: list[int], outstation_factory: Callable[..., Outstation],
                                           harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, 1)]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts))
    await h.ready()
    # Reproduce the defect's end state: the active link sits in OPEN_MUTED (no STARTDT).
    link = h.driver.rtus[0].active
    assert link is not None
    await asyncio.to_thread(link.conn.mute)
    await h.wait(lambda: h.health.counters["muted_watchdog"] >= 1, "watchdog")
    await h.wait(lambda: link.state == "OPEN", "link open again")
    await asyncio.to_thread(sim.update, 1, 1, 12.0)
    await h.wait(lambda: any(s.value == 12.0 for s in h.by_key("1/1")), "data after unmute")


async def test_all_links_down_raises_connect_error() -> None:
    h = Harness(resolve([free_port(), free_port()], [1], connect_timeout_s=1.0))
    h.start()
    try:
        await h.wait(lambda: h.error is not None, "ConnectError")
        assert isinstance(h.error, ConnectError)
        assert "all links down" in str(h.error)
        assert set(h.health.links.values()) == {"down"}
    finally:
        await h.stop()


async def test_backpressure_bounded_and_lossless(
        ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    pts = [PointDef(1, i) for i in range(1, 501)]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts, max_pending=1000))
    await h.ready()
    h.consume_delay = 0.3  # a slow consumer
    n0 = len(h.samples)
    rounds = 12
    for r in range(rounds):
        await asyncio.to_thread(sim.update_many, [Update(1, i, float(r * 1000 + i)) for i in range(1, 501)])
    await h.wait(lambda: len(h.samples) - n0 >= rounds * 500, "every update", timeout=60)
    assert len(h.samples) - n0 == rounds * 500
    assert sim.lost == 0
    assert h.health.counters["backpressure_waits"] > 0
    assert h.driver.pending_high <= 1000 + 127  # bounded: at most one ASDU above max_pending


@pytest.fixture
def almaty_tz() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Almaty"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()


async def test_device_time_is_utc_under_non_utc_tz(
        almaty_tz: None, ports: list[int], outstation_factory: Callable[..., Outstation],
        harness_factory: Callable[..., Harness]) -> None:
    assert time.localtime().tm_gmtoff != 0
    pts = [PointDef(1, 1, "M_ME_TF_1"), PointDef(1, 2, "M_IT_TB_1")]
    sim = outstation_factory(pts, ports[:1])
    h = harness_factory(resolve(ports[:1], [1], pts))
    await h.ready()
    t_dev = datetime(2026, 6, 30, 23, 59, 58, 500000, tzinfo=UTC)
    await asyncio.to_thread(sim.update_many, [Update(1, 1, 1.0, ts=t_dev), Update(1, 2, 5.0)])
    await h.wait(lambda: len(h.by_key("1/1")) >= 2 and len(h.by_key("1/2")) >= 1, "tagged values")
    assert h.by_key("1/1")[-1].device_ts == t_dev
    assert _close(h.by_key("1/2")[-1].device_ts, datetime.now(UTC))


async def test_counter_interrogation_at_clock_boundaries_and_periodic_gi(
        ports: list[int], outstation_factory: Callable[..., Outstation]) -> None:
    pts = [PointDef(4, 1, "M_IT_TB_1", value=10.0), PointDef(4, 2, "M_ME_NC_1")]
    outstation_factory(pts, ports[:1])
    shift = [timedelta(0)]
    h = Harness(resolve(ports[:1], [4], pts, counter_mode="freeze_read", counter_interval_min=15,
                        gi_interval_min=0.02))
    h.ctx.clock = lambda: datetime.now(UTC) + shift[0]
    h.start()
    try:
        await h.ready()
        assert not h.by_key("4/1")  # integrated totals are not part of GI
        now = datetime.now(UTC)
        shift[0] = timedelta(minutes=15)  # the (simulated) clock crosses a 15-minute boundary
        await h.wait(lambda: len(h.by_key("4/1")) >= 1, "counter interrogation at the boundary")
        assert h.by_key("4/1")[0].value == 10.0
        assert h.by_key("4/1")[0].received_at > now + timedelta(minutes=10)
        await h.wait(lambda: len(h.driver.gi_results) >= 3, "periodic GI")
    finally:
        await h.stop()
