"""Register decoding and encoding: pure functions shared by the driver and the simulator.

Byte order names the four bytes of a 32-bit value as they appear on the wire, A the most
significant: `ABCD` big-endian (Modbus default), `CDAB` word-swapped (big-endian words, low
word first: many meters), `BADC` byte-swapped words, `DCBA` fully little-endian. For 64-bit
values the same rule extends to four words; for 16-bit values only the byte swap applies
(`BADC`/`DCBA`). Strings keep their word sequence; `BADC`/`DCBA` swap the two characters of
each register.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence

from protocols.modbus.config import TYPE_WORDS

_STRUCT = {
    "int16": ">h", "uint16": ">H", "int32": ">i", "uint32": ">I", "int64": ">q", "uint64": ">Q",
    "float32": ">f", "float64": ">d",
}
_BITS = {"int16": 16, "uint16": 16, "int32": 32, "uint32": 32, "int64": 64, "uint64": 64}
_SIGNED = {"int16", "int32", "int64"}


def _swap(word: int) -> int:
    return ((word & 0xFF) << 8) | (word >> 8)


def words_to_canonical(words: Sequence[int], order: str) -> list[int]:
    """Reorder wire registers into big-endian (ABCD) word order."""
    out = list(words)
    if order in ("CDAB", "DCBA") and len(out) > 1:
        out.reverse()
    if order in ("BADC", "DCBA"):
        out = [_swap(w) for w in out]
    return out


def canonical_to_words(words: Sequence[int], order: str) -> list[int]:
    """Reorder big-endian words into wire order (inverse of `words_to_canonical`)."""
    out = list(words)
    if order in ("BADC", "DCBA"):
        out = [_swap(w) for w in out]
    if order in ("CDAB", "DCBA") and len(out) > 1:
        out.reverse()
    return out


def decode(words: Sequence[int], dtype: str, order: str = "ABCD", bit: int | None = None) -> float:
    """The numeric value of `words` (wire registers) as `dtype`; bitfields give 0.0 or 1.0."""
    if dtype == "bitfield":
        if len(words) != 1 or bit is None:
            raise ValueError("bitfield needs one register and a bit")
        w = words[0]
        if order in ("BADC", "DCBA"):
            w = _swap(w)
        return float((w >> bit) & 1)
    if dtype == "bool":
        return 1.0 if words[0] else 0.0
    n = TYPE_WORDS[dtype]
    if len(words) != n:
        raise ValueError(f"{dtype} needs {n} registers, got {len(words)}")
    raw = b"".join(w.to_bytes(2, "big") for w in words_to_canonical(words, order))
    return float(struct.unpack(_STRUCT[dtype], raw)[0])


def decode_int(words: Sequence[int], dtype: str, order: str = "ABCD") -> int:
    """The exact integer value (no float rounding) of an integer type."""
    raw = b"".join(w.to_bytes(2, "big") for w in words_to_canonical(words, order))
    return int(struct.unpack(_STRUCT[dtype], raw)[0])


def decode_string(words: Sequence[int], length: int, order: str = "ABCD") -> str:
    """A string of at most `length` characters, two per register, NULs and spaces stripped."""
    data = bytearray()
    for w in words:
        if order in ("BADC", "DCBA"):
            w = _swap(w)
        data += w.to_bytes(2, "big")
    return bytes(data[:length]).split(b"\x00", 1)[0].decode("latin-1").strip()


def encode(value: float, dtype: str, order: str = "ABCD", *, wrap: bool = False) -> list[int]:
    """Wire registers holding `value` as `dtype`.

    Integers are rounded; out of range they wrap modulo the type's range when `wrap` (a
    counter rolling over) and saturate otherwise.
    """
    if dtype in ("bitfield", "bool"):
        raise ValueError("encode bits with encode_bits")
    if dtype.startswith("float"):
        raw = struct.pack(_STRUCT[dtype], value)
    else:
        bits = _BITS[dtype]
        if math.isnan(value):
            iv = 0
        else:
            iv = round(value)
        lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if dtype in _SIGNED else (0, (1 << bits) - 1)
        if wrap:
            iv %= 1 << bits
            if dtype in _SIGNED and iv > hi:
                iv -= 1 << bits
        else:
            iv = min(hi, max(lo, iv))
        raw = struct.pack(_STRUCT[dtype], iv)
    words = [int.from_bytes(raw[i : i + 2], "big") for i in range(0, len(raw), 2)]
    return canonical_to_words(words, order)


def encode_string(text: str, length: int, order: str = "ABCD") -> list[int]:
    """Registers holding `text` padded with NULs to `length` characters."""
    data = text.encode("latin-1", "replace")[:length].ljust(length + (length % 2), b"\x00")
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if order in ("BADC", "DCBA"):
        words = [_swap(w) for w in words]
    return words


def modulus(dtype: str) -> float | None:
    """The wrap-around modulus of an integer type's counter (None for floats)."""
    bits = _BITS.get(dtype)
    return float(1 << bits) if bits else None
