"""Daily range partitions of `readings` on plain PostgreSQL.

Partitions are named `readings_pYYYYMMDD` and cover [day 00:00 UTC, next day 00:00 UTC).
They are created ahead by `maintain()`, on demand by the writer when a row falls on a day
without one, and dropped whole by retention. DDL is serialized by a transaction-scoped
advisory lock, so concurrent writers and maintenance never race on the catalog.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import psycopg
from psycopg import sql

from storage.sqlfiles import fetch_all, query

PARTITION_LOCK = 0x67770002  # advisory lock key for partition DDL
_NAME_RE = re.compile(r"^readings_p(\d{8})$")

Conn = psycopg.AsyncConnection[Any]


def partition_name(day: date) -> str:
    """The partition name of a UTC day."""
    return f"readings_p{day:%Y%m%d}"


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) of a UTC day as aware datetimes."""
    lo = datetime.combine(day, time(0), tzinfo=UTC)
    return lo, lo + timedelta(days=1)


async def existing_partitions(conn: Conn) -> dict[date, str]:
    """The daily partitions of readings that exist now, by day."""
    cur = await conn.execute(query("maintenance.sql", "list_partitions"))
    out: dict[date, str] = {}
    for (name,) in await fetch_all(cur):
        m = _NAME_RE.match(str(name))
        if m:
            out[datetime.strptime(m.group(1), "%Y%m%d").date()] = str(name)
    return out


async def ensure_partitions(conn: Conn, days: Iterable[date]) -> list[str]:
    """Create the partitions of `days` that do not exist yet; return the names created.

    Runs in its own transaction (commits); `conn` must not be inside one.
    """
    wanted = sorted(set(days))
    if not wanted:
        return []
    have = await existing_partitions(conn)
    missing = [d for d in wanted if d not in have]
    if not missing:
        return []
    created: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        have = await existing_partitions(conn)  # someone may have created them meanwhile
        for d in missing:
            if d in have:
                continue
            lo, hi = day_bounds(d)
            await conn.execute(
                sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF readings FOR VALUES FROM ({}) TO ({})").format(
                    sql.Identifier(partition_name(d)), sql.Literal(lo), sql.Literal(hi)))
            created.append(partition_name(d))
    return created


async def drop_partitions_before(conn: Conn, cutoff: datetime) -> list[str]:
    """Drop every daily partition that ends at or before `cutoff`; return the names dropped."""
    have = await existing_partitions(conn)
    victims = [(d, n) for d, n in sorted(have.items()) if day_bounds(d)[1] <= cutoff]
    if not victims:
        return []
    dropped: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (PARTITION_LOCK,))
        for _, name in victims:
            await conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
            dropped.append(name)
    return dropped


def utc_day(dt: datetime) -> date:
    """The UTC calendar day of an aware datetime."""
    return dt.astimezone(UTC).date()
