-- TimescaleDB: 15-minute and hourly continuous aggregates (real-time: the newest, not yet
-- materialized buckets are computed on read). Same columns as the plain-PostgreSQL rollups.
-- Aggregates skip readings with a bad-quality flag (INVALID | OUT_OF_RANGE | COMM_FAIL = 528512)
-- and NaN values. delta = last - first inside the bucket.
CREATE MATERIALIZED VIEW IF NOT EXISTS readings_15m
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT point_id,
       time_bucket(INTERVAL '15 minutes', ts) AS bucket,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       first(value, ts) AS first,
       last(value, ts) AS last,
       count(*) AS count,
       last(value, ts) - first(value, ts) AS delta
FROM readings
WHERE (quality & 528512) = 0 AND value <> 'NaN'::float8
GROUP BY point_id, time_bucket(INTERVAL '15 minutes', ts)
WITH NO DATA;

CREATE MATERIALIZED VIEW IF NOT EXISTS readings_1h
WITH (timescaledb.continuous, timescaledb.materialized_only = false) AS
SELECT point_id,
       time_bucket(INTERVAL '1 hour', ts) AS bucket,
       avg(value) AS avg,
       min(value) AS min,
       max(value) AS max,
       first(value, ts) AS first,
       last(value, ts) AS last,
       count(*) AS count,
       last(value, ts) - first(value, ts) AS delta
FROM readings
WHERE (quality & 528512) = 0 AND value <> 'NaN'::float8
GROUP BY point_id, time_bucket(INTERVAL '1 hour', ts)
WITH NO DATA;
