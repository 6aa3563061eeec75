"""The bounded dead-letter table: inputs that did not become readings, kept for inspection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from storage.db import Database
from storage.sqlfiles import query

_FILE = "dead_letters.sql"


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    """One stored dead letter."""

    id: int
    ts: datetime
    source: str
    reason: str
    payload: bytes

    @classmethod
    def from_row(cls, row: Sequence[object]) -> DeadLetterRow:
        """Build from a (id, ts, source, reason, payload) row."""
        id_, ts, source, reason, payload = row
        return cls(int(id_), ts, str(source), str(reason), bytes(payload))  # type: ignore[arg-type,call-overload]


async def insert_dead_letters(db: Database, rows: Sequence[tuple[datetime, str, str, bytes]], *,
                              keep: int) -> None:
    """Insert (ts, source, reason, payload) rows and trim the table to the newest `keep`."""
    if not rows:
        return
    async with db.connection() as conn:
        async with conn.cursor() as cur:
            await cur.executemany(query(_FILE, "insert_dead_letter"), list(rows))
            await cur.execute(query(_FILE, "trim_dead_letters"), {"keep": keep})
        await conn.commit()


async def list_dead_letters(db: Database, *, source: str | None = None, limit: int = 100,
                            offset: int = 0) -> tuple[int, list[DeadLetterRow]]:
    """(total matching, newest first page) of dead letters, optionally of one source."""
    params = {"source": source, "limit": limit, "offset": offset}
    async with db.connection() as conn:
        cur = await conn.execute(query(_FILE, "count_dead_letters"), params)
        total_row = await cur.fetchone()
        cur = await conn.execute(query(_FILE, "list_dead_letters"), params)
        rows = await cur.fetchall()
        await conn.rollback()
    total = int(total_row[0]) if total_row else 0  # type: ignore[call-overload]
    return total, [DeadLetterRow.from_row(r) for r in rows]
