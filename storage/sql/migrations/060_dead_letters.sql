-- Dead letters: inputs the collector could not turn into readings (unknown keys, malformed
-- payloads), kept for inspection. Bounded: the collector trims to collector.dead_letter_max.
CREATE TABLE IF NOT EXISTS dead_letters (
    id      bigserial PRIMARY KEY,
    ts      timestamptz NOT NULL,
    source  text NOT NULL,
    reason  text NOT NULL,
    payload bytea NOT NULL
);
CREATE INDEX IF NOT EXISTS dead_letters_source_id ON dead_letters (source, id);
