"""Shared start-up of commands: logging, config loading with printed issues, the database."""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from collector import config as gwconfig
from collector import store
from core.aio import wait_event
from core.config import GridWatchConfig
from core.errors import ConfigError, SinkUnavailable
from storage.db import Database

log = logging.getLogger(__name__)


def setup_logging(level: str = "INFO") -> None:
    """Plain logging to stderr."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def load_or_report(path: str | Path) -> GridWatchConfig | None:
    """The config, or None after printing every issue as `file: key.path: reason` to stderr."""
    try:
        return gwconfig.load(path)
    except ConfigError as e:
        for issue in e.issues:
            print(str(issue), file=sys.stderr)
        return None


@dataclass
class DatabaseHandle:
    """An open database and, when no DSN was configured, the embedded server behind it."""

    db: Database
    embedded: Any = None

    async def close(self) -> None:
        """Close the pool and stop the embedded server (if we started it)."""
        await self.db.close()
        if self.embedded is not None:
            await asyncio.to_thread(self.embedded.stop)


async def open_database(cfg: GridWatchConfig, *, dsn: str | None = None, migrate: bool = True,
                        retry_until: asyncio.Event | None = None) -> DatabaseHandle:
    """Open the configured database (or start the embedded one), optionally migrate.

    With `retry_until`, connection failures are retried with backoff until the event is set.
    """
    embedded = None
    dsn = dsn or cfg.storage.dsn
    if dsn is None:
        from storage.embedded import EmbeddedPostgres

        embedded = EmbeddedPostgres(cfg.storage.embedded_dir)
        dsn = await asyncio.to_thread(embedded.start)
        log.info("embedded PostgreSQL in %s", cfg.storage.embedded_dir)
    delay = cfg.collector.backoff_initial_s
    while True:
        try:
            db = await Database.open(dsn, pool_size=cfg.storage.pool_size, backend=cfg.storage.backend)
            break
        except SinkUnavailable as e:
            if retry_until is None or retry_until.is_set():
                if embedded is not None:
                    embedded.stop()
                raise
            log.warning("database not reachable (%s); retrying in %.0fs", e, delay)
            await wait_event(retry_until, delay)
            delay = min(delay * 2, cfg.collector.backoff_max_s)
    if migrate:
        applied = await store.migrate(db)
        if applied:
            log.info("applied %d migration(s)", len(applied))
    return DatabaseHandle(db, embedded)
