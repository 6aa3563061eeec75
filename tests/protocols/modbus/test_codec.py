"""Register codec: every data type in every byte order, against hand-computed wire words."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.modbus import codec

ORDERS = ["ABCD", "DCBA", "BADC", "CDAB"]


@pytest.mark.parametrize(
    ("order", "words"),
    [
        ("ABCD", [0x42F6, 0xE979]),
        ("CDAB", [0xE979, 0x42F6]),
        ("BADC", [0xF642, 0x79E9]),
        ("DCBA", [0x79E9, 0xF642]),
    ],
)
def test_float32_known_vectors(order: str, words: list[int]) -> None:
    assert codec.decode(words, "float32", order) == pytest.approx(123.456, rel=1e-6)
    assert codec.encode(123.456, "float32", order) == words


def test_int32_and_64_known_vectors() -> None:
    # 0x01020304 as ABCD / CDAB / BADC / DCBA
    assert codec.decode([0x0102, 0x0304], "uint32", "ABCD") == 0x01020304
    assert codec.decode([0x0304, 0x0102], "uint32", "CDAB") == 0x01020304
    assert codec.decode([0x0201, 0x0403], "uint32", "BADC") == 0x01020304
    assert codec.decode([0x0403, 0x0201], "uint32", "DCBA") == 0x01020304
    assert codec.decode([0xFFFF, 0xFFFE], "int32", "ABCD") == -2
    w = [0x0102, 0x0304, 0x0506, 0x0708]
    assert codec.decode_int(w, "uint64", "ABCD") == 0x0102030405060708
    assert codec.decode_int(list(reversed(w)), "uint64", "CDAB") == 0x0102030405060708
    assert codec.decode([0xFFFF] * 4, "int64", "ABCD") == -1
    assert codec.decode([0x1234], "uint16", "BADC") == 0x3412
    assert codec.decode([0x1234], "uint16", "CDAB") == 0x1234
    assert codec.decode([0x8000], "int16") == -32768
    f64 = struct.pack(">d", math.pi)
    words = [int.from_bytes(f64[i:i + 2], "big") for i in range(0, 8, 2)]
    assert codec.decode(words, "float64", "ABCD") == math.pi
    assert codec.decode(list(reversed(words)), "float64", "CDAB") == math.pi


INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1), "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1), "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1), "uint64": (0, 2**64 - 1),
}


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", list(INT_RANGES))
@given(data=st.data())
def test_integer_roundtrip(order: str, dtype: str, data: st.DataObject) -> None:
    lo, hi = INT_RANGES[dtype]
    v = data.draw(st.integers(lo, hi))
    words = codec.encode(v, dtype, order)
    assert all(0 <= w <= 0xFFFF for w in words)
    assert codec.decode_int(words, dtype, order) == v


@pytest.mark.parametrize("order", ORDERS)
@given(v=st.floats(allow_nan=False, width=32))
def test_float32_roundtrip(order: str, v: float) -> None:
    assert codec.decode(codec.encode(v, "float32", order), "float32", order) == v


@pytest.mark.parametrize("order", ORDERS)
@given(v=st.floats(allow_nan=False))
def test_float64_roundtrip(order: str, v: float) -> None:
    assert codec.decode(codec.encode(v, "float64", order), "float64", order) == v


def test_counter_wrap_and_saturation() -> None:
    assert codec.encode(65536 + 5, "uint16", wrap=True) == [5]
    assert codec.encode(65536 + 5, "uint16") == [0xFFFF]
    assert codec.encode(-3, "uint32") == [0, 0]
    assert codec.modulus("uint32") == 2.0**32
    assert codec.modulus("float32") is None


@pytest.mark.parametrize("order", ORDERS)
def test_bitfield_and_string(order: str) -> None:
    word = codec.encode(0b1000_0000_0000_1001, "uint16", order)
    assert [codec.decode(word, "bitfield", order, b) for b in (0, 1, 3, 15)] == [1.0, 0.0, 1.0, 1.0]
    regs = codec.encode_string("SDM630-X", 10, order)
    assert len(regs) == 5
    assert codec.decode_string(regs, 10, order) == "SDM630-X"
    assert codec.decode_string(codec.encode_string("ODD", 3, order), 3, order) == "ODD"


def test_wrong_register_count_is_an_error() -> None:
    with pytest.raises(ValueError, match="needs 2 registers"):
        codec.decode([1], "float32")
