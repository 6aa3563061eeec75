"""Fixtures of the alerting tests: a migrated database and a service with a manual clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta

import pytest

from storage.db import Database
from storage.migrate import migrate


class ManualClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    """A migrated database for one test."""
    database = await Database.open(pg_dsn, pool_size=4, backend="postgres")
    try:
        await migrate(database)
        yield database
    finally:
        await database.close()


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 45.0, what: str = "condition") -> None:
    """Poll `check` until it is true or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
