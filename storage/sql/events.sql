-- name: insert
INSERT INTO events (ts, kind, source, actor, message, details)
VALUES (%(ts)s, %(kind)s, %(source)s, %(actor)s, %(message)s, %(details)s)
RETURNING id;

-- name: select
SELECT id, ts, kind, source, actor, message, details, recorded_at
FROM events
WHERE (%(kind)s::text IS NULL OR kind = %(kind)s)
  AND (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(start)s::timestamptz IS NULL OR ts >= %(start)s)
  AND (%(end)s::timestamptz IS NULL OR ts < %(end)s)
ORDER BY ts DESC, id DESC
LIMIT %(limit)s;

-- name: purge
SELECT purge_events(%(keep_days)s);
