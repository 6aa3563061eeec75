"""Anomaly scores per reading and persisted detector models (tables from migrations 040/041).

Scores are written with a binary COPY into a temporary stage table and merged with
`ON CONFLICT DO UPDATE`, so a replayed batch (after a spool flush) is idempotent. The rows are
encoded with numpy in one vectorised pass (no Python loop per reading).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from storage.db import Database
from storage.sqlfiles import query

_FILE = "scores.sql"
_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_TRAILER = (-1).to_bytes(2, "big", signed=True)
_PG_EPOCH_S = 946684800  # 2000-01-01 in Unix seconds


@dataclass(frozen=True, slots=True)
class ScoreRow:
    """One stored anomaly score."""

    point_id: int
    ts: datetime
    score: float
    model: str

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> ScoreRow:
        """Build from a (point_id, ts, score, model) row."""
        return cls(int(row[0]), row[1], float(row[2]), str(row[3]))


@dataclass(frozen=True, slots=True)
class StoredModel:
    """A persisted model: version, training time and its serialised bytes."""

    name: str
    version: int
    trained_at: datetime
    blob: bytes


def encode_scores(point_ids: npt.ArrayLike, ts_epoch_s: npt.ArrayLike, scores: npt.ArrayLike,
                  model: str) -> bytes:
    """A binary COPY stream of (point_id int4, ts timestamptz, score float4, model text)."""
    pid = np.asarray(point_ids, dtype=np.int64)
    ts = np.asarray(ts_epoch_s, dtype=np.float64)
    sc = np.asarray(scores, dtype=np.float64)
    if not (len(pid) == len(ts) == len(sc)):
        raise ValueError("point_ids, ts and scores must have the same length")
    if len(pid) and (pid.min() < -(2**31) or pid.max() >= 2**31):
        raise ValueError("point_id out of int4 range")
    mb = model.encode()
    dt = np.dtype([("nf", ">i2"), ("l1", ">i4"), ("pid", ">i4"), ("l2", ">i4"), ("ts", ">i8"),
                   ("l3", ">i4"), ("score", ">f4"), ("l4", ">i4"), ("model", f"S{len(mb)}")])
    rows = np.empty(len(pid), dtype=dt)
    rows["nf"] = 4
    rows["l1"] = 4
    rows["pid"] = pid
    rows["l2"] = 8
    rows["ts"] = np.round((ts - _PG_EPOCH_S) * 1e6).astype(np.int64)
    rows["l3"] = 4
    rows["score"] = np.nan_to_num(sc, nan=0.0)
    rows["l4"] = len(mb)
    rows["model"] = mb
    return _HEADER + rows.tobytes() + _TRAILER


async def write_scores(db: Database, point_ids: npt.ArrayLike, ts_epoch_s: npt.ArrayLike,
                       scores: npt.ArrayLike, model: str) -> int:
    """Store one score per reading (idempotent per point, ts and model); return rows given."""
    data = encode_scores(point_ids, ts_epoch_s, scores, model)
    n = int(np.asarray(point_ids).shape[0])
    if n == 0:
        return 0
    async with db.connection() as conn:
        async with conn.transaction():
            await conn.execute(query(_FILE, "create_scores_stage"))
            cur = conn.cursor()
            async with cur.copy(query(_FILE, "copy_scores_stage")) as copy:
                await copy.write(data)
            await conn.execute(query(_FILE, "merge_scores_stage"))
    return n


async def read_scores(db: Database, point_id: int, since: datetime, until: datetime) -> list[ScoreRow]:
    """Scores of one point in [since, until), by time."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "select_scores"),
                                 {"point_id": point_id, "since": since, "until": until})
        rows = await cur.fetchall()
        await conn.rollback()
    return [ScoreRow.from_row(r) for r in rows]


async def delete_scores_before(db: Database, before: datetime) -> int:
    """Remove scores older than `before` (retention); return rows deleted."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "delete_scores_before"), {"before": before})
        n = cur.rowcount
        await conn.commit()
    return max(n, 0)


async def save_model(db: Database, name: str, blob: bytes, *, trained_at: datetime | None = None,
                     points: int = 0, rows: int = 0, params: dict[str, Any] | None = None,
                     keep: int = 3) -> int:
    """Store a new version of model `name`; keep the newest `keep` versions. Return the version."""
    async with db.connection() as conn:
        async with conn.transaction():
            cur = await conn.execute(query(_FILE, "next_model_version"), {"name": name})
            row = await cur.fetchone()
            version = int(row[0]) if row else 1  # type: ignore[call-overload]
            await conn.execute(query(_FILE, "insert_model"), {
                "name": name, "version": version, "trained_at": trained_at or datetime.now(UTC),
                "points": points, "rows": rows, "params": json.dumps(params or {}), "blob": blob})
            await conn.execute(query(_FILE, "prune_models"), {"name": name, "keep_after": version - keep})
    return version


async def load_model(db: Database, name: str) -> StoredModel | None:
    """The newest stored version of model `name`, or None."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "latest_model"), {"name": name})
        row = await cur.fetchone()
        await conn.rollback()
    if row is None:
        return None
    return StoredModel(name, int(row[0]), row[1], bytes(row[2]))  # type: ignore[call-overload,arg-type]


async def readings_history(db: Database, point_ids: Sequence[int], since: datetime, until: datetime,
                           bad_mask: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64],
                                                   npt.NDArray[np.float64]]:
    """(point_id, epoch seconds, value) arrays of stored readings for training, by point and time."""
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "readings_history"), {
            "point_ids": list(point_ids), "since": since, "until": until, "bad_mask": bad_mask})
        rows = await cur.fetchall()
        await conn.rollback()
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros(0), np.zeros(0)
    arr = np.asarray(rows, dtype=np.float64)
    return arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def readings_for_labels(db: Database, targets: Sequence[str], since: datetime,
                              until: datetime) -> dict[str, tuple[list[datetime], npt.NDArray[np.float64]]]:
    """Stored readings of the points named in `targets` or belonging to a device named there
    (`<device>.<...>`), in [since, until): {point name: (timestamps, values)} by time."""
    patterns = sorted({p for t in targets for p in (_like_escape(t), _like_escape(t) + ".%")})
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "readings_of_points_like"),
                                 {"patterns": patterns, "since": since, "until": until})
        rows = await cur.fetchall()
        await conn.rollback()
    out: dict[str, tuple[list[datetime], list[float]]] = {}
    for name, ts, value in rows:
        s = out.setdefault(str(name), ([], []))
        s[0].append(ts)  # type: ignore[arg-type]
        s[1].append(float(value))  # type: ignore[arg-type]
    return {k: (v[0], np.asarray(v[1], dtype=np.float64)) for k, v in out.items()}
