"""The database handle: a psycopg 3 async pool, the backend in use, and migrations.

Every feature's SQL lives in `storage/sql/`; feature modules (`storage/alerts.py`,
`storage/schedule.py`, ...) take a `Database` and run their named queries through
`db.connection()`. Driver exceptions are translated into `SinkUnavailable` / `SinkRejected`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Literal

import psycopg
from psycopg_pool import AsyncConnectionPool

from core.errors import SinkRejected, SinkUnavailable

Backend = Literal["postgres", "timescaledb"]

_MIGRATION_RE = re.compile(r"^(\d{3})_([a-z0-9_]+?)(?:\.(postgres|timescaledb))?\.sql$")


def translate(e: BaseException, what: str) -> Exception:
    """Map a psycopg error to our error tree: connection trouble is retryable, data is not."""
    if isinstance(e, (psycopg.OperationalError, psycopg.errors.AdminShutdown, psycopg.InterfaceError)):
        return SinkUnavailable(f"{what}: database unavailable: {e}")
    if isinstance(e, psycopg.errors.QueryCanceled):
        return SinkUnavailable(f"{what}: database too slow: {e}")
    if isinstance(e, (psycopg.DataError, psycopg.IntegrityError, psycopg.ProgrammingError)):
        return SinkRejected(f"{what}: rejected by the database: {e}")
    return SinkUnavailable(f"{what}: {e}")


def read_sql(name: str) -> str:
    """The text of `storage/sql/<name>`."""
    return (resources.files("storage") / "sql" / name).read_text()


def migration_files() -> list[tuple[int, str, Backend | None, str]]:
    """(version, name, backend or None for both, file name) of every migration, in order."""
    out: list[tuple[int, str, Backend | None, str]] = []
    for f in (resources.files("storage") / "sql" / "migrations").iterdir():
        m = _MIGRATION_RE.match(f.name)
        if m:
            backend: Backend | None = "postgres" if m.group(3) == "postgres" else (
                "timescaledb" if m.group(3) == "timescaledb" else None)
            out.append((int(m.group(1)), m.group(2), backend, f.name))
    return sorted(out, key=lambda t: (t[0], t[3]))


class Database:
    """An open database: pool, backend and migrations. Use `await Database.open(dsn)`."""

    def __init__(self, dsn: str, pool: AsyncConnectionPool, backend: Backend) -> None:
        self.dsn = dsn
        self.pool = pool
        self.backend: Backend = backend

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 4, backend: str = "auto",
                   timeout: float = 30.0) -> Database:
        """Open a pool and detect (or create) the TimescaleDB extension per `backend`."""
        pool = AsyncConnectionPool(dsn, min_size=1, max_size=max(1, pool_size), open=False,
                                   kwargs={"autocommit": False}, timeout=timeout,
                                   check=AsyncConnectionPool.check_connection)
        try:
            await pool.open(wait=True, timeout=timeout)
            detected = await cls._detect_backend(pool, backend)
        except (psycopg.Error, Exception) as e:
            await pool.close()
            if isinstance(e, (SinkUnavailable, SinkRejected)):
                raise
            raise translate(e, "open") from e
        return cls(dsn, pool, detected)

    @staticmethod
    async def _detect_backend(pool: AsyncConnectionPool, wanted: str) -> Backend:
        async with pool.connection() as conn:
            if wanted == "postgres":
                return "postgres"
            cur = await conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            available = await cur.fetchone() is not None
            if not available:
                if wanted == "timescaledb":
                    raise SinkRejected("backend = 'timescaledb' but the extension is not available on this server")
                return "postgres"
            try:
                await conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
                await conn.commit()
            except psycopg.Error as e:
                await conn.rollback()
                if wanted == "timescaledb":
                    raise SinkRejected(f"cannot enable timescaledb: {e}") from e
                return "postgres"
            return "timescaledb"

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[tuple[object, ...]]]:
        """A pooled connection; commit on success, roll back on error, errors translated."""
        try:
            async with self.pool.connection() as conn:
                yield conn
        except psycopg.Error as e:
            raise translate(e, "query") from e

    async def close(self) -> None:
        """Close the pool."""
        await self.pool.close()
