-- Alerting: one row per alert key (its current episode), and the transactional outbox.
-- History of every transition, ack and shelve is in the events journal.

CREATE TABLE IF NOT EXISTS alerts (
    id                bigserial PRIMARY KEY,
    key               text NOT NULL UNIQUE,
    rule              text NOT NULL,
    severity          smallint NOT NULL,
    state             text NOT NULL CHECK (state IN ('firing', 'resolved')),
    summary           text NOT NULL DEFAULT '',
    point_id          bigint,
    device            text NOT NULL DEFAULT '',
    zone              text NOT NULL DEFAULT '',
    subject           text NOT NULL DEFAULT '',
    evidence          jsonb NOT NULL DEFAULT '{}'::jsonb,
    recommendation    text NOT NULL DEFAULT '',
    episode           integer NOT NULL DEFAULT 1,
    started_at        timestamptz NOT NULL,           -- detector time the episode started
    opened_at         timestamptz NOT NULL,           -- daemon time the episode started (escalation)
    last_seen_at      timestamptz NOT NULL,
    resolved_at       timestamptz,
    updated_at        timestamptz NOT NULL,
    repeat_count      integer NOT NULL DEFAULT 0,     -- deduplicated submissions in this episode
    transitions       timestamptz[] NOT NULL DEFAULT '{}',  -- recent state changes (flapping)
    flapping          boolean NOT NULL DEFAULT false,
    notified_state    text CHECK (notified_state IN ('firing', 'resolved')),
    notified_severity smallint,
    acked_by          text,
    acked_at          timestamptz,
    ack_comment       text,
    shelved_by        text,
    shelved_at        timestamptz,
    shelved_until     timestamptz,
    shelve_reason     text,
    escalation_level  integer NOT NULL DEFAULT 0,
    escalated_at      timestamptz
);

CREATE INDEX IF NOT EXISTS alerts_state_idx ON alerts (state, severity DESC, id DESC);
CREATE INDEX IF NOT EXISTS alerts_shelved_idx ON alerts (shelved_until) WHERE shelved_until IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_flapping_idx ON alerts (id) WHERE flapping;

CREATE TABLE IF NOT EXISTS alert_outbox (
    id               bigserial PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    receiver         text NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('firing', 'resolved', 'escalation')),
    group_key        text NOT NULL DEFAULT '',
    payload          jsonb NOT NULL,                  -- snapshot of the alert when enqueued
    created_at       timestamptz NOT NULL,
    next_attempt_at  timestamptz NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed')),
    leased_by        text,
    leased_until     timestamptz,
    delivered_at     timestamptz,
    last_error       text NOT NULL DEFAULT ''
);

CREATE INDEX IF NOT EXISTS alert_outbox_due_idx ON alert_outbox (receiver, next_attempt_at, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_order_idx ON alert_outbox (alert_id, receiver, id)
    WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS alert_outbox_done_idx ON alert_outbox (delivered_at) WHERE status <> 'pending';
