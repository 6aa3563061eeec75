"""The generated dashboards: committed JSON is current, every SQL panel query runs against a
real database holding data and returns the shape its panel expects, Prometheus panels name
metrics the daemon exports, and the provisioning files are valid."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from core.records import Event, Quality, Reading
from dashboards import common
from dashboards.build import BUILD_DIR, check, dashboards_json, render
from dashboards.common import SCHEMA_VERSION
from dashboards.macros import expand, parse_interval
from detectors.schedule.calendar import hour_of
from detectors.schedule.compute import PointEnergy, compute_hour
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.service import result_row
from storage.archive import decide_correction, points_by_name, propose_correction
from storage.db import Database
from storage.journal import DbJournal
from storage.maintenance import refresh_rollups
from storage.migrate import migrate
from storage.schedule import PlanHourRow, PlanVersionRow, ScheduleStore
from storage.writer import ReadingWriter

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
POINTS = [  # name, kind, unit, source, device, subject, zone
    ("n1.ea_import", "counter", "kWh", "modbus-north", "n1", "LOAD-N", "North"),
    ("n1.p", "analog", "kW", "modbus-north", "n1", "LOAD-N", "North"),
    ("s1.ea_export", "counter", "kWh", "mqtt-south", "s1", "GEN-S", "South"),
    ("w1.voltage", "analog", "kV", "iec104", "w1", "PLANT-W", "West"),
]
CFG = ScheduleConfig.model_validate({"subjects": [
    {"name": "LOAD-N", "zone": "North", "kind": "consumer", "points": [{"point": "n1.ea_import", "sign": -1}]},
    {"name": "GEN-S", "zone": "South", "kind": "generator", "points": [{"point": "s1.ea_export"}]},
    {"name": "MINER-N", "zone": "North", "kind": "miner",
     "points": [{"point": "n1.p", "sign": -1, "kind": "power", "unit": "kW"}]},
]})


# ------------------------------------------------------------------ pure checks
def test_committed_json_equals_a_fresh_build() -> None:
    assert check(BUILD_DIR) == [], "run `gridwatch dashboards build` and commit dashboards/build"
    assert render() == render()  # deterministic


def test_dashboard_json_is_current_grafana() -> None:
    uids = set()
    for stem, d in dashboards_json().items():
        assert d["schemaVersion"] == SCHEMA_VERSION and 39 <= SCHEMA_VERSION <= 41, stem
        assert d["uid"] and d["uid"] not in uids and len(d["uid"]) <= 40
        uids.add(d["uid"])
        assert d["panels"] and not d["rows"], stem
        ids = [p["id"] for p in d["panels"]]
        assert len(ids) == len(set(ids)), f"{stem}: duplicate panel ids"
        for p in d["panels"]:
            g = p["gridPos"]
            assert g["x"] + g["w"] <= 24 and g["h"] > 0, (stem, p["title"])
            assert p["type"] in {"timeseries", "table", "stat", "status-history", "state-timeline", "barchart"}
            for t in p["targets"]:
                assert t["datasource"]["uid"] in {common.PG_UID, common.PROM_UID}
                if t["datasource"]["uid"] == common.PG_UID:
                    assert t["rawSql"] and t["editorMode"] == "code" and t["format"] in ("time_series", "table")
                else:
                    assert t["expr"]
    assert {"overview", "schedule", "point-explorer", "health", "anomalies", "archive"} <= set(dashboards_json())


def test_macro_expander() -> None:
    start, end = NOW - timedelta(hours=1), NOW
    q = "SELECT $__timeGroupAlias(ts, '5m'), v FROM t WHERE $__timeFilter(ts) AND p IN ($point) AND x = '${zone}'"
    out = expand(q, start, end, {"point": ["1", "2"], "zone": ["O'Neil"]}, 60)
    assert out == ("SELECT floor(extract(epoch from ts)/300)*300 AS \"time\", v FROM t WHERE ts BETWEEN "
                   "'2026-12-02T11:00:00Z' AND '2026-12-02T12:00:00Z' AND p IN ('1','2') AND x = ''O''Neil''")
    assert "time_bucket('3600s', ts)" in expand("$__timeGroup(ts, 1h)", start, end, timescaledb=True)
    with pytest.raises(ValueError, match="unexpanded"):
        expand("SELECT $unknown", start, end)
    assert parse_interval("15m") == 900


def _exported_metric_names() -> set[str]:
    from collector.metrics import HealthCollector, Metrics
    from core.interfaces import SourceHealth

    reg = CollectorRegistry()
    Metrics(reg)
    h = SourceHealth("s", links={"l": "up"}, last_message_at=NOW)
    h.count("errors")
    h.gauges["clock_skew_s:x"] = 1.0
    reg.register(HealthCollector({"s": h}, lambda: NOW))
    from collector.api.context import ApiContext
    from collector.api.schedule import ScheduleCollector
    from core.config import parse_config
    from detectors.schedule.service import ScheduleService

    ctx = ApiContext(config=parse_config({}, Path("t.toml"), {}, {}), db=None, registry=reg,  # type: ignore[arg-type]
                     journal=None)  # type: ignore[arg-type]
    ctx.features["schedule"] = ScheduleService(CFG, None, None, None, lambda: NOW)  # type: ignore[arg-type]
    reg.register(ScheduleCollector(ctx))
    names: set[str] = set()
    for fam in reg.collect():  # labelled metrics without children have no samples yet
        names |= {s.name for s in fam.samples} | {fam.name}
        if fam.type == "counter":
            names.add(fam.name + "_total")
    return names


def test_prometheus_panels_use_exported_metrics() -> None:
    names = _exported_metric_names()
    used = set()
    for d in dashboards_json().values():
        for p in d["panels"]:
            for t in p["targets"]:
                if t["datasource"]["uid"] == common.PROM_UID:
                    used |= set(re.findall(r"gridwatch_[a-z_]+", t["expr"]))
    assert used, "the health dashboard has Prometheus panels"
    assert used <= names, f"metrics not exported by the daemon: {sorted(used - names)}"


def test_provisioning_files() -> None:
    yaml = pytest.importorskip("yaml", reason="PyYAML (a dev dependency) parses the provisioning files")
    base = ROOT / "configs" / "grafana" / "provisioning"
    ds = yaml.safe_load((base / "datasources" / "gridwatch.yaml").read_text())
    prov = yaml.safe_load((base / "dashboards" / "gridwatch.yaml").read_text())
    assert ds["apiVersion"] == 1
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    pg = by_uid[common.PG_UID]
    assert pg["type"] == common.PG["type"] and pg["jsonData"]["timescaledb"] == "${GRIDWATCH_TIMESCALEDB}"
    assert pg["secureJsonData"]["password"] == "${GRIDWATCH_PG_PASSWORD}"
    assert by_uid[common.PROM_UID]["type"] == "prometheus"
    assert prov["providers"][0]["type"] == "file" and prov["providers"][0]["options"]["path"]


# ------------------------------------------------------------------ every SQL query on real data
@pytest.fixture
async def seeded(any_backend_dsn: str) -> AsyncIterator[Database]:
    db = await Database.open(any_backend_dsn)
    try:
        await migrate(db)
        async with db.connection() as conn:
            for name, kind, unit, source, device, subject, zone in POINTS:
                await conn.execute("INSERT INTO points (name, kind, unit, source, device, subject, zone)"
                                   " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                                   (name, kind, unit, source, device, subject, zone))
        refs = {p.name: p.id for p in await points_by_name(db, [p[0] for p in POINTS])}
        start = NOW - timedelta(days=31)
        rows: list[Reading] = []
        k = 0
        t = start
        while t <= NOW:
            q = Quality.INVALID if k % 97 == 5 else Quality.GOOD
            rows.append(Reading(refs["n1.ea_import"], t, 1000.0 + 25.0 * k, Quality.GOOD, t))
            rows.append(Reading(refs["s1.ea_export"], t, 5000.0 + 80.0 * k, Quality.GOOD, t))
            rows.append(Reading(refs["w1.voltage"], t, 110.0 + (k % 7) * 0.1, q, t))
            rows.append(Reading(refs["n1.p"], t, 100.0 + k % 13, Quality.GOOD, t))
            k += 1
            t += timedelta(minutes=15)
        t = NOW - timedelta(hours=6)
        while t < NOW:  # one-minute samples in between for the raw view
            if t.minute % 15:
                rows.append(Reading(refs["n1.p"], t, 100.0 + t.minute % 5, Quality.GOOD, t))
            t += timedelta(minutes=1)
        await ReadingWriter(db).write(rows)
        await refresh_rollups(db, start - timedelta(hours=1))

        store = ScheduleStore(db)
        h0 = hour_of(NOW - timedelta(hours=48), CFG.tz)
        hours = []
        h = h0
        while h.start < NOW:
            hours.append(h)
            h = hour_of(h.end, CFG.tz)
        for s in CFG.subjects:
            await store.import_plans([PlanVersionRow(h.day, s.name, "MWh", [PlanHourRow(h.number, h.start, 10.0)])
                                      for h in hours[:1]], actor="op1")
        for i, h in enumerate(hours):
            energies = {"n1.ea_import": PointEnergy(10_000.0 + 500 * (i % 5), 3600.0),
                        "s1.ea_export": PointEnergy(9_000.0 + 300 * (i % 3), 3600.0),
                        "n1.p": PointEnergy(10_500.0, 3600.0)}
            plans = {s.name: (10.0, 1) for s in CFG.subjects}
            res = compute_hour(CFG, h, h.end, energies, plans, final=h.end <= NOW)
            await store.upsert_results([result_row(r, h.end) for r in res])

        async with db.connection() as conn:
            for key, state, sev in (("a1", "firing", 3), ("a2", "resolved", 1)):
                await conn.execute(
                    "INSERT INTO alerts (key, rule, severity, state, summary, zone, subject, started_at, opened_at,"
                    " last_seen_at, updated_at) VALUES (%s, 'schedule.early_warning', %s, %s, 'x', 'North',"
                    " 'LOAD-N', %s, %s, %s, %s)", (key, sev, state, NOW - timedelta(hours=2), NOW, NOW, NOW))
            for i in range(96):
                await conn.execute("INSERT INTO anomaly_scores (point_id, ts, score, model) VALUES (%s, %s, %s, 'iforest')",
                                   (refs["n1.p"], NOW - timedelta(minutes=15 * i), (i % 10) / 10))
            await conn.execute("INSERT INTO dead_letters (ts, source, reason, payload) VALUES (%s, 'mqtt-south',"
                               " 'payload.value: not a number', %s)", (NOW - timedelta(hours=1), b"{}"))
        await DbJournal(db).record(Event(kind="operator", source="test", message="seeded", ts=NOW - timedelta(hours=1)))
        await DbJournal(db).record(Event(kind="schedule", source="schedule", message="hour 3 recomputed",
                                         ts=NOW - timedelta(hours=2)))
        await DbJournal(db).record(Event(kind="correction", source="archive", message="correction 1 applied",
                                         ts=NOW - timedelta(hours=2), actor="op2"))
        c = await propose_correction(db, refs["w1.voltage"], NOW - timedelta(hours=3), 110.5, "swap",
                                     actor="op1", now=NOW)
        await decide_correction(db, c.id, actor="op2", approve=True, now=NOW)
        yield db
    finally:
        await db.close()


async def _run(db: Database, sql_text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    async with db.connection() as conn:
        cur = await conn.execute(sql_text)  # type: ignore[arg-type]
        cols = [d.name for d in cur.description or []]
        return cols, list(await cur.fetchall())


def _numeric(v: Any) -> bool:
    return v is None or (isinstance(v, (int, float, Decimal)) and not isinstance(v, bool))


def _shape_problem(spec: common.QuerySpec, cols: list[str], rows: list[tuple[Any, ...]]) -> str | None:
    if not rows:
        return "no rows"
    if spec.kind == "time_series":
        if cols[0] != "time":
            return f"first column is {cols[0]!r}, not 'time'"
        for r in rows:
            if not isinstance(r[0], (datetime, int, float, Decimal)):
                return f"time value {r[0]!r} is not a timestamp"
            for c, v in zip(cols[1:], r[1:], strict=True):
                if c != "metric" and not _numeric(v):
                    return f"column {c!r} holds {v!r}, not a number"
        times = [r[0].timestamp() if isinstance(r[0], datetime) else float(r[0]) for r in rows]
        if times != sorted(times):
            return "rows are not ordered by time"
    elif spec.kind == "table":
        missing = set(spec.columns) - set(cols)
        if missing:
            return f"missing columns {sorted(missing)}"
    elif spec.kind == "single":
        if len(rows) != 1 or not all(_numeric(v) for v in rows[0]):
            return f"expected one row of numbers, got {rows[:2]}"
    return None


def _range(expr: str) -> timedelta:
    return timedelta(seconds=parse_interval(expr.removeprefix("now-")))


@pytest.mark.integration
async def test_every_panel_query_runs_on_real_data(seeded: Database) -> None:
    db = seeded
    ts_flag = db.backend == "timescaledb"
    built = dashboards_json()  # also fills common.QUERIES
    problems: list[str] = []
    checked = 0
    for stem, d in built.items():
        spans = [_range(d["time"]["from"])]
        if stem == "point-explorer":
            spans += [timedelta(days=3), timedelta(days=30)]  # 15-minute and hourly branches
        for span in spans:
            start = NOW - span
            interval = max(60.0, span.total_seconds() / 200)
            values: dict[str, list[str]] = {}
            for var in d["templating"]["list"]:
                cols, rows = await _run(db, expand(var["query"], start, NOW, values, interval, timescaledb=ts_flag))
                idx = cols.index("__value") if "__value" in cols else 0
                values[var["name"]] = [str(r[idx]) for r in rows]
                if not rows:
                    problems.append(f"{stem}: variable {var['name']}: no values")
            for spec in [q for q in common.QUERIES if q.dashboard == d["uid"] and q.kind != "variable"]:
                text = expand(spec.sql, start, NOW, values, interval, timescaledb=ts_flag)
                try:
                    cols, rows = await _run(db, text)
                except Exception as e:  # report every broken query at once
                    problems.append(f"{stem} / {spec.panel} ({span}): {e}")
                    continue
                why = _shape_problem(spec, cols, rows)
                if why:
                    problems.append(f"{stem} / {spec.panel} ({span}): {why}")
                checked += 1
    assert not problems, "\n".join(problems)
    assert checked >= 40
    # every registered query belongs to a panel in the JSON
    all_sql = {t.get("rawSql") for d in built.values() for p in d["panels"] for t in p["targets"]}
    all_sql |= {a["target"]["rawSql"] for d in built.values() for a in d["annotations"]["list"]}
    assert {q.sql for q in common.QUERIES if q.kind != "variable"} <= all_sql


def test_grafana_env_from_dsn() -> None:
    from dashboards.grafana import grafana_env, instructions

    env = grafana_env("postgresql://postgres:@/postgres?host=/tmp/pg/data", timescaledb=False)
    assert env["GRIDWATCH_PG_HOST"] == "/tmp/pg/data" and env["GRIDWATCH_PG_DATABASE"] == "postgres"
    env = grafana_env("host=db port=5433 dbname=gw user=ro password='p w' sslmode=require", timescaledb=True)
    assert (env["GRIDWATCH_PG_HOST"], env["GRIDWATCH_PG_PASSWORD"], env["GRIDWATCH_TIMESCALEDB"]) == (
        "db:5433", "p w", "true")
    assert env["GRIDWATCH_PG_SSLMODE"] == "require"
    text = instructions("postgresql://u:s@h:1/d", timescaledb=False)
    assert "export GRIDWATCH_PG_HOST=h:1" in text
    # every ${VAR} the provisioning files read is provided
    base = ROOT / "configs" / "grafana" / "provisioning"
    wanted = set()
    for f in base.rglob("*.yaml"):
        wanted |= set(re.findall(r"\$\{(\w+)\}", f.read_text()))
    assert wanted <= set(env)
