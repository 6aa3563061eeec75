"""Versioned migrations: `storage/sql/migrations/NNN_name[.backend].sql`, applied in order.

Each file runs once, in its own transaction, and is recorded in `schema_migrations`
(version, name, backend, checksum). A session-level advisory lock serializes concurrent
`migrate()` calls (two daemons starting at once): the second waits, then finds nothing to do.
The backend recorded by the first migration wins over the detected one, so a database created
on plain PostgreSQL keeps its partitioned schema even if TimescaleDB is installed later.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from core.errors import SinkRejected
from storage.db import Backend, Database, migration_files, read_sql, translate
from storage.sqlfiles import as_literal, fetch_all, fetch_one

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x67770001

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer NOT NULL,
    name       text NOT NULL,
    backend    text NOT NULL,
    file       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (version, name)
)"""


@dataclass(frozen=True, slots=True)
class AppliedMigration:
    """A row of `schema_migrations`."""

    version: int
    name: str
    backend: str
    file: str
    applied_at: datetime

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> AppliedMigration:
        """Build from (version, name, backend, file, applied_at)."""
        return cls(int(row[0]), str(row[1]), str(row[2]), str(row[3]), row[4])


async def applied_migrations(db: Database) -> list[AppliedMigration]:
    """The migrations recorded in `schema_migrations` (empty before the first `migrate()`)."""
    async with db.connection() as conn:
        cur = await conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = await fetch_one(cur)
        if not row or not row[0]:
            return []
        cur = await conn.execute(
            "SELECT version, name, backend, file, applied_at FROM schema_migrations ORDER BY version, name")
        return [AppliedMigration.from_row(r) for r in await fetch_all(cur)]


async def migrate(db: Database) -> list[str]:
    """Apply every pending migration for `db.backend`; return the files applied now."""
    applied_now: list[str] = []
    async with db.connection() as conn:
        await conn.set_autocommit(True)
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                await conn.execute(_CREATE_TABLE)
                cur = await conn.execute("SELECT version, name, backend FROM schema_migrations")
                rows = await fetch_all(cur)
                done = {(int(r[0]), str(r[1])) for r in rows}
                recorded = {str(r[2]) for r in rows} - {"any"}
                if len(recorded) == 1:
                    schema_backend: Backend = "timescaledb" if recorded == {"timescaledb"} else "postgres"
                    if schema_backend != db.backend:
                        log.warning("database schema was created for %s; using %s instead of %s",
                                    schema_backend, schema_backend, db.backend)
                        db.backend = schema_backend
                for version, name, backend, fname in migration_files():
                    if backend is not None and backend != db.backend:
                        continue
                    if (version, name) in done:
                        continue
                    text = read_sql(f"migrations/{fname}")
                    checksum = hashlib.sha256(text.encode()).hexdigest()[:16]
                    try:
                        async with conn.transaction():
                            await conn.execute(as_literal(text))
                            await conn.execute(
                                "INSERT INTO schema_migrations (version, name, backend, file, checksum)"
                                " VALUES (%s, %s, %s, %s, %s)",
                                (version, name, backend or "any", fname, checksum))
                    except psycopg.Error as e:
                        err = translate(e, f"migration {fname}")
                        if isinstance(err, SinkRejected):
                            raise SinkRejected(f"migration {fname} failed: {e}") from e
                        raise err from e
                    done.add((version, name))
                    applied_now.append(fname)
                    log.info("applied migration %s", fname)
            finally:
                if not conn.closed:
                    await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        finally:
            if not conn.closed:
                await conn.set_autocommit(False)
    return applied_now
