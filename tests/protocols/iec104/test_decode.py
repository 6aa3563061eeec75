"""The APDU decoder: every monitoring type, quality bits at wire positions, time tags as UTC."""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

import pytest

from core.records import Quality
from protocols.iec104 import decode as d

NOW = datetime(2026, 3, 5, 10, 20, 30, 456000, tzinfo=UTC)


def apdu(tid: int, objs: list[bytes], *, cot: int = 3, ca: int = 7, sq: bool = False, neg: bool = False) -> bytes:
    body = bytes([tid, len(objs) | (0x80 if sq else 0), cot | (0x40 if neg else 0), 0, ca & 0xFF, ca >> 8])
    body += b"".join(objs)
    return bytes([0x68, 4 + len(body), 0, 0, 0, 0]) + body


def ioa(n: int) -> bytes:
    return n.to_bytes(3, "little")


def test_cp56_roundtrip_is_utc() -> None:
    b = d.encode_cp56(NOW)
    ts, iv = d.cp56_to_utc(b, 0)
    assert ts == NOW and not iv and ts.tzinfo is UTC


def test_cp56_invalid_flag_and_garbage() -> None:
    b = bytearray(d.encode_cp56(NOW))
    b[2] |= 0x80
    assert d.cp56_to_utc(bytes(b), 0)[1] is True
    assert d.cp56_to_utc(bytes([0, 0, 0, 0, 0, 13, 0]), 0) == (None, True)


def test_cp24_completed_from_reference() -> None:
    ms = 15_250
    b = bytes([ms & 0xFF, ms >> 8, 19])
    ts, _ = d.cp24_to_utc(b, 0, NOW)
    assert ts == NOW.replace(minute=19, second=15, microsecond=250_000)
    b = bytes([0, 0, 59])  # minute 59 is in the previous hour
    ts, _ = d.cp24_to_utc(b, 0, NOW)
    assert ts == (NOW - timedelta(hours=1)).replace(minute=59, second=0, microsecond=0)


@pytest.mark.parametrize(
    ("tid", "element", "value", "quality"),
    [
        (d.M_SP_NA_1, bytes([0x01 | 0x40]), 1.0, Quality.NOT_TOPICAL),
        (d.M_DP_NA_1, bytes([0x02 | 0x10]), 2.0, Quality.BLOCKED),
        (d.M_ST_NA_1, bytes([0x7F, 0x20]), -1.0, Quality.SUBSTITUTED),
        (d.M_BO_NA_1, struct.pack("<IB", 0xDEADBEEF, 0x80), float(0xDEADBEEF), Quality.INVALID),
        (d.M_ME_NA_1, struct.pack("<hB", -16384, 0x01), -0.5, Quality.OVERFLOW),
        (d.M_ME_NB_1, struct.pack("<hB", -1234, 0), -1234.0, Quality.GOOD),
        (d.M_ME_NC_1, struct.pack("<fB", 49.5, 0xF1), 49.5, Quality(0xF1)),
        (d.M_ME_ND_1, struct.pack("<h", 8192), 0.25, Quality.GOOD),
        (d.M_IT_NA_1, struct.pack("<iB", -5, 0x20 | 3), -5.0, Quality.CARRY),
        (d.M_IT_NA_1, struct.pack("<iB", 5, 0x40), 5.0, Quality.ADJUSTED),
        (d.M_IT_NA_1, struct.pack("<iB", 5, 0x80), 5.0, Quality.INVALID),
        (d.M_PS_NA_1, struct.pack("<IB", 0x00FF00FF, 0), float(0x00FF00FF), Quality.GOOD),
    ],
)
def test_untagged_types(tid: int, element: bytes, value: float, quality: Quality) -> None:
    a = d.decode_apdu(apdu(tid, [ioa(1001) + element]), NOW)
    assert a is not None and a.ca == 7 and a.cot == 3 and a.type_id == tid
    (o,) = a.objects
    assert (o.ioa, o.value, o.quality, o.device_ts) == (1001, value, quality, None)


@pytest.mark.parametrize(
    ("tid", "element"),
    [
        (d.M_SP_TB_1, b"\x01"), (d.M_DP_TB_1, b"\x01"), (d.M_ST_TB_1, b"\x05\x00"),
        (d.M_BO_TB_1, b"\x01\x00\x00\x00\x00"), (d.M_ME_TD_1, b"\x00\x40\x00"),
        (d.M_ME_TE_1, b"\x10\x00\x00"), (d.M_ME_TF_1, struct.pack("<fB", 1.5, 0)),
        (d.M_IT_TB_1, struct.pack("<iB", 99, 0)),
    ],
)
def test_cp56_types(tid: int, element: bytes) -> None:
    a = d.decode_apdu(apdu(tid, [ioa(5) + element + d.encode_cp56(NOW)]), NOW)
    assert a is not None
    assert a.objects[0].device_ts == NOW


def test_sequence_and_multi_object() -> None:
    objs = [struct.pack("<fB", float(i), 0) for i in range(30)]
    a = d.decode_apdu(apdu(d.M_ME_NC_1, [ioa(100) + objs[0], *objs[1:]], sq=True, cot=20), NOW)
    assert a is not None and [o.ioa for o in a.objects] == list(range(100, 130))
    assert [o.value for o in a.objects] == [float(i) for i in range(30)]
    a = d.decode_apdu(apdu(d.M_ME_NC_1, [ioa(9 + i) + objs[i] for i in range(3)]), NOW)
    assert a is not None and [o.ioa for o in a.objects] == [9, 10, 11]


def test_invalid_time_tag_flags_clock() -> None:
    t = bytearray(d.encode_cp56(NOW))
    t[2] |= 0x80
    a = d.decode_apdu(apdu(d.M_ME_TF_1, [ioa(5) + struct.pack("<fB", 1.0, 0) + bytes(t)]), NOW)
    assert a is not None
    assert a.objects[0].device_ts is None and a.objects[0].quality == Quality.CLOCK_INVALID


def test_confirmations_and_frames() -> None:
    assert d.decode_apdu(bytes.fromhex("68040b000000"), NOW) is None  # STARTDT con
    a = d.decode_apdu(apdu(d.C_IC_NA_1, [ioa(0) + b"\x14"], cot=10), NOW)
    assert a is not None and a.objects == [] and a.cot == d.COT_ACTTERM and a.raw_tail[-1] == 20
    a = d.decode_apdu(apdu(d.C_IC_NA_1, [ioa(0) + b"\x14"], cot=7, neg=True), NOW)
    assert a is not None and a.negative


def test_malformed_is_an_error_naming_the_field() -> None:
    with pytest.raises(d.ApduError, match="start byte"):
        d.decode_apdu(b"\x00\x04\x00\x00\x00\x00", NOW)
    bad = apdu(d.M_ME_NC_1, [ioa(1) + struct.pack("<fB", 1.0, 0)])
    bad = bad[:6] + bytes([bad[6], 5]) + bad[8:]  # claims 5 objects, carries 1
    with pytest.raises(d.ApduError, match="M_ME_NC_1 with 5 objects"):
        d.decode_apdu(bad, NOW)
