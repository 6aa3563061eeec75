-- Anomaly score per reading (detectors), so Grafana can plot it next to the value.
-- TimescaleDB: a hypertable with 1-day chunks, like readings.
CREATE TABLE IF NOT EXISTS anomaly_scores (
    point_id integer NOT NULL,
    ts       timestamptz NOT NULL,
    score    real NOT NULL,
    model    text NOT NULL,
    PRIMARY KEY (point_id, ts, model)
);
SELECT create_hypertable('anomaly_scores', by_range('ts', INTERVAL '1 day'),
                         create_default_indexes => false, if_not_exists => true);
