-- Manual corrections of stored readings, four eyes: one user proposes, a second user confirms
-- (or rejects). The original value and quality are kept here; the reading itself gets the
-- corrected value flagged MANUAL when the correction is applied.
CREATE TABLE IF NOT EXISTS corrections (
    id                bigserial PRIMARY KEY,
    point_id          integer NOT NULL,
    ts                timestamptz NOT NULL,
    original_existed  boolean NOT NULL,
    original_value    double precision,
    original_quality  integer,
    new_value         double precision NOT NULL,
    reason            text NOT NULL,
    state             text NOT NULL DEFAULT 'proposed' CHECK (state IN ('proposed', 'applied', 'rejected')),
    proposed_by       text NOT NULL,
    proposed_at       timestamptz NOT NULL,
    decided_by        text,
    decided_at        timestamptz,
    decision_comment  text NOT NULL DEFAULT '',
    CONSTRAINT corrections_four_eyes CHECK (decided_by IS NULL OR decided_by <> proposed_by)
);
-- At most one open proposal per reading.
CREATE UNIQUE INDEX IF NOT EXISTS corrections_one_open_idx ON corrections (point_id, ts) WHERE state = 'proposed';
CREATE INDEX IF NOT EXISTS corrections_point_ts_idx ON corrections (point_id, ts);
