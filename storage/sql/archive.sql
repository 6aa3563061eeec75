-- Archive: metering-point status, exports and manual corrections.

-- Status of every point: the newest reading (time, receive time, manual or automatic) and
-- the newest applied manual correction.
-- name: point_status
SELECT p.id, p.name, p.device, p.subject, p.zone, p.unit, p.kind, p.active,
       r.ts, r.received_at, r.quality,
       (SELECT max(c.decided_at) FROM corrections c WHERE c.point_id = p.id AND c.state = 'applied') AS last_manual_at
FROM points p
LEFT JOIN LATERAL (
    SELECT ts, received_at, quality FROM readings WHERE point_id = p.id ORDER BY ts DESC LIMIT 1
) r ON true
WHERE (%(zone)s::text IS NULL OR p.zone = %(zone)s)
  AND (%(subject)s::text IS NULL OR p.subject = %(subject)s)
  AND (%(device)s::text IS NULL OR p.device = %(device)s)
ORDER BY p.name;

-- name: points_by_name
SELECT id, name, unit, kind, meta FROM points WHERE name = ANY(%(names)s);

-- name: raw_window
SELECT point_id, ts, value, quality FROM readings
WHERE point_id = ANY(%(ids)s::int[]) AND ts >= %(start)s AND ts <= %(end)s
ORDER BY point_id, ts;

-- name: reading_for_update
SELECT value, quality FROM readings WHERE point_id = %(point_id)s AND ts = %(ts)s FOR UPDATE;

-- name: insert_proposal
INSERT INTO corrections (point_id, ts, original_existed, original_value, original_quality, new_value, reason,
                         proposed_by, proposed_at)
VALUES (%(point_id)s, %(ts)s, %(existed)s, %(value)s, %(quality)s, %(new_value)s, %(reason)s, %(actor)s, %(now)s)
RETURNING id;

-- name: correction_for_update
SELECT id FROM corrections WHERE id = %(id)s FOR UPDATE;

-- name: get_correction
SELECT c.id, c.point_id, p.name, c.ts, c.original_existed, c.original_value, c.original_quality, c.new_value,
       c.reason, c.state, c.proposed_by, c.proposed_at, c.decided_by, c.decided_at, c.decision_comment
FROM corrections c LEFT JOIN points p ON p.id = c.point_id
WHERE c.id = %(id)s;

-- name: list_corrections
SELECT c.id, c.point_id, p.name, c.ts, c.original_existed, c.original_value, c.original_quality, c.new_value,
       c.reason, c.state, c.proposed_by, c.proposed_at, c.decided_by, c.decided_at, c.decision_comment
FROM corrections c LEFT JOIN points p ON p.id = c.point_id
WHERE (%(state)s::text IS NULL OR c.state = %(state)s)
  AND (%(point_id)s::int IS NULL OR c.point_id = %(point_id)s)
ORDER BY c.id DESC
LIMIT %(limit)s;

-- name: decide
UPDATE corrections SET state = %(state)s, decided_by = %(actor)s, decided_at = %(now)s, decision_comment = %(comment)s
WHERE id = %(id)s AND state = 'proposed';

-- name: update_reading
UPDATE readings SET value = %(value)s, quality = %(quality)s, received_at = %(now)s
WHERE point_id = %(point_id)s AND ts = %(ts)s;

-- name: insert_reading
INSERT INTO readings (point_id, ts, value, quality, received_at)
VALUES (%(point_id)s, %(ts)s, %(value)s, %(quality)s, %(now)s);
