-- Schedule execution control: plans, measurements per hour, results.

-- name: next_version
SELECT coalesce(max(version), 0) + 1 FROM schedule_plan_versions WHERE day = %(day)s AND subject = %(subject)s;

-- name: insert_version
INSERT INTO schedule_plan_versions (day, subject, version, unit, hours, imported_by, source, comment)
VALUES (%(day)s, %(subject)s, %(version)s, %(unit)s, %(hours)s, %(actor)s, %(source)s, %(comment)s)
RETURNING id;

-- name: insert_hour
INSERT INTO schedule_plan_hours (version_id, hour, hour_start, plan_mwh)
VALUES (%(version_id)s, %(hour)s, %(hour_start)s, %(plan_mwh)s);

-- name: lock_plans
LOCK TABLE schedule_plan_versions IN SHARE ROW EXCLUSIVE MODE;

-- name: plans_at
SELECT subject, plan_mwh, version FROM schedule_plan_current WHERE hour_start = %(hour_start)s;

-- name: plan_history
SELECT v.day, v.subject, v.version, v.unit, v.hours, v.imported_at, v.imported_by, v.source, v.comment,
       array_agg(h.plan_mwh ORDER BY h.hour) AS values
FROM schedule_plan_versions v JOIN schedule_plan_hours h ON h.version_id = v.id
WHERE v.day = %(day)s AND (%(subject)s::text IS NULL OR v.subject = %(subject)s)
GROUP BY v.id ORDER BY v.subject, v.version;

-- name: point_ids
SELECT name, id FROM points WHERE name = ANY(%(names)s);

-- Energy counters: the baseline is the last good reading at most `tol` before the hour's
-- start (or, failing that, the first inside the hour); the end is the last good reading
-- inside the hour (up to and including its end).
-- name: counter_energy
WITH ids AS (SELECT unnest(%(ids)s::integer[]) AS point_id),
base_before AS (
    SELECT DISTINCT ON (point_id) point_id, ts, value FROM readings
    WHERE point_id = ANY(%(ids)s) AND ts >= %(start)s - %(tol)s AND ts <= %(start)s
      AND (quality & %(bad)s) = 0 AND value <> 'NaN'::float8
    ORDER BY point_id, ts DESC),
base_inside AS (
    SELECT DISTINCT ON (point_id) point_id, ts, value FROM readings
    WHERE point_id = ANY(%(ids)s) AND ts > %(start)s AND ts <= %(end)s
      AND (quality & %(bad)s) = 0 AND value <> 'NaN'::float8
    ORDER BY point_id, ts ASC),
last_inside AS (
    SELECT DISTINCT ON (point_id) point_id, ts, value FROM readings
    WHERE point_id = ANY(%(ids)s) AND ts > %(start)s AND ts <= %(end)s
      AND (quality & %(bad)s) = 0 AND value <> 'NaN'::float8
    ORDER BY point_id, ts DESC)
SELECT i.point_id,
       coalesce(b.ts, bi.ts) AS base_ts, coalesce(b.value, bi.value) AS base_value,
       l.ts AS last_ts, l.value AS last_value
FROM ids i
LEFT JOIN base_before b ON b.point_id = i.point_id
LEFT JOIN base_inside bi ON bi.point_id = i.point_id
LEFT JOIN last_inside l ON l.point_id = i.point_id;

-- Power: trapezoidal integral of good samples over [start, end], clipped to the window;
-- pairs further apart than max_gap seconds are gaps. Energy in unit*h, covered in seconds.
-- name: power_energy
WITH s AS (
    SELECT point_id, extract(epoch FROM ts)::float8 AS t1, value AS v1,
           lag(extract(epoch FROM ts)::float8) OVER w AS t0, lag(value) OVER w AS v0
    FROM readings
    WHERE point_id = ANY(%(ids)s) AND ts >= %(start)s - make_interval(secs => %(max_gap)s)
      AND ts <= %(end)s + make_interval(secs => %(max_gap)s)
      AND (quality & %(bad)s) = 0 AND value <> 'NaN'::float8
    WINDOW w AS (PARTITION BY point_id ORDER BY ts)),
c AS (
    SELECT point_id, t0, t1, v0, v1,
           greatest(t0, extract(epoch FROM %(start)s::timestamptz)::float8) AS a,
           least(t1, extract(epoch FROM %(end)s::timestamptz)::float8) AS b
    FROM s WHERE t0 IS NOT NULL AND t1 > t0 AND t1 - t0 <= %(max_gap)s)
SELECT point_id,
       sum(((v0 + (v1 - v0) * (a - t0) / (t1 - t0)) + (v0 + (v1 - v0) * (b - t0) / (t1 - t0))) / 2.0
           * (b - a) / 3600.0) AS energy,
       sum(b - a) AS covered_s
FROM c WHERE b > a
GROUP BY point_id;

-- name: upsert_result
INSERT INTO schedule_results (entity, entity_kind, zone, hour_start, hour_end, day, hour, plan_mwh, actual_mwh,
                              projected_mwh, deviation_mwh, deviation_pct, band_mwh, completeness, verdict, final,
                              plan_version, computed_at)
VALUES (%(entity)s, %(entity_kind)s, %(zone)s, %(hour_start)s, %(hour_end)s, %(day)s, %(hour)s, %(plan_mwh)s,
        %(actual_mwh)s, %(projected_mwh)s, %(deviation_mwh)s, %(deviation_pct)s, %(band_mwh)s, %(completeness)s,
        %(verdict)s, %(final)s, %(plan_version)s, %(computed_at)s)
ON CONFLICT (entity, hour_start) DO UPDATE SET
    entity_kind = EXCLUDED.entity_kind, zone = EXCLUDED.zone, hour_end = EXCLUDED.hour_end, day = EXCLUDED.day,
    hour = EXCLUDED.hour, plan_mwh = EXCLUDED.plan_mwh, actual_mwh = EXCLUDED.actual_mwh,
    projected_mwh = EXCLUDED.projected_mwh, deviation_mwh = EXCLUDED.deviation_mwh,
    deviation_pct = EXCLUDED.deviation_pct, band_mwh = EXCLUDED.band_mwh, completeness = EXCLUDED.completeness,
    verdict = EXCLUDED.verdict, final = EXCLUDED.final, plan_version = EXCLUDED.plan_version,
    computed_at = EXCLUDED.computed_at;

-- name: results_at
SELECT entity, entity_kind, zone, hour_start, hour_end, day, hour, plan_mwh, actual_mwh, projected_mwh,
       deviation_mwh, deviation_pct, band_mwh, completeness, verdict, final, plan_version, computed_at
FROM schedule_results WHERE hour_start = %(hour_start)s;

-- name: results_day
SELECT entity, entity_kind, zone, hour_start, hour_end, day, hour, plan_mwh, actual_mwh, projected_mwh,
       deviation_mwh, deviation_pct, band_mwh, completeness, verdict, final, plan_version, computed_at
FROM schedule_results
WHERE day = %(day)s AND (%(entity)s::text IS NULL OR entity = %(entity)s)
ORDER BY entity_kind, entity, hour_start;

-- name: last_final_end
SELECT max(hour_end) FROM schedule_results WHERE final;

-- name: open_hours_before
SELECT DISTINCT hour_start FROM schedule_results WHERE NOT final AND hour_start < %(before)s ORDER BY hour_start;
