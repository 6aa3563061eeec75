-- TimescaleDB: readings is a hypertable with 1-day chunks. Only the (point_id, ts) primary
-- key and a BRIN index on ts (instead of the default btree on ts: far cheaper to maintain)
-- serve the queries: by point, and the real-time part of the continuous aggregates by time.
CREATE TABLE IF NOT EXISTS readings (
    point_id    integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     integer NOT NULL DEFAULT 0,
    received_at timestamptz,
    PRIMARY KEY (point_id, ts)
);
SELECT create_hypertable('readings', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true);
CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts);
ALTER TABLE readings SET (timescaledb.compress,
                          timescaledb.compress_segmentby = 'point_id',
                          timescaledb.compress_orderby = 'ts');
