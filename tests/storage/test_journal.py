"""The event journal: append, query, and refusal of UPDATE / DELETE / TRUNCATE."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.errors import SinkRejected
from core.interfaces import Journal
from core.records import Event
from storage.db import Database
from storage.journal import DbJournal, purge_events, query_events
from tests.storage.conftest import scalar

pytestmark = pytest.mark.integration


async def test_record_and_query(any_db: Database) -> None:
    j: Journal = DbJournal(any_db)
    now = datetime.now(UTC)
    await j.record(Event(kind="link", source="rtu1", message="link down", ts=now - timedelta(minutes=5),
                         details={"since": now, "n": 1}))
    await j.record(Event(kind="config", source="api", message="limits changed", ts=now, actor="alice"))
    await j.record(Event(kind="link", source="rtu2", message="link up", ts=now))
    rows = await query_events(any_db)
    assert [r.message for r in rows] == ["link up", "limits changed", "link down"]  # newest first
    assert rows[2].details == {"since": now.isoformat(), "n": 1}
    assert [r.source for r in await query_events(any_db, kind="link")] == ["rtu2", "rtu1"]
    assert [r.actor for r in await query_events(any_db, source="api")] == ["alice"]
    assert len(await query_events(any_db, start=now - timedelta(minutes=1))) == 2
    assert len(await query_events(any_db, end=now - timedelta(minutes=1))) == 1
    assert len(await query_events(any_db, limit=1)) == 1
    assert rows[0].to_event().kind == "link"


async def test_journal_is_append_only(any_db: Database) -> None:
    j = DbJournal(any_db)
    now = datetime.now(UTC)
    await j.record(Event(kind="operator", source="api", message="old", ts=now - timedelta(days=400)))
    await j.record(Event(kind="operator", source="api", message="recent", ts=now - timedelta(days=10)))
    for stmt in ("UPDATE events SET message = 'x'", "DELETE FROM events", "TRUNCATE events",
                 "DELETE FROM events WHERE ts < now() - INTERVAL '365 days'"):
        with pytest.raises(SinkRejected, match="append-only"):
            async with any_db.connection() as conn:
                await conn.execute(stmt)  # type: ignore[arg-type]
    # Even with the purge flag set by hand, a young row cannot be deleted.
    with pytest.raises(SinkRejected, match="append-only"):
        async with any_db.connection() as conn:
            await conn.execute("SELECT set_config('gridwatch.events_purge', 'on', true)")
            await conn.execute("DELETE FROM events WHERE message = 'recent'")
    with pytest.raises(SinkRejected, match="at least 365"):
        await purge_events(any_db, 30)
    assert await scalar(any_db, "SELECT count(*) FROM events") == 2
    assert await purge_events(any_db, 365) == 1
    assert [r.message for r in await query_events(any_db)] == ["recent"]
