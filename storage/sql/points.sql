-- name: create_stage
CREATE TEMP TABLE points_in (
    name text NOT NULL, source text NOT NULL, key text NOT NULL, device text NOT NULL,
    subject text NOT NULL, zone text NOT NULL, unit text NOT NULL, kind text NOT NULL,
    description text NOT NULL, meta jsonb NOT NULL, ord integer NOT NULL
) ON COMMIT DROP;

-- name: copy_stage
COPY points_in (name, source, key, device, subject, zone, unit, kind, description, meta, ord) FROM STDIN;

-- name: insert_new
INSERT INTO points (name, source, key, device, subject, zone, unit, kind, description, meta)
SELECT s.name, s.source, s.key, s.device, s.subject, s.zone, s.unit, s.kind, s.description, s.meta
FROM points_in s
WHERE NOT EXISTS (SELECT 1 FROM points p WHERE p.name = s.name)
ORDER BY s.ord
ON CONFLICT (name) DO NOTHING;

-- name: update_changed
UPDATE points p
SET source = s.source, key = s.key, device = s.device, subject = s.subject, zone = s.zone,
    unit = s.unit, kind = s.kind, description = s.description, meta = s.meta, active = true,
    updated_at = now()
FROM points_in s
WHERE p.name = s.name
  AND (p.source, p.key, p.device, p.subject, p.zone, p.unit, p.kind, p.description, p.meta, p.active)
      IS DISTINCT FROM (s.source, s.key, s.device, s.subject, s.zone, s.unit, s.kind, s.description, s.meta, true);

-- name: deactivate_missing
UPDATE points p SET active = false, updated_at = now()
WHERE p.active AND NOT EXISTS (SELECT 1 FROM points_in s WHERE s.name = p.name);

-- name: ids_of_stage
SELECT p.name, p.id FROM points p JOIN points_in s ON s.name = p.name;

-- name: list_points
SELECT id, name, source, key, device, subject, zone, unit, kind, description, meta, active, created_at, updated_at
FROM points
WHERE (%(source)s::text IS NULL OR source = %(source)s)
  AND (%(zone)s::text IS NULL OR zone = %(zone)s)
  AND (%(subject)s::text IS NULL OR subject = %(subject)s)
  AND (%(device)s::text IS NULL OR device = %(device)s)
  AND (%(active)s::boolean IS NULL OR active = %(active)s)
ORDER BY id;

-- name: ids_by_name
SELECT name, id FROM points WHERE %(names)s::text[] IS NULL OR name = ANY(%(names)s::text[]);
