-- The append-only event journal (control events, user access, settings changes, faults).
-- A trigger refuses UPDATE, DELETE and TRUNCATE; the only way to remove rows is
-- purge_events(keep_days), which refuses to keep less than 365 days and can only delete
-- rows older than 365 days (the trigger re-checks every row).
CREATE TABLE IF NOT EXISTS events (
    id      bigserial PRIMARY KEY,
    ts      timestamptz NOT NULL,
    kind    text NOT NULL,
    source  text NOT NULL DEFAULT '',
    actor   text NOT NULL DEFAULT 'system',
    message text NOT NULL DEFAULT '',
    details jsonb NOT NULL DEFAULT '{}'::jsonb,
    recorded_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS events_ts_idx ON events (ts);
CREATE INDEX IF NOT EXISTS events_kind_ts_idx ON events (kind, ts);

CREATE OR REPLACE FUNCTION events_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF current_setting('gridwatch.events_purge', true) = 'on'
           AND OLD.ts < now() - INTERVAL '365 days' THEN
            RETURN OLD;
        END IF;
    END IF;
    RAISE EXCEPTION 'the event journal is append-only: % refused', TG_OP
        USING ERRCODE = 'restrict_violation',
              HINT = 'rows older than 365 days are removed only by purge_events(keep_days)';
END
$$;

DROP TRIGGER IF EXISTS events_append_only ON events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_guard();
DROP TRIGGER IF EXISTS events_no_truncate ON events;
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_guard();

CREATE OR REPLACE FUNCTION purge_events(keep_days integer) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    IF keep_days IS NULL OR keep_days < 365 THEN
        RAISE EXCEPTION 'purge_events: the journal keeps at least 365 days (asked to keep %)', keep_days
            USING ERRCODE = 'restrict_violation';
    END IF;
    PERFORM set_config('gridwatch.events_purge', 'on', true);
    DELETE FROM events WHERE ts < now() - make_interval(days => keep_days);
    GET DIAGNOSTICS n = ROW_COUNT;
    PERFORM set_config('gridwatch.events_purge', 'off', true);
    RETURN n;
END
$$;
