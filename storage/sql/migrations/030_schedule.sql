-- Approved daily schedules (plans), versioned per operating day and subject: every import
-- adds a version, the latest version applies, older ones stay as history.
CREATE TABLE IF NOT EXISTS schedule_plan_versions (
    id          bigserial PRIMARY KEY,
    day         date NOT NULL,
    subject     text NOT NULL,
    version     integer NOT NULL,
    unit        text NOT NULL DEFAULT 'MWh',
    hours       integer NOT NULL,
    imported_at timestamptz NOT NULL DEFAULT now(),
    imported_by text NOT NULL DEFAULT 'system',
    source      text NOT NULL DEFAULT '',
    comment     text NOT NULL DEFAULT '',
    UNIQUE (day, subject, version)
);

CREATE TABLE IF NOT EXISTS schedule_plan_hours (
    version_id bigint NOT NULL REFERENCES schedule_plan_versions (id) ON DELETE CASCADE,
    hour       integer NOT NULL,
    hour_start timestamptz NOT NULL,
    plan_mwh   double precision NOT NULL,
    PRIMARY KEY (version_id, hour)
);
CREATE INDEX IF NOT EXISTS schedule_plan_hours_start_idx ON schedule_plan_hours (hour_start);

-- The plan in force: the latest version of each (day, subject), hour by hour.
CREATE OR REPLACE VIEW schedule_plan_current AS
SELECT v.day, v.subject, h.hour, h.hour_start, h.plan_mwh, v.version, v.unit
FROM schedule_plan_versions v
JOIN schedule_plan_hours h ON h.version_id = v.id
WHERE v.version = (SELECT max(v2.version) FROM schedule_plan_versions v2
                   WHERE v2.day = v.day AND v2.subject = v.subject);

-- Plan against actual per hour for subjects, zones (North, South, West, North-South) and the
-- miners of each zone. Open hours are updated in place until `final`; late data updates
-- closed hours (and the change is journaled).
CREATE TABLE IF NOT EXISTS schedule_results (
    entity        text NOT NULL,
    entity_kind   text NOT NULL,
    zone          text NOT NULL DEFAULT '',
    hour_start    timestamptz NOT NULL,
    hour_end      timestamptz NOT NULL,
    day           date NOT NULL,
    hour          integer NOT NULL,
    plan_mwh      double precision,
    actual_mwh    double precision NOT NULL,
    projected_mwh double precision,
    deviation_mwh double precision,
    deviation_pct double precision,
    band_mwh      double precision,
    completeness  double precision NOT NULL,
    verdict       text NOT NULL,
    final         boolean NOT NULL DEFAULT false,
    plan_version  integer,
    computed_at   timestamptz NOT NULL,
    PRIMARY KEY (entity, hour_start)
);
CREATE INDEX IF NOT EXISTS schedule_results_day_idx ON schedule_results (day, entity);
CREATE INDEX IF NOT EXISTS schedule_results_start_idx ON schedule_results (hour_start);
