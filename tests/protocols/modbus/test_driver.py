"""The Modbus driver against the real pymodbus meter farm on 127.0.0.1 free ports."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import statistics
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.clock import AcceleratedClock, SystemClock
from core.errors import DriverError
from core.records import Quality, RawSample
from protocols.modbus import create_driver
from protocols.modbus.driver import ModbusDriver
from tests.conftest import free_port
from tests.protocols.modbus.helpers import by_key, make_ctx, make_farm, make_source, until

pytestmark = pytest.mark.integration

ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]
TYPE_VALUES = {
    "int16": -12345.0, "uint16": 54321.0, "int32": -123456789.0, "uint32": 3_000_000_000.0,
    "int64": -1_234_567_890_123.0, "uint64": float(2**63 + 2**40), "float32": 123.456, "float64": -9876.54321,
}
WORDS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4, "float64": 4}


def _types_template(tmp_path: Path) -> tuple[str, dict[str, float]]:
    lines = ['[[templates]]\nname = "types"\nkind = "modbus"\n']
    values: dict[str, float] = {}
    addr = 0
    for order in ORDERS:
        for dtype, v in TYPE_VALUES.items():
            name = f"{dtype}_{order.lower()}"
            lines.append(f'[[templates.points]]\nname = "{name}"\n'
                         f'options = {{ address = {addr}, type = "{dtype}", byte_order = "{order}" }}\n')
            values[name] = v
            addr += WORDS[dtype]
    # scaled point: the driver reports raw registers, scale is the collector's job
    lines.append(f'[[templates.points]]\nname = "scaled"\nscale = 0.01\noptions = {{ address = {addr}, type = "int32" }}\n')
    values["scaled"] = 231.45
    addr += 2
    for bit, on in ((0, 1.0), (5, 1.0), (9, 0.0), (15, 1.0)):
        lines.append(f'[[templates.points]]\nname = "bit{bit}"\nkind = "status"\n'
                     f'options = {{ address = {addr}, type = "bitfield", bit = {bit} }}\n')
        values[f"bit{bit}"] = on
    addr += 1
    lines.append(f'[[templates.points]]\nname = "label_text"\nkind = "status"\n'
                 f'options = {{ address = {addr}, type = "string", length = 11 }}\n')
    lines.append('[[templates.points]]\nname = "relay"\nkind = "status"\noptions = { table = "coil", address = 3, type = "bool" }\n')
    lines.append('[[templates.points]]\nname = "door"\nkind = "status"\noptions = { table = "discrete", address = 7, type = "bool" }\n')
    lines.append('[[templates.points]]\nname = "ir16"\noptions = { table = "input", address = 10, type = "int16" }\n')
    values.update({"relay": 1.0, "door": 0.0, "ir16": -7.0})
    path = tmp_path / "types.toml"
    path.write_text("\n".join(lines))
    return str(path), values


@contextlib.asynccontextmanager
async def running(drv: ModbusDriver) -> AsyncIterator[tuple[ModbusDriver, asyncio.Queue[list[RawSample]]]]:
    """Drive samples() in a task; batches land in the queue."""
    q: asyncio.Queue[list[RawSample]] = asyncio.Queue()

    async def pump() -> None:
        async for b in drv.samples():
            q.put_nowait(list(b.samples))

    async with drv:
        task = asyncio.create_task(pump())
        try:
            yield drv, q
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_every_data_type_and_byte_order(tmp_path: Path) -> None:
    tpl, values = _types_template(tmp_path)
    port = free_port()
    clock = SystemClock()
    farm = make_farm([{"name": "t{n}", "template": "types", "count": 2, "port": port, "values": values,
                       "units_per_port": 10}], clock, templates=[tpl])
    src = make_source([{"name": "t{n}", "count": 2, "template": "types", "options": {"port": port, "unit_id": "{n}"}}],
                      extra_templates=[tpl])
    ctx, _ = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        samples = by_key(await drv.read_all())
    for dev in ("t1", "t2"):
        for order in ORDERS:
            for dtype, v in TYPE_VALUES.items():
                s = samples[f"{dev}.{dtype}_{order.lower()}"]
                assert s.quality == Quality.GOOD, s
                if dtype == "float32":
                    assert s.value == pytest.approx(v, rel=1e-6)
                else:
                    assert s.value == v, (dtype, order, s.value)
        assert samples[f"{dev}.scaled"].value == 23145.0
        assert [samples[f"{dev}.bit{b}"].value for b in (0, 5, 9, 15)] == [1.0, 1.0, 0.0, 1.0]
        assert samples[f"{dev}.relay"].value == 1.0 and samples[f"{dev}.door"].value == 0.0
        assert samples[f"{dev}.ir16"].value == -7.0
        assert f"{dev}.label_text" not in samples  # strings are device info, not samples
        assert drv.strings[dev][f"{dev}.label_text"] == dev
    # 89 holding registers (32 typed points, scaled, bits, string) in one request, plus one
    # request each for the coil, the discrete input and the input register
    assert ctx.health.counters["requests"] == 2 * 4
    assert ctx.health.counters.get("exceptions", 0) == 0


async def test_templates_and_a_gateway_with_several_unit_ids() -> None:
    p1, p2, p3 = free_port(), free_port(), free_port()
    clock = SystemClock()
    farm = make_farm([
        {"name": "sdm{n}", "template": "sdm630", "count": 6, "port": p1, "units_per_port": 6},
        {"name": "iem{n}", "template": "iem3255", "count": 3, "port": p2, "unit_start": 10},
        {"name": "gwt{n}", "template": "gw-tariff", "count": 2, "port": p3, "profile": "solar", "peak_kw": 50},
    ], clock)
    src = make_source([
        {"name": "sdm{n}", "count": 6, "template": "sdm630", "options": {"port": p1, "unit_id": "{n}"}},
        {"name": "iem{n}", "count": 3, "template": "iem3255", "options": {"port": p2, "unit_id": "{n+9}"}},
        {"name": "gwt{n}", "count": 2, "template": "gw-tariff", "options": {"port": p3, "unit_id": "{n}"}},
    ])
    ctx, _ = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        samples = by_key(await drv.read_all())
        expected_requests = sum(len(drv.plan_for(d, 0.0)) for d in drv.devices)
    assert ctx.health.counters["requests"] == expected_requests
    assert ctx.health.counters["connects"] == 3  # one connection per gateway, shared by its units
    bad = [s for s in samples.values() if s.quality != Quality.GOOD]
    assert bad == []
    for fd in farm.devices:
        # every unit behind the gateway answered with its own registers
        assert samples[f"{fd.name}.serial_number"].value == fd.serial
        for ph in ("l1", "l2", "l3"):
            assert 200 < samples[f"{fd.name}.voltage_{ph}"].value * (0.01 if fd.name.startswith("gwt") else 1) < 260
        assert fd.meter is not None
        kwh = fd.meter.totals.imp_p
        raw = samples[f"{fd.name}.energy_import_active"].value
        scale = 1.0 if fd.name.startswith("sdm") else 0.001
        assert raw * scale == pytest.approx(kwh, rel=1e-3, abs=0.01)
    assert samples["iem2.active_tariff"].value in (1.0, 2.0, 3.0)
    assert drv.strings["iem1"]["iem1.model_name"] == "iEM3255"


async def test_illegal_address_is_split_out_remembered_and_reported() -> None:
    port = free_port()
    clock = SystemClock()
    # voltage_l2 of the SDM630 lives at input register 3 -> PDU 2..3
    farm = make_farm([{"name": "d{n}", "template": "sdm630", "count": 2, "port": port, "bad_addresses": [2]}], clock)
    src = make_source([{"name": "d{n}", "count": 2, "template": "sdm630", "options": {"port": port, "unit_id": "{n}"}}])
    ctx, journal = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        first = by_key(await drv.read_all())
        c1 = dict(ctx.health.counters)
        second = by_key(await drv.read_all())
        c2 = dict(ctx.health.counters)
        await until(lambda: len([e for e in journal.events if e.kind == "data"]) >= 2, 30, "events")
    for samples in (first, second):
        for dev in ("d1", "d2"):
            assert samples[f"{dev}.voltage_l2"].quality == Quality.COMM_FAIL
            assert math.isnan(samples[f"{dev}.voltage_l2"].value)
            assert samples[f"{dev}.voltage_l1"].quality == Quality.GOOD
            assert samples[f"{dev}.voltage_l3"].quality == Quality.GOOD
            assert samples[f"{dev}.energy_import_active"].quality == Quality.GOOD
    assert c1["exception_code_2"] >= 2 and c1["illegal_addresses"] == 2 and c1["splits"] >= 2
    # the second cycle leaves the bad register out: no new exceptions
    assert c2["exception_code_2"] == c1["exception_code_2"]
    assert c2["illegal_addresses"] == 2
    msgs = [e.message for e in journal.events if e.kind == "data"]
    assert any("d1" in m and "input 2..3" in m and "illegal data address" in m and "d1.voltage_l2" in m for m in msgs)
    assert drv.device_state("d1") == "up"


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.mark.slow
@pytest.mark.parametrize("shared_gateway", [False, True])
async def test_a_device_that_never_answers_does_not_delay_the_others(shared_gateway: bool) -> None:
    p_ok, p_dead = free_port(), free_port()
    clock = SystemClock()
    groups = [{"name": "ok{n}", "template": "sdm630", "count": 3, "port": p_ok, "units_per_port": 10}]
    if shared_gateway:
        groups[0] = {**groups[0], "count": 4, "silent_devices": ["ok4"]}
    else:
        groups.append({"name": "dead{n}", "template": "sdm630", "count": 1, "port": p_dead, "silent": 1.0})
    farm = make_farm(groups, clock)
    devices = [{"name": "ok{n}", "count": 3, "template": "sdm630", "options": {"port": p_ok, "unit_id": "{n}"}}]
    dead = "ok4" if shared_gateway else "dead1"
    devices.append({"name": dead, "template": "sdm630",
                    "options": {"port": p_ok if shared_gateway else p_dead, "unit_id": 4 if shared_gateway else 1}})
    # interval 1 s, timeout 4 s: a healthy device delayed by the dead one would read every >= 4 s
    src = make_source(devices, options={"interval_s": 1.0, "timeout_s": 4.0, "stagger_s": 0.3,
                                        "max_connections_per_endpoint": 2 if shared_gateway else 1,
                                        "dead_probe_max_s": 2.0})
    ctx, journal = make_ctx(clock)
    seen: dict[str, list[float]] = defaultdict(list)
    quality: dict[str, set[Quality]] = defaultdict(set)
    async with farm, running(create_driver(src, ctx)) as (drv, q):
        async def enough() -> bool:
            while not q.empty():
                batch = q.get_nowait()
                dev = batch[0].key.split(".")[0]
                seen[dev].append(batch[0].received_at.timestamp())
                quality[dev] |= {s.quality for s in batch}
            return all(len(seen[f"ok{i}"]) >= 6 for i in (1, 2, 3)) and ctx.health.counters["timeouts"] >= 1

        await until(enough, 90, "six reads of every healthy meter and a timeout of the dead one")
        assert drv.device_state(dead) == "down"
    for i in (1, 2, 3):
        gaps = _gaps(seen[f"ok{i}"])
        assert statistics.median(gaps) < 3.0, (i, gaps)  # 1 s slots; blocked would be >= 4 s
        assert quality[f"ok{i}"] == {Quality.GOOD}
    assert quality[dead] == {Quality.COMM_FAIL}
    assert ctx.health.links[dead] == "down" and ctx.health.links["ok1"] == "up"
    assert any(e.kind == "link" and dead in e.message and "down" in e.message for e in journal.events)


@pytest.mark.slow
async def test_reconnects_after_the_meter_restarts() -> None:
    port = free_port()
    clock = SystemClock()
    src = make_source([{"name": "m1", "template": "gw-tariff", "options": {"port": port, "unit_id": 1}}],
                      options={"interval_s": 0.5, "stagger_s": 0, "timeout_s": 1.0, "connect_timeout_s": 1.0,
                               "backoff_initial_s": 0.2, "backoff_max_s": 0.5, "idle_close_s": 30,
                               "dead_probe_max_s": 0.5})
    ctx, journal = make_ctx(clock)
    farm = make_farm([{"name": "m1", "template": "gw-tariff", "port": port}], clock)
    qualities: list[Quality] = []
    async with running(create_driver(src, ctx)) as (drv, q):
        def drain() -> None:
            while not q.empty():
                qualities.append(q.get_nowait()[0].quality)

        async with farm:
            await until(lambda: (drain(), Quality.GOOD in qualities)[1], 30, "a good read")
        qualities.clear()
        await until(lambda: (drain(), Quality.COMM_FAIL in qualities)[1], 30, "a failed read while down")
        assert drv.device_state("m1") == "down"
        farm2 = make_farm([{"name": "m1", "template": "gw-tariff", "port": port}], clock)
        async with farm2:
            qualities.clear()
            await until(lambda: (drain(), Quality.GOOD in qualities)[1], 30, "a good read after the restart")
    assert ctx.health.counters["connects"] >= 2
    states = [e.details.get("state") for e in journal.events if e.kind == "link"]
    assert states[-2:] == ["down", "up"]


class _BadTidServer:
    """A raw Modbus TCP server: the first connection answers with a wrong transaction id."""

    def __init__(self) -> None:
        self.connections = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = self.connections
        try:
            while True:
                head = await reader.readexactly(7)
                tid = int.from_bytes(head[0:2], "big")
                length = int.from_bytes(head[4:6], "big")
                pdu = await reader.readexactly(length - 1)
                count = int.from_bytes(pdu[3:5], "big")
                body = bytes([pdu[0], 2 * count]) + b"".join((100 + k).to_bytes(2, "big") for k in range(count))
                out_tid = (tid + 7) % 65536 if conn == 1 else tid
                writer.write(out_tid.to_bytes(2, "big") + b"\x00\x00" + (len(body) + 1).to_bytes(2, "big")
                             + head[6:7] + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> _BadTidServer:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.server.wait_closed(), 5)


@pytest.mark.slow
async def test_reconnects_when_transaction_ids_fall_out_of_step(tmp_path: Path) -> None:
    tpl = tmp_path / "one.toml"
    tpl.write_text('[[templates]]\nname = "one"\nkind = "modbus"\n'
                   '[[templates.points]]\nname = "r0"\noptions = { address = 0, type = "uint16" }\n'
                   '[[templates.points]]\nname = "r1"\noptions = { address = 1, type = "uint16" }\n')
    clock = SystemClock()
    ctx, _ = make_ctx(clock)
    async with _BadTidServer() as srv:
        src = make_source([{"name": "x", "template": "one", "options": {"port": srv.port, "unit_id": 3}}],
                          options={"timeout_s": 1.0, "reconnect_after_timeouts": 2}, extra_templates=[str(tpl)])
        async with create_driver(src, ctx) as drv:
            results = []
            for _ in range(6):
                results.append(by_key(await drv.read_device("x")))
                if results[-1]["x.r0"].quality == Quality.GOOD:
                    break
    assert results[0]["x.r0"].quality == Quality.COMM_FAIL  # the stale-id answer is never taken
    last = results[-1]
    assert last["x.r0"].quality == Quality.GOOD and (last["x.r0"].value, last["x.r1"].value) == (100.0, 101.0)
    assert srv.connections >= 2
    assert ctx.health.counters["timeouts"] >= 2 and ctx.health.counters["reconnects"] >= 1


@pytest.mark.slow
async def test_counter_rollover_is_unwrapped_on_an_accelerated_clock(tmp_path: Path) -> None:
    # a 16-bit Wh counter wraps every 65.5 kWh: an industrial meter of 2 MW wraps it every ~2
    # simulated minutes, ~4.5 real seconds at x30; unwrapping survives stalls up to half that
    tpl = tmp_path / "small.toml"
    tpl.write_text('[[templates]]\nname = "small"\nkind = "modbus"\n'
                   '[[templates.points]]\nname = "energy_import_active"\nkind = "counter"\nscale = 0.001\n'
                   'options = { address = 0, type = "uint16" }\n')
    port = free_port()
    clock = AcceleratedClock(datetime(2026, 3, 2, 8, tzinfo=UTC), speed=30.0)
    farm = make_farm([{"name": "big", "template": "small", "port": port, "profile": "industrial",
                       "peak_kw": 2000.0, "peak_spread": 0.0}], clock, templates=[str(tpl)])
    src = make_source([{"name": "big", "template": "small", "options": {"port": port}}],
                      options={"interval_s": 30.0, "stagger_s": 0.0}, extra_templates=[str(tpl)])
    ctx, _ = make_ctx(clock)
    values: list[RawSample] = []
    async with farm, running(create_driver(src, ctx)) as (_drv, q):
        async def enough() -> bool:
            while not q.empty():
                values.extend(q.get_nowait())
            return sum(1 for s in values if s.quality & Quality.ROLLOVER) >= 2 and len(values) >= 12

        await until(enough, 90, "two rollovers")
    vals = [s.value for s in values]
    assert all(b > a for a, b in itertools.pairwise(vals)), vals
    assert ctx.health.counters["rollovers"] >= 2
    # the unwrapped counter grows as the meter's energy does (raw Wh)
    fd = farm.devices[0]
    assert fd.meter is not None
    kwh_growth = (vals[-1] - vals[0]) / 1000.0
    assert 0 < kwh_growth < fd.profile.peak_kw * (values[-1].received_at - values[0].received_at).total_seconds() / 3600 * 1.5


async def test_learns_reserved_gaps_and_request_length_limits() -> None:
    p1, p2 = free_port(), free_port()
    clock = SystemClock()
    farm = make_farm([
        # answers "illegal data address" for any register no point occupies
        {"name": "strict", "template": "sdm630", "port": p1, "gaps": "exception"},
        # answers "illegal data value" for reads longer than 10 registers
        {"name": "short", "template": "gw-tariff", "port": p2, "max_count": 10},
    ], clock)
    src = make_source([
        {"name": "strict", "template": "sdm630", "options": {"port": p1}},
        {"name": "short", "template": "gw-tariff", "options": {"port": p2}},
    ])
    ctx, journal = make_ctx(clock)
    async with farm, create_driver(src, ctx) as drv:
        first = await drv.read_all()
        c1 = dict(ctx.health.counters)
        second = await drv.read_all()
        c2 = dict(ctx.health.counters)
        third = await drv.read_all()
        c3 = dict(ctx.health.counters)
        await until(lambda: any("max_registers lowered" in e.message for e in journal.events), 30, "event")
    for samples in (first, second, third):
        assert {s.quality for s in samples} == {Quality.GOOD}
    assert c1["learned_holes"] >= 1 and c1["learned_limits"] >= 1
    assert c1.get("illegal_addresses", 0) == 0  # every point is readable: nothing is blacklisted
    # once learned, a cycle needs no exception at all
    assert c3["exceptions"] == c2["exceptions"]
    assert c3["requests"] - c2["requests"] <= c2["requests"] - c1["requests"]
    short = next(d for d in drv.devices if d.name == "short")
    assert short.max_registers <= 10
    assert any("strict" in e.message and "not merging across" in e.message for e in journal.events)


async def test_closing_fails_pending_manual_reads_and_reading_needs_a_running_driver() -> None:
    port = free_port()
    clock = SystemClock()
    farm = make_farm([{"name": "slow", "template": "sdm630", "port": port, "latency_ms": 3000}], clock)
    src = make_source([{"name": "slow", "template": "sdm630", "options": {"port": port}}], options={"timeout_s": 10})
    ctx, _ = make_ctx(clock)
    drv = create_driver(src, ctx)
    with pytest.raises(DriverError, match="not running"):
        await drv.read_device("slow")
    async with farm:
        async with drv:
            pending = asyncio.create_task(drv.read_device("slow"))
            await until(lambda: ctx.health.counters["requests"] >= 1, 30, "the request to go out")
        with pytest.raises(DriverError, match="closed"):
            await asyncio.wait_for(pending, 30)
        with pytest.raises(DriverError, match="no device"):
            await drv.read_device("nope")
