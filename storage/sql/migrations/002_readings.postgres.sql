-- Plain PostgreSQL: readings range-partitioned by day. Partitions are created ahead by
-- storage.maintenance.maintain() and on demand by the writer; retention drops whole days.
-- No foreign key to points: it would cost an index probe per ingested row.
CREATE TABLE IF NOT EXISTS readings (
    point_id    integer NOT NULL,
    ts          timestamptz NOT NULL,
    value       double precision,
    quality     integer NOT NULL DEFAULT 0,
    received_at timestamptz,
    PRIMARY KEY (point_id, ts)
) PARTITION BY RANGE (ts);
-- Rollup refresh and retention scan time ranges across all points: a BRIN index on ts makes
-- that cheap at almost no ingest cost (rows arrive roughly in time order).
CREATE INDEX IF NOT EXISTS readings_ts_brin ON readings USING brin (ts);
