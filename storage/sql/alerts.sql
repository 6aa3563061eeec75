-- Named queries of storage/alerts.py (alert state, outbox, delivery status).

-- name: lock_keys
-- Transaction-level advisory locks on the keys, taken in key order (no deadlocks).
SELECT count(pg_advisory_xact_lock(hashtextextended('gridwatch.alert:' || k, 0)))
FROM (SELECT k FROM unnest(%(keys)s::text[]) AS k ORDER BY k OFFSET 0) AS ordered;

-- name: get_by_keys
SELECT * FROM alerts WHERE key = ANY(%(keys)s) FOR UPDATE;

-- name: get_for_update
SELECT * FROM alerts WHERE id = %(id)s FOR UPDATE;

-- name: get
SELECT * FROM alerts WHERE id = %(id)s;

-- name: insert_alert
INSERT INTO alerts (key, rule, severity, state, summary, point_id, device, zone, subject, evidence,
                    recommendation, episode, started_at, opened_at, last_seen_at, resolved_at, updated_at,
                    repeat_count, transitions, flapping, notified_state, notified_severity,
                    acked_by, acked_at, ack_comment, shelved_by, shelved_at, shelved_until, shelve_reason,
                    escalation_level, escalated_at)
VALUES (%(key)s, %(rule)s, %(severity)s, %(state)s, %(summary)s, %(point_id)s, %(device)s, %(zone)s,
        %(subject)s, %(evidence)s, %(recommendation)s, %(episode)s, %(started_at)s, %(opened_at)s,
        %(last_seen_at)s, %(resolved_at)s, %(updated_at)s, %(repeat_count)s, %(transitions)s, %(flapping)s,
        %(notified_state)s, %(notified_severity)s, %(acked_by)s, %(acked_at)s, %(ack_comment)s,
        %(shelved_by)s, %(shelved_at)s, %(shelved_until)s, %(shelve_reason)s, %(escalation_level)s,
        %(escalated_at)s)
RETURNING *;

-- name: update_alert
UPDATE alerts SET
    rule = %(rule)s, severity = %(severity)s, state = %(state)s, summary = %(summary)s,
    point_id = %(point_id)s, device = %(device)s, zone = %(zone)s, subject = %(subject)s,
    evidence = %(evidence)s, recommendation = %(recommendation)s, episode = %(episode)s,
    started_at = %(started_at)s, opened_at = %(opened_at)s, last_seen_at = %(last_seen_at)s,
    resolved_at = %(resolved_at)s, updated_at = %(updated_at)s, repeat_count = %(repeat_count)s,
    transitions = %(transitions)s, flapping = %(flapping)s, notified_state = %(notified_state)s,
    notified_severity = %(notified_severity)s, acked_by = %(acked_by)s, acked_at = %(acked_at)s,
    ack_comment = %(ack_comment)s, shelved_by = %(shelved_by)s, shelved_at = %(shelved_at)s,
    shelved_until = %(shelved_until)s, shelve_reason = %(shelve_reason)s,
    escalation_level = %(escalation_level)s, escalated_at = %(escalated_at)s
WHERE id = %(id)s
RETURNING *;

-- name: enqueue
INSERT INTO alert_outbox (alert_id, receiver, kind, group_key, payload, created_at, next_attempt_at)
VALUES (%(alert_id)s, %(receiver)s, %(kind)s, %(group_key)s, %(payload)s, %(created_at)s, %(created_at)s);

-- name: list_alerts
SELECT * FROM alerts
WHERE (%(state)s::text IS NULL OR state = %(state)s)
  AND (%(min_severity)s::smallint IS NULL OR severity >= %(min_severity)s)
  AND (%(zone)s::text IS NULL OR zone = %(zone)s)
  AND (%(device)s::text IS NULL OR device = %(device)s)
  AND (%(rule)s::text IS NULL OR rule = %(rule)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY (state = 'firing') DESC, severity DESC, id DESC
LIMIT %(limit)s;

-- name: rows_for_maintenance
-- Rows whose quiet period may have ended, or that may be due for escalation.
SELECT * FROM alerts
WHERE flapping
   OR shelved_until IS NOT NULL
   OR (state = 'firing' AND acked_at IS NULL AND notified_state = 'firing')
ORDER BY id
LIMIT %(limit)s;

-- name: firing_notified
SELECT * FROM alerts WHERE notified_state = 'firing' ORDER BY id;

-- name: lease
-- Claim due rows of one receiver. A row waits while an older row of the same alert for the
-- same receiver is still pending, so firing and resolved arrive in order.
UPDATE alert_outbox AS o
SET leased_by = %(owner)s, leased_until = %(lease_until)s, attempts = o.attempts + 1
WHERE o.id IN (
    SELECT c.id FROM alert_outbox AS c
    WHERE c.status = 'pending' AND c.receiver = %(receiver)s AND c.next_attempt_at <= %(now)s
      AND (c.leased_until IS NULL OR c.leased_until < %(now)s)
      AND NOT EXISTS (SELECT 1 FROM alert_outbox AS p
                      WHERE p.status = 'pending' AND p.receiver = c.receiver
                        AND p.alert_id = c.alert_id AND p.id < c.id)
    ORDER BY c.id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.alert_id, o.receiver, o.kind, o.group_key, o.payload, o.created_at, o.attempts;

-- name: mark_delivered
UPDATE alert_outbox
SET status = 'delivered', delivered_at = %(now)s, leased_by = NULL, leased_until = NULL, last_error = ''
WHERE id = ANY(%(ids)s) AND leased_by = %(owner)s AND status = 'pending';

-- name: mark_failed
UPDATE alert_outbox
SET next_attempt_at = %(next_attempt_at)s, leased_by = NULL, leased_until = NULL, last_error = %(error)s,
    status = CASE WHEN %(max_attempts)s > 0 AND attempts >= %(max_attempts)s THEN 'failed' ELSE 'pending' END
WHERE id = ANY(%(ids)s) AND leased_by = %(owner)s AND status = 'pending'
RETURNING id, status;

-- name: outbox_summary
SELECT receiver,
       count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       min(created_at) FILTER (WHERE status = 'pending') AS oldest_pending,
       max(delivered_at) AS last_delivered_at
FROM alert_outbox
GROUP BY receiver
ORDER BY receiver;

-- name: list_deliveries
SELECT id, alert_id, receiver, kind, group_key, payload->>'key' AS alert_key, created_at, next_attempt_at,
       attempts, status, delivered_at, last_error
FROM alert_outbox
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(receiver)s::text IS NULL OR receiver = %(receiver)s)
  AND (%(alert_id)s::bigint IS NULL OR alert_id = %(alert_id)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: purge_outbox
DELETE FROM alert_outbox WHERE status = 'delivered' AND delivered_at < %(before)s;

-- name: release
-- Give back leased rows that were not attempted (the receiver failed on an earlier group).
UPDATE alert_outbox
SET leased_by = NULL, leased_until = NULL, attempts = greatest(attempts - 1, 0), next_attempt_at = %(next_attempt_at)s
WHERE id = ANY(%(ids)s) AND leased_by = %(owner)s AND status = 'pending';

-- name: insert_event
-- The events table belongs to storage (004_events.sql); alerting appends in its own transactions.
INSERT INTO events (ts, kind, source, actor, message, details)
VALUES (%(ts)s, %(kind)s, %(source)s, %(actor)s, %(message)s, %(details)s);

-- name: list_events
SELECT id, ts, kind, source, actor, message, details, recorded_at FROM events
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(actor)s::text IS NULL OR actor = %(actor)s)
  AND (%(since)s::timestamptz IS NULL OR ts >= %(since)s)
  AND (%(until)s::timestamptz IS NULL OR ts < %(until)s)
  AND (%(text)s::text IS NULL OR message ILIKE %(text)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: abandon_unknown_receivers
-- Pending rows of receivers that are no longer configured can never be delivered.
UPDATE alert_outbox
SET status = 'failed', leased_by = NULL, leased_until = NULL, last_error = %(error)s
WHERE status = 'pending' AND NOT (receiver = ANY(%(receivers)s))
RETURNING receiver;
