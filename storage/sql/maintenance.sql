-- name: list_partitions
SELECT c.relname
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'readings'::regclass
ORDER BY c.relname;

-- name: partition_stats
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound,
       c.reltuples::bigint AS rows_estimate, pg_total_relation_size(c.oid) AS bytes
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'readings'::regclass
ORDER BY c.relname;

-- name: chunk_stats
SELECT chunk_schema || '.' || chunk_name AS chunk, range_start, range_end, is_compressed
FROM timescaledb_information.chunks
WHERE hypertable_name = 'readings'
ORDER BY range_start;

-- name: oldest_chunk_start
SELECT min(range_start) FROM timescaledb_information.chunks WHERE hypertable_name = 'readings';

-- name: refresh_15m
INSERT INTO readings_15m AS t (point_id, bucket, avg, min, max, first, last, count, delta)
SELECT point_id, bucket, avg(value), min(value), max(value),
       (array_agg(value ORDER BY ts))[1],
       (array_agg(value ORDER BY ts DESC))[1],
       count(*),
       (array_agg(value ORDER BY ts DESC))[1] - (array_agg(value ORDER BY ts))[1]
FROM (
    SELECT point_id, date_bin(INTERVAL '15 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket, ts, value
    FROM readings
    WHERE ts >= %(lo)s AND ts < %(hi)s
      AND (quality & 528512) = 0 AND value <> 'NaN'::float8
) s
GROUP BY point_id, bucket
ON CONFLICT (point_id, bucket) DO UPDATE
SET avg = EXCLUDED.avg, min = EXCLUDED.min, max = EXCLUDED.max, first = EXCLUDED.first,
    last = EXCLUDED.last, count = EXCLUDED.count, delta = EXCLUDED.delta
WHERE (t.avg, t.min, t.max, t.first, t.last, t.count)
      IS DISTINCT FROM (EXCLUDED.avg, EXCLUDED.min, EXCLUDED.max, EXCLUDED.first, EXCLUDED.last, EXCLUDED.count);

-- name: refresh_1h
INSERT INTO readings_1h AS t (point_id, bucket, avg, min, max, first, last, count, delta)
SELECT point_id, hour,
       sum(avg * count) / sum(count),
       min(min), max(max),
       (array_agg(first ORDER BY bucket))[1],
       (array_agg(last ORDER BY bucket DESC))[1],
       sum(count)::bigint,
       (array_agg(last ORDER BY bucket DESC))[1] - (array_agg(first ORDER BY bucket))[1]
FROM (
    SELECT point_id, date_bin(INTERVAL '1 hour', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
           bucket, avg, min, max, first, last, count
    FROM readings_15m
    WHERE bucket >= %(lo)s AND bucket < %(hi)s
) s
GROUP BY point_id, hour
ON CONFLICT (point_id, bucket) DO UPDATE
SET avg = EXCLUDED.avg, min = EXCLUDED.min, max = EXCLUDED.max, first = EXCLUDED.first,
    last = EXCLUDED.last, count = EXCLUDED.count, delta = EXCLUDED.delta
WHERE (t.avg, t.min, t.max, t.first, t.last, t.count)
      IS DISTINCT FROM (EXCLUDED.avg, EXCLUDED.min, EXCLUDED.max, EXCLUDED.first, EXCLUDED.last, EXCLUDED.count);

-- name: job_started
INSERT INTO storage_jobs (name, last_run_at, total_runs)
VALUES (%(name)s, now(), 1)
ON CONFLICT (name) DO UPDATE SET last_run_at = now(), total_runs = storage_jobs.total_runs + 1;

-- name: job_succeeded
UPDATE storage_jobs
SET last_success_at = now(), last_status = 'success', last_error = '',
    watermark = COALESCE(%(watermark)s, watermark)
WHERE name = %(name)s;

-- name: job_failed
UPDATE storage_jobs
SET last_status = 'failed', last_error = %(error)s, total_failures = total_failures + 1
WHERE name = %(name)s;

-- name: storage_jobs
SELECT name, last_run_at, last_success_at, last_status, last_error, total_runs, total_failures, watermark
FROM storage_jobs ORDER BY name;

-- name: timescale_jobs
SELECT j.job_id, j.application_name, j.proc_name, COALESCE(j.hypertable_name, '') AS hypertable_name,
       j.scheduled,
       CASE WHEN isfinite(s.last_run_started_at) THEN s.last_run_started_at END,
       CASE WHEN isfinite(s.last_successful_finish) THEN s.last_successful_finish END,
       COALESCE(s.last_run_status, 'never'),
       COALESCE(s.total_runs, 0), COALESCE(s.total_failures, 0),
       CASE WHEN isfinite(s.next_start) THEN s.next_start END,
       COALESCE((SELECT e.err_message FROM timescaledb_information.job_errors e
                 WHERE e.job_id = j.job_id ORDER BY e.start_time DESC LIMIT 1), '') AS last_error
FROM timescaledb_information.jobs j
LEFT JOIN timescaledb_information.job_stats s ON s.job_id = j.job_id
WHERE j.job_id >= 1000
ORDER BY j.job_id;

-- name: migrations_applied
SELECT version, name, backend, applied_at FROM schema_migrations ORDER BY version, name;
