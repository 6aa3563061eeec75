-- TimescaleDB: readings is a hypertable with 1-day chunks. Only the (point_id, ts) primary
-- key is indexed (no default ts index): every query names its points.
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
ALTER TABLE readings SET (timescaledb.compress,
                          timescaledb.compress_segmentby = 'point_id',
                          timescaledb.compress_orderby = 'ts');
