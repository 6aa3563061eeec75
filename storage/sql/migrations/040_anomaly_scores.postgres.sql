-- Anomaly score per reading (detectors), so Grafana can plot it next to the value.
-- Plain PostgreSQL: a regular table; old rows are removed by storage.scores.delete_scores_before.
CREATE TABLE IF NOT EXISTS anomaly_scores (
    point_id integer NOT NULL,
    ts       timestamptz NOT NULL,
    score    real NOT NULL,
    model    text NOT NULL,
    PRIMARY KEY (point_id, ts, model)
);
CREATE INDEX IF NOT EXISTS anomaly_scores_ts_idx ON anomaly_scores (ts);
