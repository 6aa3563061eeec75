"""Point registration: upsert by name, stable ids, filters."""

from __future__ import annotations

import pytest

from core.config import PointSpec, ResolvedPoint
from storage.db import Database
from storage.points import list_points, point_ids_by_name, register_points
from tests.storage.conftest import scalar

pytestmark = pytest.mark.integration


def point(name: str, *, unit: str = "kWh", zone: str = "north", source: str = "amr", device: str = "m1",
          spec: PointSpec | None = None) -> ResolvedPoint:
    spec = spec or PointSpec(name=name.split(".")[-1], unit=unit, kind="counter", scale=0.1, range=(0, 1e9),
                             options={"register": 100})
    return ResolvedPoint(spec=spec, name=name, key=spec.key or spec.name, source=source, device=device,
                         subject="plant-a", zone=zone, options=None)


async def test_register_upsert_and_list(any_db: Database) -> None:
    pts = [point("m1.ea_imp"), point("m1.ea_exp"), point("m2.ea_imp", zone="south", device="m2")]
    ids = await register_points(any_db, pts)
    assert set(ids) == {"m1.ea_imp", "m1.ea_exp", "m2.ea_imp"}
    rows = await list_points(any_db)
    assert [r.name for r in rows] == ["m1.ea_imp", "m1.ea_exp", "m2.ea_imp"]
    r0 = rows[0]
    assert (r0.unit, r0.kind, r0.zone, r0.source, r0.device, r0.subject, r0.active) == (
        "kWh", "counter", "north", "amr", "m1", "plant-a", True)
    assert r0.meta["scale"] == 0.1 and r0.meta["options"] == {"register": 100} and r0.meta["range"] == [0, 1e9]

    # Same points again: same ids, nothing rewritten.
    before = await scalar(any_db, "SELECT max(updated_at) FROM points")
    assert await register_points(any_db, pts) == ids
    assert await scalar(any_db, "SELECT max(updated_at) FROM points") == before

    # Metadata changes are applied; a new point gets a new id; no sequence values burnt.
    changed = [point("m1.ea_imp", unit="MWh"), point("m3.ea_imp", device="m3")]
    ids2 = await register_points(any_db, changed, deactivate_missing=True)
    assert ids2["m1.ea_imp"] == ids["m1.ea_imp"]
    assert ids2["m3.ea_imp"] == max(ids.values()) + 1
    by_name = {r.name: r for r in await list_points(any_db)}
    assert by_name["m1.ea_imp"].unit == "MWh"
    assert by_name["m1.ea_exp"].active is False and by_name["m3.ea_imp"].active is True

    assert [r.name for r in await list_points(any_db, zone="south")] == ["m2.ea_imp"]
    assert [r.name for r in await list_points(any_db, device="m3", source="amr")] == ["m3.ea_imp"]
    assert [r.name for r in await list_points(any_db, active=True)] == ["m1.ea_imp", "m3.ea_imp"]
    assert await list_points(any_db, subject="nobody") == []
    assert await point_ids_by_name(any_db, ["m1.ea_imp", "nope"]) == {"m1.ea_imp": ids["m1.ea_imp"]}
    assert len(await point_ids_by_name(any_db)) == 4


async def test_register_many_points(db: Database) -> None:
    spec = PointSpec(name="p", unit="kW")
    pts = [point(f"m{n:05d}.p", spec=spec, device=f"m{n:05d}") for n in range(20_000)]
    ids = await register_points(db, pts)
    assert len(ids) == 20_000 and len(set(ids.values())) == 20_000
    assert await register_points(db, pts) == ids
    assert await scalar(db, "SELECT count(*) FROM points") == 20_000
