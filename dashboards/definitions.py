"""The GridWatch dashboards. Each function returns one grafanalib `Dashboard`.

Tables and columns used: points, readings (raw), readings_15m / readings_1h (rollups or
continuous aggregates: avg, min, max, first, last, count, delta), schedule_results,
schedule_plan_versions, alerts, events, anomaly_scores, dead_letters, storage_jobs,
corrections; Prometheus metrics `gridwatch_*` from the daemon's /metrics for link health.
"""

from __future__ import annotations

from typing import Any

from grafanalib.core import Dashboard

from dashboards.common import (
    BAD_QUALITY,
    MANUAL,
    Layout,
    bar_chart,
    dashboard,
    journal_annotation,
    prom,
    sql,
    sql_var,
    stat_panel,
    state_timeline,
    status_history,
    table_panel,
    ts_panel,
)

RAW_MAX = "interval '6 hours'"
M15_MAX = "interval '8 days'"
RANGE = "($__timeTo()::timestamptz - $__timeFrom()::timestamptz)"

QUALITY_TEXT = (
    "array_to_string(ARRAY["
    "CASE WHEN r.quality & 1 <> 0 THEN 'OV' END, CASE WHEN r.quality & 16 <> 0 THEN 'BL' END, "
    "CASE WHEN r.quality & 32 <> 0 THEN 'SB' END, CASE WHEN r.quality & 64 <> 0 THEN 'NT' END, "
    "CASE WHEN r.quality & 128 <> 0 THEN 'IV' END, CASE WHEN r.quality & 4096 <> 0 THEN 'OUT_OF_RANGE' END, "
    "CASE WHEN r.quality & 8192 <> 0 THEN 'SPIKE' END, CASE WHEN r.quality & 16384 <> 0 THEN 'FROZEN' END, "
    "CASE WHEN r.quality & 32768 <> 0 THEN 'STALE' END, CASE WHEN r.quality & 131072 <> 0 THEN 'LATE' END, "
    "CASE WHEN r.quality & 262144 <> 0 THEN 'MANUAL' END, CASE WHEN r.quality & 524288 <> 0 THEN 'COMM_FAIL' END"
    "], ',')"
)

DEVIATION_STEPS: list[dict[str, Any]] = [
    {"color": "red", "value": None}, {"color": "orange", "value": -10}, {"color": "yellow", "value": -5},
    {"color": "green", "value": -2}, {"color": "yellow", "value": 2}, {"color": "orange", "value": 5},
    {"color": "red", "value": 10},
]


def overview() -> Dashboard:
    """Dispatcher overview: zone and subject totals, active alerts, deviations, data freshness."""
    lay = Layout("gw-overview")
    stat_panel(lay, "Active alerts", [sql(lay, "Active alerts", """
SELECT count(*) AS firing FROM alerts WHERE state = 'firing'
""", "single")], thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}], w=4)
    stat_panel(lay, "Critical / major alerts", [sql(lay, "Critical / major alerts", """
SELECT count(*) AS firing FROM alerts WHERE state = 'firing' AND severity >= 3
""", "single")], thresholds=[{"color": "green", "value": None}, {"color": "red", "value": 1}], w=4)
    stat_panel(lay, "Subjects out of band (last closed hour)", [sql(lay, "Subjects out of band (last closed hour)", """
SELECT count(*) FILTER (WHERE verdict IN ('deviation', 'above_quota')) AS out_of_band
FROM schedule_results
WHERE entity_kind = 'subject' AND final
  AND hour_start = (SELECT max(hour_start) FROM schedule_results WHERE final AND hour_start <= $__timeTo())
""", "single")], thresholds=[{"color": "green", "value": None}, {"color": "orange", "value": 1}], w=6)
    stat_panel(lay, "Metering points active", [sql(lay, "Metering points active", """
SELECT count(*) FILTER (WHERE r.ts >= $__timeTo()::timestamptz - interval '1 hour') AS active,
       count(*) AS total
FROM points p
LEFT JOIN LATERAL (SELECT ts FROM readings WHERE point_id = p.id ORDER BY ts DESC LIMIT 1) r ON true
WHERE p.active
""", "single")], w=5)
    stat_panel(lay, "Bad-quality readings (last 6 h)", [sql(lay, "Bad-quality readings", f"""
SELECT count(*) AS bad
FROM readings r
WHERE $__timeFilter(r.ts) AND r.ts >= $__timeTo()::timestamptz - interval '6 hours'
  AND r.quality & {BAD_QUALITY} <> 0
""", "single")], w=5, description="Readings flagged INVALID, OUT_OF_RANGE or COMM_FAIL in the last 6 hours of "
                                  "the range.")
    ts_panel(lay, "Zone balance: actual against plan (MWh per hour)", [
        sql(lay, "Zone balance: actual against plan (MWh per hour)", """
SELECT hour_start AS time, entity || ' actual' AS metric, actual_mwh AS value
FROM schedule_results
WHERE entity_kind = 'zone' AND $__timeFilter(hour_start)
UNION ALL
SELECT hour_start AS time, entity || ' plan' AS metric, plan_mwh AS value
FROM schedule_results
WHERE entity_kind = 'zone' AND $__timeFilter(hour_start) AND plan_mwh IS NOT NULL
ORDER BY 1
""", "time_series")], unit="MWh", w=12, h=9,
        description="Generation minus consumption per balancing zone; North-South trades jointly.")
    ts_panel(lay, "Subject actuals (MWh per hour)", [sql(lay, "Subject actuals", """
SELECT hour_start AS time, entity AS metric, actual_mwh AS value
FROM schedule_results
WHERE entity_kind = 'subject' AND $__timeFilter(hour_start)
ORDER BY 1
""", "time_series")], unit="MWh", w=12, h=9, bars=True,
        description="Generation for generators, consumption for consumers and miners.")
    table_panel(lay, "Active alerts", [sql(lay, "Active alerts table", """
SELECT started_at AS "since", severity, rule, zone, subject, device, summary, recommendation,
       acked_by IS NOT NULL AS acked
FROM alerts
WHERE state = 'firing'
ORDER BY severity DESC, started_at DESC
LIMIT 100
""", "table", ("since", "severity", "rule", "summary"))], w=12, h=9)
    table_panel(lay, "Current hour: projected deviations", [sql(lay, "Current hour: projected deviations", """
SELECT entity, entity_kind AS kind, zone, hour, plan_mwh, projected_mwh, deviation_mwh, deviation_pct,
       completeness, verdict, final
FROM schedule_results
WHERE hour_start = (SELECT max(hour_start) FROM schedule_results WHERE hour_start <= $__timeTo())
ORDER BY abs(deviation_pct) DESC NULLS LAST
""", "table", ("entity", "plan_mwh", "projected_mwh", "deviation_pct", "verdict"))], w=12, h=9)
    return dashboard("GridWatch: dispatcher overview", "gw-overview", lay, tags=["dispatch"], time_from="now-24h")


def schedule() -> Dashboard:
    """Schedule execution: plan against actual per hour, deviation heat map, zones, miners."""
    lay = Layout("gw-schedule")
    var = sql_var("subject", "SELECT DISTINCT entity FROM schedule_results WHERE entity_kind = 'subject' ORDER BY 1",
                  label="Subject", dashboard="gw-schedule")
    ts_panel(lay, "Plan against actual per hour: $subject", [sql(lay, "Plan against actual per hour", """
SELECT hour_start AS time, sum(plan_mwh) AS plan, sum(actual_mwh) AS actual, sum(projected_mwh) AS projected
FROM schedule_results
WHERE entity IN ($subject) AND $__timeFilter(hour_start)
GROUP BY 1
ORDER BY 1
""", "time_series")], unit="MWh", w=24, h=9, bars=True,
        extra={"repeat": "subject", "repeatDirection": "h", "maxPerRow": 2})
    status_history(lay, "Deviation heat map per subject (% of plan)", [sql(lay, "Deviation heat map per subject", """
SELECT hour_start AS time, entity AS metric, deviation_pct AS value
FROM schedule_results
WHERE entity_kind = 'subject' AND $__timeFilter(hour_start) AND deviation_pct IS NOT NULL
ORDER BY 1
""", "time_series")], unit="percent", steps=DEVIATION_STEPS,
        description="Each row is a subject, each cell an hour: green within +-2 %, red beyond +-10 %.")
    ts_panel(lay, "Zones: actual against plan", [sql(lay, "Zones: actual against plan", """
SELECT hour_start AS time, entity || ' deviation' AS metric, deviation_mwh AS value
FROM schedule_results
WHERE entity_kind = 'zone' AND $__timeFilter(hour_start) AND deviation_mwh IS NOT NULL
ORDER BY 1
""", "time_series")], unit="MWh", w=12, bars=True)
    ts_panel(lay, "Miners: consumption against purchased volume", [sql(lay, "Miners against quota", """
SELECT hour_start AS time, entity || ' actual' AS metric, actual_mwh AS value
FROM schedule_results WHERE entity_kind = 'miners' AND $__timeFilter(hour_start)
UNION ALL
SELECT hour_start AS time, entity || ' quota' AS metric, plan_mwh AS value
FROM schedule_results WHERE entity_kind = 'miners' AND $__timeFilter(hour_start) AND plan_mwh IS NOT NULL
ORDER BY 1
""", "time_series")], unit="MWh", w=12)
    table_panel(lay, "Hourly results", [sql(lay, "Hourly results", """
SELECT day, hour, entity, entity_kind AS kind, zone, plan_mwh, actual_mwh, deviation_mwh, deviation_pct, band_mwh,
       completeness, verdict, final, plan_version, computed_at
FROM schedule_results
WHERE $__timeFilter(hour_start) AND (entity IN ($subject) OR entity_kind <> 'subject')
ORDER BY hour_start DESC, entity_kind, entity
LIMIT 2000
""", "table", ("day", "hour", "entity", "plan_mwh", "actual_mwh", "verdict"))], w=16, h=10)
    table_panel(lay, "Plan versions", [sql(lay, "Plan versions", """
SELECT day, subject, version, unit, hours, imported_at, imported_by, source, comment
FROM schedule_plan_versions
WHERE day >= ($__timeFrom()::timestamptz - interval '1 day')::date
  AND day <= ($__timeTo()::timestamptz + interval '1 day')::date
ORDER BY imported_at DESC
LIMIT 200
""", "table", ("day", "subject", "version", "imported_by"))], w=8, h=10)
    notes = [journal_annotation(lay, "Schedule events", ("schedule",)),
             journal_annotation(lay, "Corrections", ("correction",), "purple")]
    return dashboard("GridWatch: schedule execution", "gw-schedule", lay, variables=[var], tags=["schedule"],
                     time_from="now-24h", annotations=notes)


def _explorer_vars(uid: str) -> list:  # type: ignore[type-arg]
    return [
        sql_var("zone", "SELECT DISTINCT zone FROM points WHERE zone <> '' ORDER BY 1", label="Zone", dashboard=uid),
        sql_var("subject", "SELECT DISTINCT subject FROM points WHERE zone IN ($zone) AND subject <> '' ORDER BY 1",
                label="Subject", dashboard=uid),
        sql_var("device", "SELECT DISTINCT device FROM points WHERE zone IN ($zone) AND subject IN ($subject) "
                          "AND device <> '' ORDER BY 1", label="Device", dashboard=uid),
        sql_var("point", "SELECT name AS __text, id AS __value FROM points WHERE device IN ($device) ORDER BY name",
                label="Point", include_all=False, dashboard=uid),
    ]


def point_explorer() -> Dashboard:
    """Point explorer: zone/subject/device/point variables; raw, 15-minute or hourly data by range."""
    lay = Layout("gw-points")
    ts_panel(lay, "Values (raw up to 6 h, 15-minute up to 8 days, hourly beyond)", [sql(lay, "Values", f"""
SELECT r.ts AS time, p.name AS metric, r.value AS value
FROM readings r JOIN points p ON p.id = r.point_id
WHERE r.point_id IN ($point) AND $__timeFilter(r.ts) AND {RANGE} <= {RAW_MAX}
UNION ALL
SELECT b.bucket AS time, p.name AS metric, b.avg AS value
FROM readings_15m b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} > {RAW_MAX} AND {RANGE} <= {M15_MAX}
UNION ALL
SELECT b.bucket AS time, p.name AS metric, b.avg AS value
FROM readings_1h b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} > {M15_MAX}
ORDER BY 1
""", "time_series")], w=24, h=10)
    ts_panel(lay, "Minimum and maximum per bucket", [sql(lay, "Min and max", f"""
SELECT b.bucket AS time, p.name || ' min' AS metric, b.min AS value
FROM readings_15m b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} <= {M15_MAX}
UNION ALL
SELECT b.bucket AS time, p.name || ' max' AS metric, b.max AS value
FROM readings_15m b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} <= {M15_MAX}
UNION ALL
SELECT b.bucket AS time, p.name || ' min' AS metric, b.min AS value
FROM readings_1h b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} > {M15_MAX}
UNION ALL
SELECT b.bucket AS time, p.name || ' max' AS metric, b.max AS value
FROM readings_1h b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket) AND {RANGE} > {M15_MAX}
ORDER BY 1
""", "time_series")], w=12)
    ts_panel(lay, "Quality: flagged readings per interval", [sql(lay, "Quality flags", f"""
SELECT $__timeGroupAlias(r.ts, $__interval),
       count(*) FILTER (WHERE r.quality & {BAD_QUALITY} <> 0) AS bad,
       count(*) FILTER (WHERE r.quality & {MANUAL} <> 0) AS manual,
       count(*) FILTER (WHERE r.quality <> 0 AND r.quality & {BAD_QUALITY | MANUAL} = 0) AS other_flags,
       count(*) FILTER (WHERE r.quality = 0) AS good
FROM readings r
WHERE r.point_id IN ($point) AND $__timeFilter(r.ts)
GROUP BY 1
ORDER BY 1
""", "time_series")], w=12, bars=True, stack=True)
    table_panel(lay, "Latest readings with quality", [sql(lay, "Latest readings", f"""
SELECT p.name AS point, p.device, p.unit, r.ts, r.value, r.quality, {QUALITY_TEXT} AS flags, r.received_at
FROM points p
JOIN LATERAL (SELECT ts, value, quality, received_at FROM readings
              WHERE point_id = p.id AND ts <= $__timeTo() ORDER BY ts DESC LIMIT 1) r ON true
WHERE p.id IN ($point)
ORDER BY p.name
""", "table", ("point", "ts", "value", "quality", "flags"))], w=24, h=7)
    return dashboard("GridWatch: point explorer", "gw-points", lay, variables=_explorer_vars("gw-points"),
                     tags=["points"], time_from="now-6h", refresh="30s")


def health() -> Dashboard:
    """Device and link health: freshness from the database, link state and rates from Prometheus."""
    lay = Layout("gw-health")
    state_timeline(lay, "Link state (1 = up)", [prom("max by (source, link) (gridwatch_link_up)",
                                                     "{{source}} {{link}}")], w=24, h=8,
                   mappings=[{"type": "value", "options": {"0": {"text": "down", "color": "red"},
                                                            "1": {"text": "up", "color": "green"}}}])
    ts_panel(lay, "Last message age per source", [prom("gridwatch_source_last_message_age_seconds", "{{source}}")],
             unit="s", w=12)
    ts_panel(lay, "Driver errors per second", [
        prom('sum by (source, counter) (rate(gridwatch_source_events_total'
             '{counter=~"errors|timeouts|decode_errors|reconnects"}[5m]))', "{{source}} {{counter}}")], w=12)
    ts_panel(lay, "Readings in and stored per second", [
        prom("sum by (source) (rate(gridwatch_readings_in_total[5m]))", "{{source}} in"),
        prom("sum by (source) (rate(gridwatch_readings_stored_total[5m]))", "{{source}} stored", ref="B")], w=12)
    ts_panel(lay, "Spool and buffer", [
        prom("gridwatch_spool_depth", "spool batches"), prom("gridwatch_spool_bytes", "spool bytes", ref="B"),
        prom("gridwatch_buffer_rows", "buffer rows", ref="C")], w=12)
    ts_panel(lay, "Schedule control: computation time and errors", [
        prom("gridwatch_schedule_last_tick_seconds", "last tick (s)"),
        prom("increase(gridwatch_schedule_tick_errors_total[1h])", "errors per hour", ref="B"),
        prom("increase(gridwatch_schedule_recomputed_hours_total[1h])", "hours recomputed per hour", ref="C")],
        w=12)
    ts_panel(lay, "Schedule control: current hour by verdict", [
        prom("sum by (verdict) (gridwatch_schedule_current_hour_entities)", "{{verdict}}")], w=12, bars=True,
        stack=True)
    table_panel(lay, "Device freshness (from stored readings)", [sql(lay, "Device freshness", """
SELECT p.source, p.device, count(*) AS points, max(r.ts) AS last_reading,
       extract(epoch FROM ($__timeTo()::timestamptz - max(r.ts)))::bigint AS age_s,
       count(*) FILTER (WHERE r.ts IS NULL OR r.ts < $__timeTo()::timestamptz - interval '30 minutes') AS stale_points
FROM points p
LEFT JOIN LATERAL (SELECT ts FROM readings WHERE point_id = p.id AND ts <= $__timeTo()
                   ORDER BY ts DESC LIMIT 1) r ON true
WHERE p.active
GROUP BY p.source, p.device
ORDER BY age_s DESC NULLS FIRST
LIMIT 500
""", "table", ("source", "device", "points", "last_reading", "age_s", "stale_points"))], w=12, h=10)
    ts_panel(lay, "Readings stored per source", [sql(lay, "Readings per source", """
SELECT $__timeGroupAlias(r.ts, $__interval), p.source AS metric, count(*) AS value
FROM readings r JOIN points p ON p.id = r.point_id
WHERE $__timeFilter(r.ts)
GROUP BY 1, 2
ORDER BY 1
""", "time_series")], w=12, h=10, bars=True, stack=True)
    table_panel(lay, "Dead letters per source", [sql(lay, "Dead letters", """
SELECT source, count(*) AS count, max(ts) AS last_at, (array_agg(reason ORDER BY id DESC))[1] AS last_reason
FROM dead_letters
WHERE $__timeFilter(ts)
GROUP BY source
ORDER BY count DESC
""", "table", ("source", "count", "last_at", "last_reason"))], w=12)
    table_panel(lay, "Storage jobs", [sql(lay, "Storage jobs", """
SELECT name, last_status, last_run_at, last_success_at, total_runs, total_failures, last_error
FROM storage_jobs
ORDER BY name
""", "table", ("name", "last_status", "last_run_at"))], w=12)
    return dashboard("GridWatch: devices and links", "gw-health", lay, tags=["health"], time_from="now-6h",
                     refresh="30s")


def anomalies() -> Dashboard:
    """Anomaly scores next to values, and the alert and event history."""
    lay = Layout("gw-anomalies")
    var = sql_var("point", "SELECT DISTINCT p.name AS __text, p.id AS __value FROM points p "
                           "JOIN anomaly_scores s ON s.point_id = p.id ORDER BY 1",
                  label="Point", include_all=True, dashboard="gw-anomalies")
    ts_panel(lay, "Anomaly score", [sql(lay, "Anomaly score", """
SELECT $__timeGroupAlias(s.ts, $__interval), p.name || ' ' || s.model AS metric, max(s.score) AS value
FROM anomaly_scores s JOIN points p ON p.id = s.point_id
WHERE s.point_id IN ($point) AND $__timeFilter(s.ts)
GROUP BY 1, 2
ORDER BY 1
""", "time_series")], w=12)
    ts_panel(lay, "Values of the scored points", [sql(lay, "Scored values", """
SELECT $__timeGroupAlias(r.ts, $__interval), p.name AS metric, avg(r.value) AS value
FROM readings r JOIN points p ON p.id = r.point_id
WHERE r.point_id IN ($point) AND $__timeFilter(r.ts)
GROUP BY 1, 2
ORDER BY 1
""", "time_series")], w=12)
    bar_chart(lay, "Most anomalous points", [sql(lay, "Most anomalous points", """
SELECT p.name AS point, max(s.score) AS max_score, count(*) FILTER (WHERE s.score >= 0.5) AS high_scores
FROM anomaly_scores s JOIN points p ON p.id = s.point_id
WHERE $__timeFilter(s.ts)
GROUP BY p.name
ORDER BY max_score DESC
LIMIT 20
""", "table", ("point", "max_score", "high_scores"))], w=8)
    ts_panel(lay, "Alerts started per hour by rule", [sql(lay, "Alerts per rule", """
SELECT $__timeGroupAlias(started_at, '1h'), rule AS metric, count(*) AS value
FROM alerts
WHERE $__timeFilter(started_at)
GROUP BY 1, 2
ORDER BY 1
""", "time_series")], w=16, bars=True, stack=True)
    table_panel(lay, "Event journal", [sql(lay, "Event journal", """
SELECT ts, kind, source, actor, message
FROM events
WHERE $__timeFilter(ts)
ORDER BY ts DESC
LIMIT 500
""", "table", ("ts", "kind", "source", "actor", "message"))], w=24, h=10)
    return dashboard("GridWatch: anomalies and events", "gw-anomalies", lay, variables=[var], tags=["anomalies"],
                     time_from="now-24h")


def archive() -> Dashboard:
    """Archive: long ranges from the hourly aggregate, daily energy, totals, corrections."""
    lay = Layout("gw-archive")
    uid = "gw-archive"
    ts_panel(lay, "Hourly average (long ranges)", [sql(lay, "Hourly average", """
SELECT b.bucket AS time, p.name AS metric, b.avg AS value
FROM readings_1h b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket)
ORDER BY 1
""", "time_series")], w=24, h=9)
    ts_panel(lay, "Daily energy of counters (load profile)", [sql(lay, "Daily energy", """
SELECT time, metric, value FROM (
    SELECT date_trunc('day', b.bucket) AS time, p.name AS metric,
           max(b.last) - lag(max(b.last)) OVER (PARTITION BY p.name ORDER BY date_trunc('day', b.bucket)) AS value
    FROM readings_1h b JOIN points p ON p.id = b.point_id
    WHERE b.point_id IN ($point) AND p.kind = 'counter'
      AND b.bucket >= $__timeFrom()::timestamptz - interval '1 day' AND b.bucket < $__timeTo()::timestamptz
    GROUP BY 1, 2
) d
WHERE time >= date_trunc('day', $__timeFrom()::timestamptz) AND value IS NOT NULL
ORDER BY 1
""", "time_series")], w=12, bars=True,
        description="Counter at the day's last reading minus the previous day's: the day's energy.")
    ts_panel(lay, "Hourly energy of counters", [sql(lay, "Hourly energy", """
SELECT time, metric, value FROM (
    SELECT b.bucket AS time, p.name AS metric,
           b.last - lag(b.last) OVER (PARTITION BY b.point_id ORDER BY b.bucket) AS value
    FROM readings_1h b JOIN points p ON p.id = b.point_id
    WHERE b.point_id IN ($point) AND p.kind = 'counter'
      AND b.bucket >= $__timeFrom()::timestamptz - interval '1 hour' AND b.bucket < $__timeTo()::timestamptz
) h
WHERE $__timeFilter(time) AND value IS NOT NULL
ORDER BY 1
""", "time_series")], w=12, bars=True)
    table_panel(lay, "Total, maximum and minimum over the range", [sql(lay, "Totals", """
SELECT p.name AS point, p.unit, min(b.min) AS minimum, max(b.max) AS maximum,
       sum(b.avg * b.count) / nullif(sum(b.count), 0) AS average,
       CASE WHEN p.kind = 'counter' THEN max(b.last) - min(b.first) END AS total_increase,
       sum(b.count) AS readings
FROM readings_1h b JOIN points p ON p.id = b.point_id
WHERE b.point_id IN ($point) AND $__timeFilter(b.bucket)
GROUP BY p.name, p.unit, p.kind
ORDER BY p.name
""", "table", ("point", "minimum", "maximum", "average", "total_increase"))], w=14, h=8)
    table_panel(lay, "Manual corrections", [sql(lay, "Manual corrections", """
SELECT c.id, p.name AS point, c.ts, c.original_value, c.new_value, c.state, c.proposed_by, c.decided_by,
       c.decided_at, c.reason
FROM corrections c LEFT JOIN points p ON p.id = c.point_id
WHERE $__timeFilter(c.ts)
ORDER BY c.id DESC
LIMIT 200
""", "table", ("id", "point", "ts", "original_value", "new_value", "state"))], w=10, h=8)
    notes = [journal_annotation(lay, "Corrections", ("correction",), "purple")]
    return dashboard("GridWatch: archive", uid, lay, variables=_explorer_vars(uid), tags=["archive"],
                     time_from="now-30d", refresh="", annotations=notes)


ALL = {
    "overview": overview,
    "schedule": schedule,
    "point-explorer": point_explorer,
    "health": health,
    "anomalies": anomalies,
    "archive": archive,
}
"""File stem -> dashboard function (dashboards/build/<stem>.json)."""
