"""The append-only event journal in PostgreSQL (`events`).

The table refuses UPDATE, DELETE and TRUNCATE through a trigger; `purge_events(db,
keep_days)` is the only way rows leave, and never those younger than 365 days (the rules
require event logs to be kept at least 12 months).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from psycopg.types.json import Jsonb

from core.records import Event
from storage.db import Database
from storage.sqlfiles import fetch_all, fetch_one, query


def _default(obj: Any) -> Any:
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, default=_default, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class EventRow:
    """A stored journal entry."""

    id: int
    ts: datetime
    kind: str
    source: str
    actor: str
    message: str
    details: dict[str, Any]
    recorded_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> EventRow:
        """From (id, ts, kind, source, actor, message, details, recorded_at)."""
        return cls(int(row[0]), row[1], str(row[2]), str(row[3]), str(row[4]), str(row[5]),
                   dict(row[6] or {}), row[7])

    def to_event(self) -> Event:
        """As a core `Event`."""
        return Event(kind=self.kind, source=self.source, message=self.message, ts=self.ts,
                     actor=self.actor, details=self.details)


class DbJournal:
    """`core.interfaces.Journal` on the `events` table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, event: Event) -> None:
        """Append `event` (details as JSON: datetimes as ISO strings, other values JSON cannot hold as str)."""
        await record_event(self.db, event)


async def record_event(db: Database, event: Event) -> int:
    """Append `event` and return its id."""
    if event.ts.tzinfo is None:
        raise ValueError(f"event {event.kind}/{event.source}: ts must be timezone-aware")
    async with db.connection() as conn:
        cur = await conn.execute(query("events.sql", "insert"), {
            "ts": event.ts, "kind": event.kind, "source": event.source, "actor": event.actor,
            "message": event.message, "details": Jsonb(event.details, dumps=_dumps)})
        row = await fetch_one(cur)
        return int(row[0]) if row else 0


async def query_events(db: Database, *, kind: str | None = None, source: str | None = None,
                       start: datetime | None = None, end: datetime | None = None,
                       limit: int = 1000) -> list[EventRow]:
    """Journal entries, newest first, filtered by kind, source and [start, end)."""
    async with db.connection() as conn:
        cur = await conn.execute(query("events.sql", "select"), {
            "kind": kind, "source": source, "start": start, "end": end, "limit": max(0, int(limit))})
        return [EventRow.from_row(r) for r in await fetch_all(cur)]


async def purge_events(db: Database, keep_days: int) -> int:
    """Delete entries older than `keep_days` (>= 365, else `SinkRejected`); return how many."""
    async with db.connection() as conn:
        cur = await conn.execute(query("events.sql", "purge"), {"keep_days": keep_days})
        row = await fetch_one(cur)
        return int(row[0]) if row else 0
