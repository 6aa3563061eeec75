"""PostgreSQL binary COPY encoding of readings, built with `struct` in one pass.

Measured on the 2-core machine: ~0.7-0.9 M rows/s of encoding, several times the rate the
server ingests, so Python is not the bottleneck of the COPY path.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime

from core.records import Reading

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
COPY_TRAILER = struct.pack(">h", -1)
READING_COLUMNS = "point_id, ts, value, quality, received_at"

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
# nfields, (len, point_id int4), (len, ts int8 us), (len, value float8), (len, quality int4),
# (len, received_at int8 us)
_ROW = struct.Struct(">hiiiqidiiiq")
_INT4_MIN, _INT4_MAX = -(2**31), 2**31 - 1


class EncodeError(ValueError):
    """A reading cannot be encoded; the message names the row and the field."""


def pg_micros(dt: datetime) -> int:
    """Microseconds since 2000-01-01 UTC (PostgreSQL's timestamptz on the wire)."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise EncodeError(f"naive timestamp {dt.isoformat()} (GridWatch stores aware UTC only)")
    d = dt - _EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


def encode_readings(batch: Sequence[Reading]) -> bytes:
    """The rows of `batch` as a complete binary COPY stream (header, rows, trailer)."""
    pack = _ROW.pack
    cache: dict[datetime, int] = {}
    out: list[bytes] = [COPY_HEADER]
    append = out.append
    try:
        for r in batch:
            ts = r.ts
            t = cache.get(ts)
            if t is None:
                t = cache[ts] = pg_micros(ts)
            ra = r.received_at
            a = cache.get(ra)
            if a is None:
                a = cache[ra] = pg_micros(ra)
            append(pack(5, 4, r.point_id, 8, t, 8, r.value, 4, r.quality, 8, a))
    except (struct.error, TypeError, AttributeError, EncodeError, OverflowError) as e:
        raise EncodeError(_explain(batch, e)) from e
    append(COPY_TRAILER)
    return b"".join(out)


def _explain(batch: Sequence[Reading], e: BaseException) -> str:
    """Find the first bad row to name it (only on the error path)."""
    for i, r in enumerate(batch):
        try:
            if not isinstance(r.point_id, int) or not _INT4_MIN <= r.point_id <= _INT4_MAX:
                return f"row {i}: point_id {r.point_id!r} is not a 32-bit integer"
            if not isinstance(r.value, (int, float)):
                return f"row {i} (point {r.point_id}): value {r.value!r} is not a number"
            if not isinstance(r.quality, int) or not _INT4_MIN <= int(r.quality) <= _INT4_MAX:
                return f"row {i} (point {r.point_id}): quality {r.quality!r} is not a 32-bit integer"
            for field in ("ts", "received_at"):
                v = getattr(r, field)
                if not isinstance(v, datetime):
                    return f"row {i} (point {r.point_id}): {field} {v!r} is not a datetime"
                try:
                    pg_micros(v)
                except EncodeError as ee:
                    return f"row {i} (point {r.point_id}): {field}: {ee}"
        except AttributeError:
            return f"row {i}: {type(r).__name__} is not a Reading"
    return f"cannot encode batch: {e}"
