"""Building blocks for GridWatch's Grafana dashboards (grafanalib).

Every SQL panel query goes through `sql()` so the registry `QUERIES` knows, for each panel,
the query and the shape its panel expects; tests expand Grafana's macros and run each query
against a real database (tests/dashboards). Datasources are referenced by fixed uids that the
provisioning files in configs/grafana/ create.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from grafanalib.core import (
    Annotations,
    BarChart,
    Dashboard,
    DashboardLink,
    GridPos,
    Panel,
    SqlTarget,
    Stat,
    StateTimeline,
    Table,
    Target,
    Template,
    Templating,
    Time,
    TimeSeries,
)

SCHEMA_VERSION = 39
"""Grafana 10.4 / 11.x dashboard schema; set explicitly (grafanalib defaults to 12)."""

PG_UID = "gridwatch-pg"
PROM_UID = "gridwatch-prom"
PG: dict[str, str] = {"type": "grafana-postgresql-datasource", "uid": PG_UID}
PROM: dict[str, str] = {"type": "prometheus", "uid": PROM_UID}

BAD_QUALITY = 0x80 | 0x8_0000 | 0x1000  # INVALID | COMM_FAIL | OUT_OF_RANGE (core.records.BAD_QUALITY)
MANUAL = 0x4_0000


class CodeSql(SqlTarget):  # type: ignore[misc]
    """A raw SQL target shown in the code editor (Grafana 10+ otherwise opens the builder)."""

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = super().to_json_data()
        data["editorMode"] = "code"
        for k in ("expr", "query", "target", "metric", "step", "intervalFactor", "legendFormat", "instant"):
            data.pop(k, None)
        return data


@dataclass(frozen=True)
class QuerySpec:
    """What a panel query must return: `kind` time_series (a `time` column and numbers),
    `table` (the listed `columns`, in any order), or `single` (one row)."""

    dashboard: str
    panel: str
    ref: str
    sql: str
    kind: str
    columns: tuple[str, ...] = ()


QUERIES: list[QuerySpec] = []


@dataclass
class Layout:
    """Places panels left to right, wrapping at 24 columns."""

    uid: str
    x: int = 0
    y: int = 0
    row_h: int = 0
    panels: list[Panel] = field(default_factory=list)
    next_id: int = 1

    def add(self, panel: Panel, w: int, h: int) -> Panel:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel.gridPos = GridPos(h=h, w=w, x=self.x, y=self.y)
        panel.id = self.next_id
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)
        return panel


def sql(layout: Layout, panel_title: str, query: str, kind: str, columns: tuple[str, ...] = (),
        ref: str = "A") -> CodeSql:
    """A SQL target, registered for the query test. `kind`: time_series | table | single."""
    QUERIES.append(QuerySpec(layout.uid, panel_title, ref, query.strip(), kind, columns))
    fmt = "time_series" if kind == "time_series" else "table"
    return CodeSql(rawSql=query.strip(), format=fmt, refId=ref, datasource=PG)


def prom(expr: str, legend: str = "", ref: str = "A") -> Target:
    """A PromQL target on the GridWatch Prometheus datasource."""
    return Target(expr=expr, legendFormat=legend, refId=ref, datasource=PROM)


def ts_panel(layout: Layout, title: str, targets: list[Target], *, unit: str = "", w: int = 12, h: int = 8,
             description: str = "", draw: str = "line", bars: bool = False, stack: bool = False,
             extra: dict[str, Any] | None = None) -> Panel:
    """A time-series panel."""
    p = TimeSeries(title=title, targets=targets, dataSource=targets[0].datasource, unit=unit,
                   description=description or None, drawStyle="bars" if bars else draw,
                   fillOpacity=60 if bars else 10, stacking={"mode": "normal"} if stack else {"mode": "none"},
                   showPoints="never", tooltipMode="multi", legendDisplayMode="table",
                   legendCalcs=["mean", "max", "min"], extraJson=extra)
    return layout.add(p, w, h)


def table_panel(layout: Layout, title: str, targets: list[Target], *, w: int = 12, h: int = 8,
                description: str = "", overrides: list[dict[str, Any]] | None = None) -> Panel:
    """A table panel."""
    p = Table(title=title, targets=targets, dataSource=targets[0].datasource, description=description or None,
              filterable=True, overrides=overrides or [])
    return layout.add(p, w, h)


def stat_panel(layout: Layout, title: str, targets: list[Target], *, unit: str = "none", w: int = 4, h: int = 4,
               thresholds: list[dict[str, Any]] | None = None, description: str = "") -> Panel:
    """A single-number panel (last value)."""
    p = Stat(title=title, targets=targets, dataSource=targets[0].datasource, format=unit, reduceCalc="lastNotNull",
             graphMode="none", description=description or None,
             thresholds=thresholds or [{"color": "green", "value": None}], colorMode="background")
    return layout.add(p, w, h)


def status_history(layout: Layout, title: str, targets: list[Target], *, w: int = 24, h: int = 10, unit: str = "",
                   steps: list[dict[str, Any]] | None = None, description: str = "") -> Panel:
    """A status-history panel: one row per series, one coloured cell per time step (a heat map)."""
    p = StateTimeline(title=title, targets=targets, dataSource=targets[0].datasource, description=description or None,
                      thresholds=steps or [], colorMode="thresholds", showValue="auto", mergeValues=False,
                      extraJson={"type": "status-history", "fieldConfig": {"defaults": {"unit": unit}},
                                 "options": {"colWidth": 0.95, "showValue": "auto"}})
    return layout.add(p, w, h)


def state_timeline(layout: Layout, title: str, targets: list[Target], *, w: int = 24, h: int = 8,
                   mappings: list[dict[str, Any]] | None = None, description: str = "") -> Panel:
    """A state-timeline panel (link up/down)."""
    p = StateTimeline(title=title, targets=targets, dataSource=targets[0].datasource, description=description or None,
                      mappings=mappings or [], colorMode="thresholds",
                      thresholds=[{"color": "red", "value": None}, {"color": "green", "value": 1}])
    return layout.add(p, w, h)


def bar_chart(layout: Layout, title: str, targets: list[Target], *, w: int = 12, h: int = 8, unit: str = "",
              description: str = "") -> Panel:
    """A bar chart of a table result (first string column as x axis)."""
    p = BarChart(title=title, targets=targets, dataSource=targets[0].datasource, description=description or None,
                 extraJson={"fieldConfig": {"defaults": {"unit": unit}}})
    return layout.add(p, w, h)


def sql_var(name: str, query: str, *, label: str, multi: bool = True, include_all: bool = True,
            dashboard: str = "") -> Template:
    """A query variable on the PostgreSQL datasource (registered for the query test)."""
    QUERIES.append(QuerySpec(dashboard, f"variable {name}", name, query.strip(), "variable"))
    return Template(name=name, query=query.strip(), dataSource=PG, label=label, multi=multi,
                    includeAll=include_all, refresh=2, sort=1, type="query")


def journal_annotation(layout: Layout, name: str, kinds: tuple[str, ...], color: str = "orange") -> dict[str, Any]:
    """An annotation from the event journal (`events` of the given kinds), registered for the test."""
    kinds_sql = ", ".join(f"'{k}'" for k in kinds)
    query = f"""
SELECT ts AS time, actor || ': ' || message AS text, kind AS tags
FROM events
WHERE $__timeFilter(ts) AND kind IN ({kinds_sql})
ORDER BY ts
LIMIT 500
""".strip()
    QUERIES.append(QuerySpec(layout.uid, f"annotation {name}", "Anno", query, "table", ("time", "text", "tags")))
    return {"datasource": PG, "enable": True, "hide": False, "iconColor": color, "name": name,
            "target": {"datasource": PG, "editorMode": "code", "format": "table", "rawQuery": True,
                       "rawSql": query, "refId": "Anno"}}


def dashboard(title: str, uid: str, layout: Layout, *, variables: list[Template] | None = None,
              tags: list[str] | None = None, time_from: str = "now-24h", refresh: str = "1m",
              description: str = "", annotations: list[dict[str, Any]] | None = None) -> Dashboard:
    """A dashboard with our defaults: explicit schemaVersion, browser time, tags, a menu of the others."""
    links = [DashboardLink(asDropdown=True, tags=["gridwatch"], title="GridWatch", type="dashboards",
                           keepTime=True, icon="external link")]
    return Dashboard(title=title, uid=uid, panels=layout.panels, templating=Templating(list=variables or []),
                     tags=["gridwatch", *(tags or [])], time=Time(time_from, "now"), refresh=refresh,
                     schemaVersion=SCHEMA_VERSION, timezone="browser", description=description, editable=True,
                     links=links, annotations=Annotations(list=annotations or []))
