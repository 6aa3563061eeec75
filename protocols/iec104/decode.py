"""A small, fast decoder for IEC 60870-5-104 monitoring APDUs (pure Python, no I/O).

The driver hands every received APDU (c104's `on_receive_raw`) to `decode_apdu`, so values,
quality bits and time tags are read straight from the wire: no c104 quirks (swapped counter
flags, naive local timestamps, one type id per IOA) can reach GridWatch. One call decodes a
whole multi-object ASDU, which keeps the per-update cost low.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from core.records import Quality

# Type ids (IEC 60870-5-101/104, 7.2.1.1).
M_SP_NA_1, M_SP_TA_1, M_DP_NA_1, M_DP_TA_1, M_ST_NA_1, M_ST_TA_1 = 1, 2, 3, 4, 5, 6
M_BO_NA_1, M_BO_TA_1, M_ME_NA_1, M_ME_TA_1, M_ME_NB_1, M_ME_TB_1 = 7, 8, 9, 10, 11, 12
M_ME_NC_1, M_ME_TC_1, M_IT_NA_1, M_IT_TA_1, M_PS_NA_1, M_ME_ND_1 = 13, 14, 15, 16, 20, 21
M_SP_TB_1, M_DP_TB_1, M_ST_TB_1, M_BO_TB_1, M_ME_TD_1, M_ME_TE_1 = 30, 31, 32, 33, 34, 35
M_ME_TF_1, M_IT_TB_1, M_EI_NA_1 = 36, 37, 70
C_IC_NA_1, C_CI_NA_1, C_CS_NA_1, C_TS_TA_1 = 100, 101, 103, 107

TYPE_NAMES: dict[int, str] = {
    1: "M_SP_NA_1", 2: "M_SP_TA_1", 3: "M_DP_NA_1", 4: "M_DP_TA_1", 5: "M_ST_NA_1", 6: "M_ST_TA_1",
    7: "M_BO_NA_1", 8: "M_BO_TA_1", 9: "M_ME_NA_1", 10: "M_ME_TA_1", 11: "M_ME_NB_1", 12: "M_ME_TB_1",
    13: "M_ME_NC_1", 14: "M_ME_TC_1", 15: "M_IT_NA_1", 16: "M_IT_TA_1", 20: "M_PS_NA_1", 21: "M_ME_ND_1",
    30: "M_SP_TB_1", 31: "M_DP_TB_1", 32: "M_ST_TB_1", 33: "M_BO_TB_1", 34: "M_ME_TD_1", 35: "M_ME_TE_1",
    36: "M_ME_TF_1", 37: "M_IT_TB_1", 70: "M_EI_NA_1",
    100: "C_IC_NA_1", 101: "C_CI_NA_1", 103: "C_CS_NA_1", 107: "C_TS_TA_1",
}
TYPE_IDS: dict[str, int] = {v: k for k, v in TYPE_NAMES.items()}

# Causes of transmission used here.
COT_PERIODIC, COT_BACKGROUND, COT_SPONTANEOUS, COT_INIT, COT_REQUEST = 1, 2, 3, 4, 5
COT_ACT, COT_ACTCON, COT_DEACT, COT_DEACTCON, COT_ACTTERM = 6, 7, 8, 9, 10
COT_INROGEN, COT_REQCOGEN = 20, 37


def cot_is_interrogation(cot: int) -> bool:
    """True for the causes of a (group) general interrogation answer (20..36)."""
    return 20 <= cot <= 36


def cot_is_counter(cot: int) -> bool:
    """True for the causes of a counter interrogation answer (37..41)."""
    return 37 <= cot <= 41


def cp56_to_utc(b: bytes | memoryview, off: int) -> tuple[datetime | None, bool]:
    """Decode a CP56Time2a at `off` as UTC: (time or None if unparseable, invalid flag)."""
    ms = b[off] | (b[off + 1] << 8)
    minute = b[off + 2] & 0x3F
    iv = bool(b[off + 2] & 0x80)
    hour = b[off + 3] & 0x1F
    day = b[off + 4] & 0x1F
    month = b[off + 5] & 0x0F
    year = 2000 + (b[off + 6] & 0x7F)
    try:
        ts = datetime(year, month, day, hour, minute, ms // 1000, (ms % 1000) * 1000, tzinfo=UTC)
    except ValueError:
        return None, True
    return ts, iv


def cp24_to_utc(b: bytes | memoryview, off: int, ref: datetime) -> tuple[datetime | None, bool]:
    """Decode a CP24Time2a (minutes and ms only), completed with the hour of `ref` (UTC)."""
    ms = b[off] | (b[off + 1] << 8)
    minute = b[off + 2] & 0x3F
    iv = bool(b[off + 2] & 0x80)
    if ms >= 60_000 or minute >= 60:
        return None, True
    ts = ref.replace(minute=minute, second=ms // 1000, microsecond=(ms % 1000) * 1000)
    if ts > ref + timedelta(minutes=5):
        ts -= timedelta(hours=1)
    return ts, iv


def encode_cp56(ts: datetime) -> bytes:
    """Encode an aware datetime as CP56Time2a in UTC (used by tests and tools)."""
    u = ts.astimezone(UTC)
    ms = u.second * 1000 + u.microsecond // 1000
    return bytes([ms & 0xFF, ms >> 8, u.minute, u.hour, u.day | (u.isoweekday() << 5), u.month, u.year - 2000])


@dataclass(frozen=True, slots=True)
class Obj:
    """One decoded information object: raw value, GridWatch quality, device time."""

    ioa: int
    value: float
    quality: Quality
    device_ts: datetime | None


@dataclass(frozen=True, slots=True)
class Asdu:
    """A decoded ASDU: header fields and its information objects (monitoring types only)."""

    type_id: int
    cot: int
    negative: bool
    test: bool
    ca: int
    objects: list[Obj]
    raw_tail: bytes = b""  # the object bytes of a command confirmation (QOI/QCC/time)


_F = struct.Struct("<f")
_H = struct.Struct("<h")
_I = struct.Struct("<I")
_i = struct.Struct("<i")

_QDS = 0xF1  # OV BL SB NT IV
_SIQ = 0xF0  # BL SB NT IV (bit 0 is the value)


def _siq(b: bytes, o: int) -> tuple[float, int]:
    return float(b[o] & 0x01), b[o] & _SIQ


def _diq(b: bytes, o: int) -> tuple[float, int]:
    return float(b[o] & 0x03), b[o] & _SIQ


def _vti(b: bytes, o: int) -> tuple[float, int]:
    v = b[o] & 0x7F
    if v & 0x40:
        v -= 0x80
    return float(v), b[o + 1] & _QDS


def _bsi(b: bytes, o: int) -> tuple[float, int]:
    return float(_I.unpack_from(b, o)[0]), b[o + 4] & _QDS


def _nva(b: bytes, o: int) -> tuple[float, int]:
    return _H.unpack_from(b, o)[0] / 32768.0, b[o + 2] & _QDS


def _nva_noq(b: bytes, o: int) -> tuple[float, int]:
    return _H.unpack_from(b, o)[0] / 32768.0, 0


def _sva(b: bytes, o: int) -> tuple[float, int]:
    return float(_H.unpack_from(b, o)[0]), b[o + 2] & _QDS


def _flt(b: bytes, o: int) -> tuple[float, int]:
    return float(_F.unpack_from(b, o)[0]), b[o + 4] & _QDS


def _bcr(b: bytes, o: int) -> tuple[float, int]:
    # Sequence byte: SQ bits 0-4, CY 0x20, CA 0x40, IV 0x80 (from the wire, not from c104's
    # BinaryCounterQuality, which swaps Carry and Adjusted).
    s = b[o + 4]
    q = 0
    if s & 0x20:
        q |= Quality.CARRY
    if s & 0x40:
        q |= Quality.ADJUSTED
    if s & 0x80:
        q |= Quality.INVALID
    return float(_i.unpack_from(b, o)[0]), q


def _scd(b: bytes, o: int) -> tuple[float, int]:
    return float(_I.unpack_from(b, o)[0]), b[o + 4] & _QDS


# type id -> (element decoder, element size without time, time tag size 0 / 3 / 7)
_Dec = Callable[[bytes, int], tuple[float, int]]
ELEMENTS: dict[int, tuple[_Dec, int, int]] = {
    M_SP_NA_1: (_siq, 1, 0), M_SP_TA_1: (_siq, 1, 3), M_SP_TB_1: (_siq, 1, 7),
    M_DP_NA_1: (_diq, 1, 0), M_DP_TA_1: (_diq, 1, 3), M_DP_TB_1: (_diq, 1, 7),
    M_ST_NA_1: (_vti, 2, 0), M_ST_TA_1: (_vti, 2, 3), M_ST_TB_1: (_vti, 2, 7),
    M_BO_NA_1: (_bsi, 5, 0), M_BO_TA_1: (_bsi, 5, 3), M_BO_TB_1: (_bsi, 5, 7),
    M_ME_NA_1: (_nva, 3, 0), M_ME_TA_1: (_nva, 3, 3), M_ME_TD_1: (_nva, 3, 7),
    M_ME_NB_1: (_sva, 3, 0), M_ME_TB_1: (_sva, 3, 3), M_ME_TE_1: (_sva, 3, 7),
    M_ME_NC_1: (_flt, 5, 0), M_ME_TC_1: (_flt, 5, 3), M_ME_TF_1: (_flt, 5, 7),
    M_IT_NA_1: (_bcr, 5, 0), M_IT_TA_1: (_bcr, 5, 3), M_IT_TB_1: (_bcr, 5, 7),
    M_PS_NA_1: (_scd, 5, 0), M_ME_ND_1: (_nva_noq, 2, 0),
}
MONITORING_TYPES = frozenset(ELEMENTS)
TIME_TAGGED_TYPES = frozenset(t for t, (_, _, ts) in ELEMENTS.items() if ts)


class ApduError(ValueError):
    """An APDU could not be decoded; the message names the field."""


def decode_apdu(apdu: bytes, now: datetime) -> Asdu | None:
    """Decode one APDU. Returns None for S/U frames and for I-frames of types we ignore.

    `now` (aware UTC) completes CP24Time2a tags. Raises `ApduError` on malformed input.
    """
    if len(apdu) < 6 or apdu[0] != 0x68:
        raise ApduError("apci: not a 104 APDU (start byte)")
    if apdu[2] & 0x01:  # S or U frame
        return None
    if len(apdu) < 12:
        raise ApduError(f"asdu: too short ({len(apdu)} bytes)")
    tid = apdu[6]
    vsq = apdu[7]
    n = vsq & 0x7F
    sq = bool(vsq & 0x80)
    cot_b = apdu[8]
    cot = cot_b & 0x3F
    negative = bool(cot_b & 0x40)
    test = bool(cot_b & 0x80)
    ca = apdu[10] | (apdu[11] << 8)
    el = ELEMENTS.get(tid)
    if el is None:
        if tid in (C_IC_NA_1, C_CI_NA_1, C_CS_NA_1, M_EI_NA_1, C_TS_TA_1):
            return Asdu(tid, cot, negative, test, ca, [], bytes(apdu[12:]))
        return Asdu(tid, cot, negative, test, ca, [])
    dec, size, tsize = el
    objs: list[Obj] = []
    off = 12
    end = len(apdu)
    step = size + tsize
    need = (3 + n * step) if sq else n * (3 + step)
    if off + need > end:
        raise ApduError(f"asdu: {TYPE_NAMES.get(tid, tid)} with {n} objects needs {need} bytes, has {end - off}")
    ioa = 0
    if sq:
        ioa = apdu[off] | (apdu[off + 1] << 8) | (apdu[off + 2] << 16)
        off += 3
    for _ in range(n):
        if not sq:
            ioa = apdu[off] | (apdu[off + 1] << 8) | (apdu[off + 2] << 16)
            off += 3
        value, q = dec(apdu, off)
        ts: datetime | None = None
        if tsize == 7:
            ts, iv = cp56_to_utc(apdu, off + size)
            if iv or ts is None:
                ts = None
                q |= Quality.CLOCK_INVALID
        elif tsize == 3:
            ts, iv = cp24_to_utc(apdu, off + size, now)
            if iv or ts is None:
                ts = None
                q |= Quality.CLOCK_INVALID
        objs.append(Obj(ioa, value, Quality(q), ts))
        off += step
        if sq:
            ioa += 1
    return Asdu(tid, cot, negative, test, ca, objs)
