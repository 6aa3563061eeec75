"""Point metadata: register the configured points (upsert by name) and list them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.config import PointSpec, ResolvedPoint
from storage.db import Database
from storage.sqlfiles import fetch_all, query

_COLUMNS_IN_TABLE = {"name", "key", "unit", "kind", "description", "device", "subject", "zone"}


@dataclass(frozen=True, slots=True)
class PointRow:
    """A row of `points`."""

    id: int
    name: str
    source: str
    key: str
    device: str
    subject: str
    zone: str
    unit: str
    kind: str
    description: str
    meta: dict[str, Any]
    active: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> PointRow:
        """Build from the columns of the `list_points` query, in order."""
        return cls(int(row[0]), str(row[1]), str(row[2]), str(row[3]), str(row[4]), str(row[5]), str(row[6]),
                   str(row[7]), str(row[8]), str(row[9]), dict(row[10] or {}), bool(row[11]), row[12], row[13])


def _meta_json(spec: PointSpec, cache: dict[int, str]) -> str:
    # Template points share one PointSpec object: serialize it once per template point.
    key = id(spec)
    text = cache.get(key)
    if text is None:
        meta = spec.model_dump(mode="json", exclude=_COLUMNS_IN_TABLE, exclude_defaults=True)
        text = cache[key] = json.dumps(meta, sort_keys=True, separators=(",", ":"))
    return text


async def register_points(db: Database, points: Sequence[ResolvedPoint], *,
                          deactivate_missing: bool = False) -> dict[str, int]:
    """Upsert `points` by name (metadata updated, `active` set) and return name -> id.

    New points get ids in the order given.
    Unchanged rows are not rewritten and no sequence numbers are burnt, so registering
    50,000 points at every start is cheap (one COPY into a temporary table, two set
    statements). With `deactivate_missing`, points absent from `points` are marked inactive
    (never deleted: readings reference them).
    """
    by_name: dict[str, ResolvedPoint] = {p.name: p for p in points}
    cache: dict[int, str] = {}
    async with db.connection() as conn, conn.transaction():
        await conn.execute(query("points.sql", "create_stage"))
        cur = conn.cursor()
        async with cur.copy(query("points.sql", "copy_stage")) as copy:
            for i, p in enumerate(by_name.values()):
                s = p.spec
                await copy.write_row((p.name, p.source, p.key, p.device, p.subject, p.zone, s.unit, s.kind,
                                      s.description, _meta_json(s, cache), i))
        await conn.execute(query("points.sql", "insert_new"))
        await conn.execute(query("points.sql", "update_changed"))
        if deactivate_missing:
            await conn.execute(query("points.sql", "deactivate_missing"))
        cur = await conn.execute(query("points.sql", "ids_of_stage"))
        return {str(name): int(pid) for name, pid in await fetch_all(cur)}


async def list_points(db: Database, *, source: str | None = None, zone: str | None = None,
                      subject: str | None = None, device: str | None = None,
                      active: bool | None = None) -> list[PointRow]:
    """Points filtered by any of source, zone, subject, device and active, ordered by id."""
    async with db.connection() as conn:
        cur = await conn.execute(query("points.sql", "list_points"),
                                 {"source": source, "zone": zone, "subject": subject, "device": device,
                                  "active": active})
        return [PointRow.from_row(r) for r in await fetch_all(cur)]


async def point_ids_by_name(db: Database, names: Sequence[str] | None = None) -> dict[str, int]:
    """name -> id for `names` (all points when None); unknown names are simply absent."""
    async with db.connection() as conn:
        cur = await conn.execute(query("points.sql", "ids_by_name"),
                                 {"names": None if names is None else list(names)})
        return {str(n): int(i) for n, i in await fetch_all(cur)}
