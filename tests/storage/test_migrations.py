"""Migrations: apply in order, once, concurrently, per backend."""

from __future__ import annotations

import asyncio

import pytest

from storage.db import Database, migration_files
from storage.migrate import applied_migrations, migrate
from tests.storage.conftest import scalar

pytestmark = pytest.mark.integration


async def test_migrate_twice_and_concurrently(any_backend_dsn: str) -> None:
    a = await Database.open(any_backend_dsn)
    b = await Database.open(any_backend_dsn)
    try:
        first, second = await asyncio.gather(migrate(a), migrate(b))
        # One of them applied everything, the other waited on the lock and found nothing to do.
        assert sorted([first, second], key=len)[0] == []
        applied = first or second
        expected = [f for _, _, backend, f in migration_files() if backend in (None, a.backend)]
        assert applied == expected
        assert await migrate(a) == []
        rows = await applied_migrations(a)
        assert [r.file for r in rows] == expected
        assert len({(r.version, r.name) for r in rows}) == len(rows)
        for table in ("points", "readings", "readings_15m", "readings_1h", "events", "storage_jobs"):
            assert await scalar(a, "SELECT to_regclass(%s) IS NOT NULL", (table,)) is True, table
    finally:
        await a.close()
        await b.close()


async def test_backend_specific_files(pg_dsn: str) -> None:
    db = await Database.open(pg_dsn, backend="postgres")
    try:
        applied = await migrate(db)
        assert "002_readings.postgres.sql" in applied
        assert not any(f.endswith(".timescaledb.sql") for f in applied)
        # readings is partitioned on plain PostgreSQL
        assert await scalar(db, "SELECT relkind::text FROM pg_class WHERE relname = 'readings'") == "p"
    finally:
        await db.close()


async def test_schema_backend_wins(pg_dsn: str) -> None:
    db = await Database.open(pg_dsn, backend="postgres")
    try:
        await migrate(db)
        db.backend = "timescaledb"  # as if the extension appeared later
        assert await migrate(db) == []
        assert db.backend == "postgres"
    finally:
        await db.close()
