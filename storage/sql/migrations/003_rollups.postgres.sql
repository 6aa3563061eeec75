-- Plain PostgreSQL: 15-minute and hourly rollups, the same columns as the TimescaleDB
-- continuous aggregates. Kept current by storage.rollups.refresh_rollups(db, since).
-- Aggregates skip readings with a bad-quality flag (INVALID | OUT_OF_RANGE | COMM_FAIL = 528512)
-- and NaN values. delta = last - first inside the bucket.
CREATE TABLE IF NOT EXISTS readings_15m (
    point_id integer NOT NULL,
    bucket   timestamptz NOT NULL,
    avg      double precision,
    min      double precision,
    max      double precision,
    first    double precision,
    last     double precision,
    count    bigint NOT NULL,
    delta    double precision,
    PRIMARY KEY (point_id, bucket)
);
CREATE TABLE IF NOT EXISTS readings_1h (LIKE readings_15m INCLUDING ALL);
