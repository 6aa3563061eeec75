"""Malformed-payload fuzzing: the driver's decode path never raises; every bad message is
counted once as decode_errors and dead-lettered once with a reason."""

from __future__ import annotations

import json
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.records import RawSample
from protocols.mqtt.sparkplug import DOUBLE, Metric, Payload, encode_payload
from tests.conftest import Broker
from tests.protocols.mqtt.support import Consumer, make_driver, publish, wait_until

TOPICS = [
    {"pattern": "amr/+meter/readings"},
    {"pattern": "amr/headend/+he/batch", "json": {"readings": "readings", "timestamp": "$.ts",
                                                  "ids": {"meter": "meter"}, "fields": {"p": {}, "v": {"scale": 2}}}},
    {"pattern": "spBv1.0/#", "format": "sparkplug"},
]
TOPIC_NAMES = ["amr/m1/readings", "amr/headend/h1/batch", "spBv1.0/g/NDATA/e1", "spBv1.0/g/DDATA/e1/d1",
               "spBv1.0/g/NBIRTH/e1", "spBv1.0/g/DBIRTH/e1/d1", "spBv1.0/g/NDEATH/e1", "other/topic"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["ts", "p", "v", "meter", "readings", "x"]) | st.text(max_size=5), inner, max_size=5),
    max_leaves=20)
metrics = st.builds(Metric, name=st.none() | st.text(max_size=8), alias=st.none() | st.integers(0, 2**64 - 1),
                    timestamp=st.none() | st.integers(0, 2**64 - 1), datatype=st.none() | st.integers(0, 20),
                    value=st.none() | st.floats() | st.integers(-(2**63), 2**63 - 1) | st.booleans() | st.text(max_size=5))
sparkplug_payloads = st.builds(Payload, timestamp=st.none() | st.integers(0, 2**64 - 1),
                               seq=st.none() | st.integers(0, 2**64 - 1), metrics=st.lists(metrics, max_size=4))


def _payloads() -> st.SearchStrategy[bytes]:
    def enc_sp(p: Payload) -> bytes:
        try:
            return encode_payload(p)
        except (TypeError, ValueError, OverflowError):
            return b"\x00"
    return (st.binary(max_size=200)
            | json_values.map(lambda v: json.dumps(v).encode())
            | sparkplug_payloads.map(enc_sp)
            | st.binary(max_size=50).map(lambda b: encode_payload(Payload(seq=0, metrics=[
                Metric(name="p", alias=1, datatype=DOUBLE, value=1.0)])) + b))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(TOPIC_NAMES) | st.text(max_size=20), _payloads()), min_size=1,
                max_size=8))
def test_decode_never_raises_and_counts_every_bad_message(msgs: list[tuple[str, bytes]]) -> None:
    dead: list[tuple[str, str, bytes]] = []
    drv = make_driver(1, TOPICS, dead=dead)
    out: list[RawSample] = []
    for topic, payload in msgs:
        before = len(dead)
        drv._decode(topic, payload, out)
        assert len(dead) - before in (0, 1)
        if len(dead) > before:
            src, reason, kept = dead[-1]
            assert src == "amr" and kept == payload and reason.startswith(topic if topic else "")
            assert ": " in reason
    h = drv.health.counters
    assert h["decode_errors"] == len(dead)
    assert h["decode_errors:internal"] == 0, [d[1] for d in dead if "decoder failed" in d[1]]
    assert sum(v for k, v in h.items() if k.startswith("decode_errors:")) >= len(dead)
    for s in out:
        assert isinstance(s.value, float) and math.isfinite(s.value) and s.key


def test_huge_payloads_are_truncated_in_dead_letters() -> None:
    dead: list[tuple[str, str, bytes]] = []
    drv = make_driver(1, TOPICS, dead=dead)
    drv._decode("amr/m1/readings", b"x" * 200_000, [])
    (_, reason, kept), = dead
    assert len(kept) == 64 * 1024 and reason.endswith("(payload truncated from 200000 bytes)")


def test_invalid_utf8_topic_is_dead_lettered() -> None:
    dead: list[tuple[str, str, bytes]] = []
    drv = make_driver(1, TOPICS, dead=dead)
    drv._decode(None, b"{}", [])
    assert dead and "topic: not valid UTF-8" in dead[0][1]


@pytest.mark.integration
@pytest.mark.timeout(180)
@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(TOPIC_NAMES[:-1]), _payloads()), min_size=1, max_size=12))
async def test_fuzzed_messages_through_the_broker(mqtt_broker: Broker, msgs: list[tuple[str, bytes]]) -> None:
    """Fuzzed payloads over a real mosquitto: the subscriber survives and counts every one."""
    dead: list[tuple[str, str, bytes]] = []
    marker = f"amr/marker{uuid.uuid4().hex[:8]}/readings"
    drv = make_driver(mqtt_broker.port, TOPICS, dead=dead, persistent_session=False, client_id="gw-fuzz")
    async with Consumer(drv) as c:
        await publish(mqtt_broker.port, [*msgs, (marker, b'{"p": 1}')])
        await wait_until(lambda: any(s.key.startswith(marker.split("/")[1]) for s in c.samples), what="marker")
        h = c.health.counters
        assert h["messages"] == len(msgs) + 1
        assert h["decode_errors"] == len(dead) and h["decode_errors:internal"] == 0
        assert c.task is not None and not c.task.done()
        for _, reason, payload in dead:
            assert any(reason.startswith(t + ": ") and p == payload for t, p in msgs)
