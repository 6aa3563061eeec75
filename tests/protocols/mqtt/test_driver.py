"""The MQTT driver against a real mosquitto (fixture `mqtt_broker`, free port, persistence)."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.errors import ConnectError
from protocols.mqtt.sparkplug import DOUBLE, INT64, Metric, Payload, encode_payload
from tests.conftest import Broker, mosquitto_binary
from tests.protocols.mqtt.support import Consumer, ListJournal, make_driver, publish, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def durable_broker() -> Iterator[Broker]:
    """A mosquitto whose persistence really works: started as root it writes its database as
    user `mosquitto`, which cannot write into pytest's 0700 tmp_path (the shared fixture's)."""
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed")
    d = Path(tempfile.mkdtemp(prefix="gw-mqtt-durable-"))
    d.chmod(0o777)
    broker = Broker(binary, d)
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(d, ignore_errors=True)

JSON_TOPIC = [{"pattern": "amr/+meter/readings", "json": {"fields": {"p": {}, "v": {"path": "vals.v"}}}}]


def _reading(i: int) -> bytes:
    return json.dumps({"ts": f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z", "p": float(i), "vals": {"v": 230}}).encode()


async def test_json_and_sparkplug_end_to_end(mqtt_broker: Broker) -> None:
    dead: list[tuple[str, str, bytes]] = []
    topics = [*JSON_TOPIC, {"pattern": "spBv1.0/#", "format": "sparkplug"}]
    journal = ListJournal()
    async with Consumer(make_driver(mqtt_broker.port, topics, dead=dead, journal=journal)) as c:
        ts = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
        await publish(mqtt_broker.port, [
            ("amr/m1/readings", _reading(1)),
            ("amr/m2/readings", b"{broken"),
            ("spBv1.0/plant/NBIRTH/e1", encode_payload(Payload(timestamp=ts, seq=0, metrics=[
                Metric(name="bdSeq", datatype=INT64, value=0)]))),
            ("spBv1.0/plant/DBIRTH/e1/m9", encode_payload(Payload(timestamp=ts, seq=1, metrics=[
                Metric(name="p", alias=5, datatype=DOUBLE, value=1.0)]))),
            ("spBv1.0/plant/DDATA/e1/m9", encode_payload(Payload(timestamp=ts, seq=2, metrics=[
                Metric(alias=5, datatype=DOUBLE, value=2.0)]))),
        ])
        await wait_until(lambda: len(c.samples) >= 4 and len(dead) >= 1, what="samples and a dead letter")
        got = {(s.key, s.value) for s in c.samples}
        assert got == {("m1/p", 1.0), ("m1/v", 230.0), ("plant/e1/m9/p", 1.0), ("plant/e1/m9/p", 2.0)}
        assert all(s.device_ts is not None and s.device_ts.tzinfo is not None for s in c.samples)
        assert dead[0][0] == "amr" and dead[0][1].startswith("amr/m2/readings: payload: not valid JSON")
        assert dead[0][2] == b"{broken"
        assert c.health.counters["decode_errors"] == 1 and c.health.counters["decode_errors:json"] == 1
        assert c.health.links["plant/e1"] == "up" and c.health.links["plant/e1/m9"] == "up"
        await wait_until(lambda: any("plant/e1 born (NBIRTH)" in e.message for e in journal.events), what="journal")
        assert journal.events[0].kind == "link" and journal.events[0].source == "amr"


async def test_sparkplug_births_outlive_a_recreated_driver(mqtt_broker: Broker) -> None:
    """The collector builds a new driver after a lost link: DDATA queued meanwhile still decode."""
    from core.config import ResolvedSource
    from core.interfaces import DriverContext, SourceHealth
    from core.records import utcnow
    from protocols.mqtt import SourceOptions, create_driver

    opts = SourceOptions.model_validate({"port": mqtt_broker.port, "client_id": "gw-sp-recreate",
                                         "topics": [{"pattern": "spBv1.0/#", "format": "sparkplug"}]})
    src = ResolvedSource(name="sp-recreate-test", kind="mqtt", options=opts, devices=(), points=())
    health = SourceHealth(src.name)

    def new() -> object:
        return create_driver(src, DriverContext(clock=utcnow, health=health))

    async with Consumer(new()) as c:  # type: ignore[arg-type]
        await publish(mqtt_broker.port, [("spBv1.0/g/NBIRTH/e1", encode_payload(Payload(seq=0, metrics=[
            Metric(name="temp", alias=1, datatype=DOUBLE, value=1.0)])))])
        await wait_until(lambda: len(c.samples) == 1, what="birth")
    await publish(mqtt_broker.port, [("spBv1.0/g/NDATA/e1", encode_payload(Payload(seq=1, metrics=[
        Metric(alias=1, datatype=DOUBLE, value=2.0)])))])
    async with Consumer(new()) as c2:  # type: ignore[arg-type]
        await wait_until(lambda: [(s.key, s.value) for s in c2.samples] == [("g/e1/temp", 2.0)],
                         what="aliased data decoded by the new driver")
    assert health.counters["decode_errors"] == 0 and health.counters["sequence_gaps"] == 0


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
async def test_persistent_session_receives_what_was_published_while_away(mqtt_broker: Broker,
                                                                         protocol: str) -> None:
    drv = make_driver(mqtt_broker.port, JSON_TOPIC, protocol=protocol)
    async with Consumer(drv):
        pass  # subscribed once: the broker now keeps the session
    n = 200
    await publish(mqtt_broker.port, [(f"amr/m{i}/readings", _reading(i)) for i in range(n)])
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC, protocol=protocol)) as c:
        await wait_until(lambda: len({s.key for s in c.samples if s.key.endswith("/p")}) == n,
                         what=f"{n} readings published while away")


async def test_clean_session_loses_what_was_published_while_away(mqtt_broker: Broker) -> None:
    """The control for the test above: without a persistent session messages are gone."""
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC, persistent_session=False)):
        pass
    await publish(mqtt_broker.port, [("amr/m1/readings", _reading(1))])
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC, persistent_session=False)) as c:
        await publish(mqtt_broker.port, [("amr/m2/readings", _reading(2))])
        await wait_until(lambda: len(c.samples) >= 2, what="the live message")
        assert {s.key for s in c.samples} == {"m2/p", "m2/v"}


async def test_unacked_messages_are_redelivered_after_reconnect(mqtt_broker: Broker) -> None:
    n = 50
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC), auto_ack=False) as c:
        await publish(mqtt_broker.port, [(f"amr/m{i}/readings", _reading(i)) for i in range(n)])
        await wait_until(lambda: len(c.samples) == 2 * n, what="first delivery")
        assert c.pending  # the collector has not stored them yet: nothing acknowledged
    # the daemon went away before storing: the broker must deliver them again
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC), auto_ack=False) as c2:
        await wait_until(lambda: len(c2.samples) == 2 * n, what="redelivery of unacknowledged messages")
        stale = c.pending
        for a in stale:
            a()  # acks of a dead connection are ignored, not sent on the new one
        assert c.health.counters["acks_after_disconnect"] == n
        c2.ack_all()
        await publish(mqtt_broker.port, [("amr/marker/readings", _reading(0))])
        await wait_until(lambda: any(s.key == "marker/p" for s in c2.samples), what="marker")
        c2.ack_all()
    # everything was acknowledged: the next session starts empty (only a new marker arrives)
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC)) as c3:
        await publish(mqtt_broker.port, [("amr/marker2/readings", _reading(0))])
        await wait_until(lambda: any(s.key == "marker2/p" for s in c3.samples), what="second marker")
        assert {s.key.split("/")[0] for s in c3.samples} == {"marker2"}


async def test_broker_restart_reconnects_and_keeps_the_session(mqtt_broker: Broker) -> None:
    async with Consumer(make_driver(mqtt_broker.port, JSON_TOPIC)) as c:
        await publish(mqtt_broker.port, [("amr/before/readings", _reading(1))])
        await wait_until(lambda: len(c.samples) == 2, what="message before restart")
        mqtt_broker.restart()
        await wait_until(lambda: bool(c.errors) and c.up(), what="ConnectError and reconnect")
        assert isinstance(c.errors[0], ConnectError) and "broker link lost" in str(c.errors[0])
        await publish(mqtt_broker.port, [("amr/after/readings", _reading(2))])
        await wait_until(lambda: any(s.key == "after/p" for s in c.samples), what="message after restart")
        assert c.health.counters["connects"] >= 2


async def test_queued_messages_survive_a_broker_restart(durable_broker: Broker) -> None:
    async with Consumer(make_driver(durable_broker.port, JSON_TOPIC)):
        pass
    n = 100
    await publish(durable_broker.port, [(f"amr/m{i}/readings", _reading(i)) for i in range(n)])
    durable_broker.restart()  # mosquitto saves sessions and queued QoS 1 messages on shutdown
    async with Consumer(make_driver(durable_broker.port, JSON_TOPIC)) as c:
        await wait_until(lambda: len({s.key for s in c.samples if s.key.endswith("/p")}) == n,
                         what="messages queued before the broker restart")


async def test_unreachable_broker_raises_connect_error(mqtt_broker: Broker) -> None:
    port = mqtt_broker.port
    mqtt_broker.stop()
    drv = make_driver(port, JSON_TOPIC, connect_timeout_s=2)
    async with drv:
        with pytest.raises(ConnectError, match="cannot connect"):
            async for _ in drv.samples():
                pass
    assert drv.health.links["broker"] == "down"


async def test_garbage_never_stops_the_subscriber(mqtt_broker: Broker) -> None:
    rnd = random.Random(4)
    bad = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 60))) for _ in range(150)]
    bad += [b'{"p": "x"}', b"[1, 2]", b'{"ts": "never", "p": 1}', b"\x00" * 10]
    topics = [*JSON_TOPIC, {"pattern": "spBv1.0/#", "format": "sparkplug"}]
    dead: list[tuple[str, str, bytes]] = []
    async with Consumer(make_driver(mqtt_broker.port, topics, dead=dead)) as c:
        msgs = [("amr/bad/readings", b) for b in bad] + [("spBv1.0/g/NDATA/e1", b) for b in bad[:50]]
        msgs.append(("amr/good/readings", _reading(3)))
        await publish(mqtt_broker.port, msgs)
        await wait_until(lambda: any(s.key == "good/p" for s in c.samples), what="the good message after garbage")
        assert c.health.counters["messages"] == len(msgs)
        assert len(dead) == c.health.counters["decode_errors"] >= 150
        assert all(d[1].startswith(("amr/bad/readings: ", "spBv1.0/g/NDATA/e1: ")) for d in dead)


async def test_shared_subscription_splits_without_loss_or_duplicates(mqtt_broker: Broker) -> None:
    a = Consumer(make_driver(mqtt_broker.port, JSON_TOPIC, name="a", shared_group="gw"))
    b = Consumer(make_driver(mqtt_broker.port, JSON_TOPIC, name="b", shared_group="gw"))
    n = 400
    async with a, b:
        await publish(mqtt_broker.port, [(f"amr/m{i}/readings", _reading(i)) for i in range(n)])
        keys = lambda c: {s.key for s in c.samples if s.key.endswith("/p")}  # noqa: E731
        await wait_until(lambda: len(keys(a) | keys(b)) == n, what="every message on one of the instances")
        assert keys(a) & keys(b) == set()
        assert len([s for s in a.samples + b.samples if s.key.endswith("/p")]) == n  # no duplicates
        assert keys(a) and keys(b)  # both instances took a share


async def test_qos0_backlog_is_bounded_and_counted(mqtt_broker: Broker) -> None:
    drv = make_driver(mqtt_broker.port, JSON_TOPIC, qos=0, max_pending_qos0=10, persistent_session=False)
    async with drv:
        gen = drv.samples()
        first = asyncio.ensure_future(gen.__anext__())  # connects, then waits for a message
        await wait_until(lambda: drv.health.links.get("broker") == "up", what="subscription")
        await publish(mqtt_broker.port, [("amr/first/readings", _reading(0))], qos=0)
        batch = await asyncio.wait_for(first, 30)
        assert [s.key for s in batch.samples] == ["first/p", "first/v"] and batch.ack is None
        # the consumer is "busy" now: nothing iterates while 300 QoS 0 messages arrive
        await publish(mqtt_broker.port, [(f"amr/m{i}/readings", _reading(i)) for i in range(300)], qos=0)
        client = drv._client
        assert client is not None
        await wait_until(lambda: len(client.inbox) + client.dropped == 300, what="all 300 seen by the client")
        assert len(client.inbox) == 10
        batch = await asyncio.wait_for(gen.__anext__(), 30)
        assert len(batch.samples) == 20 and drv.health.counters["dropped_qos0_overflow"] == 290
        await gen.aclose()


async def test_unknown_alias_requests_a_rebirth(mqtt_broker: Broker) -> None:
    import aiomqtt

    from protocols.mqtt.sparkplug import decode_payload

    topics = [{"pattern": "spBv1.0/#", "format": "sparkplug", "sparkplug": {"request_rebirth": True}}]
    async with aiomqtt.Client("127.0.0.1", mqtt_broker.port) as edge:
        await edge.subscribe("spBv1.0/g/NCMD/e1", qos=0)
        async with Consumer(make_driver(mqtt_broker.port, topics)) as c:
            await publish(mqtt_broker.port, [("spBv1.0/g/NDATA/e1", encode_payload(Payload(seq=4, metrics=[
                Metric(alias=7, datatype=DOUBLE, value=1.0)])))])
            async with asyncio.timeout(45):
                msg = await anext(aiter(edge.messages))
            (m,) = decode_payload(bytes(msg.payload)).metrics  # type: ignore[arg-type]
            assert (m.name, m.value) == ("Node Control/Rebirth", True)
            assert c.health.counters["rebirth_requests"] == 1 and c.health.counters["decode_errors:alias"] == 1
