-- name: raw
SELECT point_id, ts, value, quality
FROM readings
WHERE point_id = ANY(%(ids)s::int[]) AND ts >= %(start)s AND ts < %(end)s
ORDER BY point_id, ts;

-- name: agg_15m
SELECT point_id, bucket, avg, min, max, first, last, count, delta, increase
FROM (
    SELECT point_id, bucket, avg, min, max, first, last, count, delta,
           last - lag(last) OVER (PARTITION BY point_id ORDER BY bucket) AS increase
    FROM readings_15m
    WHERE point_id = ANY(%(ids)s::int[]) AND bucket >= %(lookback)s AND bucket < %(end)s
) s
WHERE bucket >= %(start)s
ORDER BY point_id, bucket;

-- name: agg_1h
SELECT point_id, bucket, avg, min, max, first, last, count, delta, increase
FROM (
    SELECT point_id, bucket, avg, min, max, first, last, count, delta,
           last - lag(last) OVER (PARTITION BY point_id ORDER BY bucket) AS increase
    FROM readings_1h
    WHERE point_id = ANY(%(ids)s::int[]) AND bucket >= %(lookback)s AND bucket < %(end)s
) s
WHERE bucket >= %(start)s
ORDER BY point_id, bucket;

-- name: agg_1d
SELECT point_id, day, avg, min, max, first, last, count, last - first AS delta,
       last - lag(last) OVER (PARTITION BY point_id ORDER BY day) AS increase
FROM (
    SELECT point_id, date_bin(INTERVAL '1 day', bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
           sum(avg * count) / nullif(sum(count), 0) AS avg,
           min(min) AS min, max(max) AS max,
           (array_agg(first ORDER BY bucket))[1] AS first,
           (array_agg(last ORDER BY bucket DESC))[1] AS last,
           sum(count)::bigint AS count
    FROM readings_1h
    WHERE point_id = ANY(%(ids)s::int[]) AND bucket >= %(lookback)s AND bucket < %(end)s
    GROUP BY 1, 2
) d
ORDER BY point_id, day;

-- name: latest
SELECT p.id, r.ts, r.value, r.quality, r.received_at
FROM unnest(%(ids)s::int[]) AS p(id)
CROSS JOIN LATERAL (
    SELECT ts, value, quality, received_at FROM readings
    WHERE point_id = p.id ORDER BY ts DESC LIMIT 1
) r;
