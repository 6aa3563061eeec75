-- Runs of GridWatch's own maintenance work (partitions, rollups, manual TimescaleDB
-- refresh/compression/retention), so that failures are visible like TimescaleDB job_stats.
CREATE TABLE IF NOT EXISTS storage_jobs (
    name            text PRIMARY KEY,
    last_run_at     timestamptz,
    last_success_at timestamptz,
    last_status     text NOT NULL DEFAULT 'never',
    last_error      text NOT NULL DEFAULT '',
    total_runs      bigint NOT NULL DEFAULT 0,
    total_failures  bigint NOT NULL DEFAULT 0,
    watermark       timestamptz
);
