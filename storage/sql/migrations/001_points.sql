-- Metadata of every point (metering or telemetry). `name` is the stable point name from the
-- configuration; `id` is what readings reference.
CREATE TABLE IF NOT EXISTS points (
    id          serial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    source      text NOT NULL DEFAULT '',
    key         text NOT NULL DEFAULT '',
    device      text NOT NULL DEFAULT '',
    subject     text NOT NULL DEFAULT '',
    zone        text NOT NULL DEFAULT '',
    unit        text NOT NULL DEFAULT '',
    kind        text NOT NULL DEFAULT 'analog',
    description text NOT NULL DEFAULT '',
    meta        jsonb NOT NULL DEFAULT '{}'::jsonb,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS points_source_idx ON points (source);
CREATE INDEX IF NOT EXISTS points_device_idx ON points (device);
CREATE INDEX IF NOT EXISTS points_subject_idx ON points (subject);
CREATE INDEX IF NOT EXISTS points_zone_idx ON points (zone);
