"""A crash-safe disk spool for batches the database could not take.

Layout of the spool directory::

    seg-000000000001.spool   segment files, appended in order, at most `segment_bytes` each
    cursor                   "<segment> <offset>" of the oldest record not yet written to the DB
    quarantine.jsonl         batches the database rejected, with the reason (never deleted)

Each record is framed as ``length:u32le crc32:u32le payload`` where the payload is a batch of
readings (``count:u32le`` then per reading ``point_id:i64 ts_us:i64 value:f64 quality:i64
received_us:i64``). `append` writes and fsyncs before it returns, so a caller may acknowledge
the batch afterwards. On open every segment is scanned; a torn or corrupt tail (short frame,
CRC mismatch) is cut off. Records are replayed oldest first (`peek`) and released (`commit`)
only after the database accepted them; a segment file is removed once all its records are
released. A crash between a write and its commit replays that record again: storage's writes
are idempotent per (point, ts), so that creates no duplicates.

All methods are blocking and thread-safe; the forwarder calls them through `asyncio.to_thread`.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.records import Quality, Reading

_FRAME = struct.Struct("<II")
_COUNT = struct.Struct("<I")
_ROW = struct.Struct("<qqdqq")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_MAX_RECORD = 1 << 30


class SpoolFull(Exception):
    """The spool reached `max_bytes`; the caller must wait (backpressure)."""


def encode(readings: Sequence[Reading]) -> bytes:
    """The payload of one record."""
    pack = _ROW.pack
    epoch = _EPOCH
    us = _US
    parts = [_COUNT.pack(len(readings))]
    parts.extend(pack(r.point_id, (r.ts - epoch) // us, r.value, int(r.quality), (r.received_at - epoch) // us)
                 for r in readings)
    return b"".join(parts)


def decode(payload: bytes) -> list[Reading]:
    """The readings of one record payload."""
    (n,) = _COUNT.unpack_from(payload, 0)
    if len(payload) != _COUNT.size + n * _ROW.size:
        raise ValueError("record length does not match its row count")
    epoch = _EPOCH
    out = []
    for pid, ts, value, q, ra in _ROW.iter_unpack(memoryview(payload)[_COUNT.size:]):
        out.append(Reading(pid, epoch + timedelta(microseconds=ts), value, Quality(q),
                           epoch + timedelta(microseconds=ra)))
    return out


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """Where one record lives: segment number, offset of its frame, frame size, rows."""

    segment: int
    offset: int
    size: int
    rows: int


class Spool:
    """The disk spool (see module docstring). Call `open()` before use."""

    def __init__(self, directory: str | Path, *, max_bytes: int = 2 * 1024**3,
                 segment_bytes: int = 16 * 1024**2) -> None:
        self.dir = Path(directory)
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._records: deque[SpoolRecord] = deque()
        self._seg_sizes: dict[int, int] = {}
        self._write_seg = 0
        self._wf: int | None = None  # fd of the segment being appended
        self.torn_bytes_cut = 0
        self.opened = False

    # -- paths
    def _seg_path(self, n: int) -> Path:
        return self.dir / f"seg-{n:012d}.spool"

    def _segments(self) -> list[int]:
        out = []
        for p in self.dir.glob("seg-*.spool"):
            try:
                out.append(int(p.name[4:-6]))
            except ValueError:
                continue
        return sorted(out)

    def open(self) -> Spool:
        """Create the directory, recover segments (cut torn tails) and load the cursor."""
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            cur_seg, cur_off = self._read_cursor()
            self._records.clear()
            self._seg_sizes.clear()
            for n in self._segments():
                if n < cur_seg:
                    self._seg_path(n).unlink(missing_ok=True)
                    continue
                size = self._scan(n, cur_off if n == cur_seg else 0)
                self._seg_sizes[n] = size
            self._write_seg = max(self._seg_sizes, default=cur_seg)
            if self._write_seg == 0:
                self._write_seg = 1
            self._drop_empty_segments()
            self.opened = True
        return self

    def _scan(self, n: int, start: int) -> int:
        path = self._seg_path(n)
        with path.open("r+b") as f:
            data = f.read()
            off = 0
            good = 0
            while off + _FRAME.size <= len(data):
                length, crc = _FRAME.unpack_from(data, off)
                end = off + _FRAME.size + length
                if length < _COUNT.size or length > _MAX_RECORD or end > len(data):
                    break
                payload = data[off + _FRAME.size:end]
                if zlib.crc32(payload) != crc:
                    break
                (rows,) = _COUNT.unpack_from(payload, 0)
                if _COUNT.size + rows * _ROW.size != length:
                    break
                if off >= start:
                    self._records.append(SpoolRecord(n, off, end - off, rows))
                off = good = end
            if good < len(data):
                self.torn_bytes_cut += len(data) - good
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        return good

    def _read_cursor(self) -> tuple[int, int]:
        try:
            seg, off = (self.dir / "cursor").read_text().split()
            return int(seg), int(off)
        except (OSError, ValueError):
            return 0, 0

    def _write_cursor(self) -> None:
        if self._records:
            r = self._records[0]
            text = f"{r.segment} {r.offset}\n"
        else:
            text = f"{self._write_seg} {self._seg_sizes.get(self._write_seg, 0)}\n"
        tmp = self.dir / "cursor.tmp"
        tmp.write_text(text)
        os.replace(tmp, self.dir / "cursor")

    def _drop_empty_segments(self) -> None:
        live = {r.segment for r in self._records}
        for n in list(self._seg_sizes):
            if n not in live and n != self._write_seg:
                self._seg_path(n).unlink(missing_ok=True)
                del self._seg_sizes[n]

    # -- state
    @property
    def depth(self) -> int:
        """Records waiting to be replayed."""
        return len(self._records)

    @property
    def rows(self) -> int:
        """Readings waiting to be replayed."""
        return sum(r.rows for r in self._records)

    @property
    def bytes(self) -> int:
        """Bytes of the segment files on disk."""
        return sum(self._seg_sizes.values())

    def __bool__(self) -> bool:
        return True

    def empty(self) -> bool:
        """True when nothing waits to be replayed."""
        return not self._records

    # -- write
    def append(self, readings: Sequence[Reading]) -> SpoolRecord:
        """Append one batch durably (fsync) and return where it is. Raises `SpoolFull`."""
        payload = encode(readings)
        frame = _FRAME.pack(len(payload), zlib.crc32(payload)) + payload
        with self._lock:
            if not self.opened:
                raise RuntimeError("Spool.open() was not called")
            if self.bytes + len(frame) > self.max_bytes and self._records:
                raise SpoolFull(f"spool {self.dir} is full ({self.bytes} of {self.max_bytes} bytes)")
            size = self._seg_sizes.get(self._write_seg, 0)
            if size > 0 and size + len(frame) > self.segment_bytes:
                self._close_writer()
                self._write_seg += 1
                size = 0
            if self._wf is None:
                self._wf = os.open(self._seg_path(self._write_seg), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                if size == 0:
                    self._fsync_dir()
            os.write(self._wf, frame)
            os.fsync(self._wf)
            rec = SpoolRecord(self._write_seg, size, len(frame), len(readings))
            self._seg_sizes[self._write_seg] = size + len(frame)
            self._records.append(rec)
            return rec

    def _fsync_dir(self) -> None:
        fd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _close_writer(self) -> None:
        if self._wf is not None:
            os.close(self._wf)
            self._wf = None

    # -- replay
    def peek(self) -> tuple[SpoolRecord, list[Reading]] | None:
        """The oldest record not yet released, decoded; None when the spool is empty."""
        with self._lock:
            if not self._records:
                return None
            rec = self._records[0]
            with self._seg_path(rec.segment).open("rb") as f:
                f.seek(rec.offset)
                frame = f.read(rec.size)
        length, _crc = _FRAME.unpack_from(frame, 0)
        return rec, decode(frame[_FRAME.size:_FRAME.size + length])

    def pending(self) -> list[list[Reading]]:
        """Every record not yet released, decoded, oldest first (inspection; nothing changes)."""
        with self._lock:
            recs = list(self._records)
        out = []
        for rec in recs:
            with self._seg_path(rec.segment).open("rb") as f:
                f.seek(rec.offset)
                frame = f.read(rec.size)
            length, _crc = _FRAME.unpack_from(frame, 0)
            out.append(decode(frame[_FRAME.size:_FRAME.size + length]))
        return out

    def commit(self, rec: SpoolRecord) -> None:
        """Release `rec` (it was written to the database); remove its segment when done."""
        with self._lock:
            if not self._records or self._records[0] != rec:
                raise ValueError("commit must release the oldest record")
            self._records.popleft()
            if not self._records or self._records[0].segment != rec.segment:
                if rec.segment == self._write_seg:
                    # The segment being written is fully replayed: start a fresh one.
                    self._close_writer()
                    self._seg_path(rec.segment).unlink(missing_ok=True)
                    del self._seg_sizes[rec.segment]
                    self._write_seg += 1
                else:
                    self._seg_path(rec.segment).unlink(missing_ok=True)
                    self._seg_sizes.pop(rec.segment, None)
            self._write_cursor()

    # -- quarantine
    def quarantine(self, readings: Sequence[Reading], reason: str) -> None:
        """Keep a rejected batch with its reason in `quarantine.jsonl` (fsynced)."""
        doc = {
            "at": datetime.now(UTC).isoformat(),
            "reason": reason,
            "rows": [[r.point_id, r.ts.isoformat(), r.value, int(r.quality), r.received_at.isoformat()]
                     for r in readings],
        }
        line = (json.dumps(doc) + "\n").encode()
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.dir / "quarantine.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                os.write(fd, line)
                os.fsync(fd)
            finally:
                os.close(fd)

    def close(self) -> None:
        """Close the segment being written."""
        with self._lock:
            self._close_writer()
