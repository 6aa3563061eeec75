"""The collector's view of `storage/`: one place that finds the storage functions it calls.

storage is written in parallel; each function is looked up by name in `storage` and its
modules, so the collector depends on names, not on file layout. A missing function raises
`StorageMissing` naming it (or, where a feature is optional, is skipped).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from core.config import ResolvedPoint
from core.errors import GridWatchError
from core.interfaces import Journal, Sink
from storage.db import Database

_MODULES = ("storage", "storage.migrations", "storage.migrate", "storage.writer", "storage.ingest",
            "storage.points", "storage.queries", "storage.readings", "storage.journal", "storage.events",
            "storage.rollups", "storage.maintenance", "storage.partitions", "storage.bench", "storage.status")


class StorageMissing(GridWatchError):
    """storage/ does not (yet) provide a function the collector needs."""


def find(name: str, *, required: bool = True) -> Any:
    """The attribute `name` from the first storage module that has it."""
    for mod_name in _MODULES:
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError:
            continue
        obj = getattr(mod, name, None)
        if obj is not None and not inspect.ismodule(obj):
            return obj
    if required:
        raise StorageMissing(f"storage provides no {name!r}")
    return None


async def _maybe_await(v: Any) -> Any:
    if inspect.isawaitable(v):
        return await v
    return v


async def migrate(db: Database) -> Any:
    """Apply pending migrations."""
    return await _maybe_await(find("migrate")(db))


def reading_writer(db: Database) -> Sink:
    """The COPY writer for readings (idempotent per point and ts)."""
    w: Sink = find("ReadingWriter")(db)
    return w


async def register_points(db: Database, points: Sequence[ResolvedPoint]) -> dict[str, int]:
    """Upsert point metadata; name -> id."""
    out = await _maybe_await(find("register_points")(db, points))
    return dict(out)


def journal(db: Database) -> Journal:
    """The event journal in the database."""
    j: Journal = find("DbJournal")(db)
    return j


async def refresh_rollups(db: Database, since: Any) -> bool:
    """Refresh rollups from `since`; False when storage has no such function."""
    fn = find("refresh_rollups", required=False)
    if fn is None:
        return False
    await _maybe_await(fn(db, since))
    return True


async def maintain(db: Database, now: Any, cfg: Any) -> bool:
    """Partition creation / retention; False when storage has no such function."""
    fn = find("maintain", required=False)
    if fn is None:
        return False
    await _maybe_await(fn(db, now, cfg))
    return True


async def db_status(db: Database) -> Any:
    """Migration and backend status."""
    return await _maybe_await(find("db_status")(db))
