import os
import struct
import zlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from collector.spool import Spool, SpoolFull, decode, encode
from core.records import Quality, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def batch(tag: int, n: int) -> list[Reading]:
    return [Reading(tag * 1000 + i, T0 + timedelta(microseconds=tag * 7 + i), tag + i / 8, Quality(i % 3),
                    T0 + timedelta(seconds=tag)) for i in range(n)]


def drain(sp: Spool) -> list[list[Reading]]:
    out = []
    while (item := sp.peek()) is not None:
        rec, rows = item
        out.append(rows)
        sp.commit(rec)
    return out


def test_encode_decode_roundtrip() -> None:
    b = batch(3, 5)
    assert decode(encode(b)) == b
    assert decode(encode([])) == []


def test_append_peek_commit_in_order(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=4096).open()
    batches = [batch(k, 20) for k in range(30)]  # 30 * ~808 bytes: several segments
    for b in batches:
        sp.append(b)
    assert sp.depth == 30 and sp.rows == 600
    assert len(list(tmp_path.glob("seg-*.spool"))) > 2
    assert drain(sp) == batches
    assert sp.empty() and sp.depth == 0
    assert len(list(tmp_path.glob("seg-*.spool"))) <= 1


def test_reopen_keeps_unreleased_records(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=4096).open()
    batches = [batch(k, 10) for k in range(12)]
    for b in batches:
        sp.append(b)
    for _ in range(5):
        rec, _rows = sp.peek()  # type: ignore[misc]
        sp.commit(rec)
    # crash: no close()
    sp2 = Spool(tmp_path, segment_bytes=4096).open()
    assert drain(sp2) == batches[5:]


def test_torn_tail_is_cut_and_appends_continue(tmp_path: Path) -> None:
    sp = Spool(tmp_path).open()
    sp.append(batch(1, 3))
    sp.append(batch(2, 3))
    seg = sorted(tmp_path.glob("seg-*.spool"))[-1]
    good = seg.stat().st_size
    payload = encode(batch(3, 3))
    frame = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    with seg.open("ab") as f:
        f.write(frame[: len(frame) // 2])
    sp2 = Spool(tmp_path).open()
    assert sp2.torn_bytes_cut == len(frame) // 2
    assert seg.stat().st_size == good
    sp2.append(batch(4, 2))
    assert drain(sp2) == [batch(1, 3), batch(2, 3), batch(4, 2)]


def test_corrupt_record_crc_cuts_from_there(tmp_path: Path) -> None:
    sp = Spool(tmp_path).open()
    sp.append(batch(1, 3))
    r2 = sp.append(batch(2, 3))
    seg = sorted(tmp_path.glob("seg-*.spool"))[-1]
    with seg.open("r+b") as f:
        f.seek(r2.offset + 12)
        f.write(b"\xff\xfe")
    sp2 = Spool(tmp_path).open()
    assert drain(sp2) == [batch(1, 3)]


def test_full_spool_refuses(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=1024 * 1024, segment_bytes=64 * 1024).open()
    big = batch(1, 5000)  # ~200 KB
    n = 0
    with pytest.raises(SpoolFull, match="is full"):
        for _ in range(10):
            sp.append(big)
            n += 1
    assert 3 <= n <= 6
    rec, _ = sp.peek()  # type: ignore[misc]
    sp.commit(rec)
    sp.append(big)


def test_quarantine_keeps_reason(tmp_path: Path) -> None:
    sp = Spool(tmp_path).open()
    sp.quarantine(batch(1, 2), "rejected: value out of int range")
    text = (tmp_path / "quarantine.jsonl").read_text()
    assert "rejected: value out of int range" in text and text.count("\n") == 1


ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(1, 40)),
        st.tuples(st.just("commit"), st.integers(1, 3)),
        st.tuples(st.just("crash"), st.sampled_from(["none", "half", "garbage", "header"])),
    ),
    max_size=40,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=ops)
def test_property_crash_reopen_never_loses_acknowledged(tmp_path_factory: pytest.TempPathFactory,
                                                       ops: list[tuple[str, object]]) -> None:
    d = tmp_path_factory.mktemp("spool")
    sp = Spool(d, segment_bytes=4096).open()
    model: list[list[Reading]] = []
    tag = 0
    for op, arg in ops:
        if op == "append":
            tag += 1
            b = batch(tag, int(arg))  # type: ignore[call-overload]
            sp.append(b)
            model.append(b)  # acknowledged once append returned
        elif op == "commit":
            for _ in range(int(arg)):  # type: ignore[call-overload]
                item = sp.peek()
                if item is None:
                    assert not model
                    break
                rec, rows = item
                assert rows == model[0]
                sp.commit(rec)
                model.pop(0)
        else:
            sp.close()
            segs = sorted(d.glob("seg-*.spool"))
            if segs and arg != "none":
                payload = encode(batch(999, 5))
                frame = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
                tail = {"half": frame[: len(frame) // 2], "garbage": os.urandom(37), "header": frame[:5]}[str(arg)]
                with segs[-1].open("ab") as f:
                    f.write(tail)
            sp = Spool(d, segment_bytes=4096).open()
            assert sp.depth == len(model)
    sp.close()
    sp = Spool(d, segment_bytes=4096).open()
    assert drain(sp) == model
