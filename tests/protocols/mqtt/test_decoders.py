"""Pure tests of topic patterns, the JSON decoder, the Sparkplug B codec and state machine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from core.interfaces import SourceHealth
from core.records import Quality, RawSample
from protocols.mqtt.config import SourceOptions, TopicMapping
from protocols.mqtt.json import JsonDecoder, Problem, parse_timestamp
from protocols.mqtt.sparkplug import (
    BOOLEAN,
    DOUBLE,
    FLOAT,
    INT8,
    INT32,
    INT64,
    STRING,
    UINT16,
    Metric,
    Payload,
    SparkplugDecoder,
    WireError,
    decode_payload,
    encode_payload,
)
from protocols.mqtt.topics import TopicPattern
from protocols.mqtt.units import unit_factor

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


# -- topics ----------------------------------------------------------------------------------
def test_pattern_filter_and_captures() -> None:
    p = TopicPattern.parse("amr/+meter/readings")
    assert p.filter == "amr/+/readings"
    assert p.match("amr/m00001/readings") == ("m00001",)
    assert p.named(("m00001",)) == {"meter": "m00001"}
    assert p.match("amr/m00001/other") is None
    assert p.match("amr/a/b/readings") is None
    multi = TopicPattern.parse("site/+id/#rest")
    assert multi.filter == "site/+/#"
    assert multi.match("site/s1/a/b") == ("s1", "a/b")
    assert multi.match("site/s1") == ("s1", "")
    assert multi.match("other/s1/a") is None


@pytest.mark.parametrize("bad", ["", "a/#x/b", "a/b+c", "a/+1x", "a/+m/+m"])
def test_bad_patterns_are_rejected(bad: str) -> None:
    with pytest.raises(ValueError):
        TopicPattern.parse(bad)


def test_config_errors_name_the_problem() -> None:
    with pytest.raises(ValidationError, match="client_id"):
        SourceOptions.model_validate({"topics": [{"pattern": "a/+m"}]})
    with pytest.raises(ValidationError, match="wildcards"):
        SourceOptions.model_validate({"client_id": "x", "topics": [{"pattern": "a/b+c"}]})
    with pytest.raises(ValidationError, match="not captured"):
        TopicMapping.model_validate({"pattern": "a/+m", "key": "{meter}.{field}"})
    with pytest.raises(ValidationError, match=r"unknown key|Extra inputs"):
        SourceOptions.model_validate({"client_id": "x", "topics": [{"pattern": "a/+m"}], "hots": "x"})
    ok = SourceOptions.model_validate({"client_id": "x", "topics": [{"pattern": "a/+m", "json": {"timestamp": None}}]})
    assert ok.topics[0].json_options.timestamp is None


# -- JSON --------------------------------------------------------------------------------------
def _decode(mapping: dict, payload: bytes, topic_caps: tuple[str, ...] = ("m1",),
            points: dict[str, tuple[str, str]] | None = None) -> tuple[list[RawSample], list[Problem]]:
    dec = JsonDecoder("amr", TopicMapping.model_validate(mapping), points or {})
    out: list[RawSample] = []
    problems: list[Problem] = []
    dec.decode(topic_caps, payload, NOW, out, problems)
    return out, problems


def test_json_single_reading_auto_fields() -> None:
    out, problems = _decode({"pattern": "amr/+meter/readings"},
                            b'{"ts": "2026-01-01T00:15:00Z", "p": 1.5, "v": 230, "status": "ok", "flag": true}')
    assert problems == []
    assert {(s.key, s.value) for s in out} == {("m1/p", 1.5), ("m1/v", 230.0)}
    assert all(s.device_ts == datetime(2026, 1, 1, 0, 15, tzinfo=UTC) and s.received_at == NOW for s in out)


def test_json_batch_with_ids_paths_scale_and_units() -> None:
    mapping = {"pattern": "amr/headend/+he/batch", "json": {
        "readings": "data.items", "timestamp": "$.ts", "timestamp_format": "epoch_ms", "ids": {"meter": "id"},
        "fields": {"p": {"path": "vals.p", "unit": "W"}, "e": {"path": "vals.e", "scale": 0.001},
                   "flag": {"path": "on"}}}}
    payload = (b'{"ts": 1767225600000, "data": {"items": ['
               b'{"id": "m1", "vals": {"p": 1500, "e": 2000}, "on": true},'
               b'{"id": 7, "vals": {"p": 500}}]}}')
    out, problems = _decode(mapping, payload, ("he1",), points={"he1/m1/p": ("m1.p", "kW")})
    assert problems == []
    got = {s.key: s.value for s in out}
    assert got == {"m1.p": 1.5, "he1/m1/e": 2.0, "he1/m1/flag": 1.0, "he1/7/p": 500.0}
    assert all(s.device_ts == datetime(2026, 1, 1, tzinfo=UTC) for s in out)


def test_json_key_template() -> None:
    out, problems = _decode({"pattern": "amr/+meter/readings", "key": "{meter}.{field}"}, b'{"p": 2}')
    assert problems == [] and [s.key for s in out] == ["m1.p"]
    assert out[0].quality == Quality.CLOCK_INVALID  # the configured "ts" was missing


@pytest.mark.parametrize(("raw", "fmt", "expected"), [
    ("2026-01-01T05:00:00+05:00", "auto", datetime(2026, 1, 1, tzinfo=UTC)),
    ("2026-01-01T00:00:00Z", "iso8601", datetime(2026, 1, 1, tzinfo=UTC)),
    (1767225600, "auto", datetime(2026, 1, 1, tzinfo=UTC)),
    (1767225600000, "auto", datetime(2026, 1, 1, tzinfo=UTC)),
    (1767225600.5, "epoch_s", datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)),
    ("1767225600000", "epoch_ms", datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_timestamps(raw: object, fmt: str, expected: datetime) -> None:
    assert parse_timestamp(raw, fmt) == expected


@pytest.mark.parametrize(("raw", "fmt", "reason"), [
    ("2026-01-01T00:00:00", "auto", "without a timezone"),
    ("yesterday", "auto", "not ISO 8601"),
    (1767225600, "iso8601", "expected an ISO 8601"),
    (True, "auto", "boolean"),
    (1e300, "epoch_s", "out of range"),
    ("x", "epoch_s", "expected epoch"),
])
def test_bad_timestamps(raw: object, fmt: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_timestamp(raw, fmt)


def test_json_problems_name_the_field_and_keep_good_readings() -> None:
    mapping = {"pattern": "amr/+meter/readings", "json": {"readings": "r", "fields": {"p": {}}}}
    payload = b'{"r": [{"ts": "2026-01-01T00:00:00Z", "p": 1}, {"ts": "bad", "p": 2}, {"p": "x"}, 5, {"p": null}]}'
    out, problems = _decode(mapping, payload)
    assert [(s.value, s.quality) for s in out] == [(1.0, Quality.GOOD), (2.0, Quality.CLOCK_INVALID)]
    reasons = [p.reason for p in problems]
    assert reasons == ["r[1].ts: not ISO 8601: 'bad'", "r[2].p: not a number ('x')",
                       "r[3]: expected an object, got int"]
    assert [p.code for p in problems] == ["timestamp", "value", "shape"]


@pytest.mark.parametrize(("payload", "code"), [
    (b"{not json", "json"), (b"\xff\xfe\x00", "json"), (b'"text"', "shape"), (b"[" * 100_000, "json"),
    (b'{"r": 1}', "shape"),
])
def test_json_whole_message_problems(payload: bytes, code: str) -> None:
    out, problems = _decode({"pattern": "a/+m", "json": {"readings": "r" if code == "shape" and b"r" in payload
                                                         else ""}}, payload)
    assert out == [] and [p.code for p in problems] == [code]


def test_json_non_finite_values_are_problems() -> None:
    out, problems = _decode({"pattern": "a/+m"}, b'{"p": NaN, "q": Infinity, "v": 1}')
    assert [s.key for s in out] == ["m1/v"]
    assert {p.reason for p in problems} == {"p: not finite", "q: not finite"}


def test_unit_factor() -> None:
    assert unit_factor("Wh", "kWh") == 1e-3
    assert unit_factor("MW", "kW") == 1000.0
    assert unit_factor("kV", "V") == 1000.0
    with pytest.raises(ValueError):
        unit_factor("kW", "kWh")


# -- Sparkplug B codec ---------------------------------------------------------------------------
def _pb_payload_class() -> type:
    """The Sparkplug B Payload message built with google.protobuf from the tahu schema."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    fdp = descriptor_pb2.FileDescriptorProto(name="sparkplug_b_test.proto", package="spb", syntax="proto2")
    msg = fdp.message_type.add(name="Payload")
    F = descriptor_pb2.FieldDescriptorProto
    opt = F.LABEL_OPTIONAL

    def add(m, name, num, typ, label=opt, type_name=None, oneof=None):
        f = m.field.add(name=name, number=num, type=typ, label=label)
        if type_name:
            f.type_name = type_name
        if oneof is not None:
            f.oneof_index = oneof
        return f

    metric = msg.nested_type.add(name="Metric")
    metric.oneof_decl.add(name="value")
    add(metric, "name", 1, F.TYPE_STRING)
    add(metric, "alias", 2, F.TYPE_UINT64)
    add(metric, "timestamp", 3, F.TYPE_UINT64)
    add(metric, "datatype", 4, F.TYPE_UINT32)
    add(metric, "is_historical", 5, F.TYPE_BOOL)
    add(metric, "is_transient", 6, F.TYPE_BOOL)
    add(metric, "is_null", 7, F.TYPE_BOOL)
    add(metric, "int_value", 10, F.TYPE_UINT32, oneof=0)
    add(metric, "long_value", 11, F.TYPE_UINT64, oneof=0)
    add(metric, "float_value", 12, F.TYPE_FLOAT, oneof=0)
    add(metric, "double_value", 13, F.TYPE_DOUBLE, oneof=0)
    add(metric, "boolean_value", 14, F.TYPE_BOOL, oneof=0)
    add(metric, "string_value", 15, F.TYPE_STRING, oneof=0)
    add(metric, "bytes_value", 16, F.TYPE_BYTES, oneof=0)
    add(msg, "timestamp", 1, F.TYPE_UINT64)
    add(msg, "metrics", 2, F.TYPE_MESSAGE, F.LABEL_REPEATED, ".spb.Payload.Metric")
    add(msg, "seq", 3, F.TYPE_UINT64)
    add(msg, "uuid", 4, F.TYPE_STRING)
    add(msg, "body", 5, F.TYPE_BYTES)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("spb.Payload"))


def test_codec_interoperates_with_google_protobuf() -> None:
    PB = _pb_payload_class()
    ours = Payload(timestamp=1767225600123, seq=7, uuid="u-1", metrics=[
        Metric(name="p", alias=1, datatype=DOUBLE, value=1.25, timestamp=1767225600000),
        Metric(name="t", alias=2, datatype=FLOAT, value=0.5),
        Metric(name="n", alias=3, datatype=INT8, value=-3),
        Metric(name="i", alias=4, datatype=INT32, value=-70000),
        Metric(name="l", alias=5, datatype=INT64, value=-5),
        Metric(name="u", alias=6, datatype=UINT16, value=65535),
        Metric(name="b", alias=7, datatype=BOOLEAN, value=True),
        Metric(name="s", alias=8, datatype=STRING, value="héllo"),
        Metric(name="z", alias=9, datatype=DOUBLE, is_null=True),
    ])
    pb = PB.FromString(encode_payload(ours))
    assert (pb.timestamp, pb.seq, pb.uuid, len(pb.metrics)) == (1767225600123, 7, "u-1", 9)
    assert pb.metrics[0].double_value == 1.25 and pb.metrics[0].timestamp == 1767225600000
    assert pb.metrics[1].float_value == 0.5
    assert pb.metrics[6].boolean_value is True and pb.metrics[7].string_value == "héllo"
    assert pb.metrics[8].is_null
    # ... and back: bytes produced by google.protobuf decode with our codec
    back = decode_payload(pb.SerializeToString())
    assert [m.value for m in back.metrics] == [1.25, 0.5, -3, -70000, -5, 65535, True, "héllo", None]
    assert [m.name for m in back.metrics] == ["p", "t", "n", "i", "l", "u", "b", "s", "z"]
    assert back.metrics[8].is_null and back.seq == 7 and back.uuid == "u-1"
    # Java tahu writes Int8 -1 into the uint32 int_value as 0xFFFFFFFF: sign-extended by width
    pb2 = PB()
    m = pb2.metrics.add(name="x", datatype=INT8)
    m.int_value = 0xFFFFFFFF
    assert decode_payload(pb2.SerializeToString()).metrics[0].value == -1


@pytest.mark.parametrize(("data", "reason"), [
    (b"\x08", "truncated varint"),
    (b"\x12\x05\x0a", "past the end"),
    (b"\x0b", "unsupported wire type"),
    (b"\x12\x02\x12\x00", r"metrics\[0\].alias: wire type 2, expected 0"),
    (b"\x12\x03\x0a\x01\xff", "not UTF-8"),
    (b"\x08" + b"\xff" * 11, "longer than 10 bytes"),
])
def test_codec_errors_name_the_field(data: bytes, reason: str) -> None:
    with pytest.raises(WireError, match=reason):
        decode_payload(data)


# -- Sparkplug B state ---------------------------------------------------------------------------
def _sp(dec: SparkplugDecoder, topic: str, p: Payload) -> tuple[list[RawSample], list[Problem]]:
    out: list[RawSample] = []
    problems: list[Problem] = []
    dec.decode(topic, encode_payload(p), NOW, out, problems)
    return out, problems


def test_sparkplug_birth_data_aliases_gaps_and_death() -> None:
    h = SourceHealth("sp")
    dec = SparkplugDecoder("sp", h)
    out, pr = _sp(dec, "spBv1.0/g/NBIRTH/e1", Payload(timestamp=1, seq=0, metrics=[
        Metric(name="bdSeq", datatype=INT64, value=0), Metric(name="temp", alias=1, datatype=DOUBLE, value=20.0),
        Metric(name="label", alias=9, datatype=STRING, value="x")]))
    assert pr == [] and [(s.key, s.value) for s in out] == [("g/e1/temp", 20.0)]
    assert h.links["g/e1"] == "up"
    out, pr = _sp(dec, "spBv1.0/g/DBIRTH/e1/m1", Payload(seq=1, metrics=[
        Metric(name="p", alias=2, datatype=FLOAT, value=1.5)]))
    assert [(s.key, s.value) for s in out] == [("g/e1/m1/p", 1.5)]
    out, pr = _sp(dec, "spBv1.0/g/DDATA/e1/m1", Payload(seq=2, timestamp=1767225600000,
                                                        metrics=[Metric(alias=2, datatype=FLOAT, value=2.5)]))
    assert pr == [] and [(s.key, s.value, s.device_ts) for s in out] == [
        ("g/e1/m1/p", 2.5, datetime(2026, 1, 1, tzinfo=UTC))]
    assert h.counters["sequence_gaps"] == 0
    # a gap: seq 5 after 2
    out, pr = _sp(dec, "spBv1.0/g/NDATA/e1", Payload(seq=5, metrics=[Metric(alias=1, datatype=DOUBLE, value=21.0)]))
    assert [(s.key, s.value) for s in out] == [("g/e1/temp", 21.0)]
    assert h.counters["sequence_gaps"] == 1 and "expected 3, got 5" in h.last_error
    # unknown alias: reported, naming the field
    out, pr = _sp(dec, "spBv1.0/g/DDATA/e1/m1", Payload(seq=6, metrics=[Metric(alias=42, datatype=FLOAT, value=1)]))
    assert out == [] and pr[0].code == "alias" and pr[0].reason.startswith("metrics[0].alias: unknown alias 42")
    # device death marks the device's points, node death all points
    out, pr = _sp(dec, "spBv1.0/g/DDEATH/e1/m1", Payload(seq=7))
    assert [(s.key, s.value, s.quality) for s in out] == [
        ("g/e1/m1/p", 2.5, Quality.NOT_TOPICAL | Quality.COMM_FAIL)]
    assert h.links["g/e1/m1"] == "down"
    out, pr = _sp(dec, "spBv1.0/g/NDEATH/e1", Payload(metrics=[Metric(name="bdSeq", datatype=INT64, value=0)]))
    assert {s.key for s in out} == {"g/e1/temp", "g/e1/m1/p"}
    assert all(not s.quality.is_good for s in out) and h.links["g/e1"] == "down"
    # data after death, before a new birth: counted, aliases still resolve to the old names
    out, pr = _sp(dec, "spBv1.0/g/NDATA/e1", Payload(seq=0, metrics=[Metric(name="temp", datatype=DOUBLE,
                                                                            value=1.0)]))
    assert h.counters["data_before_birth"] == 1 and len(out) == 1


def test_sparkplug_commands_and_host_state_are_ignored() -> None:
    h = SourceHealth("sp")
    dec = SparkplugDecoder("sp", h)
    for topic, payload in [("spBv1.0/STATE/scada-host", b'{"online": true, "timestamp": 1}'),
                           ("spBv1.0/g/NCMD/e1", encode_payload(Payload(metrics=[Metric(name="Node Control/Rebirth",
                                                                                        datatype=BOOLEAN,
                                                                                        value=True)])))]:
        out: list[RawSample] = []
        problems: list[Problem] = []
        dec.decode(topic, payload, NOW, out, problems)
        assert out == [] and problems == []
    assert h.counters["sparkplug_ignored"] == 2


@pytest.mark.parametrize(("topic", "payload", "code"), [
    ("spBv1.0/g/BOGUS/e1", b"", "topic"),
    ("spBv1.0/g/DDATA/e1", b"", "topic"),
    ("spBv1.0/g/NDATA/e1", b"\x12\x05", "protobuf"),
    ("spBv1.0/g/NDATA/e1", encode_payload(Payload(metrics=[Metric(datatype=DOUBLE, value=1.0)])), "seq"),
])
def test_sparkplug_bad_messages(topic: str, payload: bytes, code: str) -> None:
    dec = SparkplugDecoder("sp", SourceHealth("sp"))
    out: list[RawSample] = []
    problems: list[Problem] = []
    dec.decode(topic, payload, NOW, out, problems)
    assert code in [p.code for p in problems]

