"""Sparkplug B: a hand-written protobuf wire codec for `Payload` and the edge-node state machine.

Topics: `spBv1.0/<group>/<NBIRTH|NDATA|NDEATH|DBIRTH|DDATA|DDEATH|NCMD|DCMD>/<edge>[/<device>]`.
The codec covers the fields GridWatch needs (payload timestamp/seq/uuid/body, metric
name/alias/timestamp/datatype/is_historical/is_transient/is_null and every scalar value) and
skips the rest (datasets, templates, properties, metadata) by wire type, as protobuf does.

State per edge node: aliases learned from NBIRTH/DBIRTH (kept per node and per device, which
also accepts publishers that reuse alias numbers across devices), the last sequence number
(0-255, gaps are counted and reported), and the last value of every metric, so NDEATH/DDEATH
can flag the node's points NOT_TOPICAL|COMM_FAIL.
Keys: `<group>/<edge>/<metric>` (node metrics) and `<group>/<edge>/<device>/<metric>`.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.interfaces import SourceHealth
from core.records import Quality, RawSample
from protocols.mqtt.json import Problem

# Sparkplug B data types (tahu sparkplug_b.proto, DataType enum).
INT8, INT16, INT32, INT64 = 1, 2, 3, 4
UINT8, UINT16, UINT32, UINT64 = 5, 6, 7, 8
FLOAT, DOUBLE, BOOLEAN, STRING, DATETIME, TEXT = 9, 10, 11, 12, 13, 14
_SIGNED_BITS = {INT8: 8, INT16: 16, INT32: 32, INT64: 64}
_UNSIGNED_MASK = {UINT8: 0xFF, UINT16: 0xFFFF, UINT32: 0xFFFF_FFFF, UINT64: 0xFFFF_FFFF_FFFF_FFFF}

_F32 = struct.Struct("<f")
_F64 = struct.Struct("<d")


class WireError(ValueError):
    """The bytes are not a valid Sparkplug B payload; the message names the field."""


@dataclass(slots=True)
class Metric:
    """One Sparkplug B metric. `value` is int, float, bool, str, bytes or None (is_null / complex)."""

    name: str | None = None
    alias: int | None = None
    timestamp: int | None = None  # ms since the epoch
    datatype: int | None = None
    value: Any = None
    is_null: bool = False
    is_historical: bool = False
    is_transient: bool = False


@dataclass(slots=True)
class Payload:
    """A Sparkplug B payload."""

    timestamp: int | None = None
    metrics: list[Metric] = field(default_factory=list)
    seq: int | None = None
    uuid: str | None = None
    body: bytes | None = None


# -- encoding ------------------------------------------------------------------------------
def _varint(n: int, out: bytearray) -> None:
    n &= 0xFFFF_FFFF_FFFF_FFFF
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _tag(num: int, wt: int, out: bytearray) -> None:
    _varint((num << 3) | wt, out)


def _bytes_field(num: int, data: bytes, out: bytearray) -> None:
    _tag(num, 2, out)
    _varint(len(data), out)
    out += data


def _infer_type(v: Any) -> int:
    if isinstance(v, bool):
        return BOOLEAN
    if isinstance(v, int):
        return INT64
    if isinstance(v, float):
        return DOUBLE
    if isinstance(v, str):
        return STRING
    raise TypeError(f"cannot infer a Sparkplug datatype for {type(v).__name__}")


def encode_metric(m: Metric) -> bytes:
    """The protobuf bytes of one metric."""
    out = bytearray()
    if m.name is not None:
        _bytes_field(1, m.name.encode(), out)
    if m.alias is not None:
        _tag(2, 0, out)
        _varint(m.alias, out)
    if m.timestamp is not None:
        _tag(3, 0, out)
        _varint(m.timestamp, out)
    dt = m.datatype if m.datatype is not None else (_infer_type(m.value) if m.value is not None else None)
    if dt is not None:
        _tag(4, 0, out)
        _varint(dt, out)
    if m.is_historical:
        out += b"\x28\x01"
    if m.is_transient:
        out += b"\x30\x01"
    if m.is_null or m.value is None:
        out += b"\x38\x01"
        return bytes(out)
    v = m.value
    if dt in (INT8, INT16, INT32, UINT8, UINT16, UINT32):
        _tag(10, 0, out)
        _varint(int(v) & 0xFFFF_FFFF, out)
    elif dt in (INT64, UINT64, DATETIME):
        _tag(11, 0, out)
        _varint(int(v), out)
    elif dt == FLOAT:
        _tag(12, 5, out)
        out += _F32.pack(float(v))
    elif dt == DOUBLE:
        _tag(13, 1, out)
        out += _F64.pack(float(v))
    elif dt == BOOLEAN:
        _tag(14, 0, out)
        _varint(1 if v else 0, out)
    elif dt in (STRING, TEXT):
        _bytes_field(15, str(v).encode(), out)
    elif isinstance(v, bytes | bytearray):
        _bytes_field(16, bytes(v), out)
    else:
        raise TypeError(f"metric {m.name!r}: datatype {dt} needs bytes, got {type(v).__name__}")
    return bytes(out)


def encode_payload(p: Payload) -> bytes:
    """The protobuf bytes of a payload."""
    out = bytearray()
    if p.timestamp is not None:
        _tag(1, 0, out)
        _varint(p.timestamp, out)
    for m in p.metrics:
        _bytes_field(2, encode_metric(m), out)
    if p.seq is not None:
        _tag(3, 0, out)
        _varint(p.seq, out)
    if p.uuid is not None:
        _bytes_field(4, p.uuid.encode(), out)
    if p.body is not None:
        _bytes_field(5, p.body, out)
    return bytes(out)


# -- decoding ------------------------------------------------------------------------------
def _read_varint(buf: bytes, pos: int, where: str) -> tuple[int, int]:
    result = 0
    shift = 0
    n = len(buf)
    while True:
        if pos >= n:
            raise WireError(f"{where}: truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos
        shift += 7
        if shift >= 70:
            raise WireError(f"{where}: varint longer than 10 bytes")


def _fields(buf: bytes, where: str) -> list[tuple[int, int, Any]]:
    """(field number, wire type, raw value) for every field; bytes for wire type 2."""
    out: list[tuple[int, int, Any]] = []
    pos = 0
    n = len(buf)
    while pos < n:
        key, pos = _read_varint(buf, pos, where)
        num, wt = key >> 3, key & 7
        v: Any
        if num == 0:
            raise WireError(f"{where}: field number 0")
        if wt == 0:
            v, pos = _read_varint(buf, pos, f"{where}.field{num}")
        elif wt == 1:
            if pos + 8 > n:
                raise WireError(f"{where}.field{num}: truncated fixed64")
            v = buf[pos:pos + 8]
            pos += 8
        elif wt == 2:
            ln, pos = _read_varint(buf, pos, f"{where}.field{num}")
            if pos + ln > n:
                raise WireError(f"{where}.field{num}: length {ln} past the end")
            v = buf[pos:pos + ln]
            pos += ln
        elif wt == 5:
            if pos + 4 > n:
                raise WireError(f"{where}.field{num}: truncated fixed32")
            v = buf[pos:pos + 4]
            pos += 4
        else:
            raise WireError(f"{where}.field{num}: unsupported wire type {wt}")
        out.append((num, wt, v))
    return out


def _expect(wt: int, want: int, where: str) -> None:
    if wt != want:
        raise WireError(f"{where}: wire type {wt}, expected {want}")


def _utf8(v: bytes, where: str) -> str:
    try:
        return v.decode()
    except UnicodeDecodeError:
        raise WireError(f"{where}: not UTF-8") from None


def decode_metric(buf: bytes, where: str) -> Metric:
    """Decode one metric; raise WireError naming the field."""
    m = Metric()
    raw_int: int | None = None
    for num, wt, v in _fields(buf, where):
        if num == 1:
            _expect(wt, 2, f"{where}.name")
            m.name = _utf8(v, f"{where}.name")
        elif num == 2:
            _expect(wt, 0, f"{where}.alias")
            m.alias = v
        elif num == 3:
            _expect(wt, 0, f"{where}.timestamp")
            m.timestamp = v
        elif num == 4:
            _expect(wt, 0, f"{where}.datatype")
            m.datatype = v
        elif num == 5:
            m.is_historical = bool(v) if wt == 0 else False
        elif num == 6:
            m.is_transient = bool(v) if wt == 0 else False
        elif num == 7:
            _expect(wt, 0, f"{where}.is_null")
            m.is_null = bool(v)
        elif num == 10 or num == 11:
            _expect(wt, 0, f"{where}.{'int_value' if num == 10 else 'long_value'}")
            raw_int = v & 0xFFFF_FFFF if num == 10 else v
            m.value = raw_int
        elif num == 12:
            _expect(wt, 5, f"{where}.float_value")
            m.value = _F32.unpack(v)[0]
        elif num == 13:
            _expect(wt, 1, f"{where}.double_value")
            m.value = _F64.unpack(v)[0]
        elif num == 14:
            _expect(wt, 0, f"{where}.boolean_value")
            m.value = bool(v)
        elif num == 15:
            _expect(wt, 2, f"{where}.string_value")
            m.value = _utf8(v, f"{where}.string_value")
        elif num == 16:
            _expect(wt, 2, f"{where}.bytes_value")
            m.value = bytes(v)
        # 8 metadata, 9 properties, 17 dataset, 18 template, 19 extension: skipped
    if raw_int is not None and m.datatype is not None:
        bits = _SIGNED_BITS.get(m.datatype)
        if bits is not None:
            raw_int &= (1 << bits) - 1
            if raw_int >= 1 << (bits - 1):
                raw_int -= 1 << bits
            m.value = raw_int
        elif m.datatype in _UNSIGNED_MASK:
            m.value = raw_int & _UNSIGNED_MASK[m.datatype]
    return m


def decode_payload(buf: bytes) -> Payload:
    """Decode a Sparkplug B payload; raise WireError naming the field."""
    p = Payload()
    for num, wt, v in _fields(buf, "payload"):
        if num == 1:
            _expect(wt, 0, "payload.timestamp")
            p.timestamp = v
        elif num == 2:
            _expect(wt, 2, f"metrics[{len(p.metrics)}]")
            p.metrics.append(decode_metric(v, f"metrics[{len(p.metrics)}]"))
        elif num == 3:
            _expect(wt, 0, "payload.seq")
            p.seq = v
        elif num == 4:
            _expect(wt, 2, "payload.uuid")
            p.uuid = _utf8(v, "payload.uuid")
        elif num == 5:
            _expect(wt, 2, "payload.body")
            p.body = bytes(v)
    return p


# -- state machine -------------------------------------------------------------------------
MESSAGE_TYPES = ("NBIRTH", "NDEATH", "DBIRTH", "DDEATH", "NDATA", "DDATA", "NCMD", "DCMD", "STATE")
DEATH_QUALITY = Quality.NOT_TOPICAL | Quality.COMM_FAIL


@dataclass
class _Node:
    born: bool = False
    seq: int | None = None
    aliases: dict[tuple[str | None, int], str] = field(default_factory=dict)  # (device, alias) -> name
    last: dict[str, float] = field(default_factory=dict)  # key -> last value
    devices: dict[str, set[str]] = field(default_factory=dict)  # device -> keys seen


def _ms(ts: int | None) -> datetime | None:
    if ts is None:
        return None
    try:
        return datetime.fromtimestamp(ts / 1000.0, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def numeric(m: Metric) -> float | None:
    """The metric's value as a float, or None when it is not numeric (string, bytes, null)."""
    v = m.value
    if m.is_null or v is None:
        return None
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, int | float):
        if m.datatype == DATETIME:
            return None
        return float(v)
    return None


class SparkplugDecoder:
    """Decodes Sparkplug B messages of one source, keeping per-edge-node state.

    `points` maps a key to the key to emit. `rebirth` (group, edge) is called when data
    arrives that cannot be decoded without a birth (unknown alias), if the mapping asks for it.
    """

    def __init__(self, source: str, health: SourceHealth, *, death_marks_points: bool = True,
                 rebirth: Callable[[str, str], None] | None = None,
                 points: dict[str, str] | None = None,
                 nodes: dict[tuple[str, str], Any] | None = None) -> None:
        self.source = source
        self.health = health
        self.death_marks_points = death_marks_points
        self.rebirth = rebirth
        self.points = points or {}
        # per edge node state; pass the same dict to a new decoder to keep births across reconnects
        self.nodes: dict[tuple[str, str], _Node] = nodes if nodes is not None else {}
        self.events: list[tuple[str, str]] = []  # (kind, message) for the journal; the driver drains it

    def _emit(self, key: str) -> str:
        return self.points.get(key, key)

    def decode(self, topic: str, payload: bytes, received_at: datetime,
               out: list[RawSample], problems: list[Problem]) -> None:
        """Append the samples of one message to `out` and its problems to `problems`."""
        parts = topic.split("/")
        if len(parts) >= 2 and parts[0] == "spBv1.0" and parts[1] == "STATE":  # a host application's state
            self.health.count("sparkplug_ignored")
            return
        if len(parts) < 4 or parts[0] != "spBv1.0" or parts[2] not in MESSAGE_TYPES:
            problems.append(Problem("topic", f"topic: not a Sparkplug B topic ({topic[:80]!r})"))
            return
        group, mtype, edge = parts[1], parts[2], parts[3]
        device = "/".join(parts[4:]) or None
        if mtype in ("NCMD", "DCMD", "STATE"):
            self.health.count("sparkplug_ignored")
            return
        if mtype[0] == "D" and device is None:
            problems.append(Problem("topic", f"topic: {mtype} without a device id ({topic[:80]!r})"))
            return
        try:
            p = decode_payload(payload)
        except WireError as e:
            problems.append(Problem("protobuf", str(e)))
            return
        node_id = f"{group}/{edge}"
        node = self.nodes.get((group, edge))
        if node is None:
            node = self.nodes[(group, edge)] = _Node()
        ts = _ms(p.timestamp)
        if mtype == "NDEATH":
            self.events.append(("link", f"{self.source}: sparkplug edge node {node_id} died (NDEATH)"))
            self.health.links[node_id] = "down"
            self.health.count("sparkplug_deaths")
            self._mark_dead(node, node.last.keys(), ts or received_at, received_at, out)
            node.born = False
            node.seq = None
            return
        # Sequence numbers: NBIRTH restarts them; every other message must follow on.
        if p.seq is None:
            problems.append(Problem("seq", f"payload.seq: missing in {mtype} from {node_id}"))
        elif p.seq > 255:
            problems.append(Problem("seq", f"payload.seq: {p.seq} out of range 0-255 in {mtype} from {node_id}"))
        elif mtype != "NBIRTH" and node.seq is not None and p.seq != (node.seq + 1) % 256:
            self.health.count("sequence_gaps")
            self.health.last_error = (f"{self.source}: sparkplug sequence gap from {node_id}: expected "
                                      f"{(node.seq + 1) % 256}, got {p.seq} ({mtype})")
            self.events.append(("data", self.health.last_error))
        if p.seq is not None and p.seq <= 255:
            node.seq = p.seq
        if mtype == "NBIRTH":
            self.events.append(("link", f"{self.source}: sparkplug edge node {node_id} born (NBIRTH)"))
            node.aliases.clear()
            node.born = True
            self.health.links[node_id] = "up"
            self.health.count("sparkplug_births")
        elif mtype == "DBIRTH":
            assert device is not None
            self.health.links[f"{node_id}/{device}"] = "up"
            self.health.count("sparkplug_births")
            for a in [a for a in node.aliases if a[0] == device]:
                del node.aliases[a]
        elif mtype == "DDEATH":
            assert device is not None
            self.events.append(("link", f"{self.source}: sparkplug device {node_id}/{device} died (DDEATH)"))
            self.health.links[f"{node_id}/{device}"] = "down"
            self.health.count("sparkplug_deaths")
            keys = node.devices.get(device, set())
            self._mark_dead(node, keys, ts or received_at, received_at, out)
            return
        elif not node.born:
            self.health.count("data_before_birth")
        birth = mtype in ("NBIRTH", "DBIRTH")
        dev = device if mtype[0] == "D" else None
        prefix = f"{node_id}/{dev}/" if dev else f"{node_id}/"
        unknown_alias = False
        for i, m in enumerate(p.metrics):
            name = m.name
            if birth and m.alias is not None and name is not None:
                node.aliases[(dev, m.alias)] = name
            if name is None:
                if m.alias is None:
                    problems.append(Problem("metric", f"metrics[{i}]: neither name nor alias ({mtype} from {node_id})"))
                    continue
                hit = node.aliases.get((dev, m.alias))
                if hit is None:
                    who = f"{node_id}/{dev}" if dev else node_id
                    problems.append(Problem("alias", f"metrics[{i}].alias: unknown alias {m.alias} "
                                                     f"({mtype} from {who}; no birth seen)"))
                    unknown_alias = True
                    continue
                name = hit
            if name == "bdSeq" or name.startswith("Node Control/"):
                continue
            x = numeric(m)
            if x is None:
                self.health.count("sparkplug_non_numeric")
                continue
            if not math.isfinite(x):
                problems.append(Problem("value", f"metrics[{i}] ({name}): not finite"))
                continue
            key = prefix + name
            node.last[key] = x
            if dev is not None:
                node.devices.setdefault(dev, set()).add(key)
            out.append(RawSample(self.source, self._emit(key), x, received_at, _ms(m.timestamp) or ts,
                                 Quality.GOOD))
        if unknown_alias and self.rebirth is not None:
            self.rebirth(group, edge)

    def _mark_dead(self, node: _Node, keys: Any, ts: datetime, received_at: datetime,
                   out: list[RawSample]) -> None:
        if not self.death_marks_points:
            return
        for key in list(keys):
            out.append(RawSample(self.source, self._emit(key), node.last[key], received_at, ts, DEATH_QUALITY))


def rebirth_payload(now_ms: int | None = None) -> bytes:
    """An NCMD payload asking an edge node to publish its births again."""
    return encode_payload(Payload(timestamp=now_ms,
                                  metrics=[Metric(name="Node Control/Rebirth", datatype=BOOLEAN, value=True)]))
