"""The MQTT head-end simulator against a real mosquitto, read by the GridWatch driver and by
mosquitto_sub; faults are labelled as injected and deterministic for a seed."""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.mqtt import HeadEnd, HeadEndConfig, read_labels, run_simulator
from tests.conftest import Broker
from tests.protocols.mqtt.support import Consumer, make_driver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

T0 = datetime(2026, 3, 1, tzinfo=UTC)
PER_METER = {"pattern": "amr/+meter/readings", "json": {"timestamp_format": "iso8601"}}
BATCH = {"pattern": "amr/headend/+/batch", "json": {"readings": "readings", "timestamp": "$.ts",
                                                    "ids": {"meter": "meter"}}}
SPARKPLUG = {"pattern": "spBv1.0/amr/#", "format": "sparkplug"}


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown key"):
        HeadEndConfig.from_dict({"meterz": 3})
    with pytest.raises(ValueError, match=r"faults\.spike"):
        HeadEndConfig.from_dict({"faults": {"spike": 0.1}})


async def test_json_feed_with_labelled_faults(mqtt_broker: Broker, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    faults = {"late": 0.1, "duplicate": 0.1, "out_of_order": 0.1, "corrupt": 0.1}
    cfg = HeadEndConfig(port=mqtt_broker.port, meters=30, faults=faults, late_s=0.2, labels=str(labels), seed=3,
                        fields=("voltage_l1", "active_power_total", "energy_import_active"))
    dead: list[tuple[str, str, bytes]] = []
    async with Consumer(make_driver(mqtt_broker.port, [PER_METER], dead=dead, name="amr-json")) as c:
        async with HeadEnd(cfg) as h:
            sent = [await h.cycle(T0), await h.cycle(T0 + timedelta(minutes=15))]
            await h.flush()
        expected = {(k, ts, v) for p in sent for k, (v, ts) in p.readings.items() if k not in p.lost}
        lost = {(k, ts) for p in sent for k, (v, ts) in p.readings.items() if k in p.lost}
        await wait_until(lambda: expected <= {(s.key, s.device_ts, s.value) for s in c.samples},
                         what="every uncorrupted reading")
        got = Counter((s.key, s.device_ts) for s in c.samples)
        assert not (set(got) & lost)  # corrupted messages yield nothing ...
        rows = read_labels(labels)
        kinds = Counter(r["kind"] for r in rows)
        assert set(kinds) == {"late", "duplicate", "out_of_order", "corrupt"}
        n_corrupt_msgs = kinds["corrupt"] // 3  # 3 fields per meter message
        await wait_until(lambda: len(dead) >= n_corrupt_msgs, what="dead letters of corrupted messages")
        assert len(dead) == n_corrupt_msgs and c.health.counters["decode_errors"] == n_corrupt_msgs
        for r in rows:
            key, ts = r["point"].replace(".", "/"), datetime.fromisoformat(r["start"])
            assert datetime.fromisoformat(r["end"]) - ts == timedelta(seconds=cfg.interval_s)
            if r["kind"] == "duplicate":
                await wait_until(lambda key=key, ts=ts: got.update() or Counter(
                    (s.key, s.device_ts) for s in c.samples)[(key, ts)] == 2, what=f"duplicate of {key}")
            elif r["kind"] == "corrupt":
                assert (key, ts) in lost


async def test_faults_are_deterministic_for_a_seed(mqtt_broker: Broker, tmp_path: Path) -> None:
    outs = []
    for run in range(2):
        labels = tmp_path / f"labels{run}.jsonl"
        cfg = HeadEndConfig(port=mqtt_broker.port, meters=20, seed=9, labels=str(labels), client_id=f"sim{run}",
                            faults={"duplicate": 0.2, "corrupt": 0.2})
        async with HeadEnd(cfg) as h:
            p = await h.cycle(T0)
        outs.append((p.readings, read_labels(labels)))
    assert outs[0] == outs[1]
    assert outs[0][1]


async def test_value_faults_from_the_shared_fault_plan(mqtt_broker: Broker, tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    window = {"start": "2026-03-01T00:00:00Z", "duration_s": 900}
    cfg = HeadEndConfig.from_dict({"port": mqtt_broker.port, "meters": 3, "labels": "labels.jsonl",
                                   "config_dir": str(tmp_path), "kind": "mqtt", "fields": ["voltage_l1", "frequency"],
                                   "value_faults": [{"point": "m00001.voltage_l1", "kind": "spike", **window},
                                                    {"point": "m00002", "kind": "offline", **window}]})
    async with Consumer(make_driver(mqtt_broker.port, [PER_METER], name="amr-vf")) as c:
        async with HeadEnd(cfg) as h:
            faulty = await h.cycle(T0)
            clean = await h.cycle(T0 + timedelta(minutes=15))
        assert not any(k.startswith("m00002/") for k in faulty.readings)
        assert faulty.readings["m00001/voltage_l1"][0] > 5 * clean.readings["m00001/voltage_l1"][0]
        expected = {(k, ts, v) for p in (faulty, clean) for k, (v, ts) in p.readings.items()}
        await wait_until(lambda: expected <= {(s.key, s.device_ts, s.value) for s in c.samples}, what="readings")
    assert {(r["point"], r["kind"]) for r in read_labels(labels)} == {("m00001.voltage_l1", "spike"),
                                                                      ("m00002", "offline")}


async def test_batch_and_sparkplug_feeds_reach_the_driver(mqtt_broker: Broker) -> None:
    cfg = HeadEndConfig(port=mqtt_broker.port, meters=25, formats=("json", "sparkplug"), mode="batch", batch_size=10)
    async with Consumer(make_driver(mqtt_broker.port, [BATCH, SPARKPLUG], name="amr-batch")) as c:
        async with HeadEnd(cfg) as h:
            p = await h.cycle(T0)
        expected = {(k, ts, v) for k, (v, ts) in p.readings.items()}
        assert len(expected) == 25 * len(cfg.fields) * 2
        await wait_until(lambda: expected <= {(s.key, s.device_ts, s.value) for s in c.samples},
                         what="every batch and Sparkplug reading")
        assert c.health.counters["sequence_gaps"] == 0 and c.health.counters["decode_errors"] == 0
        # the head-end's NDEATH (on close) marks every device point not topical
        await wait_until(lambda: c.health.links.get("amr/headend1") == "down", what="NDEATH")
        await wait_until(lambda: sum(1 for s in c.samples if not s.quality.is_good) == 25 * len(cfg.fields),
                         what="death-marked points")


async def test_mosquitto_sub_sees_the_feed(mqtt_broker: Broker) -> None:
    exe = shutil.which("mosquitto_sub")
    if exe is None:
        pytest.skip("mosquitto_sub not installed (Debian package mosquitto-clients)")
    proc = await asyncio.create_subprocess_exec(exe, "-h", "127.0.0.1", "-p", str(mqtt_broker.port), "-t", "amr/#",
                                                "-v", "-C", "5", "-q", "1", "-W", "60",
                                                stdout=asyncio.subprocess.PIPE)
    try:
        stop = asyncio.Event()
        cfg = {"port": mqtt_broker.port, "meters": 5, "interval_s": 1.0}

        async def feed() -> None:  # keeps publishing until mosquitto_sub has its 5 messages
            await run_simulator(cfg, lambda: datetime.now(UTC), stop)

        task = asyncio.create_task(feed())
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        stop.set()
        await asyncio.wait_for(task, 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    lines = out.decode().splitlines()
    assert len(lines) == 5
    topic, body = lines[0].split(" ", 1)
    assert topic.startswith("amr/m0000") and topic.endswith("/readings") and '"voltage_l1"' in body
