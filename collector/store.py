"""The collector's view of `storage/`: one place that finds the storage functions it calls.

storage is written in parallel; each function is looked up by name in `storage` and its
modules, so the collector depends on names, not on file layout. A missing function raises
`StorageMissing` naming it (or, where a feature is optional, is skipped).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from core.config import ResolvedPoint
from core.errors import GridWatchError
from core.interfaces import Journal, Sink
from storage.db import Database

_MODULES = ("storage", "storage.migrate", "storage.writer", "storage.points", "storage.maintenance",
            "storage.queries", "storage.readings", "storage.archive", "storage.journal", "storage.events",
            "storage.bench", "storage.ceiling", "storage.status", "storage.migrations", "storage.rollups")


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


def reading_writer(db: Database, *, write_timeout_s: float | None = None) -> Sink:
    """The COPY writer for readings (idempotent per point and ts)."""
    cls = find("ReadingWriter")
    w: Sink = cls(db, write_timeout_s=write_timeout_s) if write_timeout_s else cls(db)
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


async def ping(db: Database) -> None:
    """Raise `SinkError` unless the database answers a trivial query."""
    fn = find("ping", required=False)
    if fn is not None:
        await _maybe_await(fn(db))
        return
    async with db.connection() as conn:
        await conn.execute("SELECT 1")
        await conn.rollback()


def _point_row(p: ResolvedPoint, pid: int | None) -> dict[str, Any]:
    return {"id": pid, "name": p.name, "source": p.source, "key": p.key, "device": p.device,
            "subject": p.subject, "zone": p.zone, "unit": p.spec.unit, "kind": p.spec.kind,
            "description": p.spec.description}


async def point_index(ctx: Any) -> dict[str, int]:
    """name -> id of every registered point (storage's table, else the running agent's map)."""
    fn = find("point_ids_by_name", required=False)
    if fn is not None:
        return dict(await _maybe_await(fn(ctx.db)))
    agent = ctx.features.get("agent")
    if agent is not None and agent.point_ids:
        return dict(agent.point_ids)
    return await register_points(ctx.db, ctx.config.points)


async def list_points(ctx: Any, *, limit: int, offset: int, **filters: str) -> tuple[int, list[dict[str, Any]]]:
    """(total, page) of points matching zone/subject/device/source filters."""
    fn = find("list_points", required=False)
    if fn is not None:
        rows = list(await _maybe_await(fn(ctx.db, **filters)))
        page = [r if isinstance(r, dict) else _as_dict(r) for r in rows[offset:offset + limit]]
        for d in page:
            for k, v in list(d.items()):
                if isinstance(v, datetime):
                    d[k] = v.isoformat()
        return len(rows), page
    ids = await point_index(ctx)
    pts = [p for p in ctx.config.points if all(getattr(p, k) == v for k, v in filters.items())]
    return len(pts), [_point_row(p, ids.get(p.name)) for p in pts[offset:offset + limit]]


def _as_dict(r: Any) -> dict[str, Any]:
    if hasattr(r, "_asdict"):
        return dict(r._asdict())
    if hasattr(r, "__dataclass_fields__"):
        import dataclasses

        return dataclasses.asdict(r)
    return dict(r)


def choose_step(start: datetime, end: datetime, step: str) -> str:
    """The step storage uses for this range (`auto` resolved); ValueError for a bad step."""
    fn = find("choose_step")
    return str(fn(start, end, step))


_RAW_FIELDS = ("ts", "value", "quality")
_AGG_FIELDS = ("ts", "value", "min", "max", "first", "last", "count", "delta", "increase")


async def readings(db: Database, point_ids: Sequence[int], start: datetime, end: datetime, step: str,
                   limit: int) -> tuple[str, list[dict[str, Any]]]:
    """(chosen step, rows) for the points in [start, end): raw {point_id, ts, value, quality} or
    aggregate {point_id, ts, value (avg), min, max, first, last, count, delta, increase}."""
    chosen = choose_step(start, end, step)
    rows = await _maybe_await(find("query_readings")(db, list(point_ids), start, end, chosen))
    fields = _RAW_FIELDS if chosen == "raw" else _AGG_FIELDS
    out = []
    for r in rows[:limit]:
        d = r if isinstance(r, dict) else _as_dict(r)
        item: dict[str, Any] = {"point_id": d["point_id"]}
        for f in fields:
            v = d.get(f)
            item[f] = v.isoformat() if isinstance(v, datetime) else v
        out.append(item)
    return chosen, out
