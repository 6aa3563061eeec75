"""Alert state, the delivery outbox and the event journal rows written with them.

`AlertStore.transaction()` yields an `AlertTx`: alert rows read under a lock, changed, with
their outbox rows and journal events, all committed together or not at all. The outbox is
delivered by leasing rows (`SELECT ... FOR UPDATE SKIP LOCKED` plus a lease time), so several
daemons on one database never deliver a row twice. SQL lives in `storage/sql/alerts.sql`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from core.records import Event
from storage.db import Database, translate
from storage.sqlfiles import query

_FILE = "alerts.sql"


def _q(name: str) -> Any:
    return query(_FILE, name)


def jsonable(obj: Any) -> Any:
    """`obj` reduced to what PostgreSQL's jsonb takes: NaN/inf and unknown types become text,
    datetimes ISO 8601, numpy scalars plain numbers (detector evidence may hold any of them)."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else str(obj)
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in obj]
    item = getattr(obj, "item", None)  # numpy scalars
    if callable(item):
        with contextlib.suppress(Exception):
            return jsonable(item())
    return str(obj)


def _jsonb(obj: Any) -> Jsonb:
    return Jsonb(jsonable(obj), dumps=lambda o: json.dumps(o, allow_nan=False, separators=(",", ":")))


def _utc(v: Any) -> Any:
    return v.astimezone(UTC) if isinstance(v, datetime) and v.tzinfo is not None else v


@dataclass(frozen=True, slots=True)
class AlertRow:
    """The stored state of one alert key (its current episode)."""

    id: int
    key: str
    rule: str
    severity: int
    state: str  # firing | resolved
    summary: str
    point_id: int | None
    device: str
    zone: str
    subject: str
    evidence: dict[str, Any]
    recommendation: str
    episode: int
    started_at: datetime
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None
    updated_at: datetime
    repeat_count: int = 0
    transitions: tuple[datetime, ...] = ()
    flapping: bool = False
    notified_state: str | None = None
    notified_severity: int | None = None
    acked_by: str | None = None
    acked_at: datetime | None = None
    ack_comment: str | None = None
    shelved_by: str | None = None
    shelved_at: datetime | None = None
    shelved_until: datetime | None = None
    shelve_reason: str | None = None
    escalation_level: int = 0
    escalated_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> AlertRow:
        """Build from a `dict_row`."""
        names = {f.name for f in dataclasses.fields(cls)}
        data = {k: _utc(v) for k, v in row.items() if k in names}
        data["transitions"] = tuple(_utc(t) for t in data.get("transitions") or ())
        data["evidence"] = dict(data.get("evidence") or {})
        return cls(**data)

    def params(self) -> dict[str, Any]:
        """Query parameters for insert/update."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["evidence"] = _jsonb(self.evidence)
        d["transitions"] = list(self.transitions)
        return d


@dataclass(frozen=True, slots=True)
class NewNotification:
    """An outbox row to insert."""

    alert_id: int
    receiver: str
    kind: str  # firing | resolved | escalation
    group_key: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A leased outbox row, ready to deliver."""

    id: int
    alert_id: int
    receiver: str
    kind: str
    group_key: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> OutboxRow:
        """Build from a `dict_row`."""
        return cls(id=row["id"], alert_id=row["alert_id"], receiver=row["receiver"], kind=row["kind"],
                   group_key=row["group_key"], payload=dict(row["payload"]), created_at=_utc(row["created_at"]),
                   attempts=row["attempts"])


@dataclass(frozen=True, slots=True)
class ReceiverSummary:
    """Delivery status of one receiver, as counted in the outbox."""

    receiver: str
    pending: int
    failed: int
    delivered: int
    oldest_pending: datetime | None
    last_delivered_at: datetime | None


@dataclass(frozen=True, slots=True)
class AlertFilter:
    """Filters of `AlertStore.list_alerts`."""

    state: str | None = None
    min_severity: int | None = None
    zone: str | None = None
    device: str | None = None
    rule: str | None = None
    key: str | None = None
    before_id: int | None = None
    limit: int = 100


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of `AlertStore.list_events`."""

    kind: str | None = None
    source: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    text: str | None = None
    before_id: int | None = None
    limit: int = 100


@dataclass
class AlertTx:
    """Operations inside one alerting transaction (see `AlertStore.transaction`)."""

    conn: psycopg.AsyncConnection[Any]
    events: list[Event] = field(default_factory=list)

    async def lock_keys(self, keys: Sequence[str]) -> dict[str, AlertRow]:
        """Serialize on each key (sorted, so two submitters never deadlock) and read its row."""
        uniq = sorted(set(keys))
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_q("lock_keys"), {"keys": uniq})
            await cur.execute(_q("get_by_keys"), {"keys": uniq})
            return {r["key"]: AlertRow.from_row(r) for r in await cur.fetchall()}

    async def get_for_update(self, alert_id: int) -> AlertRow | None:
        """The row with `alert_id`, locked until commit."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_q("get_for_update"), {"id": alert_id})
            row = await cur.fetchone()
            return AlertRow.from_row(row) if row else None

    async def insert(self, row: AlertRow) -> AlertRow:
        """Insert a new alert (its `id` is ignored) and return it with its id."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_q("insert_alert"), row.params())
            got = await cur.fetchone()
            assert got is not None
            return AlertRow.from_row(got)

    async def update(self, row: AlertRow) -> AlertRow:
        """Write every mutable column of `row`."""
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(_q("update_alert"), row.params())
            got = await cur.fetchone()
            assert got is not None
            return AlertRow.from_row(got)

    async def _many(self, name: str, rows: Sequence[AlertRow]) -> list[AlertRow]:
        out: list[AlertRow] = []
        if not rows:
            return out
        async with self.conn.cursor(row_factory=dict_row) as cur:
            await cur.executemany(_q(name), [r.params() for r in rows], returning=True)
            while True:
                got = await cur.fetchone()
                if got is not None:
                    out.append(AlertRow.from_row(got))
                if not cur.nextset():
                    break
        return out

    async def insert_many(self, rows: Sequence[AlertRow]) -> list[AlertRow]:
        """Insert new alerts (ids ignored); returns them with their ids."""
        return await self._many("insert_alert", rows)

    async def update_many(self, rows: Sequence[AlertRow]) -> list[AlertRow]:
        """Write every mutable column of each row."""
        return await self._many("update_alert", rows)

    async def record_many(self, events: Sequence[Event]) -> None:
        """Append journal events in this transaction."""
        if not events:
            return
        async with self.conn.cursor() as cur:
            await cur.executemany(_q("insert_event"), [_event_params(e) for e in events])
        self.events.extend(events)

    async def enqueue(self, notes: Sequence[NewNotification]) -> None:
        """Insert outbox rows."""
        if not notes:
            return
        async with self.conn.cursor() as cur:
            await cur.executemany(_q("enqueue"), [
                {"alert_id": n.alert_id, "receiver": n.receiver, "kind": n.kind, "group_key": n.group_key,
                 "payload": _jsonb(n.payload), "created_at": n.created_at} for n in notes])

    async def record(self, event: Event) -> None:
        """Append a journal event in this transaction."""
        async with self.conn.cursor() as cur:
            await cur.execute(query("alerts.sql", "insert_event"), _event_params(event))
        self.events.append(event)


def _event_params(event: Event) -> dict[str, Any]:
    return {"ts": event.ts, "kind": event.kind, "source": event.source, "actor": event.actor,
            "message": event.message, "details": _jsonb(event.details)}


class AlertStore:
    """Alert rows, the outbox and journal queries over one `Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AlertTx]:
        """One transaction: committed when the block ends, rolled back on any error."""
        try:
            async with self.db.pool.connection() as conn, conn.transaction():
                yield AlertTx(conn)
        except psycopg.Error as e:
            raise translate(e, "alerts") from e

    async def _fetch(self, name: str, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        try:
            async with self.db.pool.connection() as conn, conn.transaction(), \
                    conn.cursor(row_factory=dict_row) as cur:
                await cur.execute(_q(name), params)
                return await cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            raise translate(e, f"alerts.{name}") from e

    async def get(self, alert_id: int) -> AlertRow | None:
        """One alert by id."""
        rows = await self._fetch("get", {"id": alert_id})
        return AlertRow.from_row(rows[0]) if rows else None

    async def list_alerts(self, f: AlertFilter) -> list[AlertRow]:
        """Alerts, firing first, then by severity and newest."""
        rows = await self._fetch("list_alerts", dataclasses.asdict(f))
        return [AlertRow.from_row(r) for r in rows]

    async def maintenance_rows(self, limit: int = 10_000) -> list[AlertRow]:
        """Alerts that are flapping, shelved, or firing unacknowledged (escalation candidates)."""
        return [AlertRow.from_row(r) for r in await self._fetch("rows_for_maintenance", {"limit": limit})]

    async def firing_notified(self) -> list[AlertRow]:
        """Alerts the receivers were last told are firing (Alertmanager re-sends)."""
        return [AlertRow.from_row(r) for r in await self._fetch("firing_notified", {})]

    async def lease(self, receiver: str, owner: str, now: datetime, lease_until: datetime,
                    limit: int) -> list[OutboxRow]:
        """Claim up to `limit` due outbox rows of `receiver` for `owner` until `lease_until`."""
        rows = await self._fetch("lease", {"receiver": receiver, "owner": owner, "now": now,
                                           "lease_until": lease_until, "limit": limit})
        return sorted((OutboxRow.from_row(r) for r in rows), key=lambda r: r.id)

    async def mark_delivered(self, ids: Sequence[int], owner: str, now: datetime) -> None:
        """Rows delivered: never sent again."""
        await self._fetch("mark_delivered", {"ids": list(ids), "owner": owner, "now": now})

    async def mark_failed(self, ids: Sequence[int], owner: str, next_attempt_at: datetime, error: str,
                          max_attempts: int) -> int:
        """Rows failed: retry at `next_attempt_at`; returns how many gave up (status failed)."""
        rows = await self._fetch("mark_failed", {"ids": list(ids), "owner": owner, "error": error[:500],
                                                 "next_attempt_at": next_attempt_at,
                                                 "max_attempts": max_attempts})
        return sum(1 for r in rows if r["status"] == "failed")

    async def release(self, ids: Sequence[int], owner: str, next_attempt_at: datetime) -> None:
        """Give back leased rows that were not attempted."""
        await self._fetch("release", {"ids": list(ids), "owner": owner, "next_attempt_at": next_attempt_at})

    async def abandon_unknown_receivers(self, receivers: Sequence[str]) -> dict[str, int]:
        """Mark pending rows of receivers not in `receivers` failed; returns counts per receiver."""
        rows = await self._fetch("abandon_unknown_receivers", {
            "receivers": list(receivers), "error": "receiver is no longer configured"})
        out: dict[str, int] = {}
        for r in rows:
            out[r["receiver"]] = out.get(r["receiver"], 0) + 1
        return out

    async def summary(self) -> list[ReceiverSummary]:
        """Counts per receiver and status."""
        return [ReceiverSummary(**{k: _utc(v) for k, v in r.items()})
                for r in await self._fetch("outbox_summary", {})]

    async def list_deliveries(self, *, status: str | None = None, receiver: str | None = None,
                              alert_id: int | None = None, before_id: int | None = None,
                              limit: int = 100) -> list[dict[str, Any]]:
        """Outbox rows, newest first (payload reduced to the alert key)."""
        rows = await self._fetch("list_deliveries", {"status": status, "receiver": receiver,
                                                     "alert_id": alert_id, "before_id": before_id,
                                                     "limit": limit})
        return [{k: _utc(v) for k, v in r.items()} for r in rows]

    async def purge_outbox(self, before: datetime) -> None:
        """Delete delivered outbox rows older than `before`."""
        await self._fetch("purge_outbox", {"before": before})

    async def list_events(self, f: EventFilter) -> list[dict[str, Any]]:
        """Journal events, newest first."""
        params = dataclasses.asdict(f)
        params["text"] = f"%{f.text}%" if f.text else None
        return [{k: _utc(v) for k, v in r.items()} for r in await self._fetch("list_events", params)]

    async def record(self, event: Event) -> None:
        """Append one journal event in its own transaction."""
        await self._fetch("insert_event", _event_params(event))


__all__ = ["AlertFilter", "AlertRow", "AlertStore", "AlertTx", "EventFilter", "NewNotification", "OutboxRow",
           "ReceiverSummary"]
